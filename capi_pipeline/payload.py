"""Canonical rows + normalized user_data -> CAPI server event dicts, with Limited Data Use flags.

Pure. One event per canonical row, fields in Meta's order of the server-event page; nulls are left out, never sent
as null. Decisions (README "Choices"): currency is sent upper-case (ISO-4217 spelling); `value` as a JSON number;
`advertiser_tracking_enabled` as 0/1; `extinfo` as 16 strings with "" for gaps; LDU per capi.md §2:

    off       nothing sent (Meta reads a missing field as LDU off)
    all       ["LDU"], country 0, state 0 (Meta geolocates)
    by_state  a row whose US state is covered -> ["LDU"], 1, that state's code; every other row -> [] (explicit off)
    consent   a row whose consent column is true -> LDU (state code when covered, else 0/0); others -> []
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LDU_STATE_CODES", "OutboundEvent", "Payloads", "build_events"]

LDU_STATE_CODES: dict[str, int] = {
    "ca": 1000, "co": 1001, "ct": 1002, "fl": 1003, "or": 1004, "tx": 1005, "mt": 1006, "de": 1007,
    "ne": 1008, "nh": 1009, "nj": 1010, "mn": 1011, "md": 1012, "ri": 1013,
}
_SERVER_FIELDS = ("event_name", "event_time", "event_id", "action_source", "event_source_url", "opt_out",
                  "referrer_url", "messaging_channel", "original_event_data", "customer_segmentation")


@dataclass(frozen=True)
class OutboundEvent:
    """One event ready for Meta, with the ids that trace it back to its source row."""

    event_name: str
    event_id: str
    file: str
    row: int
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """Meta's deduplication key, and the ledger's."""
        return (self.event_name, self.event_id)


@dataclass
class Payloads:
    events: list[OutboundEvent]
    ldu_by_state: Counter = field(default_factory=Counter)  # "ca" / "geolocated" / "off" -> events


def build_events(canon: pd.DataFrame, user_data: Mapping[str, pd.Series], *, ldu_policy: str = "off",
                 ldu_states: pd.Series | None = None, ldu_consent: pd.Series | None = None) -> Payloads:
    """Build the events of `canon` (index-aligned with every `user_data` Series and the LDU inputs)."""
    n = len(canon)
    if n == 0:
        return Payloads(events=[])
    server_cols = [(f, _values(canon[f])) for f in _SERVER_FIELDS if f in canon.columns]
    ud_cols = [(k, _values(s.reindex(canon.index))) for k, s in user_data.items()]
    custom = _nested_columns(canon, "custom_data.")
    app = _nested_columns(canon, "app_data.")
    ldu, ldu_counts = _ldu(n, ldu_policy, ldu_states, ldu_consent, canon.index)

    files = canon["_file"].tolist()
    rows = canon["_row"].tolist()
    events: list[OutboundEvent] = []
    for i in range(n):
        body: dict[str, Any] = {}
        for name, vals in server_cols:
            v = vals[i]
            if v is not None:
                body[name] = v
        ud = {}
        for key, vals in ud_cols:
            v = vals[i]
            if v is not None:
                ud[key] = v
        body["user_data"] = ud
        if custom:
            cd = _nested_row(custom, i)
            if cd:
                body["custom_data"] = cd
        if app:
            ad = _nested_row(app, i)
            if ad:
                body["app_data"] = ad
        if ldu is not None:
            body.update(ldu[i])
        events.append(OutboundEvent(body["event_name"], body["event_id"], files[i], rows[i], body))
    return Payloads(events=events, ldu_by_state=ldu_counts)


def _values(s: pd.Series) -> list[Any]:
    """Column -> Python list with JSON-ready scalars and None for missing values."""
    if s.dtype.kind == "f":
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        return [None if x != x else x for x in arr.tolist()]
    if isinstance(s.dtype, pd.Int64Dtype) or s.dtype.kind in "iu":
        return [None if v is pd.NA else int(v) for v in s.astype(object).tolist()]
    out = s.astype(object).tolist()
    return [None if (v is None or v is pd.NA or (isinstance(v, float) and v != v)) else v for v in out]


def _nested_columns(canon: pd.DataFrame, prefix: str) -> list[tuple[tuple[str, ...], list[Any]]]:
    cols = []
    for col in canon.columns:
        if col.startswith(prefix):
            values = _values(canon[col])
            if col == "custom_data.currency":
                values = [v.upper() if isinstance(v, str) else v for v in values]
            cols.append((tuple(col[len(prefix):].split(".")), values))
    return cols


def _nested_row(cols: list[tuple[tuple[str, ...], list[Any]]], i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, vals in cols:
        v = vals[i]
        if v is None:
            continue
        if len(path) == 1:
            out[path[0]] = v
        else:
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = v
    return out


def _ldu(n: int, policy: str, states: pd.Series | None, consent: pd.Series | None,
         index: pd.Index) -> tuple[list[dict[str, Any]] | None, Counter]:
    counts: Counter = Counter()
    if policy == "off":
        return None, counts
    off = {"data_processing_options": []}
    geo = {"data_processing_options": ["LDU"], "data_processing_options_country": 0,
           "data_processing_options_state": 0}
    if policy == "all":
        counts["geolocated"] = n
        return [geo] * n, counts
    st = states.reindex(index).tolist() if states is not None else [None] * n
    wants = consent.reindex(index).tolist() if consent is not None else [True] * n
    out: list[dict[str, Any]] = []
    for state, want in zip(st, wants):
        code = LDU_STATE_CODES.get(state) if isinstance(state, str) else None
        if policy == "consent" and want is not True:
            out.append(off)
            counts["off"] += 1
        elif code is not None:
            out.append({"data_processing_options": ["LDU"], "data_processing_options_country": 1,
                        "data_processing_options_state": code})
            counts[state] += 1
        elif policy == "consent":
            out.append(geo)
            counts["geolocated"] += 1
        else:
            out.append(off)
            counts["off"] += 1
    return out, counts
