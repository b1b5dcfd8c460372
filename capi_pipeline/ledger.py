"""What was delivered: a small state machine per batch and per event, with atomic writes.

    (not in the ledger = pending) ──mark_sending──> sending ──mark_sent──> sent
                                                       └────mark_failed──> failed   (retried by the next run)

`mark_sending` commits BEFORE the POST and `mark_sent` after the 200, so a crash (kill -9) leaves the batches
that were in flight in `sending`: the next run resends exactly those plus the never-sent events, with the same
event ids. An event key is (dataset_id, event_name, event_id): each destination dataset keeps its own record.

Schema (SQLAlchemy Core, the same code for SQLite and PostgreSQL):

    capi_ledger_batches(batch_id PK, dataset_id, state, events, fbtrace_id, reason, updated_at)
    capi_ledger_events(dataset_id, event_id, event_name  PK in that order, batch_id, updated_at)
        WITHOUT ROWID on SQLite
    capi_ledger_batch_keys(batch_id PK, event_keys)  the batch's (event_name, event_id) pairs as one JSON text
    capi_ledger_unindexed(seq PK, batch_id, dataset_id)  batches whose keys are not in capi_ledger_events yet
    An event's state is the state of the batch that last carried it, so finishing a batch writes one row.
    Which events a batch carried is read from its event_keys row (`in_flight`, once per run), not from an index on
    capi_ledger_events.batch_id: that index was a second B-tree entry per event, a quarter of the cost of
    recording a batch (bench/README.md). Ledgers created before keep their index, and their batches without a
    keys row are still read through it.

The per-event rows are written later (every backend): `mark_sending` commits the batch row, its keys row and an
`unindexed` row, and returns. Writing the batch's 1,000 unrelated keys into capi_ledger_events right away touched
~1,000 leaf pages of the B-tree per batch (~4 MB of WAL on SQLite; the main process's largest cost at a million
events); they are written `INDEX_EVERY_KEYS` (or `INDEX_EVERY_BATCHES` batches) at a time and in key order, where neighbours share pages, in one
transaction that also deletes their `unindexed` rows (`flush`, also on `close`). Until then every read puts the
unindexed batches' keys on top of capi_ledger_events (a later batch wins, as it does in the table), in one
snapshot: a crash before a flush loses nothing, and other processes sharing the database see the same states.

A plain path opens SQLite (WAL, busy timeout, `BEGIN IMMEDIATE` so writers from several processes queue
instead of failing). `sqlite:///...` and `postgresql+psycopg://...` URLs go to SQLAlchemy (the tests run both,
the latter on a real PostgreSQL started by pgserver). On a SQLite file the per-batch calls (`filter_unsent`,
`mark_sending`, `mark_sent`, `mark_failed`) and the flush skip SQLAlchemy and run the same statements on two
plain sqlite3 connections.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from capi_pipeline.errors import ConfigurationError, RunInProgressError

__all__ = ["Key", "Ledger", "State"]

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (event_name, event_id); the dataset id is passed alongside
State = Literal["sending", "sent", "failed"]
_CHUNK = 5000  # event ids per lookup query
WRITER_CACHE_KIB = 64 * 1024  # page cache of the connection that writes batches (SQLite file ledgers)
_PG_FLUSH_LOCK = 0x6361_7069_6C65_6467  # PostgreSQL advisory lock key of `_flush_sa` ("capiledg")
INDEX_EVERY_KEYS = 50_000  # event keys held in `unindexed` batches before a flush writes them (sorted)
# ... or this many batches: every read goes over the unindexed batches, so tiny batches (batching.size 1) would
# make each read longer than the last (27,606 one-event batches took 26 minutes)
INDEX_EVERY_BATCHES = 500

_metadata = sa.MetaData()
batches = sa.Table(
    "capi_ledger_batches", _metadata,
    sa.Column("batch_id", sa.String(128), primary_key=True),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("fbtrace_id", sa.String(128)),
    sa.Column("reason", sa.String(400)),
    sa.Column("updated_at", sa.Float, nullable=False),
)
events = sa.Table(
    "capi_ledger_events", _metadata,
    sa.Column("dataset_id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(256), primary_key=True),
    sa.Column("event_name", sa.String(128), primary_key=True),
    sa.Column("batch_id", sa.String(128), nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    # clustered on the key on SQLite: a lookup reads one B-tree instead of an index and then the table
    sqlite_with_rowid=False,
)
batch_keys = sa.Table(
    "capi_ledger_batch_keys", _metadata,
    sa.Column("batch_id", sa.String(128), primary_key=True),
    sa.Column("event_keys", sa.Text, nullable=False),  # JSON: [[event_name, event_id], ...]
)
unindexed = sa.Table(
    "capi_ledger_unindexed", _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # commit order: a later batch wins
    sa.Column("batch_id", sa.String(128), nullable=False),
    sa.Column("dataset_id", sa.String(64), nullable=False),
    # AUTOINCREMENT on SQLite: a plain rowid would start again at 1 once a flush empties the table
    sqlite_autoincrement=True,
)
leases = sa.Table(  # who is delivering which file of which partition right now (`Ledger.lease`)
    "capi_ledger_leases", _metadata,
    sa.Column("name", sa.String(512), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),  # host:pid:random of the run holding it
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)
LEASE_STALE_S = 90.0  # a lease not renewed for this long belongs to a run that died (renewed every 15 s)
_LEASE_RENEW_S = 15.0


def _lease_dead(owner: str, silent_s: float, stale_after_s: float) -> bool:
    """Whether a lease's holder is gone: not renewed for `stale_after_s`, or its process no longer on this host."""
    if silent_s > stale_after_s:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


