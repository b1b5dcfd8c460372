"""The sandbox over real HTTP: tokens, bodies, whole-request rejection, admin endpoints, faults, quality, threads."""

from __future__ import annotations

import gzip
import hashlib
from http.client import HTTPConnection
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from capi_pipeline.errors import ConfigurationError
from capi_pipeline.sandbox import Sandbox, SandboxConfig, parse_faults, run_sandbox
from capi_pipeline.sandbox.faults import FaultInjector

DATASET = "1000000000000001"
AUTH = {"Authorization": "Bearer sandbox-token"}


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def event(n: int = 0, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_name": "Purchase", "event_time": int(time.time()) - 600, "action_source": "physical_store",
        "event_id": f"order-{n}", "user_data": {"em": h(f"user{n}@example.com"), "ph": [h("16505551212")]},
        "custom_data": {"value": 10.0 + n, "currency": "USD", "order_id": f"order-{n}"},
    }
    base.update(changes)
    return base


def web_event(n: int = 0, **user_data: Any) -> dict[str, Any]:
    return {"event_name": "ViewContent", "event_time": int(time.time()) - 60, "action_source": "website",
            "event_id": f"web-{n}", "event_source_url": "https://shop.example.com/",
            "user_data": {"client_user_agent": "Mozilla/5.0", **user_data}}


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with run_sandbox(SandboxConfig()) as sandbox:
        yield sandbox


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def post(session: requests.Session, sb: Sandbox, body: Any = None, *, dataset: str = DATASET,
         headers: dict[str, str] | None = AUTH, **kwargs: Any) -> requests.Response:
    if body is not None:
        kwargs["json"] = body
    return session.post(f"{sb.url}/v25.0/{dataset}/events", headers=headers, timeout=10, **kwargs)


# tokens -------------------------------------------------------------------------------------------------------


def test_missing_token_is_190(sb: Sandbox, http: requests.Session) -> None:
    response = post(http, sb, {"data": [event()]}, headers=None)
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["type"], error["is_transient"]) == (190, "OAuthException", False)
    assert error["fbtrace_id"] == response.headers["x-fb-trace-id"]
    assert sb.events() == []
    assert sb.stats()["datasets"][DATASET]["rejected_requests"] == 1


