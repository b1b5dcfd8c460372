"""Customer information (`user_data`) normalization: raw warehouse columns -> values exactly as sent to Meta.

Pure and column-at-a-time: every key has one small function (`_KEY_FUNCTIONS`) that normalizes the DISTINCT raw
values of a column (for `ph`, `st`, `zp`: distinct (value, country) pairs); results are mapped back to the rows.
Rules follow capi.md §3; each function's docstring states them. A value that cannot be normalized is dropped with a
reason ("ph:invalid_phone"); a bad field never rejects the row by itself — only a row left with no identifiers, or
with only one of Meta's baseline-invalid combinations, is rejected.

Decisions (README "Choices"):
- already hashed: a hashed-key value of exactly 64 hex chars passes through lowercased; 32-hex (MD5) is not trusted.
- external_id: hashed by default over lowercase + whitespace removed (capi-param-builder's convention); with
  `hash_external_id=False` it is sent trimmed, as given.
- US zip: first 5 digits of any ZIP+4 spelling; a 4-digit number is an Excel-eaten leading zero -> left-padded.
- ct/fn/ln/st keep accented and non-Latin letters (the doc asks for UTF-8; capi-param-builder drops accents).
- db: two-digit years are dropped (the century is a guess); dates before 1900 or in the future are dropped.
- madid: the all-zero advertising id (tracking limited) is dropped.
"""

from __future__ import annotations

import collections
import datetime as _dt
import ipaddress
import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import phonenumbers

from capi_pipeline import geo
from capi_pipeline.hashing import HASHED_KEYS, sha256_hex_list

__all__ = ["NEVER_HASHED_KEYS", "NormalizeOptions", "RawField", "UserDataResult", "explain", "normalize_key",
           "normalize_user_data"]

NEVER_HASHED_KEYS: tuple[str, ...] = (
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id",
    "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid", "partner_id", "partner_name")
ALL_KEYS: tuple[str, ...] = HASHED_KEYS + NEVER_HASHED_KEYS
_COUNTRY_KEYS = frozenset({"ph", "st", "zp"})  # normalized with the row's country
BASELINE_INVALID: tuple[frozenset[str], ...] = (
    frozenset({"ct", "country", "st", "zp", "ge", "client_user_agent"}),
    frozenset({"db", "client_user_agent"}), frozenset({"fn", "ge"}), frozenset({"ln", "ge"}))


@dataclass(frozen=True)
class NormalizeOptions:
    hash: bool = True
    default_country: str | None = "us"  # any spelling the country table knows ("US", "usa")
    dob_order: Literal["mdy", "dmy"] = "mdy"
    hash_external_id: bool = True
    today: _dt.date | None = None


@dataclass(frozen=True)
class RawField:
    key: str
    values: pd.Series
    prehashed: bool = False


@dataclass
class UserDataResult:
    values: dict[str, pd.Series]
    drops: collections.Counter = field(default_factory=collections.Counter)
    field_reasons: pd.Series | None = None
    row_rejection: pd.Series | None = None
    present_before: collections.Counter = field(default_factory=collections.Counter)
    present_after: collections.Counter = field(default_factory=collections.Counter)
    prehashed: collections.Counter = field(default_factory=collections.Counter)
    hashed: collections.Counter = field(default_factory=collections.Counter)


Normalized = tuple[pd.Series, pd.Series]  # (value or None, reason or None), aligned with the input


