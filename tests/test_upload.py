"""upload.deliver over real HTTP: the sandbox (faults, validation) and the recording fake (scripted answers)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from capi_pipeline.client import CapiClient, ClientSettings, DryRunClient, Secret, make_session
from capi_pipeline.errors import TerminalUploadError
from capi_pipeline.ledger import Ledger
from capi_pipeline.sandbox import SandboxConfig, run_sandbox
from capi_pipeline.payload import EventBlock, JsonArray
from capi_pipeline.upload import OutboundEvent, UploadSettings, batch_id_for, deliver, pack_requests
from test_client import Answer, Call, FakeGraph, graph_error  # the recording fake lives with the client tests

TOKEN = "EAAGuploadtoken9876543210zyxSECRET"
DATASET = "1000000000000001"
SCOPE = f"test/2026-11-22/{DATASET}"
FAST = dict(backoff_base_s=0.01, backoff_max_s=0.05, progress_every_s=0.0)


def outbound(n: int, *, prefix: str = "e", bad: frozenset[int] = frozenset()) -> list[OutboundEvent]:
    now = int(time.time())
    return [OutboundEvent(
        event_name="Purchase", event_id=f"{prefix}{i}", file="part-00000.parquet", row=i + 1,
        body={"event_name": "Purchase", "event_id": f"{prefix}{i}", "action_source": "physical_store",
              "event_time": now - 3600 - (200 * 86400 if i in bad else 0),
              "user_data": {"em": ["b" * 64]}, "custom_data": {"value": 10.0, "currency": "USD"}})
        for i in range(n)]


def client_for(url: str, *, timeout_s: float = 5.0, dataset_id: str = DATASET, pool: int = 4) -> CapiClient:
    return CapiClient(make_session(pool), ClientSettings(endpoint=url, api_version="v25.0", dataset_id=dataset_id,
                                                         token=Secret(TOKEN), timeout_s=timeout_s))


def no_sleep(seconds: float) -> None:
    pass


def stats(sb: Any, dataset_id: str = DATASET) -> dict[str, int]:
    return sb.stats()["datasets"].get(dataset_id, {"unique_events": 0, "duplicate_events": 0})


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(str(tmp_path / "ledger.sqlite")) as opened:
        yield opened


# ---------------------------------------------------------------------------------------------- pure parts

@pytest.mark.parametrize(("a", "b", "same"), [
    (("s", "d", [("P", "1"), ("P", "2")]), ("s", "d", [("P", "1"), ("P", "2")]), True),
    (("s", "d", [("P", "1"), ("P", "2")]), ("s2", "d", [("P", "1"), ("P", "2")]), False),
    (("s", "d", [("P", "1"), ("P", "2")]), ("s", "d2", [("P", "1"), ("P", "2")]), False),
    (("s", "d", [("P", "1"), ("P", "2")]), ("s", "d", [("P", "1"), ("P", "3")]), False),
    (("s", "d", [("P", "1"), ("P", "2")]), ("s", "d", [("L", "1"), ("P", "2")]), False),
    (("s", "d", [("P", "1"), ("P", "2")]), ("s", "d", [("P", "1"), ("P", "2"), ("P", "2")]), False),
])
def test_batch_id_is_stable(a: tuple, b: tuple, same: bool) -> None:
    first, second = batch_id_for(*a), batch_id_for(*b)
    assert len(first) == 16 and int(first, 16) >= 0
    assert (first == second) is same


def blocks(events: list[OutboundEvent], size: int) -> list[EventBlock]:
    """`events` cut into blocks of `size`, bodies as dicts (as callers of `deliver` may hand them)."""
    return [EventBlock.of(events[start:start + size]) for start in range(0, len(events), size)]


def json_blocks(events: list[OutboundEvent], sizes: list[int]) -> list[EventBlock]:
    """`events` cut into blocks of `sizes` (in turn), bodies serialized as a worker sends them."""
    out, start = [], 0
    while start < len(events):
        size = sizes[len(out) % len(sizes)]
        block = EventBlock.of(events[start:start + size])
        out.append(block._replace(bodies=JsonArray(orjson.dumps(block.bodies), block.size)))
        start += size
    return out


@pytest.mark.parametrize(("items", "size", "expected"), [
    ([125] * 10 + [40] + [125] * 3, 1000, [1000, 665]),  # a short block (a chunk's last) is packed with the next
    ([125] * 8, 1000, [1000]),
    ([100, 100, 100], 250, [200, 100]),  # never splits a block that fits
    ([600], 250, [250, 250, 100]),  # a block longer than a request is cut
    ([0, 3, 0], 5, [3]),
    ("loose 2500", 1000, [1000, 1000, 500]),  # single events: requests of exactly the batch size
    ("loose 3 + [125]", 1000, [128]),
])
def test_requests_are_whole_blocks(items: Any, size: int, expected: list[int]) -> None:
    events = outbound(3000)
    if items == "loose 2500":
        stream: list[Any] = events[:2500]
    elif items == "loose 3 + [125]":
        stream = events[:3] + list(blocks(events[3:128], 125))
    else:
        stream, start = [], 0
        for n in items:
            stream.append(EventBlock.of(events[start:start + n]))
            start += n
    requests = list(pack_requests(iter(stream), size))
    assert [sum(b.size for b in r) for r in requests] == expected
    sent = [e for r in requests for b in r for e in b.events()]
    assert sent == events[:len(sent)] and len(sent) == sum(expected)  # every event once, in order


def test_json_blocks_are_sent_as_the_same_requests_as_their_dicts(ledger: Ledger) -> None:
    """What the worker path does: bodies never decoded, the same requests, batch ids and ledger as dicts."""
    events = outbound(2200)
    got = {}
    for kind in ("dicts", "json"):
        stream = list(blocks(events, 125)) if kind == "dicts" else json_blocks(events, [125])
        with FakeGraph() as fake:
            result = deliver(iter(stream), client=client_for(fake.url), settings=UploadSettings(**FAST),
                             ledger=None, scope=SCOPE)
        bodies = sorted((c.body for c in fake.calls), key=lambda b: int(b["data"][0]["event_id"][1:]))
        got[kind] = (bodies, sorted(fake.delivered), result.events_delivered, result.requests)
    assert got["dicts"] == got["json"]
    bodies, delivered, n, requests = got["json"]
    assert n == 2200 and requests == 3 and [len(b["data"]) for b in bodies] == [1000, 1000, 200]
    assert [e["event_id"] for b in bodies for e in b["data"]] == [e.event_id for e in events]
    assert bodies[0]["data"][0] == orjson.loads(orjson.dumps(events[0].body))


def test_json_blocks_with_sent_or_repeated_keys_go_event_by_event(ledger: Ledger) -> None:
    events = outbound(600)
    repeated = events[:300] + [events[10]] + events[300:]  # one key twice in the first request
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = client_for(sb.url)
        settings = UploadSettings(batch_size=500, **FAST)
        deliver(iter(events[:200]), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        result = deliver(iter(json_blocks(repeated, [62, 7])), client=client, settings=settings, ledger=ledger,
                         scope=SCOPE)
        assert stats(sb)["unique_events"] == 600 and stats(sb)["duplicate_events"] == 0
    assert result.events_skipped_already_sent == 200 and result.events_delivered == 400
    assert ledger.counts(DATASET) == {"sent": 600}


def test_json_blocks_bisect_to_the_bad_event(ledger: Ledger) -> None:
    bad = frozenset({17, 700})
    with run_sandbox(SandboxConfig(port=0)) as sb:
        result = deliver(iter(json_blocks(outbound(1000, bad=bad), [125])), client=client_for(sb.url),
                         settings=UploadSettings(**FAST), ledger=ledger, scope=SCOPE)
        assert stats(sb)["unique_events"] == 998
    assert (result.events_delivered, result.events_rejected) == (998, 2)
    assert sorted((r.file, r.row, r.event_id) for r in result.rejected) == [
        ("part-00000.parquet", 18, "e17"), ("part-00000.parquet", 701, "e700")]
    assert ledger.counts(DATASET) == {"sent": 998, "failed": 2}


# ---------------------------------------------------------------------------------------------- sandbox

def test_success_counts_and_progress(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Any] = []
    caplog.set_level(logging.INFO, logger="capi_pipeline.upload")
    with run_sandbox(SandboxConfig(port=0)) as sb:
        result = deliver(outbound(2500), client=client_for(sb.url), settings=UploadSettings(**FAST), ledger=None,
                         scope=SCOPE, progress=seen.append)
        assert stats(sb)["unique_events"] == 2500 and stats(sb)["duplicate_events"] == 0
    assert (result.batches, result.requests, result.events_sent, result.events_delivered) == (3, 3, 2500, 2500)
    assert (result.events_failed, result.events_rejected, result.retries, result.bisections) == (0, 0, 0, 0)
    assert len(result.fbtrace_ids) == 3
    assert seen[-1].events_delivered == 2500 and seen[-1].batches_done == 3 and seen[-1].events_seen == 2500
    assert "2500 delivered" in caplog.text


@pytest.mark.parametrize("faults", [
    "http500=0.04,http503=0.04,code1=0.04,code2=0.04,timeout=0.04,timeout_s=1.2",
    "code4=0.05,code17=0.05,code613=0.05,code80004=0.05",
])
def test_faults_deliver_every_event_exactly_once(faults: str) -> None:
    n = 4000
    with run_sandbox(SandboxConfig(port=0, faults=faults, fault_seed=1)) as sb:
        # the client's timeout far above a normal answer (~10 ms): a slow moment of a loaded CI machine must not
        # pass for an injected timeout, whose retry would then double-send a request the sandbox did process
        result = deliver(outbound(n), client=client_for(sb.url, timeout_s=0.8),
                         settings=UploadSettings(batch_size=100, concurrency=4, max_attempts=12, **FAST),
                         ledger=None, scope=SCOPE, sleep=no_sleep)
        # every fault answers before the body is processed: retries can never double-ingest
        assert stats(sb) == {**stats(sb), "unique_events": n, "duplicate_events": 0}
        injected = sum(sb.stats()["faults_injected"].values())
    assert result.events_delivered == n and result.events_failed == 0
    # a timed-out request is counted by the sandbox only when its late answer goes out
    assert result.retries >= injected > 0 and result.requests == 40 + result.retries
    if "code4" in faults:
        assert result.throttled == injected and result.min_concurrency < 4


def test_after500_duplicates_are_bounded() -> None:
    n = 2000
    with run_sandbox(SandboxConfig(port=0, faults="after500=0.1", fault_seed=3)) as sb:
        result = deliver(outbound(n), client=client_for(sb.url),
                         settings=UploadSettings(batch_size=100, max_attempts=10, **FAST), ledger=None,
                         scope=SCOPE, sleep=no_sleep)
        after500 = sb.stats()["faults_injected"].get("after500", 0)
        assert stats(sb)["unique_events"] == n
        assert stats(sb)["duplicate_events"] <= after500 * 100
    assert result.events_delivered == n and after500 > 0


def test_timeouts_are_retried() -> None:
    n = 600
    with run_sandbox(SandboxConfig(port=0, faults="timeout=0.3,timeout_s=0.9", fault_seed=2)) as sb:
        result = deliver(outbound(n), client=client_for(sb.url, timeout_s=0.6),
                         settings=UploadSettings(batch_size=50, max_attempts=12, **FAST), ledger=None, scope=SCOPE,
                         sleep=no_sleep)
        assert stats(sb)["unique_events"] == n and stats(sb)["duplicate_events"] == 0
    assert result.events_delivered == n and result.retries > 0


def test_poison_events_are_isolated_by_bisection(ledger: Ledger) -> None:
    bad = frozenset({17, 500, 901})
    with run_sandbox(SandboxConfig(port=0)) as sb:
        result = deliver(outbound(1000, bad=bad), client=client_for(sb.url), settings=UploadSettings(**FAST),
                         ledger=ledger, scope=SCOPE)
        assert stats(sb)["unique_events"] == 997
    assert (result.events_delivered, result.events_rejected, result.events_failed) == (997, 3, 0)
    assert sorted(r.row for r in result.rejected) == sorted(i + 1 for i in bad)
    assert {(r.code, r.subcode) for r in result.rejected} == {(100, 2804003)}
    assert all(r.fbtrace_id and "Too Old" in r.message for r in result.rejected)
    assert {r.field for r in result.rejected} == {"event_time"}  # the sandbox's blame_field_specs
    assert result.requests <= 2 * 3 * 10 + 1 and result.bisections <= 3 * 10
    assert ledger.counts(DATASET) == {"sent": 997, "failed": 3}


def test_terminal_token_error_from_the_sandbox() -> None:
    with run_sandbox(SandboxConfig(port=0, token="another-token")) as sb:
        with pytest.raises(TerminalUploadError) as info:
            deliver(outbound(5000), client=client_for(sb.url), settings=UploadSettings(batch_size=100, **FAST),
                    ledger=None, scope=SCOPE)
        assert len(sb.requests()) <= 4
    assert info.value.code == 190 and TOKEN not in str(info.value)


def test_rerun_sends_nothing_and_force_resends(ledger: Ledger) -> None:
    events = outbound(1500)
    settings = UploadSettings(batch_size=500, **FAST)
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = client_for(sb.url)
        first = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        again = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        forced = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE, force=True)
        assert stats(sb)["unique_events"] == 1500 and stats(sb)["duplicate_events"] == 1500
    assert first.events_delivered == 1500 and first.requests == 3
    assert (again.requests, again.batches, again.events_skipped_already_sent, again.events_sent) == (0, 0, 1500, 0)
    assert (forced.requests, forced.events_resent, forced.events_delivered) == (3, 1500, 1500)


def test_a_failed_forced_resend_leaves_delivered_events_delivered(ledger: Ledger) -> None:
    """run, then run --force while Meta answers 503 past the retry budget, then run: the last run sends nothing
    (the forced batches' failure does not undo the first delivery), while a new event in it is sent."""
    events = outbound(1000)
    settings = UploadSettings(batch_size=250, max_attempts=2, **FAST)
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = client_for(sb.url)
        deliver(iter(events[:750]), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        sb.set_faults("http503=1")
        forced = deliver(iter(events[:750]), client=client, settings=settings, ledger=ledger, scope=SCOPE,
                         force=True)
        sb.set_faults("")
        after = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        assert stats(sb)["unique_events"] == 1000 and stats(sb)["duplicate_events"] == 0
    assert forced.events_failed == 750
    assert (after.events_skipped_already_sent, after.events_sent, after.events_resent) == (750, 250, 0)


def test_simulated_crash_resends_only_in_flight(ledger: Ledger) -> None:
    events = outbound(1000)
    settings = UploadSettings(batch_size=250, **FAST)
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = client_for(sb.url)
        deliver(iter(events[:500]), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        # a run that died after committing mark_sending for the next batch, before the answer came back
        ledger.mark_sending("crashed", DATASET, [e.key for e in events[500:750]])
        result = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        assert stats(sb)["unique_events"] == 1000 and stats(sb)["duplicate_events"] == 0
    assert result.events_skipped_already_sent == 500 and result.events_resent == 250
    assert result.events_sent == 500 and result.events_delivered == 500
    assert ledger.in_flight(DATASET) == set() and ledger.counts(DATASET) == {"sent": 1000}


def test_each_dataset_has_its_own_record(ledger: Ledger) -> None:
    events = outbound(300)
    settings = UploadSettings(batch_size=100, **FAST)
    with run_sandbox(SandboxConfig(port=0)) as sb:
        for dataset in ("111", "222"):
            deliver(iter(events), client=client_for(sb.url, dataset_id=dataset), settings=settings, ledger=ledger,
                    scope=f"test/d/{dataset}")
        again = deliver(iter(events), client=client_for(sb.url, dataset_id="111"), settings=settings,
                        ledger=ledger, scope="test/d/111")
        assert stats(sb, "111")["unique_events"] == 300 and stats(sb, "222")["unique_events"] == 300
    assert again.requests == 0
    assert ledger.counts("111") == {"sent": 300} and ledger.counts("222") == {"sent": 300}


def test_token_never_in_urls_logs_or_errors(caplog: pytest.LogCaptureFixture, ledger: Ledger) -> None:
    caplog.set_level(logging.DEBUG)
    with run_sandbox(SandboxConfig(port=0, faults="http500=0.2,code4=0.1,code1=0.1", fault_seed=5)) as sb:
        result = deliver(outbound(600, bad=frozenset({3})), client=client_for(sb.url),
                         settings=UploadSettings(batch_size=100, **FAST), ledger=ledger, scope=SCOPE,
                         sleep=no_sleep)
        logged = sb.requests()
    with run_sandbox(SandboxConfig(port=0, token="other")) as sb, pytest.raises(TerminalUploadError) as info:
        deliver(outbound(10), client=client_for(sb.url), settings=UploadSettings(**FAST), ledger=ledger,
                scope=SCOPE)
    assert result.events_delivered == 599 and result.retries > 0
    assert logged and all(not r["token_in_url"] and r["token_source"] == "header" for r in logged)
    texts = [json.dumps(logged), caplog.text, str(info.value), repr(info.value.result),
             *(r.message for r in result.rejected)]
    assert all(TOKEN not in text for text in texts)


def test_dry_run_writes_bodies_and_leaves_the_ledger_alone(tmp_path: Path, ledger: Ledger) -> None:
    settings = ClientSettings(endpoint="http://127.0.0.1:9", api_version="v25.0", dataset_id=DATASET,
                              token=Secret(TOKEN), test_event_code="TEST42")
    client = DryRunClient(tmp_path / "dry", settings)
    result = deliver(outbound(250), client=client, settings=UploadSettings(batch_size=100, **FAST), ledger=ledger,
                     scope=SCOPE)
    files = sorted((tmp_path / "dry").glob("*.json"))
    assert len(files) == 3 and result.events_delivered == 250 and result.requests == 3
    bodies = [json.loads(f.read_text()) for f in files]
    assert sorted(len(b["data"]) for b in bodies) == [50, 100, 100]
    assert all(b["test_event_code"] == "TEST42" for b in bodies)
    assert all(TOKEN not in f.read_text() for f in files)
    assert ledger.counts(DATASET) == {}


# ---------------------------------------------------------------------------------------------- recording fake

def test_consumes_lazily_with_bounded_batches_in_flight() -> None:
    consumed = 0
    samples: list[tuple[int, int]] = []
    first_request = threading.Event()
    fake: FakeGraph

    def script(call: Call) -> Answer:
        samples.append((consumed, len(fake.delivered)))
        first_request.set()
        return Answer(delay_s=0.01)

    def events() -> Iterator[OutboundEvent]:
        nonlocal consumed
        for i, event in enumerate(outbound(600)):
            if i == 100:  # the first batch must be on the wire before the source is read further
                assert first_request.wait(5)
            consumed += 1
            yield event

    with FakeGraph(script) as fake:
        result = deliver(events(), client=client_for(fake.url), settings=UploadSettings(batch_size=10, concurrency=2,
                                                                                        **FAST),
                         ledger=None, scope=SCOPE)
    assert result.events_delivered == 600
    # at most 2*concurrency batches queued or running, plus the chunk being read
    assert max(read - done for read, done in samples) <= (2 * 2 + 1) * 10


def test_throttling_lowers_concurrency_and_recovers() -> None:
    def script(call: Call) -> Answer:
        answer = graph_error(400, 4, None, "(#4) Application request limit reached", is_transient=True) \
            if call.index < 6 else Answer()
        answer.delay_s = 0.03
        return answer

    with FakeGraph(script) as fake:
        result = deliver(outbound(600), client=client_for(fake.url),
                         settings=UploadSettings(batch_size=10, concurrency=4, **FAST), ledger=None, scope=SCOPE,
                         sleep=no_sleep)
    assert result.events_delivered == 600 and result.throttled == 6 and result.min_concurrency == 1
    after_throttle = [c.concurrency for c in fake.calls[6:12]]
    assert max(after_throttle) <= 2  # one at a time (+1 while the server finishes the previous answer)
    assert max(c.concurrency for c in fake.calls[-25:]) >= 3  # additive recovery towards 4


def test_terminal_error_stops_at_once(ledger: Ledger) -> None:
    consumed = 0

    def events() -> Iterator[OutboundEvent]:
        nonlocal consumed
        for event in outbound(5000):
            consumed += 1
            yield event

    with FakeGraph(lambda call: Answer(401, graph_error(401, 190, 463, f"token {TOKEN} expired").payload,
                                       delay_s=0.05)) as fake:
        with pytest.raises(TerminalUploadError) as info:
            deliver(events(), client=client_for(fake.url), settings=UploadSettings(batch_size=50, concurrency=4,
                                                                                   **FAST),
                    ledger=ledger, scope=SCOPE)
    assert len(fake.calls) <= 4 and consumed < 5000
    assert info.value.code == 190 and TOKEN not in str(info.value)
    partial = info.value.result  # type: ignore[attr-defined]
    assert partial.events_delivered == 0 and partial.requests == len(fake.calls)
    assert ledger.in_flight(DATASET) == set()  # nothing left in `sending`: the next run resends everything
    assert set(ledger.counts(DATASET)) <= {"failed"}


def test_events_received_mismatch_is_retried() -> None:
    answered: set[str] = set()

    def script(call: Call) -> Answer:
        first = call.events[0]["event_id"]
        if first not in answered:
            answered.add(first)
            return Answer(payload={"events_received": len(call.events) - 1, "fbtrace_id": "X"})
        return Answer()

    with FakeGraph(script) as fake:
        result = deliver(outbound(300), client=client_for(fake.url), settings=UploadSettings(batch_size=100, **FAST),
                         ledger=None, scope=SCOPE, sleep=no_sleep)
    assert result.events_delivered == 300 and result.retries == 3 and result.requests == 6


def test_retries_exhausted_fail_the_batch(ledger: Ledger) -> None:
    delays: list[float] = []
    with FakeGraph(lambda call: Answer(payload={"events_received": 0})) as fake:
        result = deliver(outbound(200), client=client_for(fake.url),
                         settings=UploadSettings(batch_size=100, max_attempts=4, backoff_base_s=1.0,
                                                 backoff_max_s=3.0, progress_every_s=0.0),
                         ledger=ledger, scope=SCOPE, sleep=delays.append)
    assert (result.events_failed, result.events_delivered, result.requests, result.retries) == (200, 0, 8, 6)
    assert len(result.failures) == 2 and {f.events for f in result.failures} == {100}
    assert all("acknowledged 0 of 100" in f.message for f in result.failures)
    assert ledger.counts(DATASET) == {"failed": 200}
    # full jitter under an exponential ceiling capped by backoff_max_s: 1, 2, 3 seconds
    assert all(0 <= d <= cap for d, cap in zip(sorted(delays), [1, 1, 2, 2, 3, 3]))


def test_max_retry_seconds_bounds_long_hints() -> None:
    script = lambda call: graph_error(400, 368, None, "temporarily blocked")  # noqa: E731 - asks for 300 s
    with FakeGraph(script) as fake:
        result = deliver(outbound(10), client=client_for(fake.url),
                         settings=UploadSettings(max_retry_seconds=100, **FAST), ledger=None, scope=SCOPE,
                         sleep=no_sleep)
    assert result.events_failed == 10 and result.requests == 1 and result.failures[0].code == 368


# ---------------------------------------------------------------------------------------------- kill -9

KILL_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from capi_pipeline.client import CapiClient, ClientSettings, Secret, make_session
    from capi_pipeline.ledger import Ledger
    from capi_pipeline.upload import OutboundEvent, UploadSettings, deliver
    url, ledger_path, token = sys.argv[1:4]
    now = int(time.time())
    events = (OutboundEvent("Purchase", f"k{i}", "f", i + 1, {
        "event_name": "Purchase", "event_id": f"k{i}", "action_source": "physical_store", "event_time": now - 60,
        "user_data": {"em": ["c" * 64]}, "custom_data": {"value": 1.0, "currency": "USD"}}) for i in range(20000))
    settings = ClientSettings(endpoint=url, api_version="v25.0", dataset_id="%s", token=Secret(token))
    with Ledger.open(ledger_path) as ledger:
        result = deliver(events, client=CapiClient(make_session(4), settings), ledger=ledger, scope="kill/%s",
                         settings=UploadSettings(batch_size=500, concurrency=4))
    print(json.dumps({"delivered": result.events_delivered, "resent": result.events_resent,
                      "skipped": result.events_skipped_already_sent}))
""" % (DATASET, DATASET))


def test_kill_9_mid_upload_loses_nothing(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    ledger_path = tmp_path / "ledger.sqlite"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with run_sandbox(SandboxConfig(port=0, latency_ms=50)) as sb:
        cmd = [sys.executable, str(script), sb.url, str(ledger_path), TOKEN]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        sent = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if ledger_path.exists():
                try:
                    with sqlite3.connect(ledger_path, timeout=1) as conn:
                        sent = conn.execute("SELECT COUNT(*) FROM capi_ledger_batches WHERE state = 'sent'"
                                            ).fetchone()[0]
                except sqlite3.OperationalError:
                    sent = 0  # tables not created yet
            if sent >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        with Ledger.open(str(ledger_path)) as ledger:
            in_flight = len(ledger.in_flight(DATASET))
        before = stats(sb)["unique_events"]
        assert 0 < before < 20000 and in_flight <= 4 * 500
        rerun = subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=True)
        summary = json.loads(rerun.stdout)
        after = stats(sb)
    assert after["unique_events"] == 20000
    assert after["duplicate_events"] <= in_flight
    assert summary["resent"] == in_flight and summary["delivered"] == 20000 - summary["skipped"]
    assert TOKEN not in rerun.stderr.decode()


def test_every_event_rejected_trips_the_breaker() -> None:
    with run_sandbox(SandboxConfig(port=0)) as sb:
        with pytest.raises(TerminalUploadError) as info:
            deliver(outbound(1000, bad=frozenset(range(1000))), client=client_for(sb.url),
                    settings=UploadSettings(concurrency=1, **FAST), ledger=None, scope=SCOPE)
        requests_made = len(sb.requests())
    assert "accepted none" in str(info.value) and info.value.subcode == 2804003
    assert requests_made < 100  # not the ~2000 a full bisection of 1000 bad events would take


def test_a_rerun_after_refused_events_is_not_stopped_by_them(ledger: Ledger) -> None:
    """25 events Meta refuses one by one (more than the breaker's 20) stay failed in the ledger; a re-run sends
    them again, and their refusal, known from the earlier run, does not stop it: a late file's events go out."""
    events = outbound(1000, bad=frozenset(range(0, 1000, 40)))
    late = outbound(200, prefix="late")
    settings = UploadSettings(batch_size=250, **FAST)
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = client_for(sb.url)
        first = deliver(iter(events), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        again = deliver(iter(events + late), client=client, settings=settings, ledger=ledger, scope=SCOPE)
        assert stats(sb)["unique_events"] == 975 + 200
    assert (first.events_delivered, first.events_rejected) == (975, 25)
    assert (again.events_skipped_already_sent, again.events_rejected, again.events_delivered) == (975, 25, 200)


def test_a_stop_from_outside_keeps_the_counts_of_what_was_done(ledger: Ledger) -> None:
    """The events stop coming (a worker process lost, Ctrl-C): the error carries the counts so far, and
    events_sent = delivered + failed + rejected (a batch cancelled before it started was not sent)."""
    events = outbound(3000)

    def source():
        yield from events[:2000]
        raise RuntimeError("worker process lost")

    with run_sandbox(SandboxConfig(port=0)) as sb:
        with pytest.raises(RuntimeError) as info:
            deliver(source(), client=client_for(sb.url), settings=UploadSettings(batch_size=250, **FAST),
                    ledger=ledger, scope=SCOPE)
        received = stats(sb)["unique_events"]
    partial = info.value.result
    assert partial.events_delivered == received > 0
    assert partial.events_sent == partial.events_delivered + partial.events_failed + partial.events_rejected

