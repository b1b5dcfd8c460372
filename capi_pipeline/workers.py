"""Pass 2 on several CPU cores: `transform_chunk` runs in worker processes while the main process uploads.

    main, feeder thread                        worker k % n (spawned process)
      read_raw chunk k (Arrow batch)
      its duplicate mask (SeenEvents, from
        the key columns, in chunk order)
      chunk k + mask ───────────────────────>  transform_chunk(chunk k): mapping, rules, normalize + hash,
                                                  payload
      <────── stats delta, quarantine records, events as JSON bytes (one array per block of events)
    main generator: results in chunk order -> payload.EventBlock(bodies=JsonArray) -> upload.deliver

Same chunks, same order, same duplicate decisions as the single-process path (the main process decides a
chunk's duplicates before sending it, from `mapping.event_key_texts` of only its key columns), so event ids, batch
ids, the quarantine and the report do not depend on the number of workers. Memory stays flat: at most `ahead`
chunks are read but not yet consumed; pass 2 reads `pipeline.transform_rows` rows per chunk (at most 25,000)
and a chunk's JSON goes back as raw bytes (out of band, never copied into a pickle), as the chunk's Arrow
columns go out (`_send_message`: pickle protocol 5, each buffer a frame of its own). The uploader joins the
blocks' JSON arrays into request bodies, so events are never rebuilt as dicts, nor handled one by one, in the
main process.

Pass 1 (`validate_tasks`) hands a worker up to `VALIDATE_ROWS` rows of consecutive chunks of one file at once:
one Great Expectations call for all of them (GX costs mostly per call), with the contract's duplicate check
still per chunk, so quarantine and counts are those of one call per chunk.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import pickle
import queue
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from capi_pipeline.payload import EventChunk
from capi_pipeline.rules import KnownDuplicates, duplicate_mask

__all__ = ["ChunkResult", "TransformPool", "ValidateResult", "WorkerError", "chunk_tasks",
           "validate_tasks"]

log = logging.getLogger("capi_pipeline.workers")
_POLL_S = 0.2
_DOCS_SEQ = -1
_PER_WORKER = 2  # chunks a worker holds at most: the one it transforms and the next
# Freed memory goes back to the OS (`_trim`) only when a process's resident set is over its budget after a
# task (a worker) or a consumed chunk (the main process); under it, the next chunk reuses the pages instead of
# faulting them in again. Measured on the offline sample without any trimming: pass 2's workers peak near 330
# MiB (25,000-row chunks), pass 1's (Great Expectations) near 480 MiB, the main process near 540 MiB while it
# uploads. So pass 1 trims, pass 2 mostly does not, and the sum stays within the 1.5 GB of the performance issue.
WORKER_RSS_BUDGET = 384 * 2**20
MAIN_RSS_BUDGET = 512 * 2**20


class WorkerError(RuntimeError):
    """A worker process died or failed without a picklable exception (the message carries its traceback)."""


@dataclass
class ChunkResult:
    """What one chunk's transform hands back: its stats and quarantine records, and its events (their JSON goes
    out of band, `EventChunk.__reduce_ex__`)."""

    seq: int
    stats: Any  # report.RunStats delta of this chunk
    quarantine: list[dict[str, Any]]
    events: EventChunk


# ---------------------------------------------------------------------------------------------- worker side

@dataclass
class _Failure:
    error: BaseException


class _Records:
    """Collects quarantine records in the worker (the main process writes them, in chunk order)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)