class Ledger:
    """Exactly-once record of delivery. Thread-safe; several processes may share one SQLite file."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite allows one writer at a time anyway; the lock keeps our own threads from queuing on busy_timeout
        self._lock = threading.Lock()
        # on SQLite, writers take the lock up front (BEGIN IMMEDIATE); readers stay deferred
        self._writer = engine.execution_options(capi_immediate=True)
        _metadata.create_all(self._writer)
        self._fast = _SqliteFast.for_engine(engine)
        self._overlays: dict[str, _Overlay] = {}  # per dataset: the unindexed batches' keys, as last read
        self._overlay_lock = threading.Lock()
        self._unindexed_keys = 0  # written by this ledger since its last flush
        self._unindexed_batches = 0

    @classmethod
    def open(cls, location: str) -> Ledger:
        """A file path (SQLite) or a SQLAlchemy URL (`sqlite:///...`, `postgresql+psycopg://...`)."""
        url = location if "://" in location else None
        if url is None:
            path = Path(location).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
        try:
            engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            # the message of an ArgumentError can quote the URL, password included: keep only the scheme
            raise ConfigurationError(
                f"ledger: cannot open {url.split('://', 1)[0]}:// ledger ({type(exc).__name__})") from None
        if engine.dialect.name == "sqlite":
            _tune_sqlite(engine)
        return cls(engine)

    def close(self) -> None:
        """Flush the unindexed batches (a failure leaves them to the next flush: reads include them), close."""
        try:
            self.flush()
        except (sqlite3.Error, sa.exc.SQLAlchemyError) as exc:
            log.warning("ledger: per-event index not written yet (%s); the next run writes it",
                        type(exc).__name__)
        if self._fast is not None:
            self._fast.close()
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads

    def filter_unsent(self, dataset_id: str, keys: Sequence[Key]) -> set[Key]:
        """The subset of `keys` already `sent` to `dataset_id` (the caller skips those)."""
        return self._keys_in_state(dataset_id, keys, ("sent",))

    def states(self, dataset_id: str, keys: Sequence[Key]) -> dict[Key, str]:
        """The ledger state of each known key (unknown keys are absent): capi_ledger_events, then the keys of the
        unindexed batches on top (they are newer), both read in one snapshot."""
        found: dict[Key, str] = {}
        wanted = set(keys)
        ids = list({event_id: None for _, event_id in keys})
        if self._fast is not None:
            indexed, pending, load = self._fast.read(dataset_id, ids, _CHUNK)
        else:
            indexed, pending, load = self._read_sa(dataset_id, ids)
        for name, event_id, state in indexed:
            if (name, event_id) in wanted:
                found[(name, event_id)] = state
        if pending:
            carrier = self._overlay(dataset_id, pending, load)
            state_of = {batch_id: state for _, batch_id, state in pending}
            for key in wanted:
                batch_id = carrier.get(key)
                if batch_id is not None:
                    found[key] = state_of[batch_id]
        return found

    def _read_sa(self, dataset_id: str, ids: list[str]) -> tuple[list[Any], list[Any], Any]:
        """`states`' reads through SQLAlchemy: (name, id, state) of indexed keys and the unindexed batches
        (seq, batch_id, state), in one snapshot, and a loader of their keys rows."""
        with self._snapshot() as conn:
            indexed: list[Any] = []
            for start in range(0, len(ids), _CHUNK):
                query = (sa.select(events.c.event_name, events.c.event_id, batches.c.state)
                         .join(batches, batches.c.batch_id == events.c.batch_id)
                         .where(events.c.dataset_id == dataset_id,
                                self._id_in(ids[start:start + _CHUNK])))
                indexed.extend(conn.execute(query).all())
            pending = [tuple(r) for r in conn.execute(
                sa.select(unindexed.c.seq, unindexed.c.batch_id, batches.c.state)
                .join(batches, batches.c.batch_id == unindexed.c.batch_id)
                .where(unindexed.c.dataset_id == dataset_id).order_by(unindexed.c.seq))]
        return indexed, pending, self._keys_rows_sa

    def _snapshot(self) -> sa.Connection:
        """A connection whose transaction reads one snapshot. PostgreSQL's default isolation (READ COMMITTED)
        gives every statement its own: a flush committing between the read of capi_ledger_events and that of
        the unindexed batches hid its keys from both (sent events looked unsent to a concurrent run)."""
        conn = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        return conn

    def _keys_rows_sa(self, batch_ids: list[str]) -> dict[str, str]:
        """`_SqliteFast._keys_rows` through SQLAlchemy: read only for batches the overlay has not seen."""
        with self.engine.connect() as conn:
            # .all(): dict() of a Result itself would take it for a mapping (it has keys()) and fail
            return dict(conn.execute(sa.select(batch_keys.c.batch_id, batch_keys.c.event_keys)
                                     .where(batch_keys.c.batch_id.in_(batch_ids))).all())

    def _overlay(self, dataset_id: str, pending: list[tuple[int, str, str]], load: Any) -> dict[Key, str]:
        """key -> the unindexed batch that last carried it, brought up to date with `pending`."""
        with self._overlay_lock:
            overlay = self._overlays.setdefault(dataset_id, _Overlay())
            overlay.update([(seq, batch_id) for seq, batch_id, _ in pending], load)
            return overlay.carrier

    def _id_in(self, ids: list[str]) -> sa.ColumnElement[bool]:
        """`event_id IN ids` as ONE bound value: SQLite json_each / PostgreSQL ANY(array).

        An expanding IN of thousands of parameters costs more to render than to run (10 s per 1M keys).
        """
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY
            return events.c.event_id == sa.any_(sa.cast(sa.bindparam("ids", ids), ARRAY(sa.String)))
        listed = sa.select(sa.literal_column("value")).select_from(
            sa.func.json_each(sa.bindparam("ids", orjson.dumps(ids).decode())))
        return events.c.event_id.in_(listed.scalar_subquery())

    def _keys_in_state(self, dataset_id: str, keys: Sequence[Key], wanted_states: tuple[str, ...]) -> set[Key]:
        return {key for key, state in self.states(dataset_id, keys).items() if state in wanted_states}

    def in_flight(self, dataset_id: str) -> set[Key]:
        """Keys left in `sending` by a run that died mid-upload: the next run resends them.

        The keys of the batches still `sending`, each kept only if that batch is still the one that last
        carried it (a bisected batch hands its events to its halves).
        """
        candidates: set[Key] = set()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(batches.c.batch_id, batch_keys.c.event_keys)
                                .select_from(batches.outerjoin(batch_keys, batch_keys.c.batch_id == batches.c.batch_id))
                                .where(batches.c.dataset_id == dataset_id, batches.c.state == "sending")).all()
            for batch_id, keys in rows:
                if keys is not None:
                    candidates.update((name, event_id) for name, event_id in orjson.loads(keys))
                else:  # written before batches kept their keys
                    candidates.update((name, event_id) for name, event_id in conn.execute(
                        sa.select(events.c.event_name, events.c.event_id).where(events.c.batch_id == batch_id)))
        if not candidates:
            return set()
        return self._keys_in_state(dataset_id, list(candidates), ("sending",))

    def batch_state(self, batch_id: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(batches.c.state).where(batches.c.batch_id == batch_id)).scalar()

    def counts(self, dataset_id: str) -> dict[str, int]:
        """Events per state for one dataset (for reports and tests; flushes the unindexed batches first)."""
        self.flush()
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(batches.c.state, sa.func.count()).select_from(events)
                                .join(batches, batches.c.batch_id == events.c.batch_id)
                                .where(events.c.dataset_id == dataset_id).group_by(batches.c.state))
            return {state: n for state, n in rows}

    # -- writes (each one transaction)

    def mark_sending(self, batch_id: str, dataset_id: str, keys: Iterable[Key]) -> None:
        """Record the batch and its events as in flight; committed before the POST."""
        now = time.time()
        unique = dict.fromkeys(keys)
        listed = orjson.dumps(list(unique)).decode()
        # one call per batch of up to 1,000 events: three small rows in one transaction; the keys reach
        # capi_ledger_events in the next flush (module docstring)
        with self._overlay_lock:
            self._overlays.setdefault(dataset_id, _Overlay()).keys_of[batch_id] = list(unique)
        with self._lock:
            if self._fast is not None:
                # prepared statements and plain tuples: SQLAlchemy's per-call handling held the GIL long enough
                # to slow the upload threads down
                self._fast.write([
                    (_SQLITE_UPSERT_BATCH, (batch_id, dataset_id, "sending", len(unique), now), False),
                    (_SQLITE_UPSERT_KEYS, (batch_id, listed), False),
                    (_SQLITE_INSERT_UNINDEXED, (batch_id, dataset_id), False)])
            else:
                with self._writer.begin() as conn:
                    self._upsert(conn, batches, [{"batch_id": batch_id, "dataset_id": dataset_id, "state": "sending",
                                                  "events": len(unique), "fbtrace_id": None, "reason": None,
                                                  "updated_at": now}], ("batch_id",))
                    self._upsert(conn, batch_keys, [{"batch_id": batch_id, "event_keys": listed}], ("batch_id",))
                    conn.execute(unindexed.insert().values(batch_id=batch_id, dataset_id=dataset_id))
            self._unindexed_keys += len(unique)
            self._unindexed_batches += 1
            if self._unindexed_keys >= INDEX_EVERY_KEYS or self._unindexed_batches >= INDEX_EVERY_BATCHES:
                self._flush_locked()

    def mark_sent(self, batch_id: str, fbtrace_id: str | None) -> None:
        self._finish(batch_id, "sent", fbtrace_id=fbtrace_id, reason=None)

    def mark_failed(self, batch_id: str, reason: str) -> None:
        self._finish(batch_id, "failed", fbtrace_id=None, reason=reason[:400])

    def _finish(self, batch_id: str, state: State, *, fbtrace_id: str | None, reason: str | None) -> None:
        now = time.time()
        if self._fast is not None:
            with self._lock:
                self._fast.write([("UPDATE capi_ledger_batches SET state = ?, fbtrace_id = ?, reason = ?, updated_at = ? "
                                   "WHERE batch_id = ?", (state, fbtrace_id, reason, now, batch_id), False)])
            return
        with self._lock, self._writer.begin() as conn:
            # one row: an event's state is its batch's state (a bisected batch hands its events to its halves)
            conn.execute(batches.update().where(batches.c.batch_id == batch_id)
                         .values(state=state, fbtrace_id=fbtrace_id, reason=reason, updated_at=now))

    # -- leases: one run at a time per file of a partition

    @contextlib.contextmanager
    def lease(self, names: Sequence[str], *, stale_after_s: float = LEASE_STALE_S) -> Iterator[None]:
        """Hold `names` (scope/file) while delivering; RunInProgressError when another live run holds one.

        The ledger alone cannot tell a run that died with batches in `sending` (resend them) from one still
        sending them (resending would double them), so a run holds a lease on each file it delivers, renewed
        every 15 s by a thread. A lease is taken over when its holder stopped renewing it for `stale_after_s`,
        or at once when its process is gone from this host (a kill -9 and a re-run).
        """
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        names = sorted(set(names))
        self._acquire(names, owner, stale_after_s)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(_LEASE_RENEW_S):
                try:
                    with self._writer.begin() as conn:
                        conn.execute(leases.update().where(leases.c.owner == owner)
                                     .values(heartbeat_at=time.time()))
                except sa.exc.SQLAlchemyError as exc:  # a busy database: the next renewal will do
                    log.warning("ledger: lease not renewed (%s)", type(exc).__name__)

        thread = threading.Thread(target=renew, name="capi-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self._writer.begin() as conn:
                conn.execute(leases.delete().where(leases.c.owner == owner))

    def _acquire(self, names: list[str], owner: str, stale_after_s: float) -> None:
        try:
            self._acquire_once(names, owner, stale_after_s)
        except sa.exc.IntegrityError:  # another run inserted the same lease between our read and our write
            raise RunInProgressError(f"{names[0]}: another run took this partition's lease at the same moment; "
                                     f"wait for it to finish") from None

    def _acquire_once(self, names: list[str], owner: str, stale_after_s: float) -> None:
        now = time.time()
        with self._lock, self._writer.begin() as conn:
            held = {r.name: r for r in conn.execute(sa.select(leases).where(leases.c.name.in_(names)))}
            for name in names:
                row = held.get(name)
                if row is None:
                    conn.execute(leases.insert().values(name=name, owner=owner, heartbeat_at=now))
                elif _lease_dead(row.owner, now - row.heartbeat_at, stale_after_s):
                    # only if nobody took it over since we read it (PostgreSQL re-checks after the row lock)
                    taken = conn.execute(leases.update().where(
                        leases.c.name == name, leases.c.owner == row.owner,
                        leases.c.heartbeat_at == row.heartbeat_at).values(owner=owner, heartbeat_at=now))
                    if taken.rowcount != 1:
                        raise RunInProgressError(f"{name}: another run took over this dead run's lease at the "
                                                 f"same moment; wait for it to finish")
                else:
                    raise RunInProgressError(
                        f"{name}: another run is delivering it (on {row.owner.split(':')[0]}, last seen "
                        f"{now - row.heartbeat_at:.0f} s ago); running both would send its events twice. Wait for "
                        f"it to finish (a run that died is taken over after {stale_after_s:.0f} s)")

    def flush(self) -> None:
        """Write the unindexed batches' keys into capi_ledger_events, sorted, in one transaction (any process's:
        they share the file). Reads are the same before and after; this only makes the file compact."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        with self._overlay_lock:
            known = {b: keys for overlay in self._overlays.values() for b, keys in overlay.keys_of.items()}
        if self._fast is not None:
            self._fast.flush(time.time(), known)
        else:
            self._flush_sa(time.time(), known)
        self._unindexed_keys = self._unindexed_batches = 0
        with self._overlay_lock:
            self._overlays.clear()

    def _flush_sa(self, now: float, known: dict[str, list[Key]]) -> None:
        """`_SqliteFast.flush` through SQLAlchemy (PostgreSQL; SQLite only where no plain file path is behind the
        URL): the same rows, deduplicated, one transaction."""
        with self._writer.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                # one flush at a time across processes, each reading the unindexed rows after the previous one
                # committed: two flushes upserting the same key at once could let the older batch win
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_FLUSH_LOCK)))
            pending = conn.execute(sa.select(unindexed.c.seq, unindexed.c.batch_id, unindexed.c.dataset_id)
                                   .order_by(unindexed.c.seq)).all()
            if not pending:
                return
            need = {b for _, b, _ in pending if b not in known}
            loaded = dict(conn.execute(sa.select(batch_keys.c.batch_id, batch_keys.c.event_keys)
                                       .where(batch_keys.c.batch_id.in_(need))).all()) if need else {}
            rows = [{"dataset_id": ds, "event_id": event_id, "event_name": name, "batch_id": batch_id,
                     "updated_at": now} for ds, event_id, name, batch_id in _index_rows(pending, known, loaded)]
            for start in range(0, len(rows), 5000):
                self._upsert(conn, events, rows[start:start + 5000], ("dataset_id", "event_id", "event_name"))
            # the rows read, by number: on PostgreSQL another writer's row with a lower number may commit meanwhile
            conn.execute(unindexed.delete().where(unindexed.c.seq.in_([seq for seq, _, _ in pending])))

    def _upsert(self, conn: sa.Connection, table: sa.Table, rows: list[dict], key: tuple[str, ...]) -> None:
        if not rows:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        else:
            raise ConfigurationError(f"ledger: unsupported database {self.engine.dialect.name}")
        stmt = insert(table)
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=update), rows)


