"""A local stand-in for Meta's Graph API `/events` edge, for tests, the demo and benchmarks.

    from capi_pipeline.sandbox import run_sandbox, SandboxConfig
    with run_sandbox(SandboxConfig(faults="code4=0.05", fault_seed=1)) as sb:
        requests.post(f"{sb.url}/v25.0/123/events", json={"data": [...]}, headers={"Authorization": "Bearer t"})
        sb.stats(); sb.events("123"); sb.requests(); sb.set_faults(""); sb.reset()

Modules: validation (Meta's per-request rules, pure), faults (spec grammar, seeded injection), store (SQLite
record of accepted events and the request log), quality (Dataset Quality API formula), server (HTTP, CLI hooks).
"""

from __future__ import annotations

from capi_pipeline.sandbox.faults import FaultSpec, parse_faults
from capi_pipeline.sandbox.server import (
    Sandbox,
    SandboxConfig,
    add_arguments,
    main_from_args,
    parse_body,
    run_sandbox,
    serve_forever,
)
from capi_pipeline.sandbox.validation import Rejection, ValidationRules, validate_event, validate_request

__all__ = [
    "FaultSpec",
    "Rejection",
    "Sandbox",
    "SandboxConfig",
    "ValidationRules",
    "add_arguments",
    "main_from_args",
    "parse_body",
    "parse_faults",
    "run_sandbox",
    "serve_forever",
    "validate_event",
    "validate_request",
]
