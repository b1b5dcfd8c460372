"""HTTP side of the sandbox: routes, token rules, body parsing, `run_sandbox` and the CLI hooks.

Routes
    POST /{vN.N}/{dataset_id}/events        Meta's events edge (JSON, form-encoded or multipart body)
    GET  /{vN.N}/dataset_quality            Dataset Quality API stand-in (see quality.py)
    GET  /_sandbox/stats | /_sandbox/requests | /_sandbox/events?dataset_id=X[&limit=N&offset=N]
    GET  /_sandbox/faults  POST /_sandbox/faults {"spec": "..."}  POST /_sandbox/reset

Tokens are taken from `Authorization: Bearer`, the body's `access_token` or the query string, in that order; a
query-string token is accepted (Meta does) but logged as `token_in_url: true`. Missing or wrong -> HTTP 401, code 190.
Unknown dataset ids (not digits, or not in `SandboxConfig.datasets` when given) -> HTTP 400, code 100 / subcode 33.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import hmac
import logging
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from capi_pipeline.errors import ConfigurationError
from capi_pipeline.sandbox.faults import FaultInjector, fault_response, graph_error, parse_faults
from capi_pipeline.sandbox.quality import dataset_quality
from capi_pipeline.sandbox.store import RequestRecord, Store
from capi_pipeline.sandbox.validation import Rejection, ValidationRules, validate_request

__all__ = ["Sandbox", "SandboxConfig", "add_arguments", "main_from_args", "parse_body", "run_sandbox",
           "serve_forever"]

log = logging.getLogger("capi_pipeline.sandbox")

_EVENTS_PATH = re.compile(r"/(v\d+\.\d+)/([^/]+)/events/?")
_QUALITY_PATH = re.compile(r"/(v\d+\.\d+)/dataset_quality/?")
_DATA_INDEX = re.compile(r"data\[(\d+)\]")
_TOKEN_IN_QUERY = re.compile(r"((?:^|&)access_token=)[^&]*")
_MAX_BODY = 64 * 1024 * 1024
_JSON = "application/json; charset=UTF-8"


@dataclass(frozen=True)
class SandboxConfig:
    """How to run the sandbox. `token=None` accepts any non-empty token; `datasets=None` any numeric id."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    faults: str | None = None
    fault_seed: int = 0
    latency_ms: float = 0
    db_path: str | None = None
    datasets: tuple[str, ...] | None = None
    max_age_days: int = 7
    physical_store_max_age_days: int = 62
    future_tolerance_s: int = 600
    keep_events: bool = True  # False: every event is still validated and counted, but only its key is kept
    clock: Callable[[], float] = field(default=time.time, repr=False)

    def rules(self) -> ValidationRules:
        return ValidationRules(max_age_days=self.max_age_days,
                               physical_store_max_age_days=self.physical_store_max_age_days,
                               future_tolerance_s=self.future_tolerance_s)


def _trace_id() -> str:
    return "A" + secrets.token_urlsafe(8)


def redact_path(path: str) -> str:
    """The path and query exactly as received, except the value of an `access_token` parameter."""
    base, sep, query = path.partition("?")
    return base + sep + _TOKEN_IN_QUERY.sub(r"\1REDACTED", query) if sep else base


def _decode_event(item: Any) -> Any:
    """Events may arrive as objects or as JSON-encoded strings (Meta's `list<JSON-encoded string>`)."""
    if isinstance(item, str):
        try:
            return orjson.loads(item)
        except orjson.JSONDecodeError:
            return item
    return item


def _bad_body(message: str) -> Rejection:
    return Rejection(code=100, subcode=None, title="Invalid parameter", message=message, field="data")


def _form_to_body(fields: Mapping[str, list[str]]) -> tuple[dict[str, Any], Rejection | None]:
    body: dict[str, Any] = {key: values[0] for key, values in fields.items()
                            if key != "data" and not _DATA_INDEX.fullmatch(key)}
    indexed = sorted((int(m.group(1)), values[0]) for key, values in fields.items()
                     if (m := _DATA_INDEX.fullmatch(key)))
    if indexed:
        body["data"] = [value for _, value in indexed]
    elif len(fields.get("data", [])) > 1:
        body["data"] = list(fields["data"])
    elif "data" in fields:
        try:
            body["data"] = orjson.loads(fields["data"][0])
        except orjson.JSONDecodeError:
            return body, _bad_body("Param data must be a JSON-encoded array of events.")
    return body, None