def _pending_rows(pending: Sequence[tuple[int, str, str]], known: dict[str, list[Key]], loaded: dict[str, str]
                  ) -> list[tuple[str, str, str, str]]:
    """(dataset_id, event_id, event_name, batch_id) for every key of the unindexed batches `pending` (seq,
    batch_id, dataset_id in seq order), in that order: a key carried twice appears twice, the later batch last.
    A batch's keys come from `known` (this process's) or its keys row's JSON in `loaded`."""
    rows: list[tuple[str, str, str, str]] = []
    for _, batch_id, dataset_id in pending:
        keys = known.get(batch_id)
        rows.extend([(dataset_id, event_id, name, batch_id)
                     for name, event_id in (keys if keys is not None else orjson.loads(loaded.get(batch_id, "[]")))])
    return rows


def _index_rows(pending: Sequence[tuple[int, str, str]], known: dict[str, list[Key]], loaded: dict[str, str]
                ) -> list[tuple[str, str, str, str]]:
    """`_pending_rows` with one row per key, the later batch winning (PostgreSQL's upsert refuses a key twice in
    one statement), in key order: neighbouring keys share B-tree pages."""
    carrier = {row[:3]: row[3] for row in _pending_rows(pending, known, loaded)}
    return [(*key, batch_id) for key, batch_id in sorted(carrier.items())]


