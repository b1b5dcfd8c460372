"""client.py over real HTTP: a recording fake Graph server (scripted answers) and the sandbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests

from capi_pipeline.client import (
    CapiClient,
    ClientSettings,
    DryRunClient,
    InvalidEventsError,
    Secret,
    classify_error,
    make_session,
    scrub,
)
from capi_pipeline.errors import TerminalUploadError, ThrottledError, TransientUploadError

TOKEN = "EAAGtesttoken0123456789abcdefSECRET"


# ---------------------------------------------------------------------------------------------- recording fake

@dataclass
class Call:
    index: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    concurrency: int  # requests being answered when this one arrived (itself included)

    @property
    def events(self) -> list[dict]:
        return self.body.get("data", []) if isinstance(self.body, dict) else []


@dataclass
class Answer:
    status: int = 200
    payload: Any = None  # dict -> JSON; bytes -> as is; None -> a success for the call's events
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def graph_error(status: int, code: int, subcode: int | None = None, message: str = "error", *,
                is_transient: bool = False, user_msg: str | None = None) -> Answer:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code,
                             "is_transient": is_transient, "fbtrace_id": f"T{code}"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg:
        error["error_user_title"] = "Title"
        error["error_user_msg"] = user_msg
    return Answer(status, {"error": error})


class FakeGraph:
    """A real HTTP server on 127.0.0.1 answering with `script(call)`; records every call and the concurrency."""

    def __init__(self, script: Callable[[Call], Answer] | None = None) -> None:
        self.script = script or (lambda call: Answer())
        self.calls: list[Call] = []
        self.delivered: list[tuple[str, str]] = []  # event keys of every 200 answer
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                with fake.lock:
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                    call = Call(len(fake.calls), self.command, split.path, parse_qs(split.query),
                                dict(self.headers.items()), orjson.loads(raw) if raw else None, fake.active)
                    fake.calls.append(call)
                try:
                    answer = fake.script(call)
                    if answer.delay_s:
                        time.sleep(answer.delay_s)
                    payload = answer.payload
                    if payload is None:
                        payload = {"events_received": len(call.events), "messages": [], "fbtrace_id": f"F{call.index}"}
                    if answer.status == 200 and isinstance(payload, dict) and "events_received" in payload:
                        with fake.lock:
                            fake.delivered.extend((e["event_name"], e["event_id"]) for e in call.events)
                    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json" if not isinstance(payload, bytes)
                                     else "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake.lock:
                        fake.active -= 1

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGraph:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings_for(url: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"endpoint": url, "api_version": "v25.0", "dataset_id": "1234567890",
                              "token": Secret(TOKEN), "timeout_s": 5.0}
    values.update(overrides)
    return ClientSettings(**values)


def events(n: int, prefix: str = "e") -> list[dict]:
    return [{"event_name": "Purchase", "event_id": f"{prefix}{i}", "event_time": int(time.time()) - 60,
             "action_source": "physical_store", "user_data": {"em": ["a" * 64]},
             "custom_data": {"value": 1.5, "currency": "USD"}} for i in range(n)]


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


# ---------------------------------------------------------------------------------------------- pure parts

@pytest.mark.parametrize(("status", "error", "expected"), [
    (500, None, TransientUploadError),
    (502, None, TransientUploadError),
    (503, {"code": 2, "message": "Service temporarily unavailable"}, TransientUploadError),
    (500, {"code": 1, "error_subcode": 99}, TransientUploadError),
    (400, {"code": 12345, "is_transient": True}, TransientUploadError),
    (400, {"code": 341}, TransientUploadError),
    (400, {"code": 368}, TransientUploadError),
    (408, None, TransientUploadError),
    (429, None, ThrottledError),
    (400, {"code": 4}, ThrottledError),
    (400, {"code": 17, "error_subcode": 2446079}, ThrottledError),
    (400, {"code": 32}, ThrottledError),
    (400, {"code": 613, "error_subcode": 1487742}, ThrottledError),
    (400, {"code": 80000}, ThrottledError),
    (400, {"code": 80004, "is_transient": True}, ThrottledError),
    (400, {"code": 80014}, ThrottledError),
    (401, {"code": 190}, TerminalUploadError),
    (400, {"code": 190, "error_subcode": 463}, TerminalUploadError),
    (403, {"code": 10}, TerminalUploadError),
    (403, {"code": 200}, TerminalUploadError),
    (403, {"code": 299}, TerminalUploadError),
    (400, {"code": 100, "error_subcode": 33}, TerminalUploadError),
    (400, {"code": 100, "error_subcode": 2044055}, TerminalUploadError),
    (404, {"code": 803}, TerminalUploadError),
    (404, None, TerminalUploadError),
    (400, {"code": 999}, TerminalUploadError),
    (400, {"code": 100}, InvalidEventsError),
    (400, {"code": 100, "error_subcode": 2804003}, InvalidEventsError),
    (400, {"code": 100, "error_subcode": 2804050}, InvalidEventsError),
    (400, {"code": "100", "error_subcode": "2804001"}, InvalidEventsError),
])
def test_classify_error(status: int, error: dict | None, expected: type) -> None:
    assert classify_error(status, error) is expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Invalid OAuth access token EAAGabcdefghijklmnop123", "Invalid OAuth access token ***"),
    ("url?access_token=abc123&x=1", "url?access_token=***&x=1"),
    ('{"access_token": "abc"}', '{"access_token": "***"}'),
    ("Authorization: Bearer xyz.123", "Authorization: Bearer ***"),
    ("bad em jane.doe@example.com here", "bad em <email> here"),
    ("phone +1 (555) 123-4567 rejected", "phone <number> rejected"),
    ("hash " + "ab" * 32 + " is wrong", "hash <sha256> is wrong"),
    ("(#100) Event Timestamp Too Old", "(#100) Event Timestamp Too Old"),
    ("x" * 500, "x" * 299 + "…"),
])
def test_scrub(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_scrub_removes_the_exact_token() -> None:
    assert scrub("token was plain-s3cret!", secrets=("plain-s3cret!",)) == "token was ***"
    assert scrub("Dataset does not exist", secrets=("x",)) == "Dataset does not exist"  # a test token "x"


def test_secret_is_masked() -> None:
    secret = Secret(TOKEN)
    settings = settings_for("http://x")
    assert TOKEN not in repr(secret) and TOKEN not in str(secret) and TOKEN not in repr(settings)
    assert secret.value == TOKEN


def test_request_body_has_options_and_no_token() -> None:
    client = CapiClient(requests.Session(), settings_for("http://x", test_event_code="TEST1",
                                                         partner_agent="capi-pipeline-0.1.0", upload_tag="t",
                                                         namespace_id="ns"))
    body = client.request_body(events(2))
    assert body == {"data": events(2), "test_event_code": "TEST1", "partner_agent": "capi-pipeline-0.1.0",
                    "upload_tag": "t", "namespace_id": "ns"}
    assert set(CapiClient(requests.Session(), settings_for("http://x")).request_body([])) == {"data"}


def test_make_session_pool_and_no_urllib3_retries() -> None:
    session = make_session(8)
    adapter = session.get_adapter("https://graph.facebook.com")
    assert adapter._pool_maxsize == 8 and adapter._pool_connections == 8  # type: ignore[attr-defined]
    assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- over HTTP

def test_send_success(fake: FakeGraph) -> None:
    client = CapiClient(make_session(2), settings_for(fake.url, partner_agent="capi-pipeline-0.1.0"))
    result = client.send(events(3), batch_id="b1")
    assert result.events_received == 3 and result.fbtrace_id == "F0" and result.messages == []
    call = fake.calls[0]
    assert call.method == "POST" and call.path == "/v25.0/1234567890/events" and call.query == {}
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == client.request_body(events(3))
    assert TOKEN not in json.dumps(call.body)


def test_proxy_variables_are_read_once_when_the_client_is_made(fake: FakeGraph, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # HTTP_PROXY at creation sends the request through the proxy (here the fake, which gets the absolute URL);
    # the environment is not read again for every request (requests would, ~0.6 ms each)
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake.url)
    client = CapiClient(make_session(1), settings_for("http://graph.invalid"))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    client.send(events(1), batch_id="b1")
    assert [call.path for call in fake.calls] == ["/v25.0/1234567890/events"]
    assert fake.calls[0].headers["Authorization"] == f"Bearer {TOKEN}"
    monkeypatch.setenv("NO_PROXY", "graph.invalid")  # read at creation too: a new client goes direct (and fails)
    with pytest.raises(TransientUploadError, match="connection failed"):
        CapiClient(make_session(1), settings_for("http://graph.invalid", timeout_s=2)).send(events(1), batch_id="b2")


def test_a_netrc_entry_for_the_host_never_replaces_the_token(fake: FakeGraph, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # requests' own default reads ~/.netrc (or $NETRC) per request and, finding the host, sends Basic auth in
    # place of the Authorization header it was given: a 401 from Meta for a shared worker's unrelated .netrc
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = CapiClient(make_session(1), settings_for(fake.url))
    client.send(events(1), batch_id="b1")
    fake.script = lambda call: Answer(payload={"web": []})
    client.dataset_quality("web{event_name}")
    assert [call.headers["Authorization"] for call in fake.calls] == [f"Bearer {TOKEN}"] * 2


@pytest.mark.parametrize(("answer", "expected", "code", "subcode"), [
    (graph_error(401, 190, 463, f"Error validating access token {TOKEN}"), TerminalUploadError, 190, 463),
    (graph_error(400, 100, 2804003, "Invalid parameter", user_msg="event for jane@example.com too old"),
     InvalidEventsError, 100, 2804003),
    (graph_error(400, 100, 33, "Unsupported post request"), TerminalUploadError, 100, 33),
    (graph_error(400, 4, None, "(#4) Application request limit reached", is_transient=True), ThrottledError, 4, None),
    (graph_error(500, 2, None, "Service temporarily unavailable", is_transient=True), TransientUploadError, 2, None),
    (Answer(502, b"<html>bad gateway</html>"), TransientUploadError, None, None),
    (Answer(404, b"<html>not found</html>"), TerminalUploadError, None, None),
])
def test_send_errors_are_classified_and_scrubbed(answer: Answer, expected: type, code: int | None,
                                                 subcode: int | None) -> None:
    with FakeGraph(lambda call: answer) as fake:
        client = CapiClient(make_session(1), settings_for(fake.url))
        with pytest.raises(expected) as info:
            client.send(events(2), batch_id="b7")
    exc = info.value
    assert type(exc) is expected
    assert (exc.code, exc.subcode, exc.batch_id, exc.http_status) == (code, subcode, "b7", answer.status)
    assert "b7" in str(exc)
    for leak in (TOKEN, "jane@example.com", fake.url, "a" * 64):
        assert leak not in str(exc)
    if code is not None:
        assert exc.fbtrace_id == f"T{code}"


def test_meta_quoting_what_we_sent_is_scrubbed() -> None:
    """Meta's error text (and a 200's messages) may quote the request: the raw user_data values we sent (user
    agent, IPv6, fbc, madid, partner_id...) never reach the exception, hence no log, report or quarantine."""
    raw = {"client_user_agent": "CanaryUA/9.9 (Zzqvorn)", "client_ip_address": "2001:db8::77",
           "fbc": "fb.1.1700000000.CanaryClick", "madid": "5ca1ab1e-0000-4000-8000-000000000077",
           "partner_id": "CANARYRAMP9931", "partner_name": "liveramp"}
    sent = [{**e, "user_data": {**e["user_data"], **raw}} for e in events(2)]

    def echo(call: Call) -> Answer:
        quoted = " ".join(f"{k}={v}" for k, v in call.events[0]["user_data"].items() if k != "em")
        return graph_error(400, 100, 2804001, f"Invalid parameter: {quoted}", user_msg=quoted)

    with FakeGraph(echo) as fake:
        client = CapiClient(make_session(1), settings_for(fake.url))
        with pytest.raises(InvalidEventsError) as info:
            client.send(sent, batch_id="b9")
        fake.script = lambda call: Answer(payload={"events_received": 2, "messages": [str(raw)]})
        result = client.send(sent, batch_id="b10")
    for text in (str(info.value), *result.messages):
        assert "<sent value>" in text
        for value in raw.values():
            assert value not in text, text


def test_events_received_mismatch_is_transient() -> None:
    with FakeGraph(lambda call: Answer(payload={"events_received": len(call.events) - 1, "fbtrace_id": "M"})) as fake:
        client = CapiClient(make_session(1), settings_for(fake.url))
        with pytest.raises(TransientUploadError) as info:
            client.send(events(5), batch_id="b2")
    assert type(info.value) is TransientUploadError
    assert "acknowledged 4 of 5" in str(info.value) and info.value.fbtrace_id == "M"


def test_timeout_is_transient_and_names_no_url() -> None:
    with FakeGraph(lambda call: Answer(delay_s=1.0)) as fake:
        client = CapiClient(make_session(1), settings_for(fake.url, timeout_s=0.2))
        started = time.monotonic()
        with pytest.raises(TransientUploadError) as info:
            client.send(events(1), batch_id="b3")
    assert time.monotonic() - started < 0.9
    assert "no answer within 0.2s" in str(info.value)
    assert "127.0.0.1" not in str(info.value) and info.value.__cause__ is None
    assert info.value.__context__ is None  # the requests exception (it names the URL) is not chained


def test_connection_refused_is_transient() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    client = CapiClient(make_session(1), settings_for(f"http://127.0.0.1:{port}", timeout_s=2))
    with pytest.raises(TransientUploadError) as info:
        client.send(events(1), batch_id="b4")
    assert "connection failed (ConnectionError)" in str(info.value) and str(port) not in str(info.value)


@pytest.mark.parametrize(("headers", "code", "expected"), [
    ({"Retry-After": "7"}, 4, 7.0),
    ({"X-Business-Use-Case-Usage": json.dumps({"123": [{"type": "ads_management", "call_count": 100,
                                                         "estimated_time_to_regain_access": 2}]})}, 80004, 120.0),
    ({}, 368, 300.0),
    ({}, 4, None),
])
def test_retry_hints(headers: dict[str, str], code: int, expected: float | None) -> None:
    def script(call: Call) -> Answer:
        answer = graph_error(400, code)
        answer.headers = headers
        return answer

    with FakeGraph(script) as fake:
        client = CapiClient(make_session(1), settings_for(fake.url))
        with pytest.raises(TransientUploadError) as info:
            client.send(events(1), batch_id="b5")
    assert getattr(info.value, "retry_after_s") == expected


def test_dataset_quality_token_in_header_only(fake: FakeGraph) -> None:
    fake.script = lambda call: Answer(payload={"web": []})
    client = CapiClient(make_session(1), settings_for(fake.url, partner_agent="Capi-Pipeline-0.1.0"))
    assert client.dataset_quality("web{event_name}") == {"web": []}
    call = fake.calls[0]
    assert call.path == "/v25.0/dataset_quality"
    assert call.query == {"dataset_id": ["1234567890"], "fields": ["web{event_name}"],
                          "agent_name": ["capi-pipeline-0.1.0"]}
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"


def test_dry_run_client_writes_the_body(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = DryRunClient(tmp_path / "dry", settings_for("http://unused", test_event_code="T"))
    result = client.send(events(2), batch_id="abc")
    assert (result.events_received, result.fbtrace_id, result.messages) == (2, None, ["dry-run"])
    written = (tmp_path / "dry" / "abc.json").read_text()
    assert orjson.loads(written) == {"data": events(2), "test_event_code": "T"}
    assert TOKEN not in written


# ---------------------------------------------------------------------------------------------- sandbox

def test_sandbox_accepts_and_logs_no_token() -> None:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(port=0, token=TOKEN)) as sb:
        client = CapiClient(make_session(1), settings_for(sb.url, partner_agent="capi-pipeline-0.1.0"))
        assert client.send(events(3), batch_id="s1").events_received == 3
        assert isinstance(client.dataset_quality("web{event_name}"), dict)
        logged = sb.requests()
        assert sb.stats()["datasets"]["1234567890"]["unique_events"] == 3
    assert len(logged) == 2
    assert all(not r["token_in_url"] and r["token_source"] == "header" for r in logged)
    assert TOKEN not in json.dumps(logged)


@pytest.mark.parametrize(("config", "token", "expected", "code"), [
    ({"token": "right-token"}, "wrong-token", TerminalUploadError, 190),
    ({"datasets": ("42",)}, TOKEN, TerminalUploadError, 100),
])
def test_sandbox_terminal_answers(config: dict, token: str, expected: type, code: int) -> None:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(port=0, **config)) as sb:
        client = CapiClient(make_session(1), settings_for(sb.url, token=Secret(token)))
        with pytest.raises(expected) as info:
            client.send(events(1), batch_id="s2")
    assert info.value.code == code and token not in str(info.value)


def test_sandbox_rejects_a_bad_event_as_invalid() -> None:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    bad = events(2)
    bad[1]["event_time"] = int(time.time()) - 90 * 86400
    with run_sandbox(SandboxConfig(port=0)) as sb:
        client = CapiClient(make_session(1), settings_for(sb.url))
        with pytest.raises(InvalidEventsError) as info:
            client.send(bad, batch_id="s3")
    assert (info.value.code, info.value.subcode) == (100, 2804003)


@pytest.mark.parametrize("error, subcode, field", [
    ({"error_data": {"blame_field_specs": [["user_data", "em"]]}}, 2804001, "user_data.em"),
    ({"error_data": '{"blame_field_specs": [["event_time"], ["event_time"]]}'}, None, "event_time"),
    ({"error_data": {"blame_field_specs": [["user_data", "a@b.com"]]}}, None, None),  # never a value
    ({}, 2804050, "user_data"), ({}, 2804003, "event_time"), ({}, 2804001, None), (None, None, None),
    ({"error_data": "not json"}, None, None),
])
def test_blamed_field(error, subcode, field) -> None:
    from capi_pipeline.client import blamed_field

    assert blamed_field(error, subcode) == field
