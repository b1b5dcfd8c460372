"""The data-quality report of one run: a model that stages add counts to, and its JSON rendering.

No customer value ever enters this model: it holds counts keyed by rule, user_data key, event name, state code
and dataset id, plus ids (file, row, batch id, fbtrace_id). The quarantine file is written here too, one record per
rejected row (file, row, event_name, event_id, rule, field, message).
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REPORT_SCHEMA_VERSION", "QUARANTINE_FIELDS", "RunStats", "QuarantineWriter", "write_json",
           "read_json", "atomic_write_text", "AGE_BUCKETS_H"]

REPORT_SCHEMA_VERSION = "1.0"
QUARANTINE_FIELDS = ("file", "row", "event_name", "event_id", "rule", "field", "message")
AGE_BUCKETS_H = (1, 6, 24, 48, 72, 168, 24 * 62)  # upper bounds in hours; the last bucket is "older"


@dataclass
class RunStats:
    """Counts gathered while a partition moves through the stages."""

    pipeline: str
    date: str
    mode: str = "run"  # run | validate | dry-run
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_by_file: Counter = field(default_factory=Counter)
    rejected_by_rule: Counter = field(default_factory=Counter)
    rejected_by_stage: Counter = field(default_factory=Counter)  # contract / rules / user_data / meta
    events_built: int = 0
    rows_normalized: int = 0  # rows that passed contract and rules, whose customer information was read
    events_by_name: Counter = field(default_factory=Counter)
    key_coverage_before: Counter = field(default_factory=Counter)
    key_coverage_after: Counter = field(default_factory=Counter)
    key_coverage_by_event: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    fields_dropped: Counter = field(default_factory=Counter)  # "key:reason" -> values
    values_dropped: Counter = field(default_factory=Counter)  # "path:reason" -> values left out, outside user_data
    hashed: Counter = field(default_factory=Counter)
    prehashed: Counter = field(default_factory=Counter)
    ldu: Counter = field(default_factory=Counter)
    event_age_hours: Counter = field(default_factory=Counter)  # bucket label -> events
    delivery: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset_id -> delivery summary
    stage_seconds: Counter = field(default_factory=Counter)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    predicted_match_quality: dict[str, Any] = field(default_factory=dict)
    meta_match_quality: dict[str, Any] | None = None
    data_docs: str | None = None
    quarantine_file: str | None = None
    errors: list[str] = field(default_factory=list)

    def reject(self, stage: str, rule: str, rows: int = 1) -> None:
        self.rejected_by_rule[rule] += rows
        self.rejected_by_stage[stage] += rows

    def add_event_ages(self, ages_s: Any) -> None:
        """Count event ages (seconds, any sequence or array) into the `<=Nh` / `older` buckets."""
        hours = np.asarray(ages_s, dtype=np.float64) / 3600
        if not hours.size:
            return
        # bucket i holds ages <= AGE_BUCKETS_H[i] and > the bound before it; len(AGE_BUCKETS_H) is "older"
        where = np.searchsorted(np.asarray(AGE_BUCKETS_H, dtype=np.float64), hours, side="left")
        for i, n in enumerate(np.bincount(where, minlength=len(AGE_BUCKETS_H) + 1).tolist()):
            if n:
                self.event_age_hours[f"<={AGE_BUCKETS_H[i]}h" if i < len(AGE_BUCKETS_H) else "older"] += n

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected_by_rule.values())

    def totals(self) -> dict[str, int]:
        """The foundation counts summed over destinations."""
        def total(key: str) -> int:
            return sum(int(d.get(key, 0)) for d in self.delivery.values())

        return {
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "rows_valid": self.rows_read - self.rows_rejected,
            "events_sent": total("events_sent"),
            "events_delivered": total("events_delivered"),
            "events_failed": total("events_failed"),
            "events_rejected_by_meta": total("events_rejected"),
            "events_skipped_already_sent": total("events_skipped_already_sent"),
            "events_resent": total("events_resent"),
        }

    def to_state(self) -> dict[str, Any]:
        """Everything needed to merge this partial run with others (Airflow mapped tasks)."""
        state: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "key_coverage_by_event":
                v = {k: dict(c) for k, c in v.items()}
            elif isinstance(v, Counter):
                v = dict(v)
            state[f.name] = v
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunStats:
        stats = cls(pipeline=state["pipeline"], date=state["date"])
        for f in fields(cls):
            if f.name not in state:
                continue
            v = state[f.name]
            if f.name == "key_coverage_by_event":
                target = defaultdict(Counter)
                for k, c in v.items():
                    target[k].update(c)
                v = target
            elif isinstance(getattr(stats, f.name), Counter):
                v = Counter(v)
            setattr(stats, f.name, v)
        return stats

    def merge(self, other: RunStats) -> None:
        """Add another partial run's counts to this one."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, Counter):
                mine.update(theirs)
            elif f.name == "key_coverage_by_event":
                for k, c in theirs.items():
                    mine[k].update(c)
            elif f.name in ("files", "errors"):
                mine.extend(x for x in theirs if x not in mine)
            elif f.name in ("rows_read", "events_built", "rows_normalized"):
                setattr(self, f.name, mine + theirs)
            elif f.name == "delivery":
                for ds, d in theirs.items():
                    mine[ds] = _merge_delivery(mine.get(ds), d)
        self.started_at = min(self.started_at, other.started_at)
        if other.finished_at:
            self.finished_at = max(self.finished_at or 0, other.finished_at)

    def to_dict(self) -> dict[str, Any]:
        finished = self.finished_at or time.time()
        duration = max(finished - self.started_at, 1e-9)
        stages = {name: {"seconds": round(sec, 3),
                         "rows_per_second": round(self.rows_read / sec, 1) if sec > 0 else None}
                  for name, sec in self.stage_seconds.items()}
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "pipeline": self.pipeline,
            "date": self.date,
            "mode": self.mode,
            **self.totals(),
            "files": [{"file": f, "rows": self.rows_by_file.get(f, 0)} for f in self.files],
            "rejected": {"by_rule": dict(self.rejected_by_rule.most_common()),
                         "by_stage": dict(self.rejected_by_stage.most_common())},
            "events": {"built": self.events_built, "by_event_name": dict(self.events_by_name.most_common()),
                       "values_dropped": dict(self.values_dropped.most_common())},
            "customer_information": {
                # both over (nearly) the same rows: read from the rows that passed contract and rules, sent
                "coverage_before": _ratios(self.key_coverage_before, self.rows_normalized),
                "coverage_after": _ratios(self.key_coverage_after, self.events_built),
                "fields_dropped": dict(self.fields_dropped.most_common()),
                "hashed": dict(self.hashed), "prehashed": dict(self.prehashed),
            },
            "limited_data_use": dict(self.ldu.most_common()),
            "event_age_hours": {label: self.event_age_hours.get(label, 0)
                                for label in [f"<={b}h" for b in AGE_BUCKETS_H] + ["older"]},
            "delivery": self.delivery,
            "match_quality": {"predicted": self.predicted_match_quality, "meta": self.meta_match_quality},
            "timing": {"started_at": _iso(self.started_at), "finished_at": _iso(finished),
                       "duration_seconds": round(duration, 3),
                       "rows_per_second": round(self.rows_read / duration, 1), "stages": stages},
            "quarantine_file": self.quarantine_file,
            "data_docs": self.data_docs,
            "errors": self.errors,
        }


