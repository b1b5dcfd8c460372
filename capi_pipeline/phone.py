"""Phone numbers -> E.164 digits without "+", byte-identical to phonenumbers' parse + is_valid_number + format.

`phone_e164` takes DISTINCT (raw, region) pairs. Most of them take the fast path: a column-at-a-time replay, with
pyarrow string kernels (RE2) over whole arrays, of what phonenumbers does for plain shapes — ASCII digits with
spaces, dots, dashes, slashes and brackets, an optional leading "+" — when the region is US, CA, GB, DE, FR, BR,
JP or AU and the country code is one of theirs. Every rule is read from phonenumbers' own metadata: international
(IDD) prefix, country code stripping, national prefix for parsing (and its transform rule), possible lengths,
per-type patterns, and the region order of shared country codes (NANP +1, +44, +61). Anything else (letters,
extensions, "tel:" URIs, other regions or country codes) goes through phonenumbers itself (`_phonenumbers`).
tests/test_phone_fastpath.py proves the replay equal to phonenumbers on hypothesis-generated and seeded numbers.

One rule on top of phonenumbers (`phone_reference` states it): a number that is not valid as written and starts
with "00" (no "+") is read again as "+" and what follows. "00" is the ITU international prefix, dialled from most
countries, but phonenumbers honours only the row region's own prefix (011 in the US, 010 in Japan, 0011 in
Australia...), so a US row's "001-323-656-9083" would otherwise be lost. Numbers valid as written keep that reading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.phonenumberutil import ValidationResult, _test_number_length

from capi_pipeline.columns import SPACE_CLASS

__all__ = ["phone_e164", "phone_e164_coded", "phone_reference"]

_SLOW = object()  # "not proven identical to phonenumbers: ask phonenumbers"
_SHAPE = r"[ (]*\+?[0-9][0-9 ().\-/]*"  # only punctuation phonenumbers drops, no extension or letters
_ANY_DIGIT = re.compile(r"\d")
# An extension phonenumbers' _EXTN_PATTERN cuts off at exactly this point: the number ends in a digit or ")", the
# extension is spaces, a marker, spaces and 1-9 digits ("x12", " ext. 12", " #12"; lowercase only).
_SHAPE_BEFORE_EXT = r"[ (]*\+?[0-9][0-9 ().\-/]*[0-9)]"
_EXT = r" *(?:ext\.?|x|#) *[0-9]{1,9}"  # Python's Unicode \d, as phonenumbers' viability check
_FAST_REGIONS = ("US", "CA", "GB", "DE", "FR", "BR", "JP", "AU")
_MAX_NSN = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_KEEP_UNSTRIPPED = np.array([ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                             ValidationResult.INVALID_LENGTH], dtype=np.int64)


# ------------------------------------------------------------------------------------------- kernels on arrays
def _np(mask: pa.Array) -> np.ndarray:
    return mask.fill_null(False).to_numpy(zero_copy_only=False)


def _full(arr: pa.Array, pattern: str) -> np.ndarray:
    return _np(pc.match_substring_regex(arr, f"^(?:{pattern})$"))


def _prefix(arr: pa.Array, pattern: str) -> np.ndarray:
    return _np(pc.match_substring_regex(arr, f"^(?:{pattern})"))


def _after(arr: pa.Array, pattern: str) -> tuple[np.ndarray, pa.Array]:
    """(matched, rest): `re.match(pattern)` semantics; RE2's leftmost-first submatches equal Python's."""
    if re.fullmatch(r"\d+(?:\|\d+)*", pattern):  # "0", "011", "0|180020": the first literal that matches wins
        hit = np.zeros(len(arr), dtype=bool)
        cut = np.zeros(len(arr), dtype=np.int64)
        for lit in pattern.split("|"):
            now = ~hit & _np(pc.starts_with(arr, lit))
            hit |= now
            cut[now] = len(lit)
        if not hit.any():
            return hit, arr
        return hit, _cut(arr, cut)
    got = pc.extract_regex(arr, f"^(?P<p>{_uncapture(pattern)})(?P<r>.*)$")
    return _np(got.is_valid()), got.field("r")


def _cut(arr: pa.Array, cut: np.ndarray) -> pa.Array:
    """Every value without its first cut[i] bytes."""
    out = arr
    for k in np.unique(cut[cut > 0]).tolist():
        sel = pa.array(cut == k)
        out = pc.if_else(sel, pc.utf8_slice_codeunits(arr, k), out)
    return out


def _uncapture(pattern: str) -> str:
    """extract_regex wants named groups only: make the metadata's own groups non-capturing."""
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)