_EVENT_ID = operator.itemgetter(1)


def _in_key_order(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
    """`rows` about in key order, so that neighbouring keys share B-tree pages: a stable sort on the event id's
    first 32 characters, in numpy. Sorting the tuples in Python cost four times what it costs alone once they lay
    scattered over a busy process's heap (~2 CPU-s per million events, measured). The order only saves pages:
    equal keys keep theirs, the later batch last, so its upsert wins."""
    if len(rows) < 2:
        return rows
    order = np.argsort(np.array(list(map(_EVENT_ID, rows)), dtype="U32"), kind="stable")  # U32 truncates
    return list(map(rows.__getitem__, order.tolist()))


class _Overlay:
    """The keys of one dataset's unindexed batches as `carrier` (key -> the batch that last carried it), kept
    up to date across reads: new batches are added in commit order; after a flush (batches gone) it is rebuilt."""

    def __init__(self) -> None:
        self.keys_of: dict[str, list[Key]] = {}  # batch_id -> its keys (this process's batches, and those read)
        self.carrier: dict[Key, str] = {}
        self._applied: list[tuple[int, str]] = []  # (seq, batch_id) folded into `carrier`, in seq order

    def update(self, pending: list[tuple[int, str]], load: Any) -> None:
        applied = self._applied
        if applied and pending[:len(applied)] != applied:  # a flush took some: start again from what is left
            self.carrier, applied = {}, []
            self.keys_of = {b: self.keys_of[b] for _, b in pending if b in self.keys_of}
        fresh = pending[len(applied):]
        need = [b for _, b in fresh if b not in self.keys_of]
        if need:
            for batch_id, text in load(need).items():
                self.keys_of[batch_id] = [(name, event_id) for name, event_id in orjson.loads(text)]
        for _, batch_id in fresh:
            self.carrier.update(dict.fromkeys(self.keys_of.get(batch_id, ()), batch_id))
        self._applied = pending


class _SqliteFast:
    """Plain sqlite3 connections for the per-batch calls on a file ledger (one writer, one reader).

    Same statements and transactions as the SQLAlchemy path (BEGIN IMMEDIATE, WAL, busy timeout), without its
    per-call overhead, which held the GIL long enough to slow the upload threads down.
    """

    def __init__(self, path: str) -> None:
        self._writer = _connect(path)
        # A batch's 1,000 keys land on ~1,000 different leaf pages of the events B-tree (event ids are not in
        # key order): with SQLite's default 2 MB page cache nearly each one is read back from the OS first. 64 MB
        # (the leaves of ~700k events) took a quarter off mark_sending's CPU at 600k events (bench/README.md).
        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._reader = _connect(path)
        self._read_lock = threading.Lock()

    @classmethod
    def for_engine(cls, engine: Engine) -> _SqliteFast | None:
        url = engine.url
        database = url.database or ""
        if engine.dialect.name != "sqlite" or database in ("", ":memory:") or database.startswith("file:") \
                or url.query:
            return None
        return cls(database)

    def read(self, dataset_id: str, ids: list[str], chunk: int) -> tuple[list[Any], list[Any], Any]:
        """(name, id, state) of the indexed `ids`, the unindexed batches (seq, batch_id, state), and a loader of
        their keys rows. One statement per `chunk` ids, its answer one JSON row: a single statement reads one
        snapshot (a flush by another process is seen wholly or not at all), and each row returned would release
        and retake the GIL, a wait of up to the switch interval while other threads run (most of the main
        thread's time in lookups, measured)."""
        indexed: list[Any] = []
        pending: list[Any] = []
        with self._read_lock:
            several = len(ids) > chunk  # then one transaction around them, for one snapshot
            if several:
                self._reader.execute("BEGIN")
            try:
                for start in range(0, max(len(ids), 1), chunk):
                    found, unindexed = self._reader.execute(_SQLITE_READ, (
                        dataset_id, orjson.dumps(ids[start:start + chunk]).decode(), dataset_id)).fetchone()
                    indexed.extend(orjson.loads(found))
                    pending = orjson.loads(unindexed)
            finally:
                if several:
                    self._reader.execute("COMMIT")
        return indexed, pending, self._keys_rows

    def _keys_rows(self, batch_ids: list[str]) -> dict[str, str]:
        """The keys rows (JSON text) of these batches (never deleted or changed: a batch id names its keys)."""
        with self._read_lock:
            return dict(self._reader.execute(_SQLITE_KEYS_ROWS, (orjson.dumps(batch_ids).decode(),)))

    def flush(self, now: float, known: dict[str, list[Key]]) -> None:
        """Every unindexed batch's keys into capi_ledger_events, about in key order (neighbours share leaf
        pages), a later batch winning (one upsert per row, in batch order); their unindexed rows deleted; one
        transaction (the caller holds the lock)."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            pending = conn.execute("SELECT seq, batch_id, dataset_id FROM capi_ledger_unindexed ORDER BY seq").fetchall()
            if pending:
                need = [b for _, b, _ in pending if b not in known]
                loaded = dict(conn.execute(_SQLITE_KEYS_ROWS, (orjson.dumps(need).decode(),))) if need else {}
                conn.executemany(_SQLITE_UPSERT_EVENTS,
                                 [(*row, now) for row in _in_key_order(_pending_rows(pending, known, loaded))])
                conn.execute("DELETE FROM capi_ledger_unindexed WHERE seq <= ?", (pending[-1][0],))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def write(self, statements: list[tuple[str, Any, bool]]) -> None:
        """Run `(sql, params, many)` statements in one BEGIN IMMEDIATE transaction (the caller holds the lock)."""
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params, many in statements:
                if many:
                    conn.executemany(sql, params)
                else:
                    conn.execute(sql, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    _pragmas(conn)
    return conn


def _pragmas(dbapi_conn: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # NORMAL in WAL mode survives a process crash (kill -9); only power loss may drop the last commits
    cur.execute("PRAGMA synchronous=NORMAL")
    # In WAL mode with NORMAL, fsync happens only at checkpoints. A batch of 1,000 events with random keys dirties
    # ~1,000 pages (4 MB of WAL), so SQLite's default (checkpoint every 1,000 pages) fsynced after every batch:
    # most of the upload's wall time at a million events. Checkpoint every 64 MB instead; the WAL file is cut
    # back to that size after each one. Crash safety is unchanged (it does not depend on checkpoints).
    cur.execute("PRAGMA wal_autocheckpoint=16384")
    cur.execute("PRAGMA journal_size_limit=67108864")
    cur.close()


_SQLITE_UPSERT_BATCH = (
    "INSERT INTO capi_ledger_batches (batch_id, dataset_id, state, events, fbtrace_id, reason, updated_at) "
    "VALUES (?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (batch_id) DO UPDATE SET dataset_id = excluded.dataset_id, "
    "state = excluded.state, events = excluded.events, fbtrace_id = NULL, reason = NULL, "
    "updated_at = excluded.updated_at")
_SQLITE_UPSERT_KEYS = (
    "INSERT INTO capi_ledger_batch_keys (batch_id, event_keys) VALUES (?, ?) "
    "ON CONFLICT (batch_id) DO UPDATE SET event_keys = excluded.event_keys")
_SQLITE_READ = (
    "SELECT (SELECT json_group_array(json_array(e.event_name, e.event_id, b.state)) FROM capi_ledger_events e "
    "        JOIN capi_ledger_batches b ON b.batch_id = e.batch_id "
    "        WHERE e.dataset_id = ? AND e.event_id IN (SELECT value FROM json_each(?))), "
    "       (SELECT json_group_array(json_array(seq, batch_id, state)) FROM ("
    "        SELECT u.seq, u.batch_id, b.state FROM capi_ledger_unindexed u "
    "        JOIN capi_ledger_batches b ON b.batch_id = u.batch_id WHERE u.dataset_id = ? ORDER BY u.seq))")
_SQLITE_KEYS_ROWS = ("SELECT batch_id, event_keys FROM capi_ledger_batch_keys "
                     "WHERE batch_id IN (SELECT value FROM json_each(?))")  # ? = the batch ids as a JSON array
_SQLITE_INSERT_UNINDEXED = "INSERT INTO capi_ledger_unindexed (batch_id, dataset_id) VALUES (?, ?)"
_SQLITE_UPSERT_EVENTS = (
    "INSERT INTO capi_ledger_events (dataset_id, event_id, event_name, batch_id, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (dataset_id, event_id, event_name) DO UPDATE SET batch_id = excluded.batch_id, "
    "updated_at = excluded.updated_at")


def _tune_sqlite(engine: Engine) -> None:
    """WAL (readers never block the writer), a busy timeout, and BEGIN IMMEDIATE for every transaction."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves (pysqlite's own BEGIN is deferred)
        _pragmas(dbapi_conn)

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        immediate = conn.get_execution_options().get("capi_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