def _merge_delivery(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if not a:
        return dict(b)
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = out.get(k, 0) + v
        elif isinstance(v, list):
            out[k] = (out.get(k) or []) + v
    return out


def _ratios(counts: Counter, total: int) -> dict[str, dict[str, float | int]]:
    return {k: {"rows": v, "share": round(v / total, 4) if total else 0.0} for k, v in sorted(counts.items())}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


WITHHELD = "<withheld>"
_ID_KEYS = ("event_name", "event_id")
_AT_SIGNS = re.compile("[@\uff20\ufe6b]")  # "@", and the full-width and small "@" an e-mail is typed with too
# A phone number as typed: digits in groups ("+1 415 555 0177", "(415) 555-0177", "415.555.0177"), 7+ of them.
# A plain run of digits is left alone: order numbers are that.
_PHONE_LIKE = re.compile(r"(?=(?:\D*\d){7})[+(]?\d[\d\s().\-/]*\d\)?")
_PHONE_MARKS = re.compile(r"^[+(]|\d[\s().\-/]+\d")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet opening the CSV would run as a formula


def _contact_like(value: str) -> bool:
    """An e-mail or a phone number where an id should be (a shifted CSV row, a mis-mapped column)."""
    return bool(_AT_SIGNS.search(value)) or (_PHONE_LIKE.fullmatch(value.strip()) is not None
                                              and _PHONE_MARKS.search(value.strip()) is not None)


def _cell(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula, quoted as text ("'=HYPERLINK(...)")."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def _identifiers_only(rec: dict[str, Any], withhold: Iterable[str] = ()) -> dict[str, Any]:
    """A record whose event_name / event_id can be shown: the row's ids, unless a rule rejected a value the id
    is made of (`withhold`) or the id looks like an e-mail or a phone number; text cells safe for spreadsheets."""
    out = {k: _cell(v) for k, v in rec.items()}
    for key in _ID_KEYS:
        value = rec.get(key)
        if isinstance(value, str) and (key in withhold or _contact_like(value)):
            out[key] = WITHHELD
    return out


class QuarantineWriter:
    """Append rejected-row records to `quarantine.csv` as they come (memory stays flat).

    `id_columns`: per id key (event_name, event_id), the source columns it is made of: when a rule rejects one
    of them on a row, that id is the rejected value (a phone typed into "Event ID") and is withheld on every
    record of the row.
    """

    def __init__(self, path: Path, id_columns: Mapping[str, Iterable[str]] | None = None) -> None:
        self.path = path
        self._sources = {key: {key, *(id_columns or {}).get(key, ())} for key in _ID_KEYS}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=QUARANTINE_FIELDS, extrasaction="ignore")
        self._writer.writeheader()
        self.count = 0

    def write(self, records: list[dict[str, Any]]) -> None:
        withhold: dict[tuple[Any, Any], set[str]] = defaultdict(set)  # (file, row) -> id keys
        for rec in records:
            if rec.get("rule") != "duplicate_event_id":  # a duplicate's id is the id, not a rejected value
                for key, sources in self._sources.items():
                    if rec.get("field") in sources:
                        withhold[(rec.get("file"), rec.get("row"))].add(key)
        self._writer.writerows(_identifiers_only(rec, withhold.get((rec.get("file"), rec.get("row")), ()))
                               for rec in records)
        self.count += len(records)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(stats: RunStats, out_dir: Path) -> Path:
    path = out_dir / "report.json"
    atomic_write_text(path, json.dumps(stats.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
