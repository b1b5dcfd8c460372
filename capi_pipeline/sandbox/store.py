"""Durable record of what the sandbox accepted and of every API request (SQLite, one connection, one lock).

A file database (`db_path`) survives restarts; without one the data lives in memory. The request log never holds
a token or a body: only method, redacted path, content type, counts, status and error codes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

__all__ = ["RequestRecord", "Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id TEXT NOT NULL,
    event_name TEXT,
    event_id TEXT,
    event_time INTEGER,
    action_source TEXT,
    test_event_code TEXT,
    partner_agent TEXT,
    upload_tag TEXT,
    namespace_id TEXT,
    event_json BLOB NOT NULL,
    fbtrace_id TEXT,
    received_at REAL,
    duplicate INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_dataset ON events (dataset_id, seq);
CREATE TABLE IF NOT EXISTS event_keys (
    dataset_id TEXT NOT NULL, event_name TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (dataset_id, event_name, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL, kind TEXT, method TEXT, path TEXT, content_type TEXT, dataset_id TEXT, events INTEGER,
    status INTEGER, error_code INTEGER, error_subcode INTEGER, token_in_url INTEGER, token_source TEXT,
    fault TEXT, fbtrace_id TEXT, partner_agent TEXT, test_event_code TEXT, duration_ms REAL
);
"""


@dataclass
class RequestRecord:
    """One line of the request log (`kind`: events | dataset_quality | other)."""

    ts: float
    kind: str
    method: str
    path: str
    content_type: str | None
    dataset_id: str | None
    events: int | None
    status: int
    error_code: int | None
    error_subcode: int | None
    token_in_url: bool
    token_source: str | None
    fault: str | None
    fbtrace_id: str | None
    partner_agent: str | None
    test_event_code: str | None
    duration_ms: float


def _dedup_key(event: Mapping[str, Any]) -> tuple[Any, str] | None:
    """(event_name, event_id as text), Meta's deduplication key; None for an event without an id."""
    raw_id = event.get("event_id")
    return None if raw_id is None or raw_id == "" else (event.get("event_name"), str(raw_id))


