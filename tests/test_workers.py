"""workers.py: pass 2 in worker processes gives what one process gives, byte for byte; closing mid-run ends them."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import pytest

from capi_pipeline import extract
from capi_pipeline.config import load_pipeline
from capi_pipeline.payload import block_size, blocks, request_data
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


def _in_process(cfg, tasks) -> list[bytes]:
    seen, out = SeenEvents(), []
    for label, first, data, rejected in tasks:
        chunk = extract.Chunk(file=label, first_row=first, frame=extract.to_frame(data))
        built = transform_chunk(cfg, chunk, rejected, RunStats(pipeline=cfg.name, date=""), None,
                                options=normalize_options(cfg), rule_settings=rule_settings_for(cfg), seen=seen,
                                now=NOW)
        out += [orjson.dumps(request_data([b])) for b in blocks(built, block_size(cfg.batching.size))]
    return out


def test_worker_blocks_are_the_one_process_blocks_byte_for_byte(sample) -> None:
    cfg, tasks = sample
    assert len(tasks) >= 4
    with_pool = _pool(cfg, 2)
    try:
        got = [bytes(b.bodies.data) for r in with_pool.transform(tasks, seen=SeenEvents(), now=NOW)
               for b in r.blocks()]
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
