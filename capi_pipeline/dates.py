"""Date of birth parsing for `normalize.py`: `parse_dob` is the rule; `dob_ascii` its vectorized twin for ASCII
texts (the same forms, in the same order, with the same calendar and range checks)."""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline.columns import WS
from capi_pipeline.geo import fold

__all__ = ["dob_ascii", "parse_dob"]

_TIME = r"(?: \d{1,2}:\d{2}.*)?"  # "2/3/1990 12:00:00 AM": spreadsheets add midnight
_DATE_YMD = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[t ].*)?")
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DATE_SLASH = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})" + _TIME)
_DATE_DOT = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})" + _TIME)
# "3 Feb 1990", "03-Feb-1990", "3rd February 1990", "3. Februar 1990", "1er février 1990", "3 de fevereiro de 1990"
_DATE_DMONY = re.compile(r"(\d{1,2})(?:st|nd|rd|th|er|º|\.)?[ -](?:de )?([^\W\d_]+)\.?(?: de)?[ ,-]*(\d{4})")
_DATE_MONDY = re.compile(r"([^\W\d_]+)\.?[ -](\d{1,2})(?:st|nd|rd|th)?,?[ -](\d{4})")  # "February 3rd, 1990"
_DATE_JA = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日")

# Month names and abbreviations, accents folded, in English, German, French, Spanish, Portuguese and Italian.
_MONTHS = {m: i for i, names in enumerate((
    "jan january januar janvier janv enero ene janeiro gennaio",
    "feb february februar fevrier fevr fev febrero fevereiro febbraio",
    "mar march marz maerz mrz mars marzo marco",
    "apr april avril avr abril abr aprile",
    "may mai mayo maio maggio",
    "jun june juni juin junio junho giugno",
    "jul july juli juillet juil julio julho luglio",
    "aug august aout agosto ago",
    "sep sept september septembre septiembre setiembre setembro set settembre",
    "oct october oktober okt octobre octubre outubro out ottobre",
    "nov november novembre noviembre novembro",
    "dec december dezember dez decembre diciembre dic dezembro dicembre"), start=1) for m in names.split()}


def _month(name: str) -> int | None:
    return _MONTHS.get(fold(name))


def parse_dob(text: str, order: str, today: _dt.date) -> str | None:
    t = " ".join(unicodedata.normalize("NFC", text).lower().split())
    ymd: tuple[int, int, int] | None = None
    if m := _DATE_YMD.fullmatch(t) or _DATE_COMPACT.fullmatch(t) or _DATE_JA.fullmatch(t):
        ymd = (int(m[1]), int(m[2]), int(m[3]))
    elif m := _DATE_SLASH.fullmatch(t):
        a, b = int(m[1]), int(m[2])
        day_first = a > 12 or (b <= 12 and order == "dmy")
        ymd = (int(m[3]), b, a) if day_first else (int(m[3]), a, b)
    elif m := _DATE_DOT.fullmatch(t):
        ymd = (int(m[3]), int(m[2]), int(m[1]))
    elif (m := _DATE_DMONY.fullmatch(t)) and _month(m[2]):
        ymd = (int(m[3]), _month(m[2]) or 0, int(m[1]))
    elif (m := _DATE_MONDY.fullmatch(t)) and _month(m[1]):
        ymd = (int(m[3]), _month(m[1]) or 0, int(m[2]))
    if ymd is None:
        return None
    try:
        d = _dt.date(*ymd)
    except ValueError:
        return None
    return d.strftime("%Y%m%d") if _dt.date(1900, 1, 1) <= d <= today else None


_ASCII_TIME = "(?: [0-9]{1,2}:[0-9]{2}.*)?"
_DOB_FORMS = (  # parse_dob's forms in its order, for lowercased ASCII text with whitespace runs collapsed
    r"^(?P<y>[0-9]{4})[-/.](?P<m>[0-9]{1,2})[-/.](?P<d>[0-9]{1,2})(?:[t ].*)?$",
    r"^(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})$",
    rf"^(?P<a>[0-9]{{1,2}})[/-](?P<b>[0-9]{{1,2}})[/-](?P<y>[0-9]{{4}}){_ASCII_TIME}$",
    rf"^(?P<d>[0-9]{{1,2}})\.(?P<m>[0-9]{{1,2}})\.(?P<y>[0-9]{{4}}){_ASCII_TIME}$",
    r"^(?P<d>[0-9]{1,2})(?:st|nd|rd|th|er|\.)?[ -](?:de )?(?P<mon>[a-z]+)\.?(?: de)?[ ,-]*(?P<y>[0-9]{4})$",
    r"^(?P<mon>[a-z]+)\.?[ -](?P<d>[0-9]{1,2})(?:st|nd|rd|th)?,?[ -](?P<y>[0-9]{4})$")


_MONTH_NAMES = pa.array(list(_MONTHS))


_MONTH_NUMBERS = np.array(list(_MONTHS.values()) + [0])


def dob_ascii(a: pa.Array, order: str, today: _dt.date) -> np.ndarray:
    """parse_dob for ASCII texts, vectorized: YYYYMMDD or None."""
    out = np.full(len(a), None, dtype=object)
    text = pc.replace_substring_regex(pc.ascii_lower(a), f"[{WS}]+", " ")
    rest = np.arange(len(a))
    for pattern in _DOB_FORMS:
        if not rest.size:
            break
        m = pc.extract_regex(text if rest.size == len(a) else text.take(pa.array(rest)), pattern)
        hit = m.is_valid().to_numpy(zero_copy_only=False)
        idx, rest = rest[hit], rest[~hit]
        if not idx.size:
            continue
        sub = m.filter(pa.array(hit))
        num = {g: pc.cast(sub.field(g), pa.int64()).to_numpy() for g in ("y", "m", "d", "a", "b")
               if g in m.type.names}
        year = num["y"]
        if "a" in num:  # slashed: day first when it cannot be a month, or by dob_order when ambiguous
            x, y = num["a"], num["b"]
            day_first = (x > 12) | ((y <= 12) & (order == "dmy"))
            month, day = np.where(day_first, y, x), np.where(day_first, x, y)
        elif "mon" in m.type.names:  # an unknown month name is not this form; no later form can match it
            month = _MONTH_NUMBERS[pc.fill_null(pc.index_in(sub.field("mon"), _MONTH_NAMES), -1).to_numpy()]
            day = num["d"]
        else:
            month, day = num["m"], num["d"]
        leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
        days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)] + \
            (leap & (month == 2))
        ymd = year * 10000 + month * 100 + day
        ok = (month >= 1) & (month <= 12) & (day >= 1) & (day <= days) & (ymd >= 19000101) & \
            (ymd <= today.year * 10000 + today.month * 100 + today.day)
        out[idx[ok]] = pa.array(ymd[ok]).cast(pa.string()).to_numpy(zero_copy_only=False)
    return out