def test_configured_token_must_match() -> None:
    with run_sandbox(SandboxConfig(token="right")) as sb, requests.Session() as http:
        assert post(http, sb, {"data": [event()]}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(http, sb, {"data": [event()]}, headers={"Authorization": "Bearer right"}).status_code == 200
        assert post(http, sb, {"data": [event(1)], "access_token": "right"}, headers=None).status_code == 200
        log = sb.requests()
        assert [r["token_source"] for r in log] == ["header", "header", "body"]
        assert "right" not in json.dumps(log) and "wrong" not in json.dumps(log)


def test_query_token_is_accepted_but_flagged_and_redacted(sb: Sandbox, http: requests.Session) -> None:
    response = http.post(f"{sb.url}/v25.0/{DATASET}/events?access_token=secret-in-url&x=1",
                         json={"data": [event()]}, timeout=10)
    assert response.status_code == 200
    record = sb.requests()[-1]
    assert record["token_in_url"] is True and record["token_source"] == "query"
    assert record["path"] == f"/v25.0/{DATASET}/events?access_token=REDACTED&x=1"
    assert "secret-in-url" not in http.get(f"{sb.url}/_sandbox/requests", timeout=10).text
    post(http, sb, {"data": [event(1)]})
    assert sb.requests()[-1]["token_in_url"] is False


# bodies -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "json-strings", "form", "form-strings", "form-indexed", "multipart"])
def test_body_encodings(sb: Sandbox, http: requests.Session, encoding: str) -> None:
    events = [event(0), event(1)]
    url = f"{sb.url}/v25.0/{DATASET}/events"
    if encoding == "json":
        response = http.post(url, json={"data": events, "test_event_code": "TEST1"}, headers=AUTH, timeout=10)
    elif encoding == "json-strings":
        response = http.post(url, json={"data": [json.dumps(e) for e in events], "test_event_code": "TEST1"},
                             headers=AUTH, timeout=10)
    elif encoding == "form":  # what Meta's Python SDK sends: data as one JSON array string
        response = http.post(url, data={"data": json.dumps(events), "test_event_code": "TEST1",
                                        "access_token": "t"}, timeout=10)
    elif encoding == "form-strings":
        response = http.post(url, data={"data": json.dumps([json.dumps(e) for e in events]),
                                        "test_event_code": "TEST1"}, headers=AUTH, timeout=10)
    elif encoding == "form-indexed":
        response = http.post(url, data={"data[0]": json.dumps(events[0]), "data[1]": json.dumps(events[1]),
                                        "test_event_code": "TEST1"}, headers=AUTH, timeout=10)
    else:  # curl -F
        response = http.post(url, files={"data": (None, json.dumps(events)), "test_event_code": (None, "TEST1")},
                             headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["events_received"] == 2 and response.json()["messages"] == []
    stored = sb.events(DATASET)
    assert [s["event_id"] for s in stored] == ["order-0", "order-1"]
    assert stored[0]["event"] == events[0] and stored[0]["test_event_code"] == "TEST1"
    assert stored[0]["fbtrace_id"] == response.json()["fbtrace_id"]


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"data": b"{not json", "headers": {**AUTH, "Content-Type": "application/json"}}, 100),
    ({"data": {"data": "[not json"}}, 100),
    ({"json": {"events": []}}, 100),
])
def test_malformed_bodies(sb: Sandbox, http: requests.Session, kwargs: dict[str, Any], code: int) -> None:
    kwargs.setdefault("headers", AUTH)
    response = http.post(f"{sb.url}/v25.0/{DATASET}/events", timeout=10, **kwargs)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_keep_alive_and_gzip(sb: Sandbox) -> None:
    conn = HTTPConnection("127.0.0.1", sb.port, timeout=10)
    body = gzip.compress(json.dumps({"data": [event()]}).encode())
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    sockets = []
    for _ in range(3):
        conn.request("POST", f"/v25.0/{DATASET}/events", body=body, headers=headers)
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["events_received"] == 1
        sockets.append(conn.sock)
    conn.close()
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3  # one connection, three requests


def test_batch_size_limit(sb: Sandbox, http: requests.Session) -> None:
    assert post(http, sb, {"data": [event(i) for i in range(1000)]}).json()["events_received"] == 1000
    response = post(http, sb, {"data": [event(i) for i in range(1001)]})
    assert response.status_code == 400 and response.json()["error"]["code"] == 100
    assert sb.stats()["datasets"][DATASET]["events_received"] == 1000


def test_one_bad_event_rejects_whole_request_without_index(sb: Sandbox, http: requests.Session) -> None:
    batch = [event(i) for i in range(5)] + [event(5, event_time=int(time.time()) - 90 * 86_400)] + [event(6)]
    response = post(http, sb, {"data": batch})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["error_subcode"]) == (100, 2804003)
    assert set(error) == {"message", "type", "code", "error_subcode", "is_transient", "error_user_title",
                          "error_user_msg", "error_data", "fbtrace_id"}
    assert error["error_data"] == {"blame_field_specs": [["event_time"]]}  # the field, never which event
    assert "5" not in error["error_user_msg"].replace("62", "") and "index" not in response.text
    assert sb.events() == []
    assert sb.requests()[-1]["events"] == 7 and sb.requests()[-1]["error_subcode"] == 2804003


def test_unknown_dataset_and_path(http: requests.Session) -> None:
    with run_sandbox(SandboxConfig(datasets=("42",))) as sb:
        ok = post(http, sb, {"data": [event()]}, dataset="42")
        assert ok.status_code == 200
        for dataset in ("43", "not-a-number"):
            error = post(http, sb, {"data": [event()]}, dataset=dataset).json()["error"]
            assert (error["code"], error["error_subcode"]) == (100, 33)
        assert http.get(f"{sb.url}/v25.0/42/events", headers=AUTH, timeout=10).status_code == 404
        assert http.post(f"{sb.url}/25.0/42/events", headers=AUTH, timeout=10).status_code == 404


