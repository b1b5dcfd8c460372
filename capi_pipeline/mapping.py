"""Source chunk -> canonical frame: columns named by CAPI path, event_time in Unix seconds, stable event ids.

Pure: a DataFrame in, a DataFrame out. The canonical frame keeps `user_data.*` columns raw but trimmed
(normalization is `normalize.py`'s job), as Arrow-backed text (`str` dtype, missing = NaN) where the source column
holds text, so normalize dictionary-encodes them in Arrow and only their distinct values ever become Python
strings; several source columns for one key become `user_data.<key>`, `user_data.<key>#2`, ...

event_time rules: integers are seconds, or milliseconds when `unit: ms` (with `unit: auto`, values above 10^11
are taken as milliseconds); strings are ISO-8601, with an offset or `Z` taken as given and naive ones read in the
configured time zone; timestamp columns likewise. Anything else becomes <NA> and `rules.py` rejects the row.

event_id: the configured column, or the non-empty values of the configured key columns joined with ":"
(e.g. `keys: [order_id, item_number]` -> "S12-20261122-5:2"). Never derived from the clock or the attempt, so
re-runs and retries send the same ids and Meta's deduplication (event_name + event_id) absorbs repeats.

Speed: text columns are trimmed with Arrow kernels (Python's own whitespace set for object columns, as
`str.strip()` would), JSON cells are parsed once per distinct text with orjson (the standard library's `json`
for the few texts orjson reads differently), and the common ISO-8601 spellings of event_time are computed
column-wise; other spellings keep the general pandas path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capi_pipeline.columns import PY_SPACE, TRIMMED_TEXT
from capi_pipeline.config import FieldSource, PipelineConfig
from capi_pipeline.errors import ContractViolation

__all__ = ["DROPPED", "check_mapped_columns", "event_keys", "key_columns", "key_source_columns",
           "parse_event_time", "source_columns", "to_canonical", "user_data_columns"]

# canonical column "_dropped:<reason>:<path>": True where the source held a value that could not be sent (JSON text
# that cannot be read or is not the shape Meta takes: invalid_json; a value outside Meta's enum: not_in_enum). The
# value is left out of that event; pipeline counts these under events.values_dropped as "<path>:<reason>".
DROPPED = "_dropped:"
_SEGMENTS = frozenset({
    "new_customer_to_business", "new_customer_to_business_line", "new_customer_to_product_area",
    "new_customer_to_medium", "existing_customer_to_business", "existing_customer_to_business_line",
    "existing_customer_to_product_area", "existing_customer_to_medium", "customer_in_loyalty_program"})
# capi.md §2 and §4: fields Meta takes only from a fixed list (compared in lowercase). customer_segmentation's
# placement is UNCONFIRMED (a server field in §2's table, inside custom_data in Meta's example): checked at both.
_ENUMS: dict[str, frozenset[str]] = {
    "customer_segmentation": _SEGMENTS,
    "custom_data.customer_segmentation": _SEGMENTS,
    "messaging_channel": frozenset({"whatsapp"}),
    "custom_data.content_type": frozenset({"product", "product_group"}),
    "custom_data.delivery_category": frozenset({"in_store", "curbside", "home_delivery"}),
}
# Numbers in capi.md §4; text that is none is left out and counted (invalid_number)
_NUMBERS = frozenset({"custom_data.value", "custom_data.predicted_ltv", "custom_data.net_revenue"})
# Arrays in capi.md §4-5 even when one text column is mapped to them
_ARRAY_PATHS = frozenset({"custom_data.content_ids", "app_data.url_schemes"})
# user_data keys Meta takes on app events only (capi.md §3: anon_id, the app install ID): on any other event the
# value is left out and counted (user_data.anon_id:app_events_only)
_APP_ONLY = frozenset({"user_data.anon_id"})
# capi.md §2: original_event_data ties a delayed event to an earlier one by these fields (event_time in seconds)
_ORIGINAL_EVENT_KEYS = frozenset({"event_name", "event_time", "order_id", "event_id"})
# Strings in capi.md §2/§4 even when the warehouse types them as integers ("order_id": 1001 is no string; it is
# the offline deduplication key): sent as text. Custom properties of any other name keep their numbers.
_TEXT_PATHS = frozenset({
    "event_name", "event_id", "action_source", "event_source_url", "custom_data.order_id",
    "custom_data.store_data.store_code", "custom_data.item_number", "custom_data.content_name",
    "custom_data.content_category", "custom_data.content_type", "custom_data.search_string", "custom_data.status",
    "custom_data.delivery_category", "custom_data.currency"})

# a time with its zone: "Z"/"z", "+05:30", "+0530" or the hour alone, "+05" (a date's "-03" is no offset)
_TZ_SUFFIX = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
# The ISO-8601 spellings computed column-wise: date, "T" or " ", time to the second, then "Z", an offset or
# nothing (naive). Anything else (fractions, no seconds, lower-case "z", odd ranges) takes the pandas path.
_ISO_FAST = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:Z|[+-][0-9]{2}:[0-9]{2})?$"
# orjson reads integers beyond 64 bits as floats where `json` keeps ints; such texts go to `json`.
_LONG_DIGITS = r"[0-9]{19}"
_TEXT = pa.large_string()
# An array of flat objects whose values are plain strings (no escapes), numbers (integer part of at most 18
# digits, exponent below 100), booleans or null: the shape of `contents` as warehouses write it, and always valid
# JSON that orjson and `json` read alike. Such a text is sent as written (an orjson.Fragment), never parsed into
# objects and serialized again.
_JSON_WS = r"[ \t\n\r]*"
_JSON_STR = r'"[^"\\\x00-\x1f]*"'
_JSON_VALUE = rf"(?:{_JSON_STR}|-?(?:0|[1-9][0-9]{{0,17}})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{{1,2}})?|true|false|null)"
_JSON_MEMBER = rf"{_JSON_WS}{_JSON_STR}{_JSON_WS}:{_JSON_WS}{_JSON_VALUE}{_JSON_WS}"
_JSON_OBJECT = rf"\{{(?:{_JSON_MEMBER}(?:,{_JSON_MEMBER})*|{_JSON_WS})\}}"
_FLAT_OBJECTS = rf"^{_JSON_WS}\[{_JSON_WS}(?:{_JSON_OBJECT}{_JSON_WS}(?:,{_JSON_WS}{_JSON_OBJECT}{_JSON_WS})*)?\]{_JSON_WS}$"
# custom_data.contents as capi.md §4 has it: objects, each with an "id" (flat objects' texts: one RE2 pass)
_ID_MEMBER = rf'{_JSON_WS}"id"{_JSON_WS}:{_JSON_WS}{_JSON_VALUE}{_JSON_WS}'
_OBJECT_WITH_ID = rf"\{{(?:{_JSON_MEMBER},)*{_ID_MEMBER}(?:,{_JSON_MEMBER})*\}}"
_CONTENTS = rf"^{_JSON_WS}\[{_JSON_WS}{_OBJECT_WITH_ID}{_JSON_WS}(?:,{_JSON_WS}{_OBJECT_WITH_ID}{_JSON_WS})*\]{_JSON_WS}$"
_NOTHING = r"^[ \t\n\r]*(?:\[[ \t\n\r]*\])?[ \t\n\r]*$"  # blank, or an empty array: no contents, nothing wrong


def to_canonical(frame: pd.DataFrame, cfg: PipelineConfig, *, file: str, first_row: int) -> pd.DataFrame:
    """Map one chunk of source rows to the canonical frame (same length and order)."""
    n = len(frame)
    out: dict[str, Any] = {
        "_file": np.full(n, file, dtype=object),
        "_row": np.arange(first_row, first_row + n, dtype=np.int64),
    }
    for path, src in cfg.mapping.items():
        if path in _KEY_PATHS:
            continue
        if path.startswith("user_data."):
            for i, values in enumerate(_columns(frame, src)):
                out[path if i == 0 else f"{path}#{i + 1}"] = _user_text(values)
        elif path == "event_time":
            out["event_time"] = parse_event_time(_single(frame, src, n), cfg.event_time.unit,
                                                 cfg.event_time.timezone)
        elif path == "app_data.extinfo":
            out[path] = _extinfo(frame, src, n)
        elif src.many or (path in _ARRAY_PATHS and src.parse != "json"):
            out[path] = _list_cells(frame, src, n)  # one column mapped to an array field: arrays of one
        elif src.parse == "json":
            out[path], out[f"{DROPPED}invalid_json:{path}"] = _parse_json(
                _single(frame, src, n), contents=path == "custom_data.contents", shape=_JSON_SHAPES.get(path))
        elif path in _ENUMS:
            out[path], out[f"{DROPPED}not_in_enum:{path}"] = _enum(_single(frame, src, n), _ENUMS[path])
        elif path in _NUMBERS and src.const is None:
            out[path], out[f"{DROPPED}invalid_number:{path}"] = _number(_single(frame, src, n))
        elif path == "action_source":  # always text (`_scalar` would keep an integer column as it is)
            out[path] = _as_text(_single(frame, src, n), few=True)
        else:
            out[path] = _scalar(path, _single(frame, src, n), src)
    for key in ("action_source", "custom_data.currency"):
        _default(out, key, cfg, n)
    _app_only(out, n)
    out.update(event_keys(frame, cfg))
    canon = pd.DataFrame(out, index=pd.RangeIndex(n))
    canon.attrs[TRIMMED_TEXT] = ("event_name", "event_id", "action_source")  # `_as_text` / `_objects` made them
    return canon


_KEY_PATHS = ("event_name", "event_id")


def event_keys(frame: pd.DataFrame, cfg: PipelineConfig) -> dict[str, pd.Series]:
    """Meta's deduplication key of each row: `event_name` and `event_id` as `to_canonical` builds them.

    Needs only `key_source_columns(cfg)` of the frame, so the duplicate check can run apart from the rest.
    """
    names, ids = event_key_texts(frame, cfg)
    return {"event_name": pd.Series(_objects(names, few=True), dtype=object),
            "event_id": pd.Series(_objects(ids), dtype=object)}


def event_key_texts(frame: pd.DataFrame, cfg: PipelineConfig) -> tuple[pa.Array, pa.Array]:
    """`event_keys` as Arrow texts (null: missing), before any Python object is made of them."""
    n = len(frame)
    names = None
    src = cfg.mapping.get("event_name")
    if src is not None:
        if src.parse == "json":  # (a JSON cell as an event name: the general path)
            names = _text_arrow(_as_text(_scalar("event_name", _single(frame, src, n), src)))
        else:  # `_scalar` of a text path is `_as_text`: the same texts, kept in Arrow
            names = _text_arrow(_single(frame, src, n))
    default = cfg.defaults.get("event_name")
    if default is not None and (text := _text(default)) is not None:
        names = pa.array([text] * n, type=_TEXT) if names is None else pc.fill_null(names, pa.scalar(text, _TEXT))
    if names is None:
        names = pa.nulls(n, type=_TEXT)
    return names, _event_id(frame, cfg, n)


def key_source_columns(cfg: PipelineConfig) -> list[str]:
    """The source columns `event_keys` reads."""
    return list(dict.fromkeys(c for cols in key_columns(cfg).values() for c in cols))


def key_columns(cfg: PipelineConfig) -> dict[str, tuple[str, ...]]:
    """Per id key (event_name, event_id), the source columns `event_keys` may read for it."""
    cols = {path: tuple(c for c in cfg.mapping[path].columns if c) if path in cfg.mapping else ()
            for path in _KEY_PATHS}
    cols["event_id"] += (cfg.event_id.column,) if cfg.event_id.column else tuple(cfg.event_id.keys or ())
    return cols


def _default(out: dict[str, Any], key: str, cfg: PipelineConfig, n: int) -> None:
    """Fill the missing cells of `out[key]` (or the whole column) with the pipeline's default as text (trimmed),
    if it has one."""
    default = cfg.defaults.get(key.rsplit(".", 1)[-1])
    if default is None:
        return
    fill = _text(default)
    col = out.get(key)
    if col is None:
        out[key] = pd.Series([fill] * n, dtype=object)
        return
    values = col.to_numpy(dtype=object) if isinstance(col, pd.Series) else np.asarray(col, dtype=object)
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()
        values[missing] = fill
    out[key] = pd.Series(values, dtype=object)


def _app_only(out: dict[str, Any], n: int) -> None:
    """`_APP_ONLY` keys left out of every event whose action_source is not "app" (and counted)."""
    cols = [c for c in out if c.split("#", 1)[0] in _APP_ONLY]
    if not cols:
        return
    source = out.get("action_source")
    app = np.zeros(n, dtype=bool) if source is None else \
        np.asarray(pd.Series(source, dtype=object).to_numpy(dtype=object) == "app", dtype=bool)
    for col in cols:
        values = out[col]
        other = values.notna().to_numpy(dtype=bool) & ~app
        if other.any():
            out[col] = values.mask(other)
            out[f"{DROPPED}app_events_only:{col}"] = other


def user_data_columns(canon: pd.DataFrame) -> list[tuple[str, str]]:
    """(canonical column, user_data key) pairs present in a canonical frame."""
    out = []
    for col in canon.columns:
        if col.startswith("user_data."):
            out.append((col, col[len("user_data."):].split("#", 1)[0]))
    return out


def parse_event_time(values: pd.Series, unit: str, timezone: str) -> pd.Series:
    """Any supported event_time representation -> Int64 Unix seconds (<NA> when unparseable)."""
    n = len(values)
    if n == 0:
        return pd.Series(pd.array([], dtype="Int64"))
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _from_datetimes(values, timezone)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return _from_numbers(pd.to_numeric(values, errors="coerce"), unit)
    text = _text_arrow(values)
    secs = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    fast = pc.fill_null(pc.match_substring_regex(text, _ISO_FAST), False).to_numpy(zero_copy_only=False)
    if fast.any():
        at = np.flatnonzero(fast)
        got, ok = _from_iso_fast(text, at, timezone)
        secs[at[ok]] = got[ok]
        done[at[ok]] = True
    # the rest, if it has a digit: a text without one is no time ("TBD", "N/A"), and pandas would read "now" and
    # "today" as the clock's time, an event_time that changes with every run
    rest = ~done & pc.fill_null(pc.match_substring_regex(text, "[0-9]"), False).to_numpy(zero_copy_only=False)
    if rest.any():
        at = np.flatnonzero(rest)
        got = _from_text(pd.Series(text.take(pa.array(at)).to_numpy(zero_copy_only=False), dtype=object), unit,
                         timezone)
        secs[at] = got.fillna(0).to_numpy(dtype=np.int64)
        done[at] = got.notna().to_numpy()
    return pd.Series(pd.arrays.IntegerArray(secs, ~done))


def _from_text(text: pd.Series, unit: str, timezone: str) -> pd.Series:
    """The general path for trimmed, non-empty texts: numbers, then any ISO-8601 spelling pandas reads."""
    result = pd.Series(pd.array([pd.NA] * len(text), dtype="Int64"))
    numeric = text.str.fullmatch(r"-?\d+(?:\.\d+)?", na=False)
    if numeric.any():
        result[numeric] = _from_numbers(pd.to_numeric(text[numeric], errors="coerce"), unit)[numeric]
    rest = ~numeric & text.notna()
    if rest.any():
        result[rest] = _from_iso(text[rest].str.replace(_DOTTED, _dotted_iso, regex=True), timezone)
    return result


# "01.12.2026 10:00" (German, Scandinavian, Swiss exports): always day.month.year; read as ISO
_DOTTED = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")


def _dotted_iso(m: re.Match[str]) -> str:
    """`_DOTTED`'s match as ISO ("1.12.2026 9:05" -> "2026-12-01T09:05:00"); what follows it (a fraction, an
    offset) is kept."""
    day, month, year, hour, minute, second = m.groups()
    date = f"{year}-{int(month):02d}-{int(day):02d}"
    return date if hour is None else f"{date}T{int(hour):02d}:{minute}:{second or '00'}"


def _from_iso_fast(text: pa.Array, at: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows `at` of `text`, which match `_ISO_FAST` -> (Unix seconds, valid); invalid ones (month 13, 25:00...)
    go the pandas way.

    The matched texts are ASCII with fixed positions, so each digit is read straight from Arrow's buffers.
    """
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    start = offsets[at]
    length = offsets[at + 1] - start

    def number(pos: int, width: int, where: np.ndarray | None = None) -> np.ndarray:
        first = start + pos if where is None else np.where(where, start + pos, 0)
        value = np.zeros(len(at), dtype=np.int64)
        for k in range(width):
            value = value * 10 + data[first + k] - 48
        return value if where is None else np.where(where, value, 0)

    year, month, day = number(0, 4), number(5, 2), number(8, 2)
    hour, minute, second = number(11, 2), number(14, 2), number(17, 2)
    months = (year - 1970) * 12 + (month - 1)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_days = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - first
    ok = ((year >= 1970) & (year <= 2200) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
          & (hour < 24) & (minute < 60) & (second < 60))
    secs = (first + day - 1) * 86_400 + hour * 3_600 + minute * 60 + second
    offset = length == 25  # "+hh:mm" / "-hh:mm"; length 20 is "Z", 19 naive
    if offset.any():
        sign = np.where(data[np.where(offset, start + 19, 0)] == ord("-"), -1, 1)
        off_h, off_m = number(20, 2, offset), number(23, 2, offset)
        ok &= ~offset | ((off_h < 24) & (off_m < 60))
        secs -= np.where(offset, sign * (off_h * 3_600 + off_m * 60), 0)
    naive = (length == 19) & ok
    if naive.any():
        local = pd.Series(secs[naive].astype("datetime64[s]"))
        utc = _localize(local, timezone).dt.tz_convert("UTC")
        known = utc.notna().to_numpy()
        ok[naive] = known
        secs[naive] = np.where(known, utc.dt.tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64), 0)
    return secs, ok