def _serve(conn: Connection, init: dict[str, Any]) -> None:
    """Worker process main loop: ("validate" | "transform" | "docs", seq, payload, now) tasks until ("stop",)."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    if init.get("contract") is not None:
        _arrow_pool(ARROW_POOL_CONTRACT)
    _keep_heap()
    # a thread drains the pipe, so the main process never blocks sending a task while this process is
    # itself blocked sending a result (both pipe buffers full: a deadlock)
    inbox: queue.Queue[Any] = queue.Queue()

    def receive() -> None:
        while True:
            try:
                msg = _recv_message(conn)
            except (EOFError, OSError):
                msg = ("stop",)
            inbox.put(msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=receive, name="capi-worker-inbox", daemon=True).start()
    validator = None
    if init.get("contract") is not None:
        # imported up front (GX takes seconds): it overlaps with the main process reading the first chunks
        from capi_pipeline.contracts import ContractValidator

        validator = ContractValidator(init["contract"])
    # No cyclic collection while a chunk is transformed (its millions of new dicts and lists would be scanned
    # again and again; they form no cycles): one collection after each task instead, and what the imports
    # built is never scanned again.
    from capi_pipeline import pipeline  # noqa: F401 - imported before the freeze below, as pass 2 needs it

    gc.disable()
    gc.freeze()
    while True:
        msg = inbox.get()
        kind = msg[0]
        if kind == "stop":
            return
        seq = msg[1]
        try:
            if kind == "transform":
                result: Any = _transform(msg, init)
            elif kind == "validate":
                result = _validate(validator, msg)
            elif kind == "docs":
                result = _docs(validator, msg)
            else:
                raise WorkerError(f"unknown task {kind!r}")
            del msg
            _send_message(conn, ("done", seq, result))
            del result
            gc.collect()  # the collector's only pass per task: the chunk's objects are gone, few are left to scan
            _trim(above=WORKER_RSS_BUDGET)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the main process
            text = traceback.format_exc()
            try:
                _send_message(conn, ("error", seq, exc, text))
            except Exception:  # the exception itself does not pickle, or the main process is gone
                try:
                    _send_message(conn, ("error", seq, None, text))
                except Exception:
                    return
            if not isinstance(exc, Exception):
                raise


def _keep_heap() -> None:
    """glibc keeps what a chunk freed for the next one: its heap top is handed back only above `HEAP_KEEP`, and
    allocations up to `HEAP_MMAP` come from the heap instead of their own mapping (unmapped when freed, faulted
    in again next time). Without it a fresh worker took three 200k-row passes to stop growing its heap again
    and again (system CPU 0.38, 0.24, 0.07 s per pass; with it 0.24, 0.06). `_trim` still hands memory back
    over the worker's budget. Nothing where the C library is not glibc."""
    libc = _c_library()
    if libc and hasattr(libc, "mallopt"):
        libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP)
        libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP)


HEAP_KEEP = 512 * 2**20
HEAP_MMAP = 32 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def _trim(above: int) -> None:
    """Hand freed memory back to the OS, if this process's resident set is over `above` bytes and has grown by
    `TRIM_STEP` since the last trim.

    pandas' many small string objects fragment glibc's heap, and Arrow's pool keeps freed buffers; both
    otherwise let the resident set creep up chunk after chunk. A worker trims only over its budget: memory
    handed back is faulted in again by the next chunk (~100k page faults per 100,000 rows, a sixth of a worker's
    CPU, when it trimmed after every chunk; bench/README.md). Where live data keeps a process over its budget
    (the main process holds chunks in flight and the ledger's keys), a trim after every chunk would cost ~4 ms
    each and hand back nothing: the next one waits until the resident set has grown by `TRIM_STEP` again.
    """
    global _trimmed_at
    rss = _rss_bytes()
    if rss is not None and rss <= max(above, _trimmed_at + TRIM_STEP):
        return
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except Exception:  # an old pyarrow without release_unused
        pass
    libc = _c_library()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    _trimmed_at = _rss_bytes() or 0


TRIM_STEP = 64 * 2**20
_trimmed_at = 0  # this process's resident set right after its last trim


# Arrow's allocator in pass 1's workers. Great Expectations filters and takes the batch's columns again and again;
# with pyarrow's default (mimalloc) the freed memory went back to the OS at once and was faulted in again by the
# next take: pass 1's workers spent a third of their CPU in the kernel (1.7-2.2 s system CPU per 1M rows, 0.2-0.4
# with jemalloc). Pass 2's workers keep the default, which measured as well or better there (bench/README.md).
ARROW_POOL_CONTRACT = "jemalloc"