class Store:
    """Thread-safe SQLite store of accepted events and the request log."""

    def __init__(self, db_path: str | None = None, *, keep_events: bool = True) -> None:
        self.db_path = db_path
        # False: remember only dedup keys and counts (large benchmarks); `events()` then returns nothing
        self.keep_events = keep_events
        self._counts: dict[str, list[int]] = {}  # keys-only mode: dataset -> [received, duplicates]
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(db_path or ":memory:", check_same_thread=False, isolation_level=None)
        if db_path:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        # dedup keys live in memory too, so spotting duplicates costs no query per event
        self._keys: dict[str, set[tuple[Any, str]]] = {}
        for dataset_id, event_name, event_id in self._conn.execute("SELECT * FROM event_keys"):
            self._keys.setdefault(dataset_id, set()).add((event_name, event_id))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add_events(self, dataset_id: str, events: Iterable[Mapping[str, Any]], *, params: Mapping[str, Any],
                   fbtrace_id: str, received_at: float) -> int:
        """Store one accepted request's events atomically; returns how many were duplicates."""
        with self._lock:
            seen = self._keys.setdefault(dataset_id, set())
            if not self.keep_events:
                return self._count_events(dataset_id, seen, events)
            new_keys: list[tuple[str, Any, str]] = []
            rows = []
            for event in events:
                event_name = event.get("event_name")
                key = _dedup_key(event)
                event_id = key[1] if key is not None else None
                duplicate = 0
                if key is not None:
                    if key in seen:
                        duplicate = 1
                    else:
                        seen.add(key)
                        new_keys.append((dataset_id, event_name, event_id))
                rows.append((dataset_id, event_name, event_id, event.get("event_time"),
                             event.get("action_source"), params.get("test_event_code"),
                             params.get("partner_agent"), params.get("upload_tag"), params.get("namespace_id"),
                             orjson.dumps(event), fbtrace_id, received_at, duplicate))
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany("INSERT OR IGNORE INTO event_keys VALUES (?, ?, ?)", new_keys)
                self._conn.executemany(
                    "INSERT INTO events (dataset_id, event_name, event_id, event_time, action_source, "
                    "test_event_code, partner_agent, upload_tag, namespace_id, event_json, fbtrace_id, "
                    "received_at, duplicate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                seen.difference_update((name, event_id) for _, name, event_id in new_keys)
                raise
        return sum(row[-1] for row in rows)

    def _count_events(self, dataset_id: str, seen: set[tuple[Any, str]], events: Iterable[Mapping[str, Any]]) -> int:
        """Keys-only mode: remember each event's dedup key, count events and duplicates (the caller holds the
        lock); returns the duplicates."""
        received = duplicates = 0
        for event in events:
            received += 1
            key = _dedup_key(event)
            if key is None:
                continue
            if key in seen:
                duplicates += 1
            else:
                seen.add(key)
        counts = self._counts.setdefault(dataset_id, [0, 0])
        counts[0] += received
        counts[1] += duplicates
        return duplicates

    def log_request(self, record: RequestRecord) -> None:
        values = asdict(record)
        values["token_in_url"] = int(record.token_in_url)
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._lock:
            self._conn.execute(f"INSERT INTO requests ({columns}) VALUES ({marks})", tuple(values.values()))

    def events(self, dataset_id: str | None = None, *, limit: int | None = None, offset: int = 0
               ) -> list[dict[str, Any]]:
        """Accepted events in arrival order, each with its full event JSON under `event`."""
        sql = ("SELECT dataset_id, event_name, event_id, event_time, action_source, test_event_code, partner_agent, "
               "upload_tag, namespace_id, event_json, fbtrace_id, received_at, duplicate FROM events")
        args: list[Any] = []
        if dataset_id is not None:
            sql += " WHERE dataset_id = ?"
            args.append(dataset_id)
        sql += " ORDER BY seq LIMIT ? OFFSET ?"
        args += [-1 if limit is None else limit, offset]
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        keys = ("dataset_id", "event_name", "event_id", "event_time", "action_source", "test_event_code",
                "partner_agent", "upload_tag", "namespace_id", "event", "fbtrace_id", "received_at", "duplicate")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["event"] = orjson.loads(item["event"])
            item["duplicate"] = bool(item["duplicate"])
            out.append(item)
        return out

    def has_dataset(self, dataset_id: str) -> bool:
        if dataset_id in self._counts:
            return True
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM events WHERE dataset_id = ? LIMIT 1", (dataset_id,)).fetchone()
        return row is not None

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        with self._lock:
            cur = self._conn.execute("SELECT * FROM requests ORDER BY seq")
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        out = []
        for row in rows:
            item = dict(zip(names, row))
            item["token_in_url"] = bool(item["token_in_url"])
            out.append(item)
        return out

    def stats(self) -> dict[str, Any]:
        """Per-dataset counters, total requests and injected faults."""
        datasets: dict[str, dict[str, int]] = {}

        def entry(dataset_id: str) -> dict[str, int]:
            return datasets.setdefault(dataset_id, {
                "requests": 0, "accepted_requests": 0, "rejected_requests": 0,
                "events_received": 0, "unique_events": 0, "duplicate_events": 0})

        with self._lock:
            request_rows = self._conn.execute(
                "SELECT dataset_id, COUNT(*), SUM(status = 200) FROM requests "
                "WHERE kind = 'events' AND dataset_id IS NOT NULL GROUP BY dataset_id").fetchall()
            event_rows = self._conn.execute(
                "SELECT dataset_id, COUNT(*), SUM(duplicate) FROM events GROUP BY dataset_id").fetchall()
            total = self._conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            fault_rows = self._conn.execute(
                "SELECT fault, COUNT(*) FROM requests WHERE fault IS NOT NULL GROUP BY fault").fetchall()
        for dataset_id, count, accepted in request_rows:
            e = entry(dataset_id)
            e["requests"] = count
            e["accepted_requests"] = int(accepted or 0)
            e["rejected_requests"] = count - int(accepted or 0)
        with self._lock:
            event_rows += [(dataset_id, received, dups) for dataset_id, (received, dups) in self._counts.items()]
        for dataset_id, count, dups in event_rows:
            e = entry(dataset_id)
            e["events_received"] = count
            e["duplicate_events"] = int(dups or 0)
            e["unique_events"] = count - int(dups or 0)
        return {"datasets": datasets, "requests": total, "faults_injected": dict(fault_rows)}

    def reset(self) -> None:
        """Forget every event and request."""
        with self._lock:
            self._conn.executescript("DELETE FROM events; DELETE FROM event_keys; DELETE FROM requests;")
            self._keys.clear()
            self._counts.clear()
