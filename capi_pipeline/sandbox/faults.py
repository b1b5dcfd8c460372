"""Fault specs and deterministic fault injection for the sandbox's `/events` endpoint.

Grammar (comma list, whitespace ignored, empty string = no faults):

    spec   := item ("," item)*
    item   := NAME "=" RATE        probability in [0, 1] per request; rates must sum to <= 1
            | NAME "=" N "x"       the next N requests get this fault, then rates apply (e.g. code17=2x)
            | "slow_s" "=" SECONDS  sleep of `slow` (default 2.0)
            | "timeout_s" "=" SECONDS  sleep of `timeout` (default 30.0)
    NAME   := http5NN | code1 | code2 | code4 | code17 | code613 | code80004 | slow | timeout | after500

Every request draws one number from `random.Random(seed)` under a lock, so a given seed and request order always
give the same faults. All faults except `slow` and `after500` answer before the body is looked at (nothing stored):
`slow` sleeps then processes normally; `timeout` sleeps `timeout_s` then answers 500 (code 1); `after500` processes
and stores, then answers 500 (an ambiguous failure that makes retries double-send).
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from capi_pipeline.errors import ConfigurationError

__all__ = ["FAULT_NAMES", "FaultInjector", "FaultResponse", "FaultSpec", "fault_response", "graph_error",
           "parse_faults"]

FAULT_NAMES = ("code1", "code2", "code4", "code17", "code613", "code80004", "slow", "timeout", "after500")
_HTTP_FAULT = re.compile(r"http5\d\d")
_COUNT = re.compile(r"(\d+)x")


@dataclass(frozen=True)
class FaultSpec:
    """Parsed fault spec; `rates` and `counts` keep the order they were written in."""

    rates: tuple[tuple[str, float], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()
    slow_s: float = 2.0
    timeout_s: float = 30.0

    def __str__(self) -> str:
        parts = [f"{n}={r:g}" for n, r in self.rates] + [f"{n}={c}x" for n, c in self.counts]
        return ",".join(parts + [f"slow_s={self.slow_s:g}", f"timeout_s={self.timeout_s:g}"])


def _is_fault_name(name: str) -> bool:
    return name in FAULT_NAMES or bool(_HTTP_FAULT.fullmatch(name))


def parse_faults(spec: str | None) -> FaultSpec:
    """Parse a fault spec string; raises ConfigurationError naming the bad item."""
    rates: list[tuple[str, float]] = []
    counts: list[tuple[str, int]] = []
    params = {"slow_s": 2.0, "timeout_s": 30.0}
    for raw in (spec or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value:
            raise ConfigurationError(f"fault spec item {item!r} is not name=value")
        if name in params:
            try:
                params[name] = float(value)
            except ValueError:
                raise ConfigurationError(f"fault spec {name} must be a number of seconds") from None
            if params[name] < 0:
                raise ConfigurationError(f"fault spec {name} must be >= 0")
            continue
        if not _is_fault_name(name):
            raise ConfigurationError(f"unknown fault {name!r}; known: http5NN, {', '.join(FAULT_NAMES)}")
        count = _COUNT.fullmatch(value)
        if count:
            counts.append((name, int(count.group(1))))
            continue
        try:
            rate = float(value)
        except ValueError:
            raise ConfigurationError(f"fault {name} needs a rate in [0, 1] or a count like 3x") from None
        if not 0.0 <= rate <= 1.0:
            raise ConfigurationError(f"fault {name} rate must be in [0, 1]")
        rates.append((name, rate))
    if sum(rate for _, rate in rates) > 1.0 + 1e-9:
        raise ConfigurationError("fault rates must sum to at most 1")
    return FaultSpec(rates=tuple(rates), counts=tuple(counts), slow_s=params["slow_s"],
                     timeout_s=params["timeout_s"])


@dataclass
class FaultInjector:
    """Thread-safe, seeded fault draws: one draw per `/events` request."""

    spec: FaultSpec = field(default_factory=FaultSpec)
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.set_spec(self.spec)

    def set_spec(self, spec: FaultSpec | str | None) -> None:
        """Replace the spec and restart the random sequence from the seed."""
        parsed = spec if isinstance(spec, FaultSpec) else parse_faults(spec)
        with self._lock:
            self.spec = parsed
            self._rng = random.Random(self.seed)
            self._remaining = [[name, n] for name, n in parsed.counts]

    def draw(self) -> str | None:
        """The fault for the next request, or None."""
        with self._lock:
            roll = self._rng.random()
            for slot in self._remaining:
                if slot[1] > 0:
                    slot[1] -= 1
                    return str(slot[0])
            edge = 0.0
            for name, rate in self.spec.rates:
                edge += rate
                if roll < edge:
                    return name
            return None


@dataclass(frozen=True)
class FaultResponse:
    """An HTTP answer for an injected fault."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: tuple[tuple[str, str], ...] = ()


# name -> (http status, code, subcode, message); all are transient in Meta's sense.
_GRAPH_FAULTS: dict[str, tuple[int, int, int | None, str]] = {
    "code1": (500, 1, 99, "An unknown error occurred"),
    "code2": (500, 2, None, "Service temporarily unavailable"),
    "code4": (400, 4, None, "(#4) Application request limit reached"),
    "code17": (400, 17, 2446079, "(#17) User request limit reached"),
    "code613": (400, 613, 1487742, "(#613) Calls to this api have exceeded the rate limit."),
    "code80004": (400, 80004, 2446079,
                  "(#80004) There have been too many calls to this ad-account. Wait a bit and try again."),
    "timeout": (500, 1, None, "An unknown error occurred"),
    "after500": (500, 1, None, "An unknown error occurred"),
}


def graph_error(code: int, message: str, *, fbtrace_id: str, subcode: int | None = None,
                is_transient: bool = False, title: str | None = None, user_msg: str | None = None,
                type_: str = "OAuthException", blame: list[str] | None = None) -> dict[str, Any]:
    """A Meta-shaped error body; `error_subcode`/`error_user_*` are left out when None, as Meta does. `blame`: the
    field's path, sent as `error_data.blame_field_specs` (capi.md §7: the error may carry it)."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["is_transient"] = is_transient
    if title is not None:
        error["error_user_title"] = title
    if user_msg is not None:
        error["error_user_msg"] = user_msg
    if blame:
        error["error_data"] = {"blame_field_specs": [blame]}
    error["fbtrace_id"] = fbtrace_id
    return {"error": error}


def fault_response(name: str, *, fbtrace_id: str, dataset_id: str) -> FaultResponse:
    """The answer Meta (or its load balancer, for http5NN) would give for this fault."""
    if _HTTP_FAULT.fullmatch(name):
        status = int(name[4:])
        html = f"<html><body><h1>{status} Server Error</h1></body></html>"
        return FaultResponse(status=status, body=html.encode(), content_type="text/html; charset=UTF-8")
    status, code, subcode, message = _GRAPH_FAULTS[name]
    body = graph_error(code, message, fbtrace_id=fbtrace_id, subcode=subcode, is_transient=True)
    headers: tuple[tuple[str, str], ...] = ()
    if name == "code80004":
        usage = {dataset_id: [{"type": "ads_management", "call_count": 100, "total_cputime": 100,
                               "total_time": 100, "estimated_time_to_regain_access": 1}]}
        headers = (("X-Business-Use-Case-Usage", json.dumps(usage, separators=(",", ":"))),)
    return FaultResponse(status=status, body=json.dumps(body).encode(), headers=headers)