# admin endpoints ----------------------------------------------------------------------------------------------


def test_stats_events_requests_reset_over_http(sb: Sandbox, http: requests.Session) -> None:
    post(http, sb, {"data": [event(0), event(1)], "partner_agent": "capi-pipeline-0.1.0"})
    post(http, sb, {"data": [event(1), event(2), event(2, event_name="Other")]})  # order-1 again
    post(http, sb, {"data": [event(3, action_source="moon")]})
    post(http, sb, {"data": [event(9)]}, dataset="77")
    stats = http.get(f"{sb.url}/_sandbox/stats", timeout=10).json()
    assert stats["requests"] == 4 and stats["faults_injected"] == {}
    assert stats["datasets"][DATASET] == {"requests": 3, "accepted_requests": 2, "rejected_requests": 1,
                                          "events_received": 5, "unique_events": 4, "duplicate_events": 1}
    events = http.get(f"{sb.url}/_sandbox/events", params={"dataset_id": DATASET}, timeout=10).json()
    assert [(e["event_name"], e["event_id"], e["duplicate"]) for e in events] == [
        ("Purchase", "order-0", False), ("Purchase", "order-1", False), ("Purchase", "order-1", True),
        ("Purchase", "order-2", False), ("Other", "order-2", False)]
    assert events[0]["partner_agent"] == "capi-pipeline-0.1.0"
    page = http.get(f"{sb.url}/_sandbox/events", params={"dataset_id": DATASET, "limit": 2, "offset": 1},
                    timeout=10).json()
    assert [e["event_id"] for e in page] == ["order-1", "order-1"]
    log = http.get(f"{sb.url}/_sandbox/requests", timeout=10).json()
    assert [(r["status"], r["events"], r["error_code"]) for r in log] == [
        (200, 2, None), (200, 3, None), (400, 1, 100), (200, 1, None)]
    assert log[0]["content_type"] == "application/json" and log[0]["method"] == "POST"
    assert "user0@example.com" not in json.dumps(log) and h("user0@example.com") not in json.dumps(log)
    assert http.post(f"{sb.url}/_sandbox/reset", timeout=10).json() == {"ok": True}
    assert sb.stats() == {"datasets": {}, "requests": 0, "faults_injected": {}}
    assert sb.events() == [] and sb.requests() == []


def test_latency_is_added(http: requests.Session) -> None:
    with run_sandbox(SandboxConfig(latency_ms=150)) as sb:
        started = time.monotonic()
        assert post(http, sb, {"data": [event()]}).status_code == 200
        assert time.monotonic() - started >= 0.15


# faults -------------------------------------------------------------------------------------------------------


def test_fault_spec_grammar() -> None:
    spec = parse_faults(" http500=0.05, code4=0.1,code17=2x,slow=0.2,slow_s=0.5,timeout_s=3 ")
    assert spec.rates == (("http500", 0.05), ("code4", 0.1), ("slow", 0.2))
    assert spec.counts == (("code17", 2),) and (spec.slow_s, spec.timeout_s) == (0.5, 3.0)
    assert parse_faults("") == parse_faults(None) == parse_faults(" , ")
    for bad in ("code5=0.1", "http500", "code4=1.5", "code4=abc", "code4=0.6,code17=0.6", "slow_s=-1", "http404=1"):
        with pytest.raises(ConfigurationError):
            parse_faults(bad)


def test_fault_draws_are_deterministic() -> None:
    def run(seed: int) -> list[str | None]:
        injector = FaultInjector(parse_faults("code4=0.3,http500=0.2,code1=1x"), seed=seed)
        return [injector.draw() for _ in range(200)]

    assert run(7) == run(7) != run(8)
    draws = run(7)
    assert draws[0] == "code1"
    assert 40 < draws.count("code4") < 80 and 20 < draws.count("http500") < 60


