"""The only network code: POST one batch of server events to Meta and classify the answer.

    send(events) ──200, events_received == len(events)──> SendResult
        │
        ├─ ThrottledError       codes 4, 17, 32, 613, 80000-80014, HTTP 429     back off, lower concurrency
        ├─ TransientUploadError HTTP 5xx/408, codes 1, 2, 341, 368, is_transient, timeouts, connection
        │                       errors, a 200 whose events_received != len(events)   retry, same event ids
        ├─ InvalidEventsError   code 100 (any subcode but 33)                    bisect the batch
        └─ TerminalUploadError  190, 10, 200-299, 100/33, dataset not found, other 4xx   stop the run

The token travels only in the `Authorization: Bearer` header, never in a URL or a body. Meta's error text can
echo what we sent, so it is scrubbed (tokens, e-mails, phone-like digit runs, SHA-256 hex) and cut short
before it goes into an exception; request bodies never do. `requests` exceptions name the URL; they are
replaced (not chained) by our own errors whose message names only the exception type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from capi_pipeline.errors import (
    DeliveryError,
    TerminalUploadError,
    ThrottledError,
    TransientUploadError,
)
from capi_pipeline.payload import JsonArray

__all__ = [
    "CapiClient",
    "ClientSettings",
    "DryRunClient",
    "InvalidEventsError",
    "Secret",
    "SendResult",
    "classify_error",
    "make_session",
    "scrub",
]

MAX_MESSAGE_CHARS = 300
# seconds to wait before retrying codes that mean "come back much later" (UNCONFIRMED durations)
LONG_BACKOFF_S = {341: 60.0, 368: 300.0}
THROTTLE_CODES = frozenset({4, 17, 32, 613}) | frozenset(range(80000, 80015))
TERMINAL_CODES = frozenset({190, 10, 803}) | frozenset(range(200, 300))
# Dataset Quality API "dataset not found", and 100/33 "object does not exist or no permission"
TERMINAL_SUBCODES = frozenset({2044055})


@dataclass(frozen=True)
class Secret:
    """A value that must never be printed: repr and str are masked; read `.value` where it is needed."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class ClientSettings:
    endpoint: str  # "https://graph.facebook.com" or "http://127.0.0.1:PORT"
    api_version: str  # "v25.0"
    dataset_id: str
    token: Secret
    timeout_s: float = 30.0
    test_event_code: str | None = None
    partner_agent: str | None = None
    upload_tag: str | None = None
    namespace_id: str | None = None


@dataclass(frozen=True)
class SendResult:
    events_received: int
    fbtrace_id: str | None
    messages: list[str]


class InvalidEventsError(DeliveryError):
    """Meta rejected the request as invalid (code 100 but not 100/33): some event in it is bad; bisect."""


# ---------------------------------------------------------------------------------------------- scrubbing

