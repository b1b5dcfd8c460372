"""Customer information (`user_data`) normalization: raw warehouse columns -> values exactly as sent to Meta.

Pure and column-at-a-time (plumbing in `columns.py`): each field is factorized once; each key's rule (`_RULES`, one
small function per key) runs once per DISTINCT value (for ph, st, zp: per distinct (value, row country) pair), and
so does SHA-256; results go back to the rows through integer codes. Rules follow capi.md §3; each function's
docstring states them. They are Python `re`/`str` rules; ASCII values (nearly all) take an equivalent vectorized
twin (pyarrow string kernels), other values the Python rule itself. Phone numbers are `phone.py`'s, dates of birth
`dates.py`'s. A value that cannot be normalized is dropped with a reason ("ph:invalid_phone"); a bad field never
rejects the row by itself — only a row left with no identifiers, or with only one of Meta's baseline-invalid
combinations, is rejected. Per-row reasons (`field_reasons`) are built only when asked (`with_reasons=True`).

Decisions (README "Choices"):
- already hashed: a hashed-key value of exactly 64 hex chars passes through lowercased; 32-hex (MD5) is not trusted.
- external_id: hashed by default over lowercase + whitespace removed (capi-param-builder's convention; `hash=False`
  shows that form unhashed); with `hash_external_id=False` it is sent trimmed, as given.
- a row's country is its first valid `country` value, else `default_country` (US by default), for ph, st and zp.
- ph: phonenumbers' reading; a number invalid as written that starts with "00" is read as "+" (see phone.py).
- st/zp: the country's own form when the value has one (US/CA state codes, US 5-digit zips); otherwise the generic
  form (lowercase, letters and digits) rather than a drop: the value may belong to a row whose country is missing
  or wrong ("Greater London" with the default US -> "greaterlondon").
- US zip: first 5 digits of any ZIP+4 spelling; a 4-digit number (or 3 digits from 500) lost its leading zeros to a
  spreadsheet or an integer column -> left-padded. The other countries of the US ZIP system (PR, GU...) alike.
- zp/ph: a float's text ("94035.0": a float column in a CSV file) is its integer, as a float cell is (`as_text`).
- ct/fn/ln/st keep accented and non-Latin letters, NFC (the doc asks for UTF-8; capi-param-builder drops accents);
  full-width Latin letters stay full-width (NFC, not NFKC); zp and ge are NFKC ("１００-０００１", "Ｍ").
- db: two-digit years are dropped (the century is a guess); dates before 1900 or in the future are dropped; month
  names in English, German, French, Spanish, Portuguese and Italian; slashed dates follow `dob_order`.
- madid: the all-zero advertising id (tracking limited) is dropped.
- placeholders ("N/A", "null", "unknown", "-"... `PLACEHOLDERS`) are dropped for fn, ln, ct, st, zp, country and
  external_id; the other keys' shape checks drop them anyway.
- a text cell holding a JSON array of scalars is several values of its key (how a CSV says it; columns.py).
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
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline import geo
from capi_pipeline.columns import (WS, Column, Part, Regions, Texts, Units, ascii_alnum, ascii_letters, column,
                                   combine, each, keep_if, non_empty, row_reasons, sha256_distinct)
from capi_pipeline.dates import dob_ascii, parse_dob
from capi_pipeline.hashing import HASHED_KEYS
from capi_pipeline.phone import phone_e164_coded

__all__ = ["NEVER_HASHED_KEYS", "NormalizeOptions", "RawField", "UserDataResult", "explain", "normalize_key",
           "normalize_user_data"]

NEVER_HASHED_KEYS: tuple[str, ...] = (
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id", "anon_id",
    "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid", "partner_id", "partner_name")
ALL_KEYS: tuple[str, ...] = HASHED_KEYS + NEVER_HASHED_KEYS
_COUNTRY_KEYS = frozenset({"ph", "st", "zp"})  # normalized with the row's country
# Keys whose distinct raw values rarely normalize to the same value: hashed without a second deduplication
_MOSTLY_DISTINCT = frozenset({"em", "ph", "external_id"})
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
    present: dict[str, np.ndarray] = field(default_factory=dict)  # key -> row has a value in `values` (bool)
    drops: collections.Counter = field(default_factory=collections.Counter)
    field_reasons: pd.Series | None = None  # tuples of "key:reason" per row; None unless asked (with_reasons=True)
    row_rejection: pd.Series | None = None
    partner_incomplete: np.ndarray | None = None  # rows with partner_id or partner_name alone (rules reject them)
    present_before: collections.Counter = field(default_factory=collections.Counter)
    present_after: collections.Counter = field(default_factory=collections.Counter)
    prehashed: collections.Counter = field(default_factory=collections.Counter)
    hashed: collections.Counter = field(default_factory=collections.Counter)
    # per row, for LDU (which needs the state itself, not its hash): the first `st` field's value normalized but
    # not hashed, and the row's country as normalization read it (None: no valid one given, the default applied)
    plain_st: np.ndarray | None = None
    country: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------- per-key rules
Rule = Callable[[Texts, "np.ndarray | None", NormalizeOptions], np.ndarray]  # distinct texts -> value or None
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")  # domain labels non-empty: no "..", no trailing dot


# Unicode files these as letters (modifier letters), but they are apostrophes and a calligraphic stretch:
# "Марʼяна" must hash as "Мар'яна" does, "محـمد" as "محمد". (Not all modifier letters: Japanese "ー", "々" are
# part of names.)
_NOT_LETTERS = dict.fromkeys(map(ord, "\u02b9\u02ba\u02bb\u02bc\u02bd\u02be\u02bf\u0640\u07fa"))


def _only(text: str, categories: str) -> str | None:
    """NFC, lowercase, only the characters whose Unicode category starts with one of `categories` (without
    `_NOT_LETTERS`); NFC again, as a mark left next to a letter once what stood between them is gone composes
    with it ("A´" -> "á")."""
    kept = "".join(ch for ch in unicodedata.normalize("NFC", text).lower().translate(_NOT_LETTERS)
                   if unicodedata.category(ch)[0] in categories)
    return unicodedata.normalize("NFC", kept) or None


def _letters(text: str) -> str | None:
    """Letters and their combining marks (the vowel signs of Devanagari, Thai, Tamil... are marks, not letters)."""
    return _only(text, "LM")


def _alnum(text: str) -> str | None:
    return _only(text, "LMN")


# What warehouses write for "no value": never a name, city, state, zip, country or id ("N/A" is no Namibia).
PLACEHOLDERS: frozenset[str] = frozenset({"n/a", "#n/a", "n.a.", "null", "(null)", "<null>", "none", "undefined",
                                          "unknown", "-", "--", "?"})
_PLACEHOLDER_SET = pa.array(sorted(PLACEHOLDERS), type=pa.string())
_PLACEHOLDER_KEYS = frozenset({"fn", "ln", "ct", "st", "zp", "country", "external_id"})  # (`_plain` drops them)


_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))  # soft hyphen, zero-width, BOM


def _email(text: str) -> str | None:
    v = unicodedata.normalize("NFC", text.translate(_INVISIBLE).strip()).lower()
    return v if _EMAIL.fullmatch(v) else None


def normalize_em(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Email: trim, lowercase (NFC; invisible zero-width characters and soft hyphens, which copy-paste leaves,
    removed); must look like `local@domain.tld` (no spaces, no empty domain label: "a@b..com", "a@b.com." are
    invalid) else "invalid_email"."""
    def ascii_rule(a: pa.Array) -> pa.Array:
        low = pc.ascii_lower(a)
        return keep_if(low, pc.match_substring_regex(low, f"^[^@{WS}]+@[^@{WS}.]+(?:\\.[^@{WS}.]+)+$"))
    return each(t, ascii_rule, _email)