def test_faults_over_http_store_nothing_and_repeat_with_seed(http: requests.Session) -> None:
    spec = "http500=0.15,code1=0.1,code2=0.1,code4=0.1,code17=0.1,code613=0.1,code80004=0.1"
    outcomes = []
    for _ in range(2):
        with run_sandbox(SandboxConfig(faults=spec, fault_seed=3)) as sb:
            statuses = [post(http, sb, {"data": [event(i)]}) for i in range(40)]
            outcomes.append([(r.status_code, r.json()["error"]["code"] if r.headers["Content-Type"].startswith(
                "application/json") and r.status_code != 200 else None) for r in statuses])
            ok = sum(1 for r in statuses if r.status_code == 200)
            stats = sb.stats()
            assert stats["datasets"][DATASET]["events_received"] == ok
            assert sum(stats["faults_injected"].values()) == 40 - ok
            assert {e["event_id"] for e in sb.events()} == {
                f"order-{i}" for i, r in enumerate(statuses) if r.status_code == 200}
    assert outcomes[0] == outcomes[1]
    assert {code for _, code in outcomes[0]} >= {None, 1, 2, 4, 17, 613, 80004}


@pytest.mark.parametrize(("fault", "status", "code", "subcode"), [
    ("code1", 500, 1, 99), ("code2", 500, 2, None), ("code4", 400, 4, None), ("code17", 400, 17, 2446079),
    ("code613", 400, 613, 1487742), ("code80004", 400, 80004, 2446079),
])
def test_graph_fault_shapes(sb: Sandbox, http: requests.Session, fault: str, status: int, code: int,
                            subcode: int | None) -> None:
    sb.set_faults(f"{fault}=1")
    response = post(http, sb, {"data": [event()]})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error.get("error_subcode"), error["is_transient"]) == (
        status, code, subcode, True)
    assert ("X-Business-Use-Case-Usage" in response.headers) == (fault == "code80004")
    assert sb.events() == [] and sb.stats()["faults_injected"] == {fault: 1}


def test_http5xx_timeout_slow_after500(sb: Sandbox, http: requests.Session) -> None:
    sb.set_faults("http503=1x,timeout=1x,slow=1x,after500=1x,timeout_s=0.3,slow_s=0.2")
    first = post(http, sb, {"data": [event(0)]})
    assert first.status_code == 503 and first.headers["Content-Type"].startswith("text/html")
    started = time.monotonic()
    second = post(http, sb, {"data": [event(1)]})
    assert second.status_code == 500 and time.monotonic() - started >= 0.3
    started = time.monotonic()
    third = post(http, sb, {"data": [event(2)]})
    assert third.status_code == 200 and time.monotonic() - started >= 0.2
    fourth = post(http, sb, {"data": [event(3)]})
    assert fourth.status_code == 500 and fourth.json()["error"]["is_transient"] is True
    assert post(http, sb, {"data": [event(3)]}).status_code == 200  # the retry double-sends
    assert [e["event_id"] for e in sb.events()] == ["order-2", "order-3", "order-3"]
    stats = sb.stats()
    assert stats["faults_injected"] == {"http503": 1, "timeout": 1, "slow": 1, "after500": 1}
    assert stats["datasets"][DATASET]["duplicate_events"] == 1


def test_client_timeout_is_ambiguous_but_nothing_stored(sb: Sandbox, http: requests.Session) -> None:
    sb.set_faults("timeout=1,timeout_s=5")
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.post(f"{sb.url}/v25.0/{DATASET}/events", json={"data": [event()]}, headers=AUTH, timeout=0.3)
    sb.set_faults("")
    assert post(http, sb, {"data": [event(1)]}).status_code == 200
    assert [e["event_id"] for e in sb.events()] == ["order-1"]