def _lengths(arr: pa.Array) -> np.ndarray:
    return pc.binary_length(arr).to_numpy(zero_copy_only=False)


def _take(arr: pa.Array, idx: np.ndarray) -> pa.Array:
    return arr.take(pa.array(idx, type=pa.int64()))


# ------------------------------------------------------------------------------------------------- metadata
@dataclass(frozen=True)
class _Meta:
    """What phonenumbers' parse and is_valid_number read from one region's metadata."""
    code: str
    cc: int
    idd: str | None
    npfp: str | None
    npfp_re: re.Pattern[str] | None
    transform: str | None
    general: str | None
    general_re: re.Pattern[str] | None
    length_status: tuple[int, ...]  # _test_number_length by length, 0.._MAX_NSN + 1
    leading: str | None
    by_length: dict[int, str]  # number length -> alternation of the type patterns allowed at that length

    def known_type(self, arr: pa.Array, lengths: np.ndarray) -> np.ndarray:
        """_number_type_helper(...) != UNKNOWN, for every value of `arr`."""
        out = np.zeros(len(arr), dtype=bool)
        if self.general is None:
            return out
        for length in np.unique(lengths).tolist():
            alt = self.by_length.get(length)
            if alt is None:
                continue
            idx = np.flatnonzero(lengths == length)
            sub = _take(arr, idx)
            ok = _full(sub, self.general)
            if ok.any():
                idx, sub = idx[ok], _take(sub, np.flatnonzero(ok))
                out[idx] = _full(sub, alt)
        return out

    def length_result(self, lengths: np.ndarray) -> np.ndarray:
        return np.asarray(self.length_status, dtype=np.int64)[np.minimum(lengths, _MAX_NSN + 1)]


def _meta(code: str) -> _Meta:
    md = phonenumbers.PhoneMetadata.metadata_for_region(code)
    kinds = ["premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
             "fixed_line"] + ([] if md.same_mobile_and_fixed_line_pattern else ["mobile"])
    types = [(tuple(d.possible_length), d.national_number_pattern) for d in (getattr(md, k) for k in kinds)
             if d is not None and d.national_number_pattern]
    gen = md.general_desc
    by_length: dict[int, str] = {}
    # _is_number_matching_desc: a non-empty possible_length list must hold the length, then the pattern must
    # fullmatch; the general desc first, then any type (their order only decides WHICH type it is).
    for length in range(1, _MAX_NSN + 1):
        if gen.possible_length and length not in gen.possible_length:
            continue
        alts = [p for lengths, p in types if not lengths or length in lengths]
        if alts:
            by_length[length] = "|".join(f"(?:{a})" for a in alts)
    npfp = md.national_prefix_for_parsing or None
    return _Meta(code, md.country_code, md.international_prefix, npfp, re.compile(npfp) if npfp else None,
                 md.national_prefix_transform_rule or None, gen.national_number_pattern or None,
                 re.compile(gen.national_number_pattern) if gen.national_number_pattern else None,
                 tuple(_test_number_length("0" * n, md) for n in range(_MAX_NSN + 2)), md.leading_digits,
                 by_length)


_REGIONS: dict[str, _Meta] = {r: _meta(r) for r in _FAST_REGIONS}
_CC_METAS: dict[int, tuple[_Meta, ...]] = {
    cc: tuple(_REGIONS.get(r) or _meta(r) for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc])
    for cc in sorted({m.cc for m in _REGIONS.values()})}