def _arrow_pool(name: str) -> None:
    """Make `name` (jemalloc, mimalloc, system) this process's default Arrow memory pool, if pyarrow has it."""
    import pyarrow as pa

    try:
        pool = getattr(pa, f"{name}_memory_pool")()
    except (AttributeError, NotImplementedError):  # a pyarrow built without it: keep the default
        log.debug("Arrow memory pool %r not available; keeping %s", name, pa.default_memory_pool().backend_name)
        return
    pa.set_memory_pool(pool)


def _send_message(conn: Connection, obj: Any) -> None:
    """Send `obj` pickled, its large buffers (a chunk's Arrow columns) out of band, as they are.

    A chunk's ~8 MB of columns pickled in band were copied into one new bytes object per task (4-8 ms, mostly
    page faults) and copied out again on the other side; protocol 5 hands them over as buffers to write (0.1 ms).
    Frames: the pickle (after a 4-byte count of buffers), then each buffer; `_recv_message` reads them back.
    """
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)  # (pickle refuses non-contiguous ones)
    raws = [b.raw() for b in buffers]
    conn.send_bytes(struct.pack("!I", len(raws)) + head)
    for raw in raws:
        conn.send_bytes(raw)


def _recv_message(conn: Connection) -> Any:
    """One object sent by `_send_message` (EOFError if the stream ended before it, OSError inside it)."""
    first = _read_message(conn)
    (count,) = struct.unpack_from("!I", first)
    try:
        buffers = [_read_message(conn) for _ in range(count)]
    except EOFError:
        raise OSError("end of file in the middle of a message") from None
    return pickle.loads(memoryview(first)[4:], buffers=buffers)


def _read_message(conn: Connection) -> bytearray | memoryview:
    """One message of `conn`, framed as `Connection.send_bytes` frames it, read straight into one buffer.

    `Connection.recv_bytes` asks `os.read` for all that remains on every call (an allocation of up to the
    message's size, of which one socket buffer's worth gets filled) and copies each piece into a growing
    BytesIO. Over the ~1 GB of events' JSON per million rows that cost the receiving process ~300k page faults
    and ~0.7 s of system CPU, and the sender it kept waiting more (bench/README.md).
    """
    if not hasattr(os, "readv"):  # not a POSIX system: the standard reader
        return bytearray(conn.recv_bytes())
    fd = conn.fileno()
    (size,) = struct.unpack("!i", _read_exactly(fd, 4))
    if size == -1:  # over 2 GiB: an 8-byte length follows
        (size,) = struct.unpack("!Q", _read_exactly(fd, 8))
    return _read_exactly(fd, size, started=True)


def _read_exactly(fd: int, n: int, *, started: bool = False) -> bytearray | memoryview:
    """`n` bytes from `fd`; EOFError if it ends before a message began, OSError if in the middle of one. A large
    message lands in a reused buffer (`_BUFFERS`) and comes back as a view of its first `n` bytes."""
    buf = _BUFFERS.take(n)
    with memoryview(buf) as view:
        got = 0
        while got < n:
            k = os.readv(fd, [view[got:]])
            if k == 0:
                if got == 0 and not started:
                    raise EOFError
                raise OSError("end of file in the middle of a message")
            got += k
    return buf