def test_set_faults_over_http(sb: Sandbox, http: requests.Session) -> None:
    assert http.post(f"{sb.url}/_sandbox/faults", json={"spec": "code4=1"}, timeout=10).status_code == 200
    assert post(http, sb, {"data": [event()]}).json()["error"]["code"] == 4
    assert http.post(f"{sb.url}/_sandbox/faults", json={"spec": "bogus=1"}, timeout=10).status_code == 400
    assert http.post(f"{sb.url}/_sandbox/faults", json={"spec": ""}, timeout=10).status_code == 200
    assert post(http, sb, {"data": [event()]}).status_code == 200
    assert "slow_s=2" in http.get(f"{sb.url}/_sandbox/faults", timeout=10).json()["spec"]


def test_invalid_fault_spec_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError), run_sandbox(SandboxConfig(faults="nope=1")):
        pass


# dataset quality ----------------------------------------------------------------------------------------------


def test_dataset_quality(sb: Sandbox, http: requests.Session) -> None:
    post(http, sb, {"data": [web_event(0, em=h("a"), client_ip_address="10.0.0.1"), web_event(1, fbp="fb.1.1.1")]})
    post(http, sb, {"data": [event(0), event(1, user_data={"em": h("b")})]})
    url = f"{sb.url}/v25.0/dataset_quality"
    answer = http.get(url, params={"dataset_id": DATASET}, headers=AUTH, timeout=10).json()
    (web,) = answer["web"]
    assert web["event_name"] == "ViewContent"
    feedback = {f["identifier"]: f["coverage"]["percentage"] for f in web["event_match_quality"]["match_key_feedback"]}
    assert feedback == {"client_ip_address": 50.0, "client_user_agent": 100.0, "em": 50.0, "fbp": 50.0}
    assert web["event_match_quality"]["composite_score"] == 3.3  # 3*.5 + 1.5*.5 + .5*1 + 1*.5 = 3.25
    (offline,) = answer["offline"]
    assert offline == {"event_name": "Purchase", "composite": {"score": 3.8},
                       "match_key": {"score": 3.8, "coverage": {"email": 100.0, "phone": 50.0}}}
    only_web = http.get(url, params={"dataset_id": DATASET, "fields": "web{event_name,event_match_quality}"},
                        headers=AUTH, timeout=10).json()
    assert set(only_web) == {"web"}
    missing = http.get(url, params={"dataset_id": "999"}, headers=AUTH, timeout=10)
    assert missing.status_code == 400 and missing.json()["error"]["error_subcode"] == 2044055
    assert http.get(url, params={"dataset_id": DATASET}, timeout=10).status_code == 401
    assert sb.stats()["datasets"][DATASET]["requests"] == 2  # quality calls are not /events requests


# concurrency, persistence, CLI --------------------------------------------------------------------------------


def test_concurrent_sessions_are_all_counted(sb: Sandbox) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            with requests.Session() as session:
                for i in range(20):
                    response = post(session, sb, {"data": [event(t * 100 + i), event(t * 100 + i, event_name="Other")]})
                    assert response.status_code == 200
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = sb.stats()
    assert stats["requests"] == 160
    assert stats["datasets"][DATASET]["events_received"] == 320
    assert stats["datasets"][DATASET]["unique_events"] == 320


def test_sqlite_persists_across_restart(tmp_path: Any, http: requests.Session) -> None:
    db = str(tmp_path / "sandbox.sqlite")
    with run_sandbox(SandboxConfig(db_path=db)) as sb:
        post(http, sb, {"data": [event(0), event(1)]})
    http.close()
    with run_sandbox(SandboxConfig(db_path=db)) as sb, requests.Session() as again:
        post(again, sb, {"data": [event(1)]})
        assert [e["event_id"] for e in sb.events(DATASET)] == ["order-0", "order-1", "order-1"]
        assert sb.stats()["datasets"][DATASET]["duplicate_events"] == 1
        assert sb.stats()["requests"] == 2


def test_closed_sandbox_drops_kept_alive_connections(http: requests.Session) -> None:
    with run_sandbox() as sb:
        assert post(http, sb, {"data": [event()]}).status_code == 200
        url = sb.url
    with pytest.raises(requests.exceptions.ConnectionError):
        http.post(f"{url}/v25.0/{DATASET}/events", json={"data": [event()]}, headers=AUTH, timeout=2)