_SCRUB_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?i)(access_token|appsecret_proof|token)([\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+"), r"\1\2***"),
    (re.compile(r"(?i)bearer\s+[^\s\"',}]+"), "Bearer ***"),
    (re.compile(r"EAA[A-Za-z0-9_-]{10,}"), "***"),
    (re.compile(r"[^\s@\"'<>(),;:]+@[^\s@\"'<>(),;:]+\.[A-Za-z]{2,}"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{64}\b"), "<sha256>"),
    (re.compile(r"\+?\d[\d\s().-]{7,}\d"), "<number>"),
]


_MIN_SECRET = 8  # Meta's tokens are ~200 characters


def scrub(text: str, *, secrets: tuple[str, ...] = (), sent: tuple[str, ...] = ()) -> str:
    """Meta's text made safe to log: no tokens, e-mails, phone-like numbers or hashes, and none of the `sent`
    values (what the request carried: Meta may quote it back); at most 300 chars."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET:  # a test token "x" would otherwise star every x of the text
            text = text.replace(secret, "***")
    for value in sent:
        if value in text:
            text = text.replace(value, "<sent value>")
    for pattern, replacement in _SCRUB_PATTERNS:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


_MIN_QUOTED = 4  # shorter sent texts ("m", "us") are no customer value worth hiding, and would mangle words


def sent_values(payload: bytes) -> tuple[str, ...]:
    """The user_data texts of a request body (raw ones: IP, user agent, fbc, madid, partner_id...; the hashes go
    by pattern), longest first: what `scrub` hides should Meta quote them back in an error."""
    try:
        events = orjson.loads(payload).get("data") or []
    except (orjson.JSONDecodeError, AttributeError):
        return ()
    found: set[str] = set()
    for event in events if isinstance(events, list) else ():
        user_data = event.get("user_data") if isinstance(event, dict) else None
        for value in user_data.values() if isinstance(user_data, dict) else ():
            for v in value if isinstance(value, list) else (value,):
                if isinstance(v, (str, int)) and not isinstance(v, bool) and len(str(v)) >= _MIN_QUOTED:
                    found.add(str(v))
    return tuple(sorted(found, key=len, reverse=True))


# ---------------------------------------------------------------------------------------------- classification

def classify_error(http_status: int, error: dict[str, Any] | None) -> type[DeliveryError]:
    """Which error class an answer belongs to; `error` is the body's "error" object (None if unreadable)."""
    error = error or {}
    code = _as_int(error.get("code"))
    subcode = _as_int(error.get("error_subcode"))
    if http_status == 429 or code in THROTTLE_CODES:
        return ThrottledError
    if error.get("is_transient") is True or code in (1, 2) or code in LONG_BACKOFF_S:
        return TransientUploadError
    if code in TERMINAL_CODES or subcode in TERMINAL_SUBCODES or (code == 100 and subcode == 33):
        return TerminalUploadError
    if code == 100:
        return InvalidEventsError
    if http_status >= 500 or http_status == 408:
        return TransientUploadError
    # unknown 4xx (or a 200 carrying an error): retrying will not help and could storm; stop and look
    return TerminalUploadError


# capi.md §7: the subcodes whose field is known (the others' meanings are UNCONFIRMED)
_SUBCODE_FIELDS = {2804003: "event_time", 2804050: "user_data"}
_FIELD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def blamed_field(error: dict[str, Any] | None, subcode: int | None) -> str | None:
    """The field Meta blames for an invalid event: `error_data.blame_field_specs` ([["user_data", "em"]] ->
    "user_data.em"; error_data may come as JSON text), else what the subcode means; None when unknown. Only
    field names (letters, digits, "_") are taken: never a value."""
    data = (error or {}).get("error_data")
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except ValueError:
            data = None
    specs = data.get("blame_field_specs") if isinstance(data, dict) else None
    names = []
    for spec in specs if isinstance(specs, list) else []:
        parts = spec if isinstance(spec, list) else [spec]
        if parts and all(isinstance(p, str) and _FIELD_NAME.fullmatch(p) for p in parts):
            names.append(".".join(parts))
    if names:
        return ", ".join(dict.fromkeys(names))
    return _SUBCODE_FIELDS.get(subcode) if subcode is not None else None


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _retry_after_s(response: requests.Response, code: int | None) -> float | None:
    """The longest wait the answer asks for: Retry-After, BUC `estimated_time_to_regain_access`, long codes."""
    hints: list[float] = []
    retry_after = response.headers.get("Retry-After")
    if retry_after:
        try:
            hints.append(float(retry_after))
        except ValueError:
            pass  # an HTTP date: rare from Graph; exponential backoff covers it
    for header in ("X-Business-Use-Case-Usage", "X-Ad-Account-Usage", "X-App-Usage"):
        raw = response.headers.get(header)
        if raw:
            hints.extend(_usage_wait_s(raw))
    if code in LONG_BACKOFF_S:
        hints.append(LONG_BACKOFF_S[code])
    return max(hints) if hints else None


def _usage_wait_s(raw: str) -> list[float]:
    """`estimated_time_to_regain_access` (minutes) anywhere in a usage header, as seconds."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "estimated_time_to_regain_access" and isinstance(value, (int, float)) and value > 0:
                    found.append(float(value) * 60.0)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(parsed)
    return found


# ---------------------------------------------------------------------------------------------- HTTP

def make_session(pool_size: int) -> requests.Session:
    """A session whose pool fits `pool_size` concurrent requests; urllib3 never retries (upload.py does)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=max(1, pool_size), pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class _Bearer(requests.auth.AuthBase):
    """`Authorization: Bearer <token>`, set as requests' `auth`: a request without one makes requests read
    ~/.netrc ($NETRC) each time and, when it names the host, send Basic auth in place of our header."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


class CapiClient:
    """POST batches to `{endpoint}/{api_version}/{dataset_id}/events`; read the Dataset Quality API."""

    def __init__(self, session: requests.Session, settings: ClientSettings) -> None:
        self.session = session
        self.settings = settings
        base = settings.endpoint.rstrip("/")
        self.events_url = f"{base}/{settings.api_version}/{settings.dataset_id}/events"
        self.quality_url = f"{base}/{settings.api_version}/dataset_quality"
        self._auth = _Bearer(settings.token.value)
        # The proxy and CA-bundle variables (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...), read once for our
        # host: with `trust_env` on, requests reads the whole environment again on every request (~0.6 ms each).
        self._env = session.merge_environment_settings(self.events_url, {}, None, None, None)
        session.trust_env = False

    def request_body(self, events: Sequence[dict]) -> dict:
        """Exactly what `send` POSTs (the token is not in it); a `payload.JsonArray` goes in as it is."""
        body: dict[str, Any] = {"data": events.fragment() if isinstance(events, JsonArray) else events}
        s = self.settings
        for key, value in (("test_event_code", s.test_event_code), ("partner_agent", s.partner_agent),
                           ("upload_tag", s.upload_tag), ("namespace_id", s.namespace_id)):
            if value:
                body[key] = value
        return body

    def send(self, events: Sequence[dict], *, batch_id: str) -> SendResult:
        """POST one batch (dicts, or a `payload.JsonArray`); success means HTTP 200 and
        `events_received == len(events)`.

        A 200 whose `events_received` differs is raised as TransientUploadError: Meta did not take the whole
        batch, and resending it with the same event ids is the only way to make sure everything arrives.
        """
        payload = orjson.dumps(self.request_body(events))
        response = self._request("POST", self.events_url, batch_id=batch_id, data=payload,
                                 headers={"Content-Type": "application/json"})
        body = self._json(response)
        if response.status_code != 200 or not isinstance(body, dict) or "error" in body:
            raise self._error(response, body, batch_id, sent=payload)
        received = _as_int(body.get("events_received"))
        fbtrace_id = body.get("fbtrace_id") if isinstance(body.get("fbtrace_id"), str) else None
        if received != len(events):
            raise TransientUploadError(
                f"batch {batch_id}: Meta acknowledged {received} of {len(events)} events",
                fbtrace_id=fbtrace_id, batch_id=batch_id, http_status=200)
        messages = body.get("messages") or []
        quoted = sent_values(payload) if messages else ()
        return SendResult(events_received=received, fbtrace_id=fbtrace_id,
                          messages=[self._scrub(str(m), quoted) for m in messages]
                          if isinstance(messages, list) else [])

    def dataset_quality(self, fields: str) -> dict:
        """GET the Dataset Quality API for this dataset (token in the header, never in the URL)."""
        params: dict[str, str] = {"dataset_id": self.settings.dataset_id, "fields": fields}
        if self.settings.partner_agent:
            params["agent_name"] = self.settings.partner_agent.lower()
        response = self._request("GET", self.quality_url, batch_id=None, params=params)
        body = self._json(response)
        if response.status_code != 200 or not isinstance(body, dict) or "error" in body:
            raise self._error(response, body, None)
        return body

    # -- internals

    def _request(self, method: str, url: str, *, batch_id: str | None, **kwargs: Any) -> requests.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        where = f"batch {batch_id}" if batch_id else "dataset_quality"
        try:
            return self.session.request(method, url, headers=headers, auth=self._auth,
                                        timeout=self.settings.timeout_s, allow_redirects=False,
                                        proxies=self._env["proxies"], verify=self._env["verify"],
                                        cert=self._env["cert"], **kwargs)
        except requests.Timeout:
            error: DeliveryError = TransientUploadError(
                f"{where}: no answer within {self.settings.timeout_s:g}s", batch_id=batch_id)
        except requests.ConnectionError as exc:
            error = TransientUploadError(f"{where}: connection failed ({type(exc).__name__})", batch_id=batch_id)
        except requests.RequestException as exc:
            error = TransientUploadError(f"{where}: request failed ({type(exc).__name__})", batch_id=batch_id)
        # raised outside the except blocks: the requests exception (its text names the URL) is not chained
        raise error

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None

    def _scrub(self, text: str, sent: tuple[str, ...] = ()) -> str:
        return scrub(text, secrets=(self.settings.token.value,), sent=sent)

    def _error(self, response: requests.Response, body: Any, batch_id: str | None, *,
               sent: bytes | None = None) -> DeliveryError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = None
        status = response.status_code
        cls = classify_error(status, error)
        where = f"batch {batch_id}" if batch_id else "dataset_quality"
        if error is None:
            text = f"{where}: HTTP {status} without a Graph error body"
            code = subcode = None
            fbtrace_id = response.headers.get("x-fb-trace-id")
        else:
            code = _as_int(error.get("code"))
            subcode = _as_int(error.get("error_subcode"))
            fbtrace_id = error.get("fbtrace_id") if isinstance(error.get("fbtrace_id"), str) else None
            parts = [str(error.get("message") or "")]
            for key in ("error_user_title", "error_user_msg"):
                if error.get(key):
                    parts.append(str(error[key]))
            detail = self._scrub(" | ".join(p for p in parts if p), sent_values(sent) if sent else ())
            text = f"{where}: HTTP {status} code {code}" + (f"/{subcode}" if subcode else "") + f": {detail}"
        exc = cls(text, code=code, subcode=subcode, fbtrace_id=fbtrace_id, batch_id=batch_id, http_status=status)
        exc.retry_after_s = _retry_after_s(response, code)  # type: ignore[attr-defined]
        exc.blame = blamed_field(error, subcode)  # type: ignore[attr-defined]
        return exc


class DryRunClient:
    """Same `send` as CapiClient, but writes each request body to `<directory>/<batch_id>.json` instead."""

    dry_run = True

    def __init__(self, directory: str | Path, settings: ClientSettings) -> None:
        self.directory = Path(directory)
        self.settings = settings
        self._builder = CapiClient(requests.Session(), settings)

    def request_body(self, events: Sequence[dict]) -> dict:
        return self._builder.request_body(events)

    def send(self, events: Sequence[dict], *, batch_id: str) -> SendResult:
        # decoded, so the whole file is indented and its keys sorted: a JsonArray, and the JSON cells a body
        # carries as their text (orjson.Fragment, e.g. contents)
        events = events.decoded() if isinstance(events, JsonArray) else orjson.loads(orjson.dumps(list(events)))
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{batch_id}.json"
        path.write_bytes(orjson.dumps(self.request_body(events), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        return SendResult(events_received=len(events), fbtrace_id=None, messages=["dry-run"])