def normalize_name(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """fn/ln: NFC, lowercase, only letters kept (accents and non-Latin scripts too): "O'Brien" -> "obrien"."""
    return each(t, ascii_letters, _letters)


def normalize_ct(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """City: NFC, lowercase, spaces/punctuation/digits removed, accents kept ("São Paulo" -> "sãopaulo")."""
    return each(t, ascii_letters, _letters)


# "N. Carolina", "So. Dakota", "W Virginia": the compass point written out
_POINTS = re.compile(r"^\s*(n|no|s|so|w)\.?\s+(?=\w)", re.IGNORECASE)
_POINT_WORDS = {"n": "north", "no": "north", "s": "south", "so": "south", "w": "west"}
_NORTH_AMERICA = {"us": ("us", "ca"), "ca": ("ca", "us"), None: ("us", "ca")}  # row country -> tables, in order


def normalize_st(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """State: rows of the US (+DC, PR, GU, VI, AS, MP), Canada or unknown country -> 2-letter code from a code,
    name or abbreviation in any case/spacing/accents ("Québec" -> "qc"), looked up in the row country's table then
    the other one (unknown: US first). Any other value (other countries, or a name neither table knows): NFC,
    lowercase, only letters and digits kept ("Greater London" -> "greaterlondon"); "invalid_state" only when nothing
    is left. On a North American row what is left is looked up once more, so a normalized state normalizes to
    itself."""
    def lookup(v: str, tables: tuple[str, ...]) -> str | None:
        folded = geo.fold(v.replace("&", " and "))  # "Newfoundland & Labrador"
        spelled = geo.fold(_POINTS.sub(lambda m: _POINT_WORDS[m.group(1).lower()] + " ", v))
        for country in tables:
            if (code := geo.state_lookup(country, folded) or geo.state_lookup(country, spelled)) is not None:
                return code
        return None

    def one(v: str, region: str | None) -> str | None:
        tables = _NORTH_AMERICA.get(region, ())
        if tables and (code := lookup(v, tables)) is not None:
            return code
        left = _alnum(v)
        return (lookup(left, tables) or left) if tables and left is not None and left != v else left
    regs = regions if regions is not None else [None] * len(t.py)
    return np.array([one(v, r) for v, r in zip(t.py, regs)] + [None], dtype=object)[:-1]


def _zip(text: str) -> str | None:
    """Generic postcode: NFKC (full-width "１００-０００１" is "100-0001"), lowercase, letters and digits only."""
    return _alnum(unicodedata.normalize("NFKC", text))


def _or_generic(a: pa.Array, got: pa.Array, matched: pa.Array,
                again: Callable[[pa.Array], tuple[pa.Array, pa.Array]] | None = None) -> np.ndarray:
    """`got` where `matched`, the generic postcode (ascii_alnum) of the other values; with `again` (a rule giving
    `(got, matched)` as the first did), a generic postcode it matches becomes what it gives."""
    out = got.to_numpy(zero_copy_only=False).astype(object)
    other = np.flatnonzero(~matched.to_numpy(zero_copy_only=False))
    if other.size:
        left = ascii_alnum(a.take(pa.array(other)))
        out[other] = left.to_numpy(zero_copy_only=False) if again is None else _or_generic(left, *again(left))
    return out


# Countries of the US ZIP system (USPS): a zip there is a US zip (Puerto Rico 006-009xx, Guam 969xx...)
_US_ZIP_REGIONS = ("us", "pr", "vi", "gu", "as", "mp", "mh", "fm", "pw")
_FLOAT_TEXT = r"^([0-9]+)\.0$"  # "94035.0": an integer as a float column writes it to a CSV file


def _unfloat(t: Texts) -> Texts:
    """"94035.0" -> "94035": the integer a float column held, as `as_text` reads that column itself (a warehouse
    column of zips or phones with blanks becomes float, and its CSV export says "94035.0")."""
    if not pc.any(pc.ends_with(t.arrow, ".0")).as_py():
        return t
    return Texts(None, pc.replace_substring_regex(t.arrow, _FLOAT_TEXT, r"\1"), t.ascii)


_US_ZIP = re.compile(r"(\d{5})(?:[\s-]*\d{4}|\s*-.*)?|(\d{4}|[5-9]\d\d)")
# every Unicode dash (en dash, non-breaking hyphen, minus sign...) as "-": ZIP+4 is typed with all of them
_DASHES = dict.fromkeys(map(ord, "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a"
                                  "\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\u2212"), "-")
_ZIP4 = re.compile(r"(\d{5})[\s-]+\d{4}")


def normalize_zp(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Zip: a float's text ("94035.0", see `_unfloat`) is its integer first. Rows of the US or a country of its ZIP
    system (PR, VI, GU, AS, MP, MH, FM, PW) -> first 5 digits of "94035", "94035-1234", "940351234", "94035 1234", "94035-" (any Unicode
    dash); a 4-digit number, or a 3-digit one from 500 (ZIPs 00501-00988: Holtsville NY, Puerto Rico, the Virgin
    Islands), had its leading zeros eaten by a spreadsheet or an integer column -> left-padded ("2134" -> "02134",
    "501" -> "00501"). Rows of unknown country: a ZIP+4 ("94035-1234") -> its first 5 digits. Anything else
    (other countries, or a value that is no US zip): NFKC, lowercase, only letters and digits kept ("M1 1AE" ->
    "m11ae", "１００-０００１" -> "1000001"); "invalid_zip" only when nothing is left. On a US row, what is left
    goes through the US rules once more ("4#689" -> "4689" -> "04689", "94035.1234" -> "94035"), so that a
    normalized zip normalizes to itself."""
    def us_one(v: str) -> str | None:
        m = _US_ZIP.fullmatch(v) if v.isascii() else None
        return None if m is None else (m.group(1) or m.group(2).zfill(5))

    def us(v: str) -> str | None:
        v = unicodedata.normalize("NFKC", v).translate(_DASHES)
        if (got := us_one(v)) is not None:
            return got
        left = _zip(v)
        return left if left is None else (us_one(left) or left)

    def us_shapes(a: pa.Array) -> tuple[pa.Array, pa.Array]:
        m = pc.extract_regex(a, f"^(?:(?P<five>[0-9]{{5}})(?:[{WS}-]*[0-9]{{4}}|[{WS}]*-.*)?"
                                f"|(?P<four>[0-9]{{4}}|[5-9][0-9]{{2}}))$")
        five, four = m.field("five"), m.field("four")
        got = pc.if_else(pc.greater(pc.binary_length(five), 0), five, pc.utf8_lpad(four, width=5, padding="0"))
        return got, m.is_valid()

    def us_ascii(a: pa.Array) -> np.ndarray:
        return _or_generic(a, *us_shapes(a), again=us_shapes)

    def unknown(v: str) -> str | None:
        v = unicodedata.normalize("NFKC", v).translate(_DASHES)
        m = _ZIP4.fullmatch(v) if v.isascii() else None
        return _zip(v) if m is None else m.group(1)

    def unknown_ascii(a: pa.Array) -> np.ndarray:
        m = pc.extract_regex(a, f"^(?P<five>[0-9]{{5}})[{WS}-]+[0-9]{{4}}$")
        return _or_generic(a, m.field("five"), m.is_valid())
    t = _unfloat(t)
    out = np.full(len(t), None, dtype=object)
    is_us = np.isin(regions, _US_ZIP_REGIONS) if regions is not None else np.zeros(len(t), dtype=bool)
    is_unknown = np.asarray(pd.isna(regions), dtype=bool) if regions is not None else ~is_us
    for mask, ascii_rule, rule in ((is_us, us_ascii, us), (is_unknown, unknown_ascii, unknown),
                                   (~is_us & ~is_unknown, ascii_alnum, _zip)):
        idx = np.flatnonzero(mask)
        if idx.size:
            out[idx] = each(t.take(idx), ascii_rule, rule)
    return out


def normalize_country(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Country: ISO-3166-1 alpha-2 lowercase from alpha-2, alpha-3, English names and common local names
    ("USA", "U.S.A.", "Deutschland", "Brasil", "日本"); unknown -> "unknown_country"."""
    return each(t, None, lambda v: geo.COUNTRY_LOOKUP.get(geo.fold(v)))


_GENDER: dict[str, str] = {w: "m" for w in (
    "m", "male", "man", "men", "mr", "mister", "boy", "masculine", "masc", "h", "homme", "masculin", "monsieur",
    "mann", "männlich", "maennlich", "männl", "herr", "masculino", "masculina", "hombre", "homem", "varón", "varon",
    "sr", "senhor", "señor", "maschio", "uomo", "signore", "sig", "dansei", "otoko", "男", "男性", "男子", "남", "남성",
    "мужской", "мужчина", "муж", "м", "manlig", "mannlig", "mand", "mandlig", "herre", "hr", "heer", "dhr",
    "mannelijk", "mies", "mężczyzna", "mezczyzna", "męski", "meski", "pan")}
_GENDER.update({w: "f" for w in (
    "f", "female", "woman", "women", "w", "mrs", "ms", "miss", "girl", "feminine", "fem", "femme", "féminin",
    "feminin", "madame", "frau", "weiblich", "weibl", "feminino", "feminina", "femenino", "mujer", "mulher", "sra",
    "srta", "senhora", "señora", "dama", "femmina", "donna", "signora", "sig.ra", "signorina", "sig.na", "mme", "mlle",
    "josei", "onna", "女", "女性", "女子", "여", "여성", "женский", "женщина", "жен", "ж", "kvinna", "kvinnlig", "dam",
    "fru", "frk", "kvinde", "kvindelig", "kvinne", "kvinnelig", "dame", "vrouw", "vrouwelijk", "mevrouw", "mevr",
    "nainen", "kobieta", "żeński", "zenski", "pani")})


def normalize_ge(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Gender: m/f from English, French, German, Portuguese, Spanish, Italian, Swedish, Danish, Norwegian, Dutch,
    Finnish, Polish, Russian, Japanese (also romanized), Korean words, abbreviations and titles (any case,
    trailing dots ignored: "Mrs." -> "f"); anything else "invalid_gender"."""
    return each(t, None, lambda v: _GENDER.get(unicodedata.normalize("NFKC", v).lower().rstrip(".").strip()))


def normalize_db(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Date of birth -> YYYYMMDD from ISO "1985-07-14" (time part ignored), "19850714", "1985/07/14", slashed
    "07/14/1985" (options.dob_order for ambiguous ones; "14/07/1985" is day-first whatever the order), dotted
    "14.07.1985" (always d.m.y), "14 Jul 1985", "July 14, 1985", and date/datetime cells. Impossible dates,
    two-digit years, years before 1900 and future dates -> "invalid_date_of_birth"."""
    today = options.today or _dt.date.today()
    return each(t, lambda a: dob_ascii(a, options.dob_order, today), lambda v: parse_dob(v, options.dob_order, today))


_SPACE = re.compile(r"\s+")


def normalize_external_id(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """external_id: trimmed; with `hash_external_id` (the default) also lowercased with all whitespace (and the
    invisible zero-width characters copy-paste leaves) removed
    (capi-param-builder's convention, so web and offline ids agree) - also when nothing is hashed (`hash=False`
    shows what would be hashed). With `hash_external_id=False` it is sent as given."""
    if options.hash_external_id:
        return each(t, lambda a: non_empty(pc.replace_substring_regex(pc.ascii_lower(a), f"[{WS}]+", "")),
                     lambda v: _SPACE.sub("", v.translate(_INVISIBLE).lower()) or None)
    return t.py.copy()


def _shape(pattern: str, ascii_pattern: str) -> Rule:
    compiled = re.compile(pattern)

    def normalize(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
        return each(t, lambda a: keep_if(a, pc.match_substring_regex(a, f"^(?:{ascii_pattern})$")),
                     lambda v: v if compiled.fullmatch(v) else None)
    normalize.__doc__ = f"Never hashed: trimmed, must match `{pattern}`."
    return normalize


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"  # ipaddress: no leading zeros


# no client's address: 0.0.0.0/8, loopback, link-local, multicast, 240.0.0.0/4 and broadcast
_NOT_A_CLIENT_V4 = r"^(?:0|127|22[4-9]|23[0-9]|24[0-9]|25[0-5])\.|^169\.254\."


def _ip(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:  # "fe80::1%eth0": an interface of the machine that logged it
            return None
        ip = ip.ipv4_mapped or ip
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast or \
            (isinstance(ip, ipaddress.IPv4Address) and (ip.is_reserved or int(ip) >> 24 == 0)):
        return None
    return text


def normalize_ip(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """client_ip_address: never hashed; trimmed, must be a valid IPv4/IPv6 address that can be a client's (not
    unspecified, loopback, link-local, multicast, reserved, nor with an interface's zone id) else "invalid_ip".
    Private addresses are kept."""
    out = np.full(len(t.py), None, dtype=object)
    v4 = t.ascii & pc.and_kleene(pc.match_substring_regex(t.arrow, f"^{_OCTET}(?:\\.{_OCTET}){{3}}$"),
                                 pc.invert(pc.match_substring_regex(t.arrow, _NOT_A_CLIENT_V4))
                                 ).to_numpy(zero_copy_only=False)
    out[v4] = t.py[v4]
    rest = np.flatnonzero(~v4)
    out[rest] = np.array([_ip(v) for v in t.py[rest]] + [None], dtype=object)[:-1]
    return out


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def normalize_madid(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """madid: never hashed; trimmed, case kept; must be a UUID (8-4-4-4-12 hex) and not the all-zero id that
    iOS/Android report when tracking is limited, else "invalid_madid"."""
    uuid = re.compile(_UUID)
    return each(t, lambda a: keep_if(a, pc.and_(pc.match_substring_regex(a, f"^{_UUID}$"),
                                                  pc.invert(pc.match_substring_regex(a, "^[0-]*$")))),
                 lambda v: v if uuid.fullmatch(v) and v.strip("0-") else None)


def normalize_text(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Never hashed opaque ids/strings: trimmed, non-empty."""
    return t.py.copy()


def normalize_ph(t: Texts, regions: np.ndarray | None, options: NormalizeOptions) -> np.ndarray:
    """Phone -> E.164 digits without "+", exactly as phonenumbers would give (parse with the row's country, else
    options.default_country; national trunk prefixes, 00/011 international prefixes, extensions and separators
    handled by it); numbers phonenumbers does not call valid -> "invalid_phone". See phone.py. A float's text
    ("6505551212.0", see `_unfloat`) is its integer first."""
    regs = Regions.of(regions if regions is not None else np.full(len(t), None, dtype=object))
    return phone_e164_coded(None, regs.codes, list(regs.names), _unfloat(t).arrow)[0]


_DIGITS, _FB = (r"\d+", "[0-9]+"), (r"fb\.\d+\.\d+\.\S+", f"fb\\.[0-9]+\\.[0-9]+\\.[^{WS}]+")
_RULES: dict[str, tuple[Rule, str]] = {  # key -> (rule over distinct texts, reason when it gives None)
    "em": (normalize_em, "invalid_email"), "ph": (normalize_ph, "invalid_phone"),
    "fn": (normalize_name, "invalid_name"), "ln": (normalize_name, "invalid_name"),
    "ge": (normalize_ge, "invalid_gender"), "db": (normalize_db, "invalid_date_of_birth"),
    "ct": (normalize_ct, "invalid_city"), "st": (normalize_st, "invalid_state"), "zp": (normalize_zp, "invalid_zip"),
    "country": (normalize_country, "unknown_country"), "external_id": (normalize_external_id, "invalid_external_id"),
    "client_ip_address": (normalize_ip, "invalid_ip"), "client_user_agent": (normalize_text, "empty"),
    "fbc": (_shape(*_FB), "invalid_fbc"), "fbp": (_shape(*_FB), "invalid_fbp"),
    "subscription_id": (normalize_text, "empty"), "fb_login_id": (_shape(*_DIGITS), "invalid_fb_login_id"),
    "lead_id": (_shape(*_DIGITS), "invalid_lead_id"), "anon_id": (normalize_text, "empty"),
    "madid": (normalize_madid, "invalid_madid"), "page_id": (_shape(*_DIGITS), "invalid_page_id"),
    "page_scoped_user_id": (normalize_text, "empty"), "ctwa_clid": (normalize_text, "empty"),
    "ig_account_id": (_shape(*_DIGITS), "invalid_ig_account_id"), "ig_sid": (normalize_text, "empty"),
    "partner_id": (normalize_text, "empty"), "partner_name": (normalize_text, "empty"),
}


# --------------------------------------------------------------------------------------------------- one field
def _region_of(options: NormalizeOptions) -> str | None:
    if options.default_country is None:
        return None
    return geo.COUNTRY_LOOKUP.get(geo.fold(options.default_country))


def _plain(key: str, units: Units, todo: np.ndarray, options: NormalizeOptions) -> np.ndarray:
    """The key's rule on units[todo], as a full-length array (None elsewhere); `PLACEHOLDERS` dropped for
    `_PLACEHOLDER_KEYS` whatever the rule makes of them."""
    rule, _ = _RULES[key]
    out = np.full(len(units.text_of), None, dtype=object)
    if todo.size:
        regions = units.regions[todo] if units.regions is not None else None
        texts = units.texts.take(todo) if todo.size < len(out) else units.texts
        got = rule(texts, regions, options)
        if key in _PLACEHOLDER_KEYS:
            got[pc.is_in(pc.utf8_lower(texts.arrow), value_set=_PLACEHOLDER_SET).to_numpy(zero_copy_only=False)] = None
        out[todo] = got
    return out


def _regions_for(key: str, country: np.ndarray | None, n: int, options: NormalizeOptions) -> Regions | None:
    if key not in _COUNTRY_KEYS:
        return None
    per_row = np.full(n, None, dtype=object) if country is None else country.copy()
    per_row[pd.isna(per_row)] = _region_of(options)
    return Regions.of(per_row)


def normalize_key(key: str, values: pd.Series, *, country: pd.Series | None,
                  options: NormalizeOptions) -> tuple[pd.Series, pd.Series]:
    """(normalized value or None, drop reason or None) for one key, not hashed. `country` holds normalized
    alpha-2 codes (None -> options.default_country) and matters for ph, st and zp only."""
    if key not in _RULES:
        raise ValueError(f"unknown user_data key: {key}")
    col = column(values, explode=False)
    base = None if country is None else country.reindex(values.index).to_numpy(dtype=object)
    units = Units.of(col, _regions_for(key, base, len(values), options), len(values))
    todo = np.arange(len(units.text_of))
    norm = _plain(key, units, todo, options)
    why = np.where(pd.isna(norm), _RULES[key][1], None).astype(object)
    return (pd.Series(np.append(norm, None)[units.of_entry], index=values.index, dtype=object),
            pd.Series(np.append(why, None)[units.of_entry], index=values.index, dtype=object))


# ---------------------------------------------------------------------------------------------- all of user_data
def _hashes(key: str, options: NormalizeOptions) -> bool:
    if key not in HASHED_KEYS or not options.hash:
        return False
    return options.hash_external_id or key != "external_id"


def _passes_hashes(key: str, options: NormalizeOptions) -> bool:
    """64-hex values of hashed keys pass through; an external_id sent unhashed is sent as given."""
    return key in HASHED_KEYS and (key != "external_id" or (options.hash and options.hash_external_id))


def _field(f: RawField, col: Column, regions: Regions | None, n: int, options: NormalizeOptions,
           result: UserDataResult, *, keep_plain: bool = False) -> Part:
    units = Units.of(col, regions, n)
    count = units.counts()
    hexes = np.zeros(len(units.text_of), dtype=bool)
    if f.key in HASHED_KEYS:
        maybe = np.flatnonzero(pc.binary_length(units.texts.arrow).to_numpy() == 64)
        hexes[maybe] = pc.match_substring_regex(units.texts.arrow.take(pa.array(maybe)),
                                                "^[0-9a-fA-F]{64}$").to_numpy(zero_copy_only=False)
    if not (f.prehashed or (hexes.any() and _passes_hashes(f.key, options))):
        hexes[:] = False
    out = np.full(len(units.text_of), None, dtype=object)
    if hexes.any():
        out[hexes] = [v.lower() for v in units.texts.some(np.flatnonzero(hexes)).tolist()]
    if f.prehashed:
        dropped, reason = ~hexes, "not_sha256"
    else:
        todo = np.flatnonzero(~hexes)
        norm = _plain(f.key, units, todo, options)
        got = pd.notna(norm)
        dropped, reason = ~got & ~hexes, _RULES[f.key][1]
        ok = np.flatnonzero(got)
        if keep_plain:
            result.plain_st = _first_per_row(norm, units.of_entry, col.pos, n)
        if _hashes(f.key, options):
            result.hashed[f.key] += int(count[ok].sum())
            out[ok] = sha256_distinct(norm[ok], dedupe=f.key not in _MOSTLY_DISTINCT)
        else:
            out[ok] = norm[ok]
    result.prehashed[f.key] += int(count[hexes].sum())
    if dropped.any():
        result.drops[(f.key, reason)] += int(count[dropped].sum())
    return Part(f.key, col.pos, units.of_entry, out, dropped, reason)


def _first_per_row(per_unit: np.ndarray, of_entry: np.ndarray, pos: np.ndarray | None, n: int) -> np.ndarray:
    """Per row, the value of its first entry (None where it has none or the value is None)."""
    per_entry = np.append(per_unit, None)[of_entry]
    if pos is None:
        return per_entry
    out = np.full(n, None, dtype=object)
    rows, first = np.unique(pos, return_index=True)
    out[rows] = per_entry[first]
    return out


def _row_countries(fields: Sequence[RawField], cols: list[Column], n: int, options: NormalizeOptions
                   ) -> np.ndarray:
    """Each row's country: the first valid normalized `country` value; None where there is none."""
    per_row = np.full(n, None, dtype=object)
    known = np.zeros(n, dtype=bool)
    for f, col in zip(fields, cols):
        if f.key != "country" or f.prehashed:
            continue
        units = Units.of(col, None, n)
        norm = _plain("country", units, np.arange(len(units.text_of)), options)
        rows = col.rows(n)
        fresh = np.flatnonzero(np.append(pd.notna(norm), False)[units.of_entry] & ~known[rows])
        first_rows, first = np.unique(rows[fresh], return_index=True)
        per_row[first_rows] = norm[units.of_entry[fresh[first]]]
        known[first_rows] = True
    return per_row


def normalize_user_data(fields: Sequence[RawField], options: NormalizeOptions, *,
                        with_reasons: bool = False) -> UserDataResult:
    """Normalize (and hash) every user_data field; see the module docstring for the contract. Per-row
    `field_reasons` are built only `with_reasons` (explain does; the counters in `drops` always are)."""
    for f in fields:
        if f.key not in _RULES:
            raise ValueError(f"unknown user_data key: {f.key}")
    index = fields[0].values.index if fields else pd.RangeIndex(0)
    n = len(index)
    for f in fields:
        if len(f.values) != n:
            raise ValueError(f"user_data field {f.key} is not aligned with the other fields")
    result = UserDataResult(values={})
    cols = [column(f.values) for f in fields]
    regions = None
    if any(f.key in _COUNTRY_KEYS for f in fields):
        result.country = _row_countries(fields, cols, n, options)
        regions = Regions.of(np.where(pd.isna(result.country), _region_of(options), result.country))
    parts: dict[str, list[Part]] = {}
    before: dict[str, np.ndarray] = {}
    first_st = next((i for i, f in enumerate(fields) if f.key == "st"), None)
    for i, (f, col) in enumerate(zip(fields, cols)):
        part = _field(f, col, regions if f.key in _COUNTRY_KEYS else None, n, options, result,
                      keep_plain=i == first_st)
        parts.setdefault(f.key, []).append(part)
        seen = before.setdefault(f.key, np.zeros(n, dtype=bool))
        seen[col.rows(n)[col.codes >= 0]] = True

    presence: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    flags: list[tuple[np.ndarray, str]] = []  # (rows, "key:reason") besides the fields' own drops
    for key, key_parts in parts.items():
        result.present_before[key] += int(before[key].sum())
        values[key], presence[key] = combine(key_parts, n)
        if key not in HASHED_KEYS and (len(key_parts) > 1 or key_parts[0].pos is not None):
            left_out = _first_only(values[key])
            if extra := int(left_out.sum()):
                result.drops[(key, "extra_values")] += extra
                flags.append((left_out > 0, f"{key}:extra_values"))
    lonely = _partner_pair(result, presence, values)
    result.partner_incomplete = np.zeros(n, dtype=bool)
    for key, mask in lonely.items():
        flags.append((mask, f"{key}:partner_pair_incomplete"))
        result.partner_incomplete |= mask
    for key, vals in values.items():
        result.values[key] = pd.Series(vals, index=index, dtype=object)
        result.present[key] = presence[key]
        result.present_after[key] += int(presence[key].sum())
    if with_reasons:
        result.field_reasons = row_reasons([p for ps in parts.values() for p in ps], flags, n, index)
    result.row_rejection = _rejections(presence, n, index)
    return result


def _first_only(values: np.ndarray) -> np.ndarray:
    """Never-hashed keys take one value (capi.md §3: no arrays): a row's list becomes its first value, in place.
    Returns how many values each row left out."""
    left_out = np.zeros(len(values), dtype=np.int64)
    for i in np.flatnonzero(np.fromiter((type(v) is list for v in values), dtype=bool, count=len(values))):
        left_out[i] = len(values[i]) - 1
        values[i] = values[i][0]
    return left_out


def _partner_pair(result: UserDataResult, presence: dict[str, np.ndarray],
                  values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """partner_id and partner_name travel together: a row with only one of them loses both."""
    lonely_by_key: dict[str, np.ndarray] = {}
    n = len(next(iter(presence.values()))) if presence else 0
    has_id = presence.get("partner_id", np.zeros(n, dtype=bool))
    has_name = presence.get("partner_name", np.zeros(n, dtype=bool))
    for key, mine, other in (("partner_id", has_id, has_name), ("partner_name", has_name, has_id)):
        lonely = mine & ~other
        if not lonely.any():
            continue
        result.drops[(key, "partner_pair_incomplete")] += int(lonely.sum())
        values[key] = values[key].copy()
        values[key][lonely] = None
        presence[key] = mine & ~lonely
        lonely_by_key[key] = lonely
    return lonely_by_key


def _rejections(presence: dict[str, np.ndarray], n: int, index: pd.Index) -> pd.Series:
    """Row verdict from which keys survived, as bit masks: no key at all, or only keys of one baseline-invalid
    combination."""
    keys = list(presence)
    bits = np.zeros(n, dtype=np.int64)
    for i, key in enumerate(keys):
        bits |= presence[key].astype(np.int64) << i
    inverse, masks = pd.factorize(bits)
    masks = np.asarray(masks, dtype=np.int64)
    verdict = np.full(len(masks) + 1, None, dtype=object)
    for combo in BASELINE_INVALID:
        allowed = sum(1 << i for i, k in enumerate(keys) if k in combo)
        verdict[:-1][(masks & ~allowed) == 0] = "baseline_invalid_combination"
    verdict[:-1][masks == 0] = "no_customer_information"
    return pd.Series(verdict[inverse], index=index, dtype=object)


# ------------------------------------------------------------------------------------------------------ explain
def explain(frame: pd.DataFrame, options: NormalizeOptions) -> pd.DataFrame:
    """The `capi-pipeline normalize` core: columns named by user_data keys in, the same columns out holding each
    value exactly as it would be sent (lists as JSON array text, None where dropped) plus `reasons`
    ("key:reason; ..."), ending in "row:<rule>" when the pipeline would quarantine the whole row
    (partner_pair_incomplete, no_customer_information, baseline_invalid_combination). Field-level results are
    shown even for such rows."""
    for at, col in enumerate(frame.columns, 1):
        if col not in _RULES:
            # named by position: a file without its header row has a customer's values as column names
            base = str(col).rsplit(".", 1)[0]
            hint = (f" (a repeated {base!r} header? Put several values of one key in one cell as a JSON array: "
                    f'["a@example.com", "b@example.com"])') if base in _RULES else \
                f" (columns are named by user_data keys: {', '.join(_RULES)})"
            raise ValueError(f"column {at} is no user_data key{hint}")
    result = normalize_user_data([RawField(str(c), frame[c]) for c in frame.columns], options, with_reasons=True)
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        out[col] = pd.Series([json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                              for v in result.values[str(col)].tolist()], index=frame.index, dtype=object)
    assert result.field_reasons is not None and result.row_rejection is not None
    verdicts = np.where(result.partner_incomplete, "partner_pair_incomplete", result.row_rejection.to_numpy())
    out["reasons"] = pd.Series(["; ".join(r if v is None else (*r, f"row:{v}"))
                                for r, v in zip(result.field_reasons.tolist(), verdicts.tolist())],
                               index=frame.index, dtype=object)
    return out