def test_cli_prints_url_and_stops_on_sigterm(tmp_path: Any) -> None:
    script = ("import argparse, sys\n"
              "from capi_pipeline.sandbox import add_arguments, main_from_args\n"
              "p = argparse.ArgumentParser(); add_arguments(p)\n"
              "sys.exit(main_from_args(p.parse_args(sys.argv[1:])))\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "--port", "0", "--token", "T", "--fault-seed", "1",
                             "--db", str(tmp_path / "db.sqlite"), "--latency-ms", "1", "--faults", "code4=0"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        response = requests.post(f"{url}/v26.0/{DATASET}/events", json={"data": [event()]},
                                 headers={"Authorization": "Bearer T"}, timeout=10)
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    bad = subprocess.run([sys.executable, "-c", script, "--faults", "nope=1"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2 and "unknown fault" in bad.stderr


def test_meta_python_sdk_is_understood(sb: Sandbox) -> None:
    """Meta's own SDK form-encodes `data` and puts the token in the URL: accepted, and flagged."""
    api = pytest.importorskip("facebook_business.api")
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.event_request import EventRequest
    from facebook_business.adobjects.serverside.user_data import UserData

    graph, default_api = api.FacebookSession.GRAPH, api.FacebookAdsApi.get_default_api()
    api.FacebookSession.GRAPH = sb.url  # the SDK has no endpoint setting
    try:
        api.FacebookAdsApi.set_default_api(api.FacebookAdsApi(api.FacebookSession(access_token="sdk-token")))
        sdk_event = Event(event_name="Purchase", event_time=int(time.time()) - 60, event_id="sdk-1",
                          action_source=ActionSource.PHYSICAL_STORE, custom_data=CustomData(currency="usd", value=1.5),
                          user_data=UserData(emails=["joe@example.com"], phones=["16505551212"]))
        response = EventRequest(events=[sdk_event], pixel_id=DATASET, test_event_code="TEST9").execute()
    finally:
        api.FacebookSession.GRAPH = graph
        api.FacebookAdsApi.set_default_api(default_api)
    assert response.events_received == 1
    record = sb.requests()[-1]
    assert record["token_in_url"] and record["content_type"] == "application/x-www-form-urlencoded"
    assert sb.events(DATASET)[0]["event"]["user_data"]["em"] == [h("joe@example.com")]


def test_keys_only_store_still_validates_and_counts() -> None:
    """--keys-only: every event validated and de-duplicated, counts as usual, no event JSON kept."""
    import time as _time

    from capi_pipeline.sandbox.store import Store

    store = Store(keep_events=False)
    events = [{"event_name": "Purchase", "event_id": "a"}, {"event_name": "Purchase", "event_id": "b"}]
    assert store.add_events("1", events, params={}, fbtrace_id="t", received_at=_time.time()) == 0
    assert store.add_events("1", events[:1], params={}, fbtrace_id="t", received_at=_time.time()) == 1
    stats = store.stats()["datasets"]["1"]
    assert (stats["events_received"], stats["unique_events"], stats["duplicate_events"]) == (3, 2, 1)
    assert store.events("1") == [] and store.has_dataset("1")
    with run_sandbox(SandboxConfig(keep_events=False, clock=lambda: 1_700_000_000.0)) as sandbox:
        assert not sandbox.store.keep_events


def test_a_bug_in_the_sandbox_is_an_answer_not_a_dropped_connection(sb: Sandbox, http: requests.Session,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    from capi_pipeline.sandbox import server

    def broken(*_: Any, **__: Any) -> None:
        raise TypeError("a sandbox bug")

    monkeypatch.setattr(server, "validate_request", broken)
    response = post(http, sb, {"data": [event(0)]})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == 2 and response.json()["error"]["is_transient"] is True
    assert "a sandbox bug" in caplog.text
    assert sb.requests()[-1]["status"] == 500
