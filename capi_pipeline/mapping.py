"""Source chunk -> canonical frame: columns named by CAPI path, event_time in Unix seconds, stable event ids.

Pure: a DataFrame in, a DataFrame out. The canonical frame keeps `user_data.*` columns raw (normalization is
`normalize.py`'s job); several source columns for one key become `user_data.<key>`, `user_data.<key>#2`, ...

event_time rules: integers are seconds, or milliseconds when `unit: ms` (with `unit: auto`, values above 10^11
are taken as milliseconds); strings are ISO-8601, with an offset or `Z` taken as given and naive ones read in the
configured time zone; timestamp columns likewise. Anything else becomes <NA> and `rules.py` rejects the row.

event_id: the configured column, or the non-empty values of the configured key columns joined with ":"
(e.g. `keys: [order_id, item_number]` -> "S12-20261122-5:2"). Never derived from the clock or the attempt, so
re-runs and retries send the same ids and Meta's deduplication (event_name + event_id) absorbs repeats.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from capi_pipeline.config import FieldSource, PipelineConfig

__all__ = ["to_canonical", "user_data_columns", "parse_event_time"]

_TZ_SUFFIX = r"(?:[Zz]|[+-]\d{2}:?\d{2})$"


def to_canonical(frame: pd.DataFrame, cfg: PipelineConfig, *, file: str, first_row: int) -> pd.DataFrame:
    """Map one chunk of source rows to the canonical frame (same length and order)."""
    n = len(frame)
    out: dict[str, Any] = {
        "_file": np.full(n, file, dtype=object),
        "_row": np.arange(first_row, first_row + n, dtype=np.int64),
    }
    for path, src in cfg.mapping.items():
        if path.startswith("user_data."):
            for i, values in enumerate(_columns(frame, src)):
                out[path if i == 0 else f"{path}#{i + 1}"] = _as_text(values)
        elif path == "event_time":
            out["event_time"] = parse_event_time(_single(frame, src, n), cfg.event_time.unit,
                                                 cfg.event_time.timezone)
        elif path == "app_data.extinfo":
            out[path] = _extinfo(frame, src, n)
        elif src.many:
            out[path] = _list_cells(frame, src, n)
        else:
            out[path] = _scalar(path, _single(frame, src, n), src)
    for key in ("event_name", "action_source", "custom_data.currency"):
        default = cfg.defaults.get(key.rsplit(".", 1)[-1])
        if default is None:
            continue
        col = out.get(key)
        out[key] = pd.Series(default, index=range(n), dtype=object) if col is None else \
            pd.Series(col, index=range(n), dtype=object).where(pd.notna(col), default)
    out["event_id"] = _event_id(frame, cfg, out.get("event_id"), n)
    canon = pd.DataFrame(out, index=pd.RangeIndex(n))
    for col in ("event_name", "action_source"):
        if col in canon:
            canon[col] = _as_text(canon[col])
    return canon


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
    result = pd.Series(pd.array([pd.NA] * n, dtype="Int64"))
    if n == 0:
        return result
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _from_datetimes(values, timezone)
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return _from_numbers(pd.to_numeric(values, errors="coerce"), unit)
    text = _as_text(values)
    numeric = text.str.fullmatch(r"-?\d+(?:\.0+)?", na=False)
    if numeric.any():
        result[numeric] = _from_numbers(pd.to_numeric(text[numeric], errors="coerce"), unit)[numeric]
    rest = ~numeric & text.notna()
    if rest.any():
        result[rest] = _from_iso(text[rest], timezone)
    return result


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
        ts = ts.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
    ts = ts.dt.tz_convert("UTC")
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    delta = (ts - epoch).dt.total_seconds()
    return delta.round().astype("Int64")


def _from_iso(text: pd.Series, timezone: str) -> pd.Series:
    out = pd.Series(pd.array([pd.NA] * len(text), dtype="Int64"), index=text.index)
    stripped = text.str.strip()
    aware = stripped.str.contains(_TZ_SUFFIX, regex=True, na=False)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    if aware.any():
        ts = pd.to_datetime(stripped[aware], utc=True, format="ISO8601", errors="coerce")
        out[aware] = (ts - epoch).dt.total_seconds().round().astype("Int64")
    naive = ~aware
    if naive.any():
        ts = pd.to_datetime(stripped[naive], format="ISO8601", errors="coerce")
        ts = ts.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward").dt.tz_convert("UTC")
        out[naive] = (ts - epoch).dt.total_seconds().round().astype("Int64")
    return out


def _columns(frame: pd.DataFrame, src: FieldSource) -> list[pd.Series]:
    n = len(frame)
    if src.const is not None:
        return [pd.Series([src.const] * n, dtype=object)]
    return [frame[c] if c else pd.Series([None] * n, dtype=object) for c in src.columns]


def _single(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    if src.const is not None:
        return pd.Series([src.const] * n, dtype=object)
    return frame[src.columns[0]]


def _as_text(values: Any) -> pd.Series:
    """Object Series of stripped, non-empty str or None (whole floats rendered without ".0")."""
    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        t = s.str.strip()
        t = t.where(t.str.len() > 0)
        return pd.Series(t.to_numpy(dtype=object, na_value=None), index=s.index, dtype=object)
    return pd.Series([_text(v) for v in s.tolist()], index=s.index, dtype=object)


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
        return _parse_json(values)
    if path in ("custom_data.value", "custom_data.predicted_ltv", "custom_data.net_revenue"):
        return pd.to_numeric(values, errors="coerce").astype(float)
    if path in ("custom_data.num_items", "app_data.advertiser_tracking_enabled",
                "app_data.application_tracking_enabled"):
        return _to_int(values)
    if path == "opt_out":
        return values.map(_to_bool).astype(object)
    if values.dtype.kind in "iub":
        return values
    return _as_text(values)


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


def _parse_json(values: pd.Series) -> pd.Series:
    cache: dict[str, Any] = {}

    def parse(v: Any) -> Any:
        if not isinstance(v, str):
            return None if v is None or (isinstance(v, float) and np.isnan(v)) else v
        if v not in cache:
            try:
                cache[v] = json.loads(v)
            except ValueError:
                cache[v] = None
        return cache[v]

    return values.map(parse).astype(object)


def _extinfo(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    """16 positional slots; missing values become "" as Meta's example shows (not null)."""
    if src.const is not None:
        return pd.Series([list(src.const)] * n, dtype=object)
    cols = [(_as_text(frame[c]).fillna("") if c else pd.Series([""] * n, dtype=object)).tolist()
            for c in src.columns]
    return pd.Series([list(row) for row in zip(*cols)] if cols else [[] for _ in range(n)], dtype=object)


def _list_cells(frame: pd.DataFrame, src: FieldSource, n: int) -> pd.Series:
    cols = [_as_text(c).tolist() for c in _columns(frame, src)]
    rows = [[v for v in row if v is not None] or None for row in zip(*cols)]
    return pd.Series(rows, dtype=object)


def _event_id(frame: pd.DataFrame, cfg: PipelineConfig, mapped: Any, n: int) -> pd.Series:
    if mapped is not None:
        return _as_text(mapped)
    if cfg.event_id.column:
        return _as_text(frame[cfg.event_id.column])
    parts = [_as_text(frame[k]).tolist() for k in cfg.event_id.keys]
    ids = [":".join(p for p in row if p) or None for row in zip(*parts)] if parts else [None] * n
    return pd.Series(ids, dtype=object)