_MAIN: dict[int, _Meta] = {cc: metas[0] for cc, metas in _CC_METAS.items()}  # region_code_for_country_code


def _check_assumptions() -> None:
    """What the replay takes for granted about the metadata; fails loudly after a phonenumbers upgrade."""
    known = {str(cc) for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    for cc in _CC_METAS:  # country codes are a prefix code: a fast cc at the start IS the cc phonenumbers finds
        assert not any(str(cc)[:i] in known for i in range(1, len(str(cc)))), cc
    for metas in _CC_METAS.values():  # no valid number shorter than 3 digits (phonenumbers' viability rule)
        assert all(min(m.by_length, default=3) >= 3 for m in metas)
    for meta in _REGIONS.values():
        for pattern in filter(None, (meta.idd, meta.npfp, meta.general, meta.leading, *meta.by_length.values())):
            pc.match_substring_regex(pa.array(["1"]), pattern)  # RE2 understands it


_check_assumptions()


# ------------------------------------------------------------------------------------------------ parse steps
def _strip_national_prefix(arr: pa.Array, meta: _Meta) -> pa.Array:
    """_maybe_strip_national_prefix_carrier_code(number, meta)[1] for every value."""
    if meta.npfp is None or len(arr) == 0:
        return arr
    if meta.transform is not None:  # transform rules (BR, JP) need the groups: Python's re, value by value
        return pa.array([_strip_one(v, meta) for v in arr.to_pylist()], type=pa.string())
    hit, rest = _after(arr, meta.npfp)
    hit &= _lengths(arr) > 0
    if meta.general is not None and hit.any():  # a number viable as it is keeps its prefix unless the rest is too
        hi = np.flatnonzero(hit)
        hit[hi[_full(_take(arr, hi), meta.general) & ~_full(_take(rest, hi), meta.general)]] = False
    return pc.if_else(pa.array(hit), rest, arr) if hit.any() else arr


def _strip_one(number: str, meta: _Meta) -> str:
    assert meta.npfp_re is not None
    m = meta.npfp_re.match(number) if number else None
    if m is None:
        return number
    viable = meta.general_re is not None and meta.general_re.fullmatch(number) is not None
    groups = m.groups()
    stripped = number[m.end():] if not meta.transform or groups[-1] is None else \
        meta.npfp_re.sub(meta.transform, number, count=1)
    if viable and not (meta.general_re is not None and meta.general_re.fullmatch(stripped)):
        return number
    return stripped


def _valid(cc: int, arr: pa.Array, lengths: np.ndarray) -> np.ndarray:
    """is_valid_number for (cc, national significant number): the region is found as
    _region_code_for_number_from_list does (leading digits decide, else the first region whose type matches)."""
    metas = _CC_METAS[cc]
    if len(metas) == 1:
        return metas[0].known_type(arr, lengths)
    out = np.zeros(len(arr), dtype=bool)
    open_ = np.ones(len(arr), dtype=bool)
    for meta in metas:
        idx = np.flatnonzero(open_)
        if idx.size == 0:
            break
        sub = _take(arr, idx)
        if meta.leading is not None:
            hit = _prefix(sub, meta.leading)
            idx = idx[hit]
            if idx.size:
                out[idx] = meta.known_type(_take(arr, idx), lengths[idx])
                open_[idx] = False
        else:
            ok = meta.known_type(sub, lengths[idx])
            out[idx[ok]] = True
            open_[idx[ok]] = False
    return out


class _Work:
    """Per-pair state of the replay: country code, national number, metadata used for prefix stripping."""

    def __init__(self, n: int) -> None:
        self.cc = np.zeros(n, dtype=np.int64)
        self.national: list[pa.Array] = []
        self.where: list[np.ndarray] = []
        self.meta: list[np.ndarray] = []  # meta codes, parallel to where

    def add(self, idx: np.ndarray, cc: int, national: pa.Array, meta: _Meta) -> None:
        if idx.size:
            self.cc[idx] = cc
            self.where.append(idx)
            self.national.append(national)
            self.meta.append(np.full(idx.size, _META_CODE[meta.code]))


_ALL_METAS: dict[str, _Meta] = {**{m.code: m for ms in _CC_METAS.values() for m in ms}, **_REGIONS}
_META_CODE: dict[str, int] = {code: i for i, code in enumerate(_ALL_METAS)}
_META_BY_CODE: list[_Meta] = list(_ALL_METAS.values())


def _digits(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The ASCII digits of every (non-null) value, kept in place on the UTF-8 bytes, and how many there are."""
    arr = pa.concat_arrays([arr]) if arr.offset else arr  # own buffers from position 0
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[:len(arr) + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[:offsets[-1]] if offsets[-1] else \
        np.zeros(0, dtype=np.uint8)
    keep = (data >= 48) & (data <= 57)
    kept = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(keep, out=kept[1:])
    new_offsets = kept[offsets].astype(np.int32)
    out = pa.Array.from_buffers(pa.string(), len(arr), [None, pa.py_buffer(new_offsets),
                                                         pa.py_buffer(data[keep].tobytes())])
    return out, np.diff(new_offsets)


def _fast(raw: pa.Array, region_codes: np.ndarray, region_names: Sequence[str | None]
          ) -> tuple[np.ndarray, np.ndarray]:
    """(E.164 digits or None, slow mask) for pairs (raw[i], region_names[region_codes[i]]), regions upper-case;
    slow pairs hold None."""
    n = len(raw)
    out = np.full(n, None, dtype=object)
    slow = np.ones(n, dtype=bool)
    if n == 0:
        return out, slow
    short_enough = _lengths(raw) <= 60
    shaped = _full(raw, _SHAPE) & short_enough
    rest = np.flatnonzero(~shaped & short_enough)
    if rest.size:  # "<number> ext. 12": phonenumbers cuts the extension off and parses the number before it
        got = pc.extract_regex(_take(raw, rest), f"^(?P<b>{_SHAPE_BEFORE_EXT})(?P<e>{_EXT})$")
        matched = _np(got.is_valid())
        base = got.field("b")
        ext = rest[matched & (_digits(base)[1] >= 3)]
        if ext.size:  # (a base with fewer digits is not viable: phonenumbers keeps the extension in the number)
            pick = np.arange(n)
            pick[ext] = n + np.flatnonzero(np.isin(rest, ext))
            raw = _take(pa.concat_arrays([raw, base]), pick)
            shaped[ext] = True
    unshaped = np.flatnonzero(~shaped)
    for i, text in zip(unshaped.tolist(), _take(raw, unshaped).to_pylist()):
        if _ANY_DIGIT.search(text) is None:  # nothing phonenumbers could read as a number
            slow[i] = False
    idx = np.flatnonzero(shaped)
    text = _take(raw, idx)
    digits, nd = _digits(text)
    plus = _np(pc.match_substring(text, "+"))  # a shaped value has "+" only before its first digit
    short = nd < 3  # not viable (or "dd", never valid): NOT_A_NUMBER / TOO_SHORT
    slow[idx[short]] = False
    region_of = np.asarray(region_codes, dtype=np.int64)[idx]
    work = _Work(n)

    def by_cc(sel: np.ndarray, rest: pa.Array) -> None:
        """+CC or IDD+CC: the country code phonenumbers extracts; its main region's metadata from here on."""
        for cc, main in _MAIN.items():
            hit = _np(pc.starts_with(rest, str(cc)))
            if hit.any():
                work.add(idx[sel[hit]], cc, pc.utf8_slice_codeunits(_take(rest, np.flatnonzero(hit)),
                                                                   len(str(cc))), main)

    pl = np.flatnonzero(plus & ~short)
    by_cc(pl, _take(digits, pl))
    for rc, name in enumerate(region_names):
        meta = _REGIONS.get(name) if name is not None else None
        if name is None:  # no region and no "+": INVALID_COUNTRY_CODE
            slow[idx[~plus & ~short & (region_of == rc)]] = False
        if meta is None:
            continue
        sel = np.flatnonzero(~plus & ~short & (region_of == rc))
        if sel.size == 0:
            continue
        d = _take(digits, sel)
        via_idd = np.zeros(sel.size, dtype=bool)
        if meta.idd is not None:  # _parse_prefix_as_idd: not when a 0 follows the prefix
            hit, rest = _after(d, meta.idd)
            via_idd = hit & ~_prefix(rest, "0")
            if via_idd.any():
                rest_len = _lengths(rest)
                tiny = via_idd & (rest_len <= 2)  # TOO_SHORT_AFTER_IDD
                slow[idx[sel[tiny]]] = False
                ok = np.flatnonzero(via_idd & ~tiny)
                by_cc(sel[ok], _take(rest, ok))
        home = np.flatnonzero(~via_idd)
        d = _take(d, home)
        cc_s = str(meta.cc)
        has_cc = _np(pc.starts_with(d, cc_s))
        take_cc = np.zeros(home.size, dtype=bool)
        if has_cc.any():  # _maybe_extract_country_code's "number starting with the region's own cc"
            hi = np.flatnonzero(has_cc)
            full_ = _take(d, hi)
            pot = _strip_national_prefix(pc.utf8_slice_codeunits(full_, len(cc_s)), meta)
            gen_full = _full(full_, meta.general) if meta.general else np.zeros(hi.size, dtype=bool)
            gen_pot = _full(pot, meta.general) if meta.general else np.zeros(hi.size, dtype=bool)
            too_long = meta.length_result(_lengths(full_)) == ValidationResult.TOO_LONG
            took = (~gen_full & gen_pot) | too_long
            take_cc[hi[took]] = True
            work.add(idx[sel[home[hi[took]]]], meta.cc, _take(pot, np.flatnonzero(took)), _MAIN[meta.cc])
        rest_i = np.flatnonzero(~take_cc)
        work.add(idx[sel[home[rest_i]]], meta.cc, _take(d, rest_i), meta)

    if not work.where:
        return out, slow
    where = np.concatenate(work.where)
    national = pa.concat_arrays(work.national)
    meta_code = np.concatenate(work.meta)
    parts: list[tuple[np.ndarray, pa.Array]] = []
    for code in np.unique(meta_code).tolist():  # parse's own national prefix strip, kept unless too short etc.
        meta = _META_BY_CODE[code]
        g = np.flatnonzero(meta_code == code)
        nat = _take(national, g)
        if meta.npfp is not None:
            pot = _strip_national_prefix(nat, meta)
            use = ~np.isin(meta.length_result(_lengths(pot)), _KEEP_UNSTRIPPED) & (_lengths(nat) >= 2)
            if use.any():
                nat = pc.if_else(pa.array(use), pot, nat)
        parts.append((where[g], nat))
    where = np.concatenate([w for w, _ in parts])
    national = pa.concat_arrays([a for _, a in parts])
    lengths = _lengths(national)
    cc_of = work.cc[where]
    ok_len = (lengths >= 2) & (lengths <= _MAX_NSN)  # TOO_SHORT_NSN / TOO_LONG otherwise
    slow[where[~ok_len]] = False
    for cc in np.unique(cc_of[ok_len]).tolist():
        sel = np.flatnonzero(ok_len & (cc_of == cc))
        nat = _take(national, sel)
        valid = _valid(cc, nat, lengths[sel])
        slow[where[sel]] = False
        if valid.any():
            vi = np.flatnonzero(valid)
            joined = pc.binary_join_element_wise(str(cc), _take(nat, vi), "")
            out[where[sel[vi]]] = joined.to_numpy(zero_copy_only=False)
    return out, slow


# --------------------------------------------------------------------------------------------------- public
_INTL_00 = re.compile(r"[\s(]*00")  # "00" + country code, with no "+" before it
_INTL_00_RE2 = f"^(?:{SPACE_CLASS}|\\()*00"  # the same for RE2, whose \s is narrower


def _intl_00(raw: str) -> str | None:
    """"+" and the rest of a raw number that starts with the "00" international prefix; None otherwise."""
    m = _INTL_00.match(raw)
    return None if m is None else "+" + raw[m.end():]


def phone_reference(raw: str, region: str | None) -> str | None:
    """The rule, one number at a time: phonenumbers, then the "00" international prefix (module docstring)."""
    got = _phonenumbers(raw, region)
    if got is None and (again := _intl_00(raw)) is not None:
        got = _phonenumbers(again, region)
    return got


def _phonenumbers(raw: str, region: str | None) -> str | None:
    """Pure phonenumbers: parse with the region, keep only valid numbers, E.164 without "+"."""
    try:
        number = phonenumbers.parse(raw, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def _phone_fast_many(raws: Sequence[str], regions: Sequence[str | None]) -> list[object]:
    """Pairs through the fast path alone: E.164 digits, None (invalid) or _SLOW (not covered) each."""
    names = list(dict.fromkeys(regions))
    code = {r: i for i, r in enumerate(names)}
    out, slow = _fast(pa.array(list(raws), type=pa.string()), np.array([code[r] for r in regions], dtype=np.int64),
                      names)
    out[slow] = _SLOW
    return out.tolist()


def _phone_fast(raw: str, region: str | None) -> object:
    """One pair through the fast path: E.164 digits, None (invalid) or _SLOW (not covered)."""
    return _phone_fast_many([raw], [region])[0]


def phone_e164_coded(raws: Sequence[str] | None, region_codes: np.ndarray, region_names: Sequence[str | None],
                     arrow: pa.Array | None = None) -> tuple[np.ndarray, int]:
    """`phone_e164` for pairs given as (raws[i], region_names[region_codes[i]]): an object array, slow count.
    `arrow`: the raws as an Arrow string array (then `raws` is not read: None will do)."""
    ups = [r.upper() if r else None for r in region_names]
    raw = arrow if arrow is not None else pa.array(raws, type=pa.string())
    codes = np.asarray(region_codes, dtype=np.int64)
    intl = np.flatnonzero(_np(pc.match_substring(raw, "00")))  # cheap literal prefilter for the regex
    if intl.size:
        intl = intl[_np(pc.match_substring_regex(_take(raw, intl), _INTL_00_RE2))]
    if intl.size == 0:
        return _phonenumbers_coded(raw, codes, ups)
    # the "00" reading of those numbers goes through the same single pass; it is used where the first fails
    again = pc.replace_substring_regex(_take(raw, intl), _INTL_00_RE2, "+", max_replacements=1)
    n = len(raw)
    out, slow = _phonenumbers_coded(pa.concat_arrays([raw, again]), np.concatenate([codes, codes[intl]]), ups)
    first, second = out[:n], out[n:]
    use = np.equal(first[intl], None)
    first[intl[use]] = second[use]
    return first, slow


def _phonenumbers_coded(raw: pa.Array, region_codes: np.ndarray, ups: Sequence[str | None]
                        ) -> tuple[np.ndarray, int]:
    """`_phonenumbers` for every pair: the fast path, phonenumbers itself for the pairs it does not cover."""
    out, slow = _fast(raw, region_codes, ups)
    todo = np.flatnonzero(slow)
    for i, text in zip(todo.tolist(), _take(raw, todo).to_pylist()):
        out[i] = _phonenumbers(text, ups[region_codes[i]])
    return out, len(todo)


def phone_e164(raws: Sequence[str], regions: Sequence[str | None]) -> tuple[list[str | None], int]:
    """E.164 digits (None when invalid) for distinct (raw, region) pairs; also how many took the slow path."""
    names = list(dict.fromkeys(regions))
    code = {r: i for i, r in enumerate(names)}
    out, slow = phone_e164_coded(raws, np.array([code[r] for r in regions], dtype=np.int64), names)
    return out.tolist(), slow