def _localize(naive: pd.Series, timezone: str) -> pd.Series:
    """Naive local datetimes in `timezone`. The hour that repeats when clocks go back reads as its first pass
    (daylight time: what a till writes before it turns back); the hour skipped when they go forward moves on."""
    return naive.dt.tz_localize(timezone, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")


def _from_numbers(nums: pd.Series, unit: str) -> pd.Series:
    nums = nums.astype("Float64")
    if unit == "auto":
        scale = pd.Series(np.where(nums.abs().fillna(0) > 1e11, 1000.0, 1.0), index=nums.index)
    else:
        scale = 1000.0 if unit == "ms" else 1.0
    secs = (nums / scale).round()
    finite = secs.notna() & np.isfinite(secs.fillna(0).astype(float)) & (secs > 0)
    return secs.where(finite).astype("Int64")


def _from_datetimes(values: pd.Series, timezone: str) -> pd.Series:
    ts = values
    if getattr(ts.dt, "tz", None) is None:
        ts = _localize(ts, timezone)
    ts = ts.dt.tz_convert("UTC")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    delta = (ts - epoch).dt.total_seconds()
    return delta.round().astype("Int64")


def _from_iso(text: pd.Series, timezone: str) -> pd.Series:
    out = pd.Series(pd.array([pd.NA] * len(text), dtype="Int64"), index=text.index)
    stripped = text.str.strip().str.replace(r"z$", "Z", regex=True)
    aware = stripped.str.contains(_TZ_SUFFIX, regex=True, na=False)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    if aware.any():
        ts = _to_datetime(stripped[aware], utc=True)
        out[aware] = (ts - epoch).dt.total_seconds().round().astype("Int64")
    naive = ~aware
    if naive.any():
        ts = _to_datetime(stripped[naive], utc=False)
        ts = _localize(ts, timezone).dt.tz_convert("UTC")
        out[naive] = (ts - epoch).dt.total_seconds().round().astype("Int64")
    return out


def _to_datetime(text: pd.Series, *, utc: bool) -> pd.Series:
    """ISO-8601 texts -> datetimes (UTC when `utc`, else naive), NaT for what is none. pandas reads the column at
    once; when it cannot (an offset it finds in a text taken for naive, mixed zones), text by text."""
    try:
        ts = pd.to_datetime(text, utc=utc, format="ISO8601", errors="coerce")
        if utc or getattr(ts.dt, "tz", None) is None:
            return ts
    except (TypeError, ValueError):
        pass

    def one(v: str) -> pd.Timestamp:
        try:
            t = pd.Timestamp(v)
        except (TypeError, ValueError):
            return pd.NaT
        if t is pd.NaT or (t.tzinfo is not None) != utc:  # a zone where none was expected, or the reverse
            return pd.NaT
        return t.tz_convert("UTC") if utc else t
    return pd.Series([one(v) for v in text.tolist()], index=text.index,
                     dtype="datetime64[ns, UTC]" if utc else "datetime64[ns]")


def _columns(frame: pd.DataFrame, src: FieldSource) -> list[pd.Series]:
    n = len(frame)
    if src.const is not None:
        return [pd.Series([src.const] * n, dtype=object)]
    return [_source(frame, c) for c in src.columns]


def _single(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    if src.const is not None:
        return pd.Series([src.const] * n, dtype=object)
    return _source(frame, src.columns[0])


def _source(frame: pd.DataFrame, column: str) -> pd.Series:
    """A source column; all missing where the chunk lacks it (a JSON-lines chunk without that key: pass 1 has
    checked that the file's first chunk has every mapped column, `check_mapped_columns`) or for an empty slot."""
    if column and column in frame.columns:
        return frame[column]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def source_columns(cfg: PipelineConfig) -> list[str]:
    """Every source column the pipeline reads: the mapping's, the event_id keys, the LDU consent column."""
    cols = [c for src in cfg.mapping.values() for c in src.columns if c]
    cols += key_source_columns(cfg)
    if cfg.ldu.consent_column:
        cols.append(cfg.ldu.consent_column)
    return list(dict.fromkeys(cols))


def check_mapped_columns(columns: Any, cfg: PipelineConfig, *, file: str) -> None:
    """ContractViolation (exit 2) naming the file and the first column the pipeline YAML maps that `columns`
    lacks: found in pass 1, before anything is sent."""
    have = set(columns)
    missing = [c for c in source_columns(cfg) if c not in have]
    if missing:
        raise ContractViolation(
            f"{file}: column {missing[0]!r} used by the pipeline YAML ({cfg.path.name}) is missing"
            + (f" (missing columns: {', '.join(missing)})" if len(missing) > 1 else ""),
            file=file, column=missing[0], rule="mapped_column_missing")


def _as_text(values: Any, *, few: bool = False) -> pd.Series:
    """Object Series of stripped, non-empty str or None (whole floats rendered without ".0"). `few`: see
    `_objects`."""
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    arrow = _arrow_text(s)
    if arrow is None:
        return pd.Series([_text(v) for v in s.tolist()], index=s.index, dtype=object)
    return pd.Series(_objects(arrow, few=few), index=s.index, dtype=object)


def _objects(arrow: pa.Array, *, few: bool = False) -> np.ndarray:
    """Arrow texts as an object array (None: null). `few`: a column of a handful of distinct values (event
    names, action sources) gets one str object per distinct value, shared by its rows: cheaper to make, and to
    pickle back from a worker process (pickle writes a shared object once)."""
    if not few:
        return arrow.to_numpy(zero_copy_only=False)
    encoded = pc.dictionary_encode(arrow)
    distinct = np.append(encoded.dictionary.to_numpy(zero_copy_only=False), None)
    return distinct[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)]


def _user_text(values: Any) -> pd.Series:
    """`_as_text` for a user_data column, kept Arrow-backed (`str` dtype) when the column holds only text or
    integers. Otherwise cell by cell as `_as_text` does, except that a list cell (a parquet list column, a
    JSON-lines array) stays a list of its texts: several values for one key, which normalize turns into an array."""
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    arrow = _arrow_text(s)
    if arrow is not None:
        return pd.Series(pd.array(arrow, dtype="str"), index=s.index)
    return pd.Series([_text_list(v) if isinstance(v, _LIST_CELLS) else _text(v) for v in s.tolist()],
                     index=s.index, dtype=object)


_LIST_CELLS = (list, tuple, np.ndarray)


def _text_list(cell: Any) -> list[str] | None:
    """A list cell's values as trimmed texts, empty ones (and nested containers) left out; None when nothing is
    left."""
    items = [_text(v) for v in cell if not isinstance(v, (*_LIST_CELLS, dict))]
    return [t for t in items if t is not None] or None


def _text_arrow(values: pd.Series) -> pa.Array:
    """`_as_text` as an Arrow array (null: missing)."""
    arrow = _arrow_text(values)
    if arrow is None:
        arrow = pa.array([_text(v) for v in values.tolist()], type=_TEXT)
    return arrow


def _arrow_text(s: pd.Series) -> pa.Array | None:
    """Trimmed, non-empty texts (null: missing) when the column holds only text, else None (per-cell path).

    Trimming follows what the column's own `.str.strip()` does: Arrow's Unicode whitespace for Arrow-backed
    strings, Python's `str.isspace()` set otherwise.
    """
    dtype = s.dtype
    if isinstance(dtype, pd.StringDtype):
        arrow = pa.array(s.array)
        trimmed = pc.utf8_trim_whitespace(arrow) if dtype.storage == "pyarrow" else pc.utf8_trim(arrow, PY_SPACE)
    elif dtype == object and pd.api.types.infer_dtype(s.to_numpy(), skipna=True) in ("string", "empty"):
        arrow = pa.array(s.to_numpy(), type=_TEXT, from_pandas=True)
        trimmed = pc.utf8_trim(arrow, PY_SPACE)
    else:
        return _int_text(s)
    if isinstance(trimmed, pa.ChunkedArray):
        trimmed = trimmed.combine_chunks()
    if trimmed.type != _TEXT:
        trimmed = trimmed.cast(_TEXT)
    return pc.if_else(pc.greater(pc.binary_length(trimmed), 0), trimmed, pa.scalar(None, _TEXT))


def _int_text(s: pd.Series) -> pa.Array | None:
    """Integer columns as decimal text (what `str(int)` gives); None for any other dtype."""
    if s.dtype.kind not in "iu":
        return None
    ints = s.array if isinstance(s.dtype, pd.api.extensions.ExtensionDtype) else s.to_numpy()
    arrow = pa.array(ints)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    return pc.cast(arrow, _TEXT)


def _text(v: Any) -> str | None:
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, str):
        v = v.strip()
        return v or None
    if isinstance(v, float):
        if v != v:
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def _scalar(path: str, values: pd.Series, src: FieldSource) -> pd.Series:
    if src.parse == "json":
        return _parse_json(values)[0]
    if path in _NUMBERS:
        return pd.to_numeric(values, errors="coerce").astype(float)
    if path in ("custom_data.num_items", "app_data.advertiser_tracking_enabled",
                "app_data.application_tracking_enabled"):
        return _to_int(values)
    if path == "opt_out":
        return values.map(_to_bool).astype(object)
    if values.dtype.kind in "iub" and path not in _TEXT_PATHS:
        return values
    return _as_text(values)