# ---------------------------------------------------------------------------------------------- raw values -> text
def _as_text(v: Any) -> str | None:
    """A raw cell as trimmed text; None for missing/empty. Integral floats lose the ".0" Excel gave them."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, str):
        return v.strip() or None
    if isinstance(v, (float, np.floating)):
        if v != v:
            return None
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (_dt.date, np.datetime64)):
        ts = pd.Timestamp(v)
        return None if ts is pd.NaT else ts.strftime("%Y-%m-%d")
    return str(v).strip() or None


def _map_distinct(values: pd.Series, fn: Callable[[list[Any]], list[Any]]) -> pd.Series:
    """Apply `fn` to the distinct non-missing values once, map the results back (None where missing)."""
    codes, uniques = pd.factorize(values.astype(object) if values.dtype != object else values,
                                  use_na_sentinel=True)
    table = np.array(list(fn(list(uniques))) + [None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype=object)


def _text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        out = values.dt.strftime("%Y-%m-%d").astype(object)
        return out.where(values.notna(), None)
    return _map_distinct(values, lambda u: [_as_text(v) for v in u])


def _series(values: list[Any], index: pd.Index) -> pd.Series:
    return pd.Series(values, index=index, dtype=object)


def _by_rule(values: pd.Series, rule: Callable[[str], str | None], reason: str) -> Normalized:
    out = [rule(v) for v in values.tolist()]
    return _series(out, values.index), _series([None if o is not None else reason for o in out], values.index)


# -------------------------------------------------------------------------------------------------- per-key rules
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NOT_LETTER = re.compile(r"[\W\d_]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def _letters(text: str) -> str | None:
    return _NOT_LETTER.sub("", unicodedata.normalize("NFC", text).lower()) or None


def normalize_em(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Email: trim, lowercase; must look like `local@domain.tld` (no spaces) else "invalid_email"."""
    return _by_rule(values, lambda v: v.lower() if _EMAIL.fullmatch(v.lower()) else None, "invalid_email")