@contextlib.contextmanager
def _released(lock: Any) -> Iterator[None]:
    """`lock` (held by the caller) released for the block, held again after."""
    lock.release()
    try:
        yield
    finally:
        lock.acquire()


def parse_body(content_type: str | None, raw: bytes) -> tuple[dict[str, Any], Rejection | None]:
    """Request body -> parameter dict with `data` decoded to a list of event objects where possible."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    body: dict[str, Any] = {}
    rejection: Rejection | None = None
    if ctype == "application/json" or (not ctype and raw.lstrip().startswith(b"{")):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}, _bad_body("The request body is not valid JSON.")
        if not isinstance(parsed, dict):
            return {}, _bad_body("The request body must be a JSON object.")
        body = parsed
    elif ctype == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + (content_type or "").encode("latin-1") + b"\r\n\r\n" + raw)
        fields: dict[str, list[str]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields.setdefault(str(name), []).append(payload.decode("utf-8", "replace"))
        body, rejection = _form_to_body(fields)
    elif raw:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return {}, _bad_body("The request body is not UTF-8.")
        body, rejection = _form_to_body(parse_qs(text, keep_blank_values=True))
    if isinstance(body.get("data"), list):
        body["data"] = [_decode_event(item) for item in body["data"]]
    return body, rejection


class Sandbox:
    """A running (or ready to run) sandbox: its state plus the HTTP server."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rules = config.rules()
        self.injector = FaultInjector(parse_faults(config.faults), seed=config.fault_seed)
        self.store = Store(config.db_path, keep_events=config.keep_events)
        self.stopping = threading.Event()
        # Events requests are handled one at a time, from parsing to the answer (never while a fault waits).
        # Python runs one thread at a time anyway; without the lock concurrent requests take turns every few
        # milliseconds (the GIL's switch interval) and evict each other's decoded events from the CPU caches.
        self.work = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> Sandbox:
        self._server = _Server((self.config.host, self.config.port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="capi-sandbox", daemon=True)
        self._thread.start()
        log.info("sandbox listening on %s", self.url)
        return self

    def close(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.store.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "sandbox is not running"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # in-process views of the /_sandbox endpoints
    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def events(self, dataset_id: str | None = None) -> list[dict[str, Any]]:
        return self.store.events(dataset_id)

    def requests(self) -> list[dict[str, Any]]:
        return self.store.requests()

    def reset(self) -> None:
        """Forget events and requests; the fault sequence restarts from the seed."""
        self.store.reset()
        self.injector.set_spec(self.injector.spec)

    def set_faults(self, spec: str | None) -> None:
        """Replace the fault spec; the random sequence restarts from the seed."""
        self.injector.set_spec(spec)

    def dataset_known(self, dataset_id: str) -> bool:
        if self.config.datasets is not None:
            return dataset_id in self.config.datasets
        return dataset_id.isdigit()

    def check_token(self, token: str | None) -> bool:
        if not token:
            return False
        if self.config.token is None:
            return True
        return hmac.compare_digest(token.encode(), self.config.token.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sandbox: Sandbox) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        """Drop kept-alive connections so a closed sandbox stops answering."""
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "capi-sandbox"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections give their thread back eventually
    server: _Server

    # plumbing
    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args if args else format)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, redact_path(self.path), code)

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str = _JSON,
              headers: tuple[tuple[str, str], ...] = (), trace: str | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if trace:
                self.send_header("x-fb-trace-id", trace)
            for name, value in headers:
                self.send_header(name, value)
            # headers and body in one write: two small writes meet delayed ACKs and cost ~40 ms
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, payload: Any, trace: str | None = None) -> None:
        self._send(status, orjson.dumps(payload), trace=trace)

    # routing
    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        started = time.monotonic()
        try:
            raw = self._read_body()
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                raw = gzip.decompress(raw)
        except (ValueError, OSError, EOFError):
            self._send_json(413, graph_error(100, "Request body too large or not decodable", fbtrace_id=_trace_id()))
            return
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        path = split.path
        if path.startswith("/_sandbox/"):
            self._admin(method, path, query, raw)
            return
        call = _ApiCall(method=method, path=redact_path(self.path), query=query, raw=raw, started=started,
                        content_type=self.headers.get("Content-Type"))
        if self.sandbox.config.latency_ms:
            self.sandbox.stopping.wait(self.sandbox.config.latency_ms / 1000)
        try:
            if method == "POST" and (m := _EVENTS_PATH.fullmatch(path)):
                with self.sandbox.work:
                    self._events(call, m.group(2))
            elif method == "GET" and _QUALITY_PATH.fullmatch(path):
                self._quality(call)
            else:
                call.kind = "other"
                self._error(call, 404, graph_error(2500, f"Unknown path components: {path}", fbtrace_id=call.trace))
        except Exception:  # a bug of the sandbox: an answer (as a Meta outage) and a traceback, not a dropped connection
            log.exception("sandbox failed on %s %s", method, call.path)
            if not call.answered:
                self._error(call, 500, graph_error(2, "Service temporarily unavailable", fbtrace_id=call.trace,
                                                   is_transient=True))

    # API endpoints
    def _token(self, call: _ApiCall, body: Mapping[str, Any]) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            call.token_source = "header"
            return value.strip()
        if isinstance(body.get("access_token"), str) and body["access_token"]:
            call.token_source = "body"
            return str(body["access_token"])
        if call.token_in_url:
            call.token_source = "query"
            return call.query["access_token"][0]
        return None

    def _token_error(self, call: _ApiCall, token: str | None) -> bool:
        if self.sandbox.check_token(token):
            return False
        message = ("An access token is required to request this resource." if not token
                   else "Invalid OAuth access token - Cannot parse access token")
        self._error(call, 401, graph_error(190, message, fbtrace_id=call.trace))
        return True

    def _events(self, call: _ApiCall, dataset_id: str) -> None:
        call.kind, call.dataset_id = "events", dataset_id
        body, parse_rejection = parse_body(call.content_type, call.raw)
        for key, values in call.query.items():  # Graph merges query and body parameters
            if key != "access_token":
                body.setdefault(key, values[0])
        if isinstance(body.get("data"), list):
            call.events = len(body["data"])
        for key in ("partner_agent", "test_event_code"):
            if isinstance(body.get(key), str):
                setattr(call, key, body[key])
        if self._token_error(call, self._token(call, body)):
            return
        if not self.sandbox.dataset_known(dataset_id):
            self._error(call, 400, graph_error(
                100, f"Unsupported post request. Object with ID '{dataset_id}' does not exist, cannot be loaded "
                "due to missing permissions, or does not support this operation.", fbtrace_id=call.trace,
                subcode=33))
            return
        fault = self.sandbox.injector.draw()
        spec = self.sandbox.injector.spec
        if fault in ("slow", "timeout"):
            call.fault = fault
            with _released(self.sandbox.work):  # other requests go on meanwhile
                self.sandbox.stopping.wait(spec.slow_s if fault == "slow" else spec.timeout_s)
        if fault not in (None, "slow", "after500"):
            call.fault = fault
            answer = fault_response(fault, fbtrace_id=call.trace, dataset_id=dataset_id)
            self._finish(call, answer.status, answer.body, answer.content_type, answer.headers,
                         error=orjson.loads(answer.body)["error"] if answer.content_type == _JSON else None)
            return
        rejection = parse_rejection or validate_request(body, now=self.sandbox.config.clock(),
                                                        rules=self.sandbox.rules)
        if rejection is not None:
            log.info("rejected request to dataset %s: code %s/%s field %s event %s", dataset_id, rejection.code,
                     rejection.subcode, rejection.field, rejection.event_index)
            self._error(call, rejection.http_status, graph_error(
                rejection.code, "(#100) " + rejection.title if rejection.code == 100 else rejection.title,
                fbtrace_id=call.trace, subcode=rejection.subcode, title=rejection.title,
                user_msg=rejection.message,
                blame=rejection.field.split(".") if rejection.field and rejection.event_index is not None else None))
            return
        events = body["data"]
        try:
            self.sandbox.store.add_events(dataset_id, events, params=body, fbtrace_id=call.trace,
                                          received_at=time.time())
        except Exception:  # a broken store is the sandbox's fault: answer like a Meta outage
            log.exception("could not store events for dataset %s", dataset_id)
            self._error(call, 500, graph_error(2, "Service temporarily unavailable", fbtrace_id=call.trace,
                                               is_transient=True))
            return
        if fault == "after500":
            call.fault = fault
            answer = fault_response(fault, fbtrace_id=call.trace, dataset_id=dataset_id)
            self._finish(call, answer.status, answer.body, error=orjson.loads(answer.body)["error"])
            return
        self._finish(call, 200, orjson.dumps({"events_received": len(events), "messages": [],
                                              "fbtrace_id": call.trace}))

    def _quality(self, call: _ApiCall) -> None:
        call.kind = "dataset_quality"
        if self._token_error(call, self._token(call, {})):
            return
        dataset_id = (call.query.get("dataset_id") or [""])[0]
        call.dataset_id = dataset_id or None
        if not dataset_id:
            self._error(call, 400, graph_error(100, "(#100) The parameter dataset_id is required",
                                               fbtrace_id=call.trace))
            return
        known = self.sandbox.config.datasets is not None and dataset_id in self.sandbox.config.datasets
        if not known and not self.sandbox.store.has_dataset(dataset_id):
            self._error(call, 400, graph_error(100, "Dataset not found", fbtrace_id=call.trace, subcode=2044055,
                                               title="Dataset not found",
                                               user_msg="No dataset with this id is visible to this token."))
            return
        fields = (call.query.get("fields") or [None])[0]
        events = [item["event"] for item in self.sandbox.store.events(dataset_id)]
        self._finish(call, 200, orjson.dumps(dataset_quality(events, fields)))

    def _error(self, call: _ApiCall, status: int, payload: dict[str, Any]) -> None:
        self._finish(call, status, orjson.dumps(payload), error=payload["error"])

    def _finish(self, call: _ApiCall, status: int, body: bytes, content_type: str = _JSON,
                headers: tuple[tuple[str, str], ...] = (), error: Mapping[str, Any] | None = None) -> None:
        """Log the call (never the token or body), then answer."""
        record = RequestRecord(
            ts=time.time(), kind=call.kind, method=call.method, path=call.path, content_type=call.content_type,
            dataset_id=call.dataset_id, events=call.events, status=status,
            error_code=error.get("code") if error else None, error_subcode=error.get("error_subcode") if error
            else None, token_in_url=call.token_in_url, token_source=call.token_source, fault=call.fault,
            fbtrace_id=call.trace, partner_agent=call.partner_agent, test_event_code=call.test_event_code,
            duration_ms=round((time.monotonic() - call.started) * 1000, 3))
        try:
            self.sandbox.store.log_request(record)
        except Exception:  # a closed store during shutdown must not hide the answer
            log.exception("could not log request")
        call.answered = True
        self._send(status, body, content_type, headers, trace=call.trace)

    # admin endpoints (not logged, no token)
    def _admin(self, method: str, path: str, query: Mapping[str, list[str]], raw: bytes) -> None:
        sandbox = self.sandbox
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_sandbox/stats"):
            self._send_json(200, sandbox.stats())
        elif route == ("GET", "/_sandbox/requests"):
            self._send_json(200, sandbox.requests())
        elif route == ("GET", "/_sandbox/events"):
            dataset_id = (query.get("dataset_id") or [None])[0]
            limit = int(query["limit"][0]) if "limit" in query else None
            offset = int(query["offset"][0]) if "offset" in query else 0
            self._send_json(200, sandbox.store.events(dataset_id, limit=limit, offset=offset))
        elif route == ("POST", "/_sandbox/reset"):
            sandbox.reset()
            self._send_json(200, {"ok": True})
        elif route == ("GET", "/_sandbox/faults"):
            self._send_json(200, {"spec": str(sandbox.injector.spec), "seed": sandbox.injector.seed})
        elif route == ("POST", "/_sandbox/faults"):
            try:
                spec = orjson.loads(raw or b"{}").get("spec") if raw else None
                sandbox.set_faults(spec)
            except (ConfigurationError, orjson.JSONDecodeError, AttributeError) as exc:
                self._send_json(400, {"error": {"message": str(exc), "code": 100}})
                return
            self._send_json(200, {"spec": str(sandbox.injector.spec)})
        else:
            self._send_json(404, {"error": {"message": f"unknown sandbox route {method} {path}", "code": 100}})