def _number(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers as float (NaN: none), and which rows held text that is no number ("12,50", "abc": counted; a
    Purchase without a number is then quarantined by the rules, another event goes out without its value)."""
    nums = pd.to_numeric(values, errors="coerce").astype(float)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return nums, np.zeros(len(values), dtype=bool)
    return nums, _as_text(values).notna().to_numpy(dtype=bool) & nums.isna().to_numpy(dtype=bool)


def _enum(values: pd.Series, allowed: frozenset[str]) -> tuple[pd.Series, np.ndarray]:
    """Texts of a fixed list, lowercased; others -> None, and which rows held one (to be counted)."""
    text = _as_text(values)
    lowered = text.str.lower()
    ok = lowered.isin(allowed).to_numpy(dtype=bool)
    return lowered.where(ok, None).astype(object), text.notna().to_numpy(dtype=bool) & ~ok


def _to_int(values: pd.Series) -> pd.Series:
    if values.dtype.kind == "b":
        return values.astype("Int64")
    mapped = values.map(lambda v: {"true": 1, "false": 0, "yes": 1, "no": 0}.get(v.strip().lower(), v)
                        if isinstance(v, str) else v)
    nums = pd.to_numeric(mapped, errors="coerce")
    whole = nums.notna() & (nums == nums.round())
    return nums.where(whole).astype("Int64")


def _to_bool(v: Any) -> bool | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, str):
        return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(v.strip().lower())
    return bool(v)


def _parse_json(values: pd.Series, *, contents: bool = False,
                shape: Callable[[Any], Any] | None = None) -> tuple[pd.Series, np.ndarray]:
    """JSON text cells -> parsed values, once per distinct text; unparseable text -> None, other cells as given.
    Arrays of flat objects in plain JSON (`_FLAT_OBJECTS`) stay their text, as an `orjson.Fragment`. Also which
    rows held (non-blank) text that had to be dropped. `contents`: only arrays of objects with an "id" are kept
    (capi.md §4); an empty array is no contents. `shape`: each parsed value as the field takes it, None where
    it cannot be sent (`_JSON_SHAPES`)."""
    arrow = _raw_text(values)
    if arrow is not None:
        encoded = pc.dictionary_encode(arrow)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        parsed = np.empty(len(encoded.dictionary) + 1, dtype=object)  # the extra slot: missing cells -> None
        if shape is not None:
            parsed[:-1] = [None if v is None else shape(v) for v in _loads(encoded.dictionary)]
        else:
            parsed[:-1] = (_contents_or_none if contents else _fragments_or_loads)(encoded.dictionary)
        dropped = np.append(pd.isna(parsed[:-1]), False)
        if dropped.any():  # ... unless blank (or, for contents, an empty array): nothing was there to send
            at = np.flatnonzero(dropped)
            texts = encoded.dictionary.take(pa.array(at))
            blank = pc.match_substring_regex(texts, _NOTHING) if contents else \
                pc.equal(pc.binary_length(pc.utf8_trim_whitespace(texts)), 0)
            dropped[at[blank.to_numpy(zero_copy_only=False)]] = False
        return pd.Series(parsed[codes], index=values.index, dtype=object), dropped[codes]
    try:
        codes, distinct = pd.factorize(values, use_na_sentinel=True)
    except TypeError:  # unhashable cells (lists): nothing to parse in them, keep them as given
        cells = values.tolist()
        parsed_cells = [_json_cell(v) for v in cells]
        dropped = np.array([_dropped(v, p) for v, p in zip(cells, parsed_cells)] + [False], dtype=bool)[:-1]
        return pd.Series(parsed_cells, index=values.index, dtype=object), dropped
    cells = np.asarray(distinct, dtype=object).tolist()
    parsed = np.empty(len(cells) + 1, dtype=object)
    parsed[:-1] = [_json_cell(v) for v in cells]
    if contents:
        parsed[:-1] = [v if _has_ids(v) else None for v in parsed[:-1]]
    if shape is not None:
        parsed[:-1] = [None if v is None or v != v else shape(v) for v in parsed[:-1]]
    dropped = np.array([_dropped(v, p) and not (contents and p == []) for v, p in zip(cells, parsed[:-1])]
                       + [False], dtype=bool)
    return pd.Series(parsed[codes], index=values.index, dtype=object), dropped[codes]


def _has_ids(value: Any) -> bool:
    """A parsed `contents` value as capi.md §4 has it: a non-empty array of objects, each with an "id"."""
    return isinstance(value, list) and bool(value) and all(isinstance(o, dict) and "id" in o for o in value)


def _original_event(value: Any) -> dict[str, Any] | None:
    """`original_event_data` as capi.md §2 has it: an object of event_name, event_time (whole Unix seconds, also
    as digits), order_id and event_id (text; integers become text, as the event's own ids do); else None."""
    if not isinstance(value, dict) or not value or not value.keys() <= _ORIGINAL_EVENT_KEYS:
        return None
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key == "event_time":
            if isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
                v = int(v.strip())
            if isinstance(v, bool) or not isinstance(v, int):
                return None
        elif isinstance(v, int) and not isinstance(v, bool) and key != "event_name":
            v = str(v)
        elif not isinstance(v, str) or not v.strip():
            return None
        out[key] = v.strip() if isinstance(v, str) else v
    return out


_JSON_SHAPES: dict[str, Callable[[Any], Any]] = {"original_event_data": _original_event}


def _dropped(cell: Any, parsed: Any) -> bool:
    """A text cell, not blank, whose JSON could not be read or sent."""
    return isinstance(cell, str) and bool(cell.strip()) and (parsed is None or parsed != parsed)  # NaN: null


def _raw_text(s: pd.Series) -> pa.Array | None:
    """The column as Arrow text, untrimmed (null: missing), when it holds only text; else None."""
    if isinstance(s.dtype, pd.StringDtype):
        arrow = pa.array(s.array)
    elif s.dtype == object and pd.api.types.infer_dtype(s.to_numpy(), skipna=True) in ("string", "empty"):
        arrow = pa.array(s.to_numpy(), type=_TEXT, from_pandas=True)
    else:
        return None
    return arrow.combine_chunks() if isinstance(arrow, pa.ChunkedArray) else arrow


def _fragments_or_loads(texts: pa.Array) -> list[Any]:
    """Each text as an `orjson.Fragment` when it is an array of flat objects in plain JSON (written into the
    request as it is: no objects built, none serialized again), else as `_loads` reads it."""
    return _by_pattern(texts, _FLAT_OBJECTS, _fragments, _loads)


def _contents_or_none(texts: pa.Array) -> list[Any]:
    """`_fragments_or_loads` for `custom_data.contents`, None where a text is not contents (`_has_ids`): arrays
    of flat objects that each have an "id" are found by one RE2 pass (`_CONTENTS`); other arrays of flat objects
    are not, and are not read either; only the remaining texts are read and checked value by value."""
    def rest(t: pa.Array) -> list[Any]:
        return _by_pattern(t, _FLAT_OBJECTS, lambda flat: [None] * len(flat),
                           lambda other: [v if _has_ids(v) else None for v in _loads(other)])

    return _by_pattern(texts, _CONTENTS, _fragments, rest)


def _fragments(texts: pa.Array) -> list[Any]:
    return list(map(orjson.Fragment, texts.to_pylist()))


def _by_pattern(texts: pa.Array, pattern: str, matching: Callable[[pa.Array], list[Any]],
                other: Callable[[pa.Array], list[Any]]) -> list[Any]:
    """`matching` on the texts that match `pattern` (RE2), `other` on the rest, back in the texts' order."""
    hit = pc.fill_null(pc.match_substring_regex(texts, pattern), False).to_numpy(zero_copy_only=False)
    if not hit.any():
        return other(texts)
    if hit.all():
        return matching(texts)
    result = np.empty(len(texts), dtype=object)
    for mask, read in ((hit, matching), (~hit, other)):
        at = np.flatnonzero(mask)
        result[at] = read(texts.take(pa.array(at)))
    return result.tolist()


def _loads(texts: pa.Array) -> list[Any]:
    """json.loads of each text (None when invalid), at orjson's speed where both read a text alike."""
    return _by_pattern(texts, _LONG_DIGITS, lambda t: [_json_loads(s) for s in t.to_pylist()], _orjson_loads)


def _orjson_loads(texts: pa.Array) -> list[Any]:
    """`_loads` for texts without a long digit run: orjson, and `json` for a text orjson refuses."""
    strings = texts.to_pylist()
    out: list[Any] = []
    rest = iter(strings)
    while True:
        try:
            # list.extend keeps what map yielded before an exception: the failing text is strings[len(out)]
            out.extend(map(orjson.loads, rest))
            return out
        except orjson.JSONDecodeError:
            out.append(_json_loads(strings[len(out)]))


def _json_loads(text: str) -> Any:
    """The reference reading (`json`: NaN, big integers), None when invalid, or when the request could not
    carry it (a lone surrogate, an integer beyond 64 bits: orjson refuses to write those, which failed the run)."""
    try:
        value = json.loads(text)
        orjson.dumps(value)
    except (ValueError, TypeError):
        return None
    return value


def _json_cell(v: Any) -> Any:
    if not isinstance(v, str):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else v
    return _json_loads(v)


def _extinfo(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    """16 positional slots, each a string (capi.md §5); missing values become "" as Meta's example shows (not
    null)."""
    if src.const is not None:
        slots = ["" if v is None else _text(v) or "" for v in src.const]
        return pd.Series([slots] * n, dtype=object)
    cols = [(_as_text(_source(frame, c)).fillna("") if c else pd.Series([""] * n, dtype=object)).tolist()
            for c in src.columns]
    return pd.Series([list(row) for row in zip(*cols)] if cols else [[] for _ in range(n)], dtype=object)


def _list_cells(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    cols = [_as_text(c).tolist() for c in _columns(frame, src)]
    rows = [[v for v in row if v is not None] or None for row in zip(*cols)]
    return pd.Series(rows, dtype=object)


def _event_id(frame: pd.DataFrame, cfg: PipelineConfig, n: int) -> pa.Array:
    src = cfg.mapping.get("event_id")
    if src is not None:
        return _text_arrow(_as_text(_scalar("event_id", _single(frame, src, n), src)))
    if cfg.event_id.column:
        return _text_arrow(_source(frame, cfg.event_id.column))
    if not cfg.event_id.keys:
        return pa.nulls(n, type=_TEXT)
    ids = None
    sep = pa.scalar(":", _TEXT)
    for k in cfg.event_id.keys:
        part = _text_arrow(_source(frame, k))
        # joined where both are present, else whichever is
        ids = part if ids is None else pc.coalesce(pc.binary_join_element_wise(ids, part, sep), ids, part)
    return ids