class _Buffers:
    """Receive buffers for large messages (a chunk's events' JSON, ~1 MB per 1,000 events), each reused once
    nothing refers to it any more: the blocks of a chunk are views into its buffer until their requests are
    built.

    A fresh `bytearray` per message is zero-filled and faulted in page by page (~5,500 page faults per 25,000
    events, ~45k per 200k rows in the pool run of bench/transform.py); a reused one is already resident. At most
    `keep` buffers are held (`clear()` lets them go: `TransformPool.close`); messages below `floor` bytes get
    their own.
    """

    def __init__(self, keep: int = 8, floor: int = 1 << 20) -> None:
        self.keep, self.floor = keep, floor
        self._held: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, n: int) -> bytearray | memoryview:
        if n < self.floor:
            return bytearray(n)
        with self._lock:
            held = self._held
            # free: referenced by this list alone (a view of a buffer holds a reference to it)
            free = [i for i in range(len(held)) if sys.getrefcount(held[i]) == 2]
            fits = [i for i in free if len(held[i]) >= n]
            if fits:
                return memoryview(held[min(fits, key=lambda i: len(held[i]))])[:n]
            if len(held) >= self.keep and free:
                held.pop(free[0])  # a free one too small: replaced by one that fits
            if len(held) >= self.keep:
                return bytearray(n)
            buf = bytearray(n + n // 8)  # room for the next chunk's slightly larger JSON
            held.append(buf)
            return memoryview(buf)[:n]

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


_BUFFERS = _Buffers()


def _rss_bytes() -> int | None:
    """This process's resident set now (Linux `/proc/self/statm`), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_libc: Any = None  # the C library once loaded; False where there is none


def _c_library() -> Any:
    """This process's C library (ctypes), loaded once; False where none is found."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name) if name else False
    return _libc


def _transform(msg: Any, init: dict[str, Any]) -> ChunkResult:
    from capi_pipeline import extract
    from capi_pipeline.pipeline import transform_chunk
    from capi_pipeline.report import RunStats

    _, seq, (label, first_row, data, rejected), now, dup = msg
    cfg = init["cfg"]
    chunk = extract.Chunk(file=label, first_row=first_row, frame=extract.to_frame(data))
    del data
    stats = RunStats(pipeline=cfg.name, date="")
    records = _Records()
    events = transform_chunk(cfg, chunk, rejected, stats, records, options=init["options"],
                             rule_settings=init["rule_settings"], seen=KnownDuplicates(dup), now=now)
    return ChunkResult(seq=seq, stats=stats, quarantine=records.records, events=events)


@dataclass
class ValidateResult:
    """Pass 1 for one chunk: the contract's rejections and the GX result kept for Data Docs (pickled)."""

    file_index: int
    rows: int
    rejections: list[dict[str, Any]]
    docs_entry: bytes | None


def _validate(validator: Any, msg: Any) -> ValidateResult:
    from capi_pipeline import extract

    _, _, (file_index, label, first_row, data, check_table), _ = msg
    del msg
    parts = data if isinstance(data, list) else [data]
    del data
    sizes = [p.num_rows if hasattr(p, "num_rows") else len(p) for p in parts]
    if check_table:  # the table-level check sees the file's first chunk, as in one process
        validator.check_table(extract.to_frame(parts[0]), file=label)
    frame = _one_frame(parts)
    del parts
    res = validator.validate(frame, file=label, first_row=first_row, chunk_sizes=sizes)
    # the validator keeps each chunk's GX result for Data Docs; here they go to the main process instead
    entry = pickle.dumps(validator._docs.pop()) if validator._docs else None
    validator._docs_stored = min(validator._docs_stored, len(validator._docs))
    return ValidateResult(file_index=file_index, rows=len(frame), rejections=res.rejections, docs_entry=entry)


def _one_frame(parts: list[Any]) -> Any:
    """One frame (index 0..n-1) of consecutive `read_raw` chunks of one file."""
    from capi_pipeline import extract

    if len(parts) == 1:
        return extract.to_frame(parts[0])
    if all(hasattr(p, "num_rows") for p in parts):
        import pyarrow as pa

        try:
            return extract.to_frame(pa.Table.from_batches(parts))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # chunks whose schemas differ: pandas lines them up
            pass
    import pandas as pd

    return pd.concat([extract.to_frame(p) for p in parts], ignore_index=True)


def _docs(validator: Any, msg: Any) -> str | None:
    _, _, (out_dir, entries), _ = msg
    validator._docs = [pickle.loads(e) for e in entries]
    validator._docs_stored = 0
    path = validator.build_data_docs(Path(out_dir))
    validator._docs = []
    validator._docs_stored = 0
    return None if path is None else str(path)


# ---------------------------------------------------------------------------------------------- main side

class TransformPool:
    """`n` spawned worker processes for pass 1 (`validate`) and pass 2 (`transform`), results in task order.

    Start it early (the workers import pandas, the pipeline and GX while the main process starts up); close it
    when done. One stream at a time.
    """

    def __init__(self, n: int, init: dict[str, Any]) -> None:
        self.n, self.init = n, init
        self.workers: list[tuple[Any, Connection]] = []
        self._load: dict[int, int] = {}
        self._validated = False  # the workers ran pass 1 (they hold Great Expectations' state)
        self._docs_worker: tuple[Any, Connection] | None = None  # building the Data Docs (`start_docs`)
        self._docs_done: Any = None  # its answer, once collected
        self._spawn(n, init)

    def _spawn(self, n: int, init: dict[str, Any]) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that runs threads (uploads, GX)
        with _main_module_hidden():
            for i in range(n):
                parent, child = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=_serve, args=(child, init), name=f"capi-transform-{i}", daemon=True)
                proc.start()
                child.close()
                self.workers.append((proc, parent))
        self._load = {id(conn): 0 for _, conn in self.workers}

    def _recycle(self, n: int, init: dict[str, Any]) -> None:
        """Replace the workers by `n` fresh ones: what the old ones allocated (GX's caches, a fragmented heap)
        goes back to the OS with them."""
        self._close_workers()
        self._spawn(n, init)

    def close(self) -> None:
        self._close_workers()
        _BUFFERS.clear()
        if self._docs_worker is not None:  # never asked for (the run failed): not waited for either
            proc, conn = self._docs_worker
            self._docs_worker = None
            proc.terminate()
            proc.join(timeout=5)
            conn.close()

    def _close_workers(self) -> None:
        for proc, conn in self.workers:
            try:
                _send_message(conn, ("stop",))
            except (OSError, ValueError):
                pass
        # drain what the workers still send (a result they were busy with) so none blocks on a full pipe
        deadline = time.monotonic() + 30
        live = {conn: proc for proc, conn in self.workers}
        while live and time.monotonic() < deadline:
            for conn in wait(list(live), timeout=_POLL_S):
                try:
                    conn.recv_bytes()  # frames, not unpickled: one may be a result's raw JSON
                except (EOFError, OSError):
                    live.pop(conn).join(timeout=5)
            for conn, proc in list(live.items()):
                if not proc.is_alive():
                    live.pop(conn)
        for proc, conn in self.workers:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()
        self.workers = []

    def __enter__(self) -> TransformPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transform(self, tasks: Iterable[tuple[str, int, Any, set[int]]], *, seen: Any, now: int
                  ) -> Iterator[ChunkResult]:
        """Pass 2: `(file label, first_row, data, rejected rows)` tasks; their ChunkResults in order.

        After pass 1 the workers are replaced by fresh ones without the contract: pass 2 needs no GX, and
        the memory GX kept in pass 1 would otherwise stay in both workers all through pass 2.
        """
        if self._validated:
            self._validated = False
            # the fresh workers import while the Data Docs worker finishes; they get no task before it is done,
            # so GX's memory and a transforming worker's never add up
            self._recycle(self.n, {**self.init, "contract": None})
            self._collect_docs()
        return self._stream("transform", tasks, seen=seen, now=now)

    def validate(self, tasks: Iterable[tuple[int, str, int, Any, bool]]) -> Iterator[ValidateResult]:
        """Pass 1: `(file index, file label, first_row, data, check_table)` tasks; their results in order."""
        self._validated = True
        return self._stream("validate", tasks, seen=None, now=0)

    def start_docs(self, out_dir: Path, entries: list[bytes]) -> None:
        """Build the GX Data Docs of pass 1's results in one of pass 1's workers (GX is loaded there).

        The other workers stop at once; that one leaves the pool with the task and exits when done. Pass 2's
        fresh workers import meanwhile but get their first task after it is done (`transform`), so GX's memory
        never adds to a transforming worker's. A process of its own after pass 2 imported GX again (~2.5 s) on
        the run's critical path.
        """
        docs = (str(out_dir), list(entries))
        if not (self._validated and self.workers):  # no pass-1 worker left: a fresh one with the contract
            self._spawn(1, self.init)
        proc, conn = self.workers.pop()
        self._load.pop(id(conn), None)
        if self._validated:
            self._close_workers()  # the other pass-1 workers
        _send_message(conn, ("docs", _DOCS_SEQ, docs, 0))
        _send_message(conn, ("stop",))  # the answer is a short path: it waits in the pipe until collected
        self._docs_worker = (proc, conn)

    def _collect_docs(self) -> None:
        """Wait for `start_docs`' worker: its answer (a path, None or a failure) kept for `finish_docs`."""
        if self._docs_worker is None:
            return
        proc, conn = self._docs_worker
        self._docs_worker = None
        self._load[id(conn)] = 1
        results: dict[int, Any] = {}
        try:
            while _DOCS_SEQ not in results:
                self._receive(conn, results)
        except WorkerError as exc:
            results[_DOCS_SEQ] = _Failure(exc)
        finally:
            self._load.pop(id(conn), None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
            conn.close()
        self._docs_done = results[_DOCS_SEQ]

    def finish_docs(self) -> str | None:
        """The Data Docs path from `start_docs` (None when there was nothing to build); raises its failure."""
        self._collect_docs()
        result, self._docs_done = self._docs_done, None
        if isinstance(result, _Failure):
            raise result.error
        return result

    @property
    def _conns(self) -> list[Connection]:
        return [conn for _, conn in self.workers]

    def _stream(self, kind: str, tasks: Iterable[Any], *, seen: Any, now: int) -> Iterator[Any]:
        """Results of `tasks` in order. A feeder thread reads the tasks, answers the workers' duplicate questions
        and keeps at most `ahead` chunks between reading and the consumer, so the workers never wait on the
        consumer's generator (suspended while the uploader waits for free upload slots).
        """
        ahead = _PER_WORKER * len(self.workers) + 1
        out: queue.Queue[Any] = queue.Queue(maxsize=1)
        stop = threading.Event()
        feeder = threading.Thread(target=self._feed, args=(kind, iter(tasks), seen, now, ahead, out, stop),
                                  name=f"capi-{kind}-feeder", daemon=True)
        feeder.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                del item
                _trim(above=MAIN_RSS_BUDGET)  # the consumer is done with that chunk
        finally:
            stop.set()
            feeder.join()

    def _feed(self, kind: str, tasks: Iterator[Any], seen: Any, now: int, ahead: int, out: queue.Queue[Any],
              stop: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=_POLL_S)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            self._feed_loop(kind, tasks, seen, now, ahead, put, stop)
        except BaseException as exc:  # noqa: BLE001 - the consumer re-raises it
            put(exc)
            return
        put(None)

    def _feed_loop(self, kind: str, tasks: Iterator[Any], seen: Any, now: int, ahead: int, put: Any,
                   stop: threading.Event) -> None:
        conns = self._conns
        submitted = next_out = 0
        results: dict[int, Any] = {}
        exhausted = False
        while not stop.is_set():
            while not exhausted and submitted - next_out < ahead:
                # a chunk goes to a worker with at most one other waiting (not queued behind a busy worker
                # while another goes idle)
                conn = min(conns, key=lambda c: self._load[id(c)])
                if self._load[id(conn)] >= _PER_WORKER:
                    break
                try:
                    task = next(tasks)
                except StopIteration:
                    exhausted = True
                    break
                if kind == "transform":
                    # duplicates are decided here, in chunk order (the first occurrence wins, as in one process),
                    # before the chunk leaves: no worker ever waits for another's chunk
                    _send_message(conn, (kind, submitted, task, now, duplicate_mask(self.init["cfg"], seen, *task[1:])))
                else:
                    _send_message(conn, (kind, submitted, task, now))
                del task
                self._load[id(conn)] += 1
                submitted += 1
            if exhausted and next_out == submitted:
                return
            for conn in wait(conns, timeout=_POLL_S):
                self._receive(conn, results)
            while next_out in results:
                item = results.pop(next_out)
                if isinstance(item, _Failure):
                    raise item.error
                if not put(item):
                    return
                next_out += 1

    def _receive(self, conn: Connection, results: dict[int, Any]) -> None:
        try:
            msg = _recv_message(conn)
        except (EOFError, OSError):
            raise WorkerError("a worker process died (out of memory or killed?)") from None
        kind, seq = msg[0], msg[1]
        self._load[id(conn)] -= 1
        if kind == "done":
            value: Any = msg[2]
        else:
            exc, text = msg[2], msg[3]
            log.debug("worker failed on task %d:\n%s", seq, text)
            value = exc if isinstance(exc, BaseException) else WorkerError(f"worker failed on task {seq}:\n{text}")
        # a failure is raised when its turn comes: the same error as one process would meet first
        results[seq] = value if kind == "done" else _Failure(value)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawn without re-running the caller's `__main__` in the workers (they need nothing from it).

    multiprocessing re-imports the parent's main script in every spawned child; a script without an
    `if __name__ == "__main__"` guard (a notebook, an ad-hoc runner) would then start the run again there.
    """
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if main is not None and hasattr(main, k)}
    try:
        for k in saved:
            if k == "__file__":
                delattr(main, k)
            else:
                setattr(main, k, None)
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


VALIDATE_ROWS = 50_000  # rows per GX call in pass 1 (consecutive chunks of one file): GX costs mostly per call,
# but a worker peaks at ~250 MiB + ~3.3 MiB per 1,000 rows of a call (100,000 rows: ~570-680 MiB, two at once)


def validate_tasks(cfg: Any, files: list[tuple[Path, str]], *, max_rows: int = VALIDATE_ROWS
                   ) -> Iterator[tuple[int, str, int, Any, bool]]:
    """Pass 1's chunks as worker tasks: (file index, file label, first row, raw chunks, check the table?).

    Consecutive chunks of one file go together (up to `max_rows` rows) and are validated in one GX call;
    the contract still looks for duplicates inside each chunk only, so the outcome is the same.
    """
    from capi_pipeline import extract, mapping

    for i, (path, name) in enumerate(files):
        first = True
        group: list[Any] = []
        group_first = group_rows = 0
        for first_row, data in extract.read_raw(path, cfg.source.format, cfg.source.batch_rows, name=name,
                                                delimiter=cfg.source.delimiter):
            if first and not group:  # the file's first chunk: what the pipeline YAML maps must be there
                mapping.check_mapped_columns(data.schema.names if hasattr(data, "schema") else data.columns, cfg,
                                             file=name)
            n = data.num_rows if hasattr(data, "num_rows") else len(data)
            if group and group_rows + n > max_rows:
                yield i, name, group_first, group, first
                first = False
                group = []
            if not group:
                group_first, group_rows = first_row, 0
            group.append(data)
            group_rows += n
            del data
        if group:
            yield i, name, group_first, group, first


def chunk_tasks(cfg: Any, validations: Iterable[Any]) -> Iterator[tuple[str, int, Any, set[int]]]:
    """Pass 2's chunks as worker tasks: (file label, first row, raw chunk, rows pass 1 rejected in it)."""
    from capi_pipeline import extract
    from capi_pipeline.pipeline import transform_rows

    for fv in validations:
        rejected = np.fromiter(fv.rejected_rows, dtype=np.int64, count=len(fv.rejected_rows))
        rejected.sort()
        for first_row, data in extract.read_raw(fv.path, cfg.source.format, transform_rows(cfg), name=fv.name,
                                                delimiter=cfg.source.delimiter):
            n = data.num_rows if hasattr(data, "num_rows") else len(data)
            lo, hi = np.searchsorted(rejected, [first_row, first_row + n])
            yield fv.name, first_row, data, set(rejected[lo:hi].tolist())