def normalize_name(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """fn/ln: NFC, lowercase, only letters kept (accents and non-Latin scripts too): "O'Brien" -> "obrien"."""
    return _by_rule(values, _letters, "invalid_name")


def normalize_ct(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """City: NFC, lowercase, spaces/punctuation/digits removed, accents kept ("São Paulo" -> "sãopaulo")."""
    return _by_rule(values, _letters, "invalid_city")


def normalize_st(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """State: US (+DC, PR, GU, VI, AS, MP) and Canadian rows -> 2-letter code from code/name/abbreviation in any
    case/spacing/accents ("Québec" -> "qc"), unknown -> "invalid_state"; rows of unknown country try the US then the
    Canadian table; other countries: NFC, lowercase, only letters and digits kept."""
    regions = country.tolist() if country is not None else [None] * len(values)
    out: list[str | None] = []
    for v, region in zip(values.tolist(), regions):
        folded = geo.fold(v)
        if region in ("us", "ca"):
            out.append(geo.state_lookup(region, folded))
        elif region is None:
            out.append(geo.state_lookup("us", folded) or geo.state_lookup("ca", folded)
                       or _NOT_ALNUM.sub("", unicodedata.normalize("NFC", v).lower()) or None)
        else:
            out.append(_NOT_ALNUM.sub("", unicodedata.normalize("NFC", v).lower()) or None)
    return _series(out, values.index), _series([None if o else "invalid_state" for o in out], values.index)


_US_ZIP = re.compile(r"(\d{5})(?:[\s-]*\d{4})?|(\d{4})")


def normalize_zp(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Zip: US rows -> first 5 digits of "94035", "94035-1234", "940351234", "94035 1234"; a 4-digit number had
    its leading zero eaten by a spreadsheet -> left-padded ("2134" -> "02134"); anything else "invalid_zip".
    Other countries: lowercase, only letters and digits kept ("M1 1AE" -> "m11ae")."""
    regions = country.tolist() if country is not None else [None] * len(values)
    out: list[str | None] = []
    for v, region in zip(values.tolist(), regions):
        if region == "us":
            m = _US_ZIP.fullmatch(v)
            out.append(None if m is None else (m.group(1) or "0" + m.group(2)))
        else:
            out.append(_NOT_ALNUM.sub("", unicodedata.normalize("NFC", v).lower()) or None)
    return _series(out, values.index), _series([None if o else "invalid_zip" for o in out], values.index)


def normalize_country(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Country: ISO-3166-1 alpha-2 lowercase from alpha-2, alpha-3, English names and common local names
    ("USA", "U.S.A.", "Deutschland", "Brasil", "日本"); unknown -> "unknown_country"."""
    return _by_rule(values, lambda v: geo.COUNTRY_LOOKUP.get(geo.fold(v)), "unknown_country")


_GENDER: dict[str, str] = {w: "m" for w in (
    "m", "male", "man", "men", "mr", "mister", "boy", "h", "homme", "masculin", "mann", "männlich", "maennlich",
    "herr", "masculino", "masculina", "hombre", "homem", "varón", "varon", "sr", "senhor", "señor", "maschio",
    "uomo", "男", "男性", "男子", "남", "남성", "мужской", "м")}
_GENDER.update({w: "f" for w in (
    "f", "female", "woman", "women", "w", "mrs", "ms", "miss", "girl", "femme", "féminin", "feminin", "frau",
    "weiblich", "feminino", "feminina", "femenino", "mujer", "mulher", "sra", "srta", "senhora", "señora",
    "femmina", "donna", "mme", "mlle", "女", "女性", "女子", "여", "여성", "женский", "ж")})


def normalize_ge(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Gender: m/f from English, French, German, Portuguese, Spanish, Italian, Japanese, Korean words and titles
    (any case, trailing dots ignored: "Mrs." -> "f"); anything else "invalid_gender"."""
    return _by_rule(values, lambda v: _GENDER.get(unicodedata.normalize("NFC", v).lower().rstrip(".").strip()),
                    "invalid_gender")


_DATE_YMD = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[t ].*)?")
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DATE_SLASH = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_DATE_DOT = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_DATE_DMONY = re.compile(r"(\d{1,2})[ -]([a-z]+)\.?[ -,]*(\d{4})")
_DATE_MONDY = re.compile(r"([a-z]+)\.? (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})")
_MONTHS = {m: i for i, names in enumerate((
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
    ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
    ("nov", "november"), ("dec", "december")), start=1) for m in names}


def _parse_dob(text: str, order: str, today: _dt.date) -> str | None:
    t = " ".join(text.lower().split())
    ymd: tuple[int, int, int] | None = None
    if m := _DATE_YMD.fullmatch(t) or _DATE_COMPACT.fullmatch(t):
        ymd = (int(m[1]), int(m[2]), int(m[3]))
    elif m := _DATE_SLASH.fullmatch(t):
        a, b = int(m[1]), int(m[2])
        day_first = a > 12 or (b <= 12 and order == "dmy")
        ymd = (int(m[3]), b, a) if day_first else (int(m[3]), a, b)
    elif m := _DATE_DOT.fullmatch(t):
        ymd = (int(m[3]), int(m[2]), int(m[1]))
    elif (m := _DATE_DMONY.fullmatch(t)) and m[2] in _MONTHS:
        ymd = (int(m[3]), _MONTHS[m[2]], int(m[1]))
    elif (m := _DATE_MONDY.fullmatch(t)) and m[1] in _MONTHS:
        ymd = (int(m[3]), _MONTHS[m[1]], int(m[2]))
    if ymd is None:
        return None
    try:
        d = _dt.date(*ymd)
    except ValueError:
        return None
    return d.strftime("%Y%m%d") if _dt.date(1900, 1, 1) <= d <= today else None


def normalize_db(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Date of birth -> YYYYMMDD from ISO "1985-07-14" (time part ignored), "19850714", "1985/07/14", slashed
    "07/14/1985" (options.dob_order for ambiguous ones; "14/07/1985" is day-first whatever the order), dotted
    "14.07.1985" (always d.m.y), "14 Jul 1985", "July 14, 1985", and date/datetime cells. Impossible dates,
    two-digit years, years before 1900 and future dates -> "invalid_date_of_birth"."""
    today = options.today or _dt.date.today()
    return _by_rule(values, lambda v: _parse_dob(v, options.dob_order, today), "invalid_date_of_birth")


_SPACE = re.compile(r"\s+")


def normalize_external_id(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """external_id: trimmed; when it is going to be hashed, also lowercased with all whitespace removed
    (capi-param-builder's convention, so web and offline ids agree). Sent as given when not hashed."""
    if options.hash and options.hash_external_id:
        return _by_rule(values, lambda v: _SPACE.sub("", v.lower()) or None, "invalid_external_id")
    return _by_rule(values, lambda v: v, "invalid_external_id")


def _shape(pattern: str, reason: str, flags: int = 0) -> Callable[..., Normalized]:
    compiled = re.compile(pattern, flags)

    def normalize(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
        return _by_rule(values, lambda v: v if compiled.fullmatch(v) else None, reason)
    normalize.__doc__ = f"Never hashed: trimmed, must match `{pattern}` else {reason!r}."
    return normalize


def _ip(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def normalize_ip(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """client_ip_address: never hashed; trimmed, must be a valid IPv4/IPv6 address else "invalid_ip"."""
    return _by_rule(values, _ip, "invalid_ip")


def normalize_madid(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """madid: never hashed; trimmed, case kept; must be a UUID (8-4-4-4-12 hex) and not the all-zero id that
    iOS/Android report when tracking is limited, else "invalid_madid"."""
    uuid = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
    return _by_rule(values, lambda v: v if uuid.fullmatch(v) and v.strip("0-") else None, "invalid_madid")


def normalize_text(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Never hashed opaque ids/strings: trimmed, non-empty."""
    return _by_rule(values, lambda v: v, "empty")


# ------------------------------------------------------------------------------------------------------- phones
_SLOW = object()
_PHONE_SHAPE = re.compile(r"[ (]*(\+?)[0-9][0-9 ().\-]*")
_PHONE_DROP = str.maketrans("", "", " ().-+")
_FAST_REGIONS = ("US", "CA", "GB", "DE", "FR", "BR", "JP", "AU")


@dataclass(frozen=True)
class _Desc:
    lengths: tuple[int, ...]
    pattern: str | None


@dataclass(frozen=True)
class _Region:
    """What phonenumbers' parse and is_valid_number read from one region's metadata."""
    code: str
    cc: int
    idd: re.Pattern[str] | None
    npfp: re.Pattern[str] | None
    transform: bool
    general: re.Pattern[str] | None
    general_lengths: tuple[int, ...]
    local_lengths: tuple[int, ...]
    leading: re.Pattern[str] | None
    by_length: dict[int, re.Pattern[str]]  # number length -> "general and any type" as one regex

    def known_type(self, number: str) -> bool:
        """phonenumbers' _number_type_helper(...) != UNKNOWN."""
        pattern = self.by_length.get(len(number))
        return pattern is not None and pattern.fullmatch(number) is not None


def _region(code: str) -> _Region:
    md = phonenumbers.PhoneMetadata.metadata_for_region(code)
    kinds = ["premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
             "fixed_line"] + ([] if md.same_mobile_and_fixed_line_pattern else ["mobile"])
    types = [_Desc(tuple(d.possible_length), d.national_number_pattern) for d in (getattr(md, k) for k in kinds)
             if d is not None]
    gen = md.general_desc
    by_length: dict[int, re.Pattern[str]] = {}
    # _is_number_matching_desc: a non-empty possible_length list must hold the length, then the pattern must
    # fullmatch; the general desc first, then any type (the order of types only matters for which type it is).
    for length in range(1, 18):
        if not gen.national_number_pattern or (gen.possible_length and length not in gen.possible_length):
            continue
        alts = [t.pattern for t in types if t.pattern and (not t.lengths or length in t.lengths)]
        if alts:
            by_length[length] = re.compile(
                "(?=(?:%s)\\Z)(?:%s)" % (gen.national_number_pattern, "|".join(f"(?:{a})" for a in alts)))
    return _Region(code, md.country_code, re.compile(md.international_prefix) if md.international_prefix else None,
                   re.compile(md.national_prefix_for_parsing) if md.national_prefix_for_parsing else None,
                   bool(md.national_prefix_transform_rule),
                   re.compile(gen.national_number_pattern) if gen.national_number_pattern else None,
                   tuple(gen.possible_length), tuple(gen.possible_length_local_only),
                   re.compile(md.leading_digits) if md.leading_digits else None, by_length)


_REGIONS: dict[str, _Region] = {r: _region(r) for r in _FAST_REGIONS}
_FAST_CCS: dict[int, tuple[_Region, ...]] = {
    cc: tuple(_region(r) for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[cc])
    for cc in sorted({r.cc for r in _REGIONS.values()})}

_ANY_LEADING: dict[int, re.Pattern[str]] = {
    cc: re.compile("|".join(f"(?:{r.leading.pattern})" for r in regions if r.leading is not None) or "(?!)")
    for cc, regions in _FAST_CCS.items()}


def _valid_national(cc: int, national: str) -> bool:
    """phonenumbers' is_valid_number for (cc, national significant number)."""
    regions = _FAST_CCS[cc]
    if len(regions) == 1:
        return regions[0].known_type(national)
    if _ANY_LEADING[cc].match(national) is None:  # only regions without leading digits can claim it
        return any(r.known_type(national) for r in regions if r.leading is None)
    for region in regions:  # _region_code_for_number_from_list
        if region.leading is not None:
            if region.leading.match(national):
                return region.known_type(national)
        elif region.known_type(national):
            return True
    return False


def _phone_fast(raw: str, region: str | None) -> object:
    """E.164 digits, None (invalid) or _SLOW when this shape is not proven identical to phonenumbers."""
    m = _PHONE_SHAPE.fullmatch(raw)
    if m is None or len(raw) > 60:
        return _SLOW
    digits = raw.translate(_PHONE_DROP)
    if m.group(1):  # +CC...: region ignored; the national prefix is stripped with the cc's main region
        cc = next((int(digits[:i]) for i in (1, 2, 3) if int(digits[:i]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE),
                  0) if digits[0] != "0" else 0
        if cc not in _FAST_CCS:
            return _SLOW
        national = digits[len(str(cc)):]
        main = _FAST_CCS[cc][0]
        if main.npfp is not None and main.npfp.match(national):
            return _SLOW
    else:
        info = _REGIONS.get(region) if region else None
        if info is None or (info.idd is not None and info.idd.match(digits)):
            return _SLOW
        cc = info.cc
        if digits.startswith(str(cc)):
            # NANP "1NXX...": 11 digits are TOO_LONG for US/CA, so phonenumbers takes the leading 1 as the cc.
            if cc == 1 and len(digits) == 11 and digits[1] in "23456789":
                national = digits[1:]
            else:
                return _SLOW
        else:
            pm = info.npfp.match(digits) if info.npfp is not None else None
            if pm is None:
                national = digits
            else:
                if info.transform and pm.groups() and pm.groups()[-1] is not None:
                    return _SLOW
                stripped = digits[pm.end():]
                n = len(stripped)
                if not (info.general is not None and info.general.fullmatch(stripped)
                        and n in info.general_lengths and n not in info.local_lengths):
                    return _SLOW
                national = stripped
    if not national or national[0] == "0":
        return _SLOW
    return f"{cc}{national}" if _valid_national(cc, national) else None


def phone_reference(raw: str, region: str | None) -> str | None:
    """Pure phonenumbers: parse with the region, keep only valid numbers, E.164 without "+"."""
    try:
        number = phonenumbers.parse(raw, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def phone_e164(raws: list[str], regions: list[str | None]) -> tuple[list[str | None], int]:
    """E.164 digits (None when invalid) for distinct (raw, region) pairs; also how many took the slow path."""
    out: list[str | None] = []
    slow = 0
    for raw, region in zip(raws, regions):
        up = region.upper() if region else None
        got = _phone_fast(raw, up)
        if got is _SLOW:
            slow += 1
            got = phone_reference(raw, up)
        out.append(got)  # type: ignore[arg-type]
    return out, slow


def normalize_ph(values: pd.Series, country: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Phone -> E.164 digits without "+", exactly as phonenumbers would give (parse with the row's country, else
    options.default_country; national trunk prefixes, 00/011 international prefixes, extensions and separators
    handled by it); numbers phonenumbers does not call valid -> "invalid_phone". Common shapes (+CC and national
    numbers of US/CA/GB/DE/FR/BR/JP/AU with plain separators) take a fast path that replays phonenumbers' parse and
    validity rules on its own metadata; everything else goes through phonenumbers itself."""
    regions = country.tolist() if country is not None else [None] * len(values)
    out, _ = phone_e164(values.tolist(), regions)
    return _series(out, values.index), _series([None if o else "invalid_phone" for o in out], values.index)


_KEY_FUNCTIONS: dict[str, Callable[[pd.Series, pd.Series | None, NormalizeOptions], Normalized]] = {
    "em": normalize_em, "ph": normalize_ph, "fn": normalize_name, "ln": normalize_name, "ge": normalize_ge,
    "db": normalize_db, "ct": normalize_ct, "st": normalize_st, "zp": normalize_zp, "country": normalize_country,
    "external_id": normalize_external_id, "client_ip_address": normalize_ip, "client_user_agent": normalize_text,
    "fbc": _shape(r"fb\.\d+\.\d+\.\S+", "invalid_fbc"), "fbp": _shape(r"fb\.\d+\.\d+\.\S+", "invalid_fbp"),
    "subscription_id": normalize_text, "fb_login_id": _shape(r"\d+", "invalid_fb_login_id"),
    "lead_id": _shape(r"\d+", "invalid_lead_id"), "anon_id": normalize_text, "madid": normalize_madid,
    "page_id": _shape(r"\d+", "invalid_page_id"), "page_scoped_user_id": normalize_text,
    "ctwa_clid": normalize_text, "ig_account_id": _shape(r"\d+", "invalid_ig_account_id"),
    "ig_sid": normalize_text, "partner_id": normalize_text, "partner_name": normalize_text,
}


# ---------------------------------------------------------------------------------------------------- one key
def _region_of(country: str | None, options: NormalizeOptions) -> str | None:
    if country is not None:
        return country
    if options.default_country is None:
        return None
    return geo.COUNTRY_LOOKUP.get(geo.fold(options.default_country))


def _normalize_text(key: str, text: pd.Series, regions: pd.Series | None, options: NormalizeOptions) -> Normalized:
    """Normalize a text column (None = missing) once per distinct value or (value, region) pair."""
    fn = _KEY_FUNCTIONS[key]
    present = text.notna()
    if key in _COUNTRY_KEYS:
        reg = regions if regions is not None else pd.Series(None, index=text.index, dtype=object)
        pairs = text.where(present, None).astype(object) + "\x1f" + reg.fillna("").astype(object)
        codes, uniques = pd.factorize(pairs.where(present, None), use_na_sentinel=True)
        split = [u.split("\x1f", 1) for u in uniques]
        u_vals = pd.Series([s[0] for s in split], dtype=object)
        u_regs = pd.Series([s[1] or None for s in split], dtype=object)
        norm, why = fn(u_vals, u_regs, options)
    else:
        codes, uniques = pd.factorize(text.where(present, None), use_na_sentinel=True)
        norm, why = fn(pd.Series(list(uniques), dtype=object), None, options)
    nt = np.array(norm.tolist() + [None], dtype=object)
    wt = np.array(why.tolist() + [None], dtype=object)
    return pd.Series(nt[codes], index=text.index, dtype=object), pd.Series(wt[codes], index=text.index, dtype=object)


def normalize_key(key: str, values: pd.Series, *, country: pd.Series | None,
                  options: NormalizeOptions) -> tuple[pd.Series, pd.Series]:
    """(normalized value or None, drop reason or None) for one key, not hashed. `country` holds normalized
    alpha-2 codes (None -> options.default_country) and matters for ph, st and zp only."""
    if key not in _KEY_FUNCTIONS:
        raise ValueError(f"unknown user_data key: {key}")
    text = _text(values)
    regions = None
    if key in _COUNTRY_KEYS:
        base = country.reindex(values.index) if country is not None else pd.Series(None, index=values.index,
                                                                                    dtype=object)
        default = _region_of(None, options)
        regions = base.astype(object).where(base.notna(), default)
    return _normalize_text(key, text, regions, options)


# ------------------------------------------------------------------------------------------------ all of user_data
def _explode(field_: RawField, pos: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Long form of one field: list/tuple/array cells become one entry each, tagged with their row position."""
    vals = field_.values.astype(object) if field_.values.dtype != object else field_.values
    arr = vals.to_numpy()
    kinds = set(map(type, arr))
    if not any(issubclass(k, (list, tuple, np.ndarray)) for k in kinds):
        return pd.Series(arr, dtype=object) if not pd.api.types.is_datetime64_any_dtype(field_.values.dtype) \
            else field_.values.reset_index(drop=True), pos
    is_list = np.fromiter((isinstance(v, (list, tuple, np.ndarray)) for v in arr), dtype=bool, count=len(arr))
    items: list[Any] = []
    where: list[int] = []
    for p, v, lst in zip(pos.tolist(), arr.tolist(), is_list.tolist()):
        for item in (list(v) if lst else [v]):
            items.append(item)
            where.append(p)
    return pd.Series(items, dtype=object), np.asarray(where, dtype=np.int64)


def _row_country(fields: Sequence[RawField], n: int, options: NormalizeOptions) -> pd.Series:
    """Normalized alpha-2 country per row position (first valid value), else the default country."""
    default = _region_of(None, options)
    out = pd.Series(None, index=range(n), dtype=object)
    for f in fields:
        if f.key != "country" or f.prehashed:
            continue
        raw, pos = _explode(f, np.arange(n))
        norm, _ = _normalize_text("country", _text(raw), None, options)
        firsts = pd.Series(norm.to_numpy(), index=pos).dropna()
        firsts = firsts[~firsts.index.duplicated()]
        out = out.where(out.notna(), firsts.reindex(out.index))
    return out.where(out.notna(), default)


def _hashes(key: str, options: NormalizeOptions) -> bool:
    if key not in HASHED_KEYS or not options.hash:
        return False
    return options.hash_external_id or key != "external_id"


def normalize_user_data(fields: Sequence[RawField], options: NormalizeOptions) -> UserDataResult:
    """Normalize (and hash) every user_data field; see the module docstring for the contract."""
    for f in fields:
        if f.key not in _KEY_FUNCTIONS:
            raise ValueError(f"unknown user_data key: {f.key}")
    index = fields[0].values.index if fields else pd.RangeIndex(0)
    n = len(index)
    for f in fields:
        if len(f.values) != n:
            raise ValueError(f"user_data field {f.key} is not aligned with the other fields")
    result = UserDataResult(values={})
    regions = _row_country(fields, n, options)
    reasons: list[tuple[np.ndarray, np.ndarray]] = []  # (row positions, "key:reason")
    long_by_key: dict[str, list[tuple[np.ndarray, pd.Series]]] = {}
    before_by_key: dict[str, np.ndarray] = {}

    for f in fields:
        raw, pos = _explode(f, np.arange(n))
        text = _text(raw)
        present = text.notna().to_numpy()
        is_hex = _hex_mask(text) if f.key in HASHED_KEYS else np.zeros(len(text), dtype=bool)
        if f.prehashed or (is_hex.any() and _passes_hashes(f.key, options)):
            passed = text.where(is_hex, None).str.lower() if is_hex.any() else pd.Series(None, index=text.index,
                                                                                          dtype=object)
        else:
            passed = None
            is_hex = np.zeros(len(text), dtype=bool)
        if f.prehashed:
            norm = passed.astype(object)
            why = pd.Series(np.where(present & ~is_hex, "not_sha256", None), index=text.index, dtype=object)
        else:
            todo = text.where(~is_hex, None)
            reg = pd.Series(regions.to_numpy()[pos], index=text.index, dtype=object) if f.key in _COUNTRY_KEYS \
                else None
            norm, why = _normalize_text(f.key, todo, reg, options)
            if _hashes(f.key, options):
                hashed_mask = norm.notna().to_numpy()
                result.hashed[f.key] += int(hashed_mask.sum())
                codes, uniques = pd.factorize(norm, use_na_sentinel=True)
                table = np.array(sha256_hex_list(list(uniques)) + [None], dtype=object)
                norm = pd.Series(table[codes], index=norm.index, dtype=object)
            if passed is not None:
                norm = norm.where(~is_hex, passed)
        result.prehashed[f.key] += int(is_hex.sum())
        bad = why.notna().to_numpy()
        for reason, count in why[bad].value_counts().items():
            result.drops[(f.key, reason)] += int(count)
        if bad.any():
            reasons.append((pos[bad], (f.key + ":" + why[bad]).to_numpy(dtype=object)))
        long_by_key.setdefault(f.key, []).append((pos, norm))
        before = before_by_key.setdefault(f.key, np.zeros(n, dtype=bool))
        before[pos[present]] = True

    presence: dict[str, np.ndarray] = {}
    for key in long_by_key:
        result.present_before[key] += int(before_by_key[key].sum())
        values = _combine(long_by_key[key], n)
        result.values[key] = pd.Series(values, index=index, dtype=object)
        presence[key] = np.fromiter((v is not None for v in values), dtype=bool, count=n)

    _partner_pair(result, presence, reasons, index)
    for key, mask in presence.items():
        result.present_after[key] += int(mask.sum())
    result.field_reasons = _row_reasons(reasons, n, index)
    result.row_rejection = _rejections(presence, n, index)
    return result


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _hex_mask(text: pd.Series) -> np.ndarray:
    """Exactly-64-hex flags, tested once per distinct value."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    flags = np.array([len(u) == 64 and _HEX64.fullmatch(u) is not None for u in uniques] + [False], dtype=bool)
    return flags[codes]


def _passes_hashes(key: str, options: NormalizeOptions) -> bool:
    """64-hex values of hashed keys pass through; an external_id sent unhashed is sent as given."""
    return key in HASHED_KEYS and (key != "external_id" or (options.hash and options.hash_external_id))


def _combine(parts: list[tuple[np.ndarray, pd.Series]], n: int) -> list[Any]:
    """Per row: None, the single value, or a deduplicated list (stable order) when a row has several."""
    if len(parts) == 1 and len(parts[0][0]) == n and (n == 0 or (np.diff(parts[0][0]) > 0).all()):
        return parts[0][1].tolist()
    out: list[Any] = [None] * n
    for pos, norm in parts:
        for p, v in zip(pos.tolist(), norm.tolist()):
            if v is None:
                continue
            cur = out[p]
            if cur is None:
                out[p] = v
            elif isinstance(cur, list):
                if v not in cur:
                    cur.append(v)
            elif cur != v:
                out[p] = [cur, v]
    return out


def _partner_pair(result: UserDataResult, presence: dict[str, np.ndarray],
                  reasons: list[tuple[np.ndarray, np.ndarray]], index: pd.Index) -> None:
    """partner_id and partner_name travel together: a row with only one of them loses both."""
    n = len(index)
    has_id = presence.get("partner_id", np.zeros(n, dtype=bool))
    has_name = presence.get("partner_name", np.zeros(n, dtype=bool))
    for key, mine, other in (("partner_id", has_id, has_name), ("partner_name", has_name, has_id)):
        lonely = mine & ~other
        if not lonely.any():
            continue
        result.drops[(key, "partner_pair_incomplete")] += int(lonely.sum())
        reasons.append((np.flatnonzero(lonely), np.array([f"{key}:partner_pair_incomplete"] * int(lonely.sum()),
                                                         dtype=object)))
        result.values[key] = result.values[key].where(~lonely, None)
        presence[key] = mine & ~lonely


def _row_reasons(reasons: list[tuple[np.ndarray, np.ndarray]], n: int, index: pd.Index) -> pd.Series:
    out: list[tuple[str, ...]] = [()] * n
    if reasons:
        pos = np.concatenate([p for p, _ in reasons])
        why = np.concatenate([w for _, w in reasons])
        grouped: dict[int, list[str]] = {}
        for p, w in zip(pos.tolist(), why.tolist()):
            lst = grouped.setdefault(p, [])
            if w not in lst:
                lst.append(w)
        for p, lst in grouped.items():
            out[p] = tuple(lst)
    return pd.Series(out, index=index, dtype=object)


def _rejections(presence: dict[str, np.ndarray], n: int, index: pd.Index) -> pd.Series:
    """Row verdict from which keys survived: computed once per distinct key combination."""
    keys = list(presence)
    bits = np.zeros(n, dtype=np.int64)
    for i, key in enumerate(keys):
        bits |= presence[key].astype(np.int64) << i
    verdicts: dict[int, str | None] = {}
    for mask in np.unique(bits).tolist():
        present = frozenset(k for i, k in enumerate(keys) if mask >> i & 1)
        if not present:
            verdicts[mask] = "no_customer_information"
        elif any(present <= combo for combo in BASELINE_INVALID):
            verdicts[mask] = "baseline_invalid_combination"
        else:
            verdicts[mask] = None
    return pd.Series([verdicts[m] for m in bits.tolist()], index=index, dtype=object)


# ------------------------------------------------------------------------------------------------------ explain
def explain(frame: pd.DataFrame, options: NormalizeOptions) -> pd.DataFrame:
    """The `capi-pipeline normalize` core: columns named by user_data keys in, the same columns out holding each
    value exactly as it would be sent (lists as JSON array text, None where dropped) plus `reasons`
    ("key:reason; ..."). Field-level results are shown even for rows that would be rejected whole."""
    for col in frame.columns:
        if col not in _KEY_FUNCTIONS:
            raise ValueError(f"unknown user_data key column: {col}")
    result = normalize_user_data([RawField(str(c), frame[c]) for c in frame.columns], options)
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        out[col] = pd.Series([json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                              for v in result.values[str(col)].tolist()], index=frame.index, dtype=object)
    out["reasons"] = pd.Series(["; ".join(r) for r in result.field_reasons.tolist()], index=frame.index,
                               dtype=object)
    return out
