"""workers.py: pass 2 in worker processes gives what one process gives, byte for byte; closing mid-run ends them."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import pytest

from capi_pipeline import extract
from capi_pipeline.config import load_pipeline
from capi_pipeline.payload import EventChunk
from capi_pipeline.pipeline import normalize_options, rule_settings_for, transform_chunk
from capi_pipeline.report import RunStats
from capi_pipeline.rules import SeenEvents
from capi_pipeline.sample import generate
from capi_pipeline.workers import TransformPool

NOW = int(dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc).timestamp())
DAY = dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    smp = generate("offline", 3000, DAY, tmp_path_factory.mktemp("wh"), seed=11, bad_rate=0.1, part_rows=1500)
    cfg = load_pipeline(smp.pipeline_path)
    tasks = [(extract.display_name(f, cfg.base_dir), first, data, set())
             for f in smp.files for first, data in extract.read_raw(f, cfg.source.format, 700)]
    return cfg, tasks


def _pool(cfg, n: int) -> TransformPool:
    return TransformPool(n, {"cfg": cfg, "contract": None, "options": normalize_options(cfg),
                             "rule_settings": rule_settings_for(cfg)})


def _in_process(cfg, tasks) -> list[tuple[list, list, list, bytes]]:
    seen, out = SeenEvents(), []
    for label, first, data, rejected in tasks:
        chunk = extract.Chunk(file=label, first_row=first, frame=extract.to_frame(data))
        built = transform_chunk(cfg, chunk, rejected, RunStats(pipeline=cfg.name, date=""), None,
                                options=normalize_options(cfg), rule_settings=rule_settings_for(cfg), seen=seen,
                                now=NOW)
        out += [(b.keys(), b.files, b.rows, bytes(b.bodies.data)) for b in built.blocks()]
    return out


def test_worker_blocks_are_the_one_process_blocks_byte_for_byte(sample) -> None:
    cfg, tasks = sample
    assert len(tasks) >= 4
    with_pool = _pool(cfg, 2)
    try:
        got = [(b.keys(), b.files, b.rows, bytes(b.bodies.data))
               for r in with_pool.transform(tasks, seen=SeenEvents(), now=NOW) for b in r.events.blocks()]
    finally:
        with_pool.close()
    expected = _in_process(cfg, tasks)
    assert len(got) == len(expected) > 10
    assert got == expected


def test_closing_while_workers_still_send_results_returns_and_ends_them(sample) -> None:
    cfg, tasks = sample
    pool = _pool(cfg, 2)
    procs = [p for p, _ in pool.workers]
    results = pool.transform(tasks * 3, seen=SeenEvents(), now=NOW)
    next(results)  # the others are in flight, or sitting in the pipes
    started = time.monotonic()
    results.close()
    pool.close()
    assert time.monotonic() - started < 60
    assert not any(p.is_alive() for p in procs)


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 2**20 + 7])
def test_read_message_reads_what_send_bytes_framed(size: int) -> None:
    import multiprocessing as mp
    import threading

    from capi_pipeline.workers import _read_message

    ours, theirs = mp.Pipe(duplex=True)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    # a thread sends while this one reads: a message larger than the socket's buffer arrives in many pieces
    sender = threading.Thread(target=lambda: (theirs.send_bytes(data), theirs.send(("next", 1))))
    sender.start()
    got = _read_message(ours)
    assert bytes(got) == data and isinstance(got, bytearray if size < 2**20 else memoryview)
    assert ours.recv() == ("next", 1)  # the framing left the stream at the next message
    sender.join()


def test_large_messages_reuse_a_buffer_once_nothing_refers_to_it() -> None:
    from capi_pipeline.workers import _Buffers

    buffers = _Buffers(keep=2, floor=100)
    small = buffers.take(99)
    assert isinstance(small, bytearray) and len(small) == 99  # below the floor: its own, never held
    first = buffers.take(1000)
    assert isinstance(first, memoryview) and len(first) == 1000 and len(first.obj) == 1125
    first[:3] = b"abc"
    second = buffers.take(1000)
    assert second.obj is not first.obj  # the first is still referred to
    under = id(first.obj)  # (not the object: a reference would keep it busy)
    blob = first[:10]  # a view of the view (a block of a chunk) keeps the buffer busy too
    del first
    assert isinstance(buffers.take(1000), bytearray)  # both held buffers busy, no room for a third: its own
    del blob
    again = buffers.take(1100)  # free now, and it fits (1,100 <= 1,125)
    assert id(again.obj) == under and len(again) == 1100
    assert isinstance(buffers.take(1000), bytearray)  # both busy again
    del again, second
    bigger = buffers.take(5000)  # too large for the free ones: one of them is replaced
    assert len(bigger.obj) == 5625 and len(buffers._held) == 2
    buffers.clear()
    assert buffers._held == []


def test_read_message_long_form_and_ends_of_stream() -> None:
    import socket
    import struct
    from multiprocessing.connection import Connection

    from capi_pipeline.workers import _read_message

    def pair(raw: bytes) -> Connection:
        a, b = socket.socketpair()
        b.sendall(raw)
        b.close()
        return Connection(a.detach())

    # the framing send_bytes uses above 2 GiB: -1, then an 8-byte length
    assert bytes(_read_message(pair(struct.pack("!i", -1) + struct.pack("!Q", 3) + b"abc"))) == b"abc"
    with pytest.raises(EOFError):  # the sender closed between messages
        _read_message(pair(b""))
    with pytest.raises(OSError, match="middle of a message"):  # ... or in the middle of one
        _read_message(pair(struct.pack("!i", 10) + b"abc"))
    with pytest.raises(OSError, match="middle of a message"):
        _read_message(pair(b"\x00\x00"))


def test_messages_carry_arrow_columns_out_of_band_and_back_equal() -> None:
    import multiprocessing as mp
    import struct
    import threading

    import numpy as np
    import pyarrow as pa

    from capi_pipeline.workers import _read_message, _recv_message, _send_message

    batch = pa.record_batch({"email": ["a@x.com", None, "b@y.org"] * 50_000, "value": [1.5, None, 3.0] * 50_000})
    msg = ("transform", 7, ("part-0.parquet", 2, batch, {5, 9}), 1_700_000_000, np.array([True, False] * 3))
    ours, theirs = mp.Pipe(duplex=True)
    sender = threading.Thread(target=lambda: (_send_message(theirs, msg), _send_message(theirs, ("stop",)),
                                              _send_message(theirs, msg)))
    sender.start()
    got = _recv_message(ours)
    assert got[:2] == msg[:2] and got[2][:2] == msg[2][:2] and got[2][3] == {5, 9} and got[3] == msg[3]
    assert got[2][2].equals(batch) and got[4].tolist() == msg[4].tolist()
    assert _recv_message(ours) == ("stop",)
    # on the wire: the pickle with its buffer count first, then the columns' buffers, each a frame of its own
    first = _read_message(ours)
    (count,) = struct.unpack_from("!I", first)
    assert count >= 4 and len(first) < 2_000  # validity bitmaps, offsets, data: none copied into the pickle
    assert sum(len(_read_message(ours)) for _ in range(count)) >= batch.nbytes - 64
    sender.join()


def test_recv_message_ends_of_stream() -> None:
    import pickle
    import socket
    import struct
    from multiprocessing.connection import Connection

    from capi_pipeline.workers import _recv_message

    def pair(frames: list[bytes]) -> Connection:
        a, b = socket.socketpair()
        b.sendall(b"".join(struct.pack("!i", len(f)) + f for f in frames))
        b.close()
        return Connection(a.detach())

    with pytest.raises(EOFError):
        _recv_message(pair([]))
    # two buffers announced, one sent: the sender died in the middle of the message
    with pytest.raises(OSError, match="middle of a message"):
        _recv_message(pair([struct.pack("!I", 2) + pickle.dumps(("x",), protocol=5), b"abc"]))


def test_arrow_pool_sets_the_default_pool_where_pyarrow_has_it() -> None:
    import subprocess
    import sys

    code = ("import pyarrow as pa; from capi_pipeline.workers import _arrow_pool, ARROW_POOL_CONTRACT; "
            "before = pa.default_memory_pool().backend_name; _arrow_pool('no_such'); "
            "kept = pa.default_memory_pool().backend_name; _arrow_pool(ARROW_POOL_CONTRACT); "
            "print(before, kept, pa.default_memory_pool().backend_name)")
    before, kept, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split()
    assert kept == before  # an allocator pyarrow lacks: the default stays
    assert after == "jemalloc"  # pass 1's workers (the Linux wheels ship jemalloc)


def test_a_chunk_results_json_travels_out_of_band_and_arrives_whole() -> None:
    import multiprocessing as mp
    import struct
    import threading

    from capi_pipeline.workers import ChunkResult, _read_message, _recv_message, _send_message

    bodies = [{"event_name": "Purchase", "event_id": str(i), "user_data": {"em": ["a" * 64]}} for i in range(3000)]
    blob = bytearray()
    ends = []
    for start in range(0, 3000, 125):
        blob += orjson.dumps(bodies[start:start + 125])
        ends.append(len(blob))
    events = EventChunk(names=["Purchase"] * 3000, ids=[str(i) for i in range(3000)], files=["f"] * 3000,
                        rows=list(range(2, 3002)), blob=blob, ends=ends, block=125)
    result = ChunkResult(seq=4, stats=None, quarantine=[], events=events)
    ours, theirs = mp.Pipe(duplex=True)
    sender = threading.Thread(target=lambda: (_send_message(theirs, ("done", 4, result)),
                                              _send_message(theirs, ("done", 4, result))))
    sender.start()
    kind, seq, got = _recv_message(ours)
    assert (kind, seq, got.events.ids, got.events.ends) == ("done", 4, events.ids, ends)
    assert isinstance(got.events.blob, bytearray) and got.events.blob == blob
    assert [body for b in got.events.blocks() for body in b.bodies.decoded()] == bodies
    first = _read_message(ours)  # the second copy, frame by frame: the JSON is not inside the pickle
    assert struct.unpack_from("!I", first) == (1,) and len(first) < len(blob) / 4
    assert _read_message(ours) == blob
    sender.join()


def test_trim_over_budget_then_only_after_the_resident_set_grew_by_a_step(monkeypatch) -> None:
    from capi_pipeline import workers

    mib = 2**20
    rss = iter([100, 600, 590, 590, 640, 700, 660, 760, 700])  # MiB: each check, and the reading after a trim
    trims = []

    class Libc:
        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return 1

    monkeypatch.setattr(workers, "_rss_bytes", lambda: next(rss) * mib)
    monkeypatch.setattr(workers, "_c_library", lambda: Libc())
    monkeypatch.setattr(workers, "_trimmed_at", 0)
    workers._trim(above=512 * mib)  # 100: under the budget
    assert trims == []
    workers._trim(above=512 * mib)  # 600: over it -> trim, 590 after
    assert len(trims) == 1 and workers._trimmed_at == 590 * mib
    workers._trim(above=512 * mib)  # 590, then 640: live data, not yet 64 MiB more than after the last trim
    workers._trim(above=512 * mib)
    assert len(trims) == 1
    workers._trim(above=512 * mib)  # 700 > 590 + 64 -> trim, 660 after
    assert len(trims) == 2 and workers._trimmed_at == 660 * mib
    workers._trim(above=512 * mib)  # 760 > 660 + 64 -> trim
    assert len(trims) == 3


def test_a_worker_keeps_its_heap_between_chunks(monkeypatch) -> None:
    from capi_pipeline import workers

    calls = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(workers, "_c_library", lambda: Libc())
    workers._keep_heap()
    assert calls == [(-1, workers.HEAP_KEEP), (-3, workers.HEAP_MMAP)]  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    monkeypatch.setattr(workers, "_c_library", lambda: False)  # no C library found: nothing to do
    workers._keep_heap()