@dataclass
class _ApiCall:
    """What the handler learns about one API call while answering it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    raw: bytes
    started: float
    content_type: str | None
    kind: str = "other"
    dataset_id: str | None = None
    events: int | None = None
    token_source: str | None = None
    fault: str | None = None
    partner_agent: str | None = None
    test_event_code: str | None = None
    trace: str = field(default_factory=_trace_id)
    answered: bool = False  # set by _finish: an error after the answer must not answer twice

    @property
    def token_in_url(self) -> bool:
        return "access_token" in self.query


@contextlib.contextmanager
def run_sandbox(config: SandboxConfig | None = None) -> Iterator[Sandbox]:
    """Start a sandbox on a background thread; stop it (and drop its connections) on exit."""
    sandbox = Sandbox(config or SandboxConfig()).start()
    try:
        yield sandbox
    finally:
        sandbox.close()


QUIET_GC_THRESHOLDS = (50_000, 20, 100)  # gc.set_threshold for a server process decoding large JSON bodies


def serve_forever(config: SandboxConfig) -> None:
    """Run until SIGINT or SIGTERM, printing `sandbox listening on URL` once started."""
    stop = threading.Event()
    previous: dict[int, Any] = {}
    previous_gc = gc.get_threshold()
    # A request of 1,000 events decodes to ~15,000 dicts and lists, all freed by reference counting. With the
    # default thresholds (a young collection every 700 new objects) the collector re-scanned them ~20 times per
    # request: over half of the sandbox's CPU per event (20-25 -> 8-12 us, bench/README.md). Collect rarely.
    gc.set_threshold(*QUIET_GC_THRESHOLDS)
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: rely on the caller to stop us
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        with run_sandbox(config) as sandbox:
            print(f"sandbox listening on {sandbox.url}", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        gc.set_threshold(*previous_gc)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `capi-pipeline sandbox`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    parser.add_argument("--token", default=None, help="only accept this token (default: any non-empty token)")
    parser.add_argument("--faults", default=None, metavar="SPEC",
                        help="fault injection, e.g. http500=0.05,code4=0.02,slow=0.02,timeout=0.01,slow_s=2")
    parser.add_argument("--fault-seed", type=int, default=0, metavar="S", help="seed of the fault draws")
    parser.add_argument("--latency-ms", type=float, default=0, metavar="N", help="added to every API request")
    parser.add_argument("--db", default=None, metavar="PATH", help="SQLite file to keep events across restarts")
    parser.add_argument("--dataset", action="append", default=None, metavar="ID",
                        help="only accept these dataset ids (repeatable; default: any numeric id)")
    parser.add_argument("--keys-only", action="store_true",
                        help="validate and count every event but keep only its dedup key, not its JSON "
                             "(large benchmarks; /_sandbox/events then lists nothing)")


def main_from_args(args: argparse.Namespace) -> int:
    """Run the sandbox from parsed CLI flags; returns the exit code."""
    config = SandboxConfig(host=args.host, port=args.port, token=args.token, faults=args.faults,
                           fault_seed=args.fault_seed, latency_ms=args.latency_ms, db_path=args.db,
                           datasets=tuple(args.dataset) if getattr(args, "dataset", None) else None,
                           keep_events=not getattr(args, "keys_only", False))
    try:
        parse_faults(config.faults)
    except ConfigurationError as exc:
        print(f"capi-pipeline sandbox: {exc}", file=sys.stderr)
        return 2
    serve_forever(config)
    return 0
