"""A simple, documented stand-in for Meta's Dataset Quality API (capi.md §9).

Per event name, coverage(k) = share of stored events whose user_data has key k. The match score is
`min(10, sum(WEIGHTS[k] * coverage(k)))` rounded half-up to one decimal (keys not listed weigh 0.25). Weights follow the
high/medium/low tiers of capi.md §9: e.g. email+phone+IP at full coverage score 6.0, email alone 3.0.
`web` lists website events (composite_score = match score); `offline` lists every other action source except app
(composite.score = match_key.score = match score; coverage of email/phone in percent). App events get no entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["WEIGHTS", "dataset_quality", "match_score", "requested_sections"]

WEIGHTS: dict[str, float] = {
    "em": 3.0, "fbc": 2.0, "ph": 1.5, "client_ip_address": 1.5,
    "external_id": 1.0, "fbp": 1.0, "db": 0.75, "country": 0.75, "fb_login_id": 0.75, "madid": 0.75,
    "client_user_agent": 0.5, "fn": 0.5, "ln": 0.5,
    "ct": 0.25, "st": 0.25, "zp": 0.25, "ge": 0.25, "lead_id": 0.25,
}
_DEFAULT_WEIGHT = 0.25


def match_score(coverage: Mapping[str, float]) -> float:
    """0-10 score from per-key coverage fractions."""
    total = sum(WEIGHTS.get(key, _DEFAULT_WEIGHT) * share for key, share in coverage.items())
    return math.floor(min(10.0, total) * 10 + 0.5 + 1e-9) / 10  # half-up, unlike round()


def requested_sections(fields: str | None) -> set[str]:
    """Top-level names in a Graph `fields` expression such as `web{event_name,...},offline{...}`."""
    if not fields:
        return {"web", "offline"}
    names, depth, current = set(), 0, ""
    for char in fields:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            names.add(current.strip())
            current = ""
        elif depth == 0:
            current += char
    names.add(current.strip())
    return {name for name in names if name in ("web", "offline")} or {"web", "offline"}


def _coverage(events: list[Mapping[str, Any]]) -> dict[str, float]:
    counts: dict[str, int] = {}
    for event in events:
        for key, value in (event.get("user_data") or {}).items():
            if value not in (None, "", []):
                counts[key] = counts.get(key, 0) + 1
    return {key: n / len(events) for key, n in sorted(counts.items())}


def dataset_quality(events: Iterable[Mapping[str, Any]], fields: str | None = None) -> dict[str, Any]:
    """Dataset Quality API answer for these stored event dicts."""
    web: dict[str, list[Mapping[str, Any]]] = {}
    offline: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        source = event.get("action_source")
        if source == "app":
            continue
        bucket = web if source == "website" else offline
        bucket.setdefault(str(event.get("event_name")), []).append(event)
    sections = requested_sections(fields)
    answer: dict[str, Any] = {}
    if "web" in sections:
        answer["web"] = []
        for name, group in sorted(web.items()):
            coverage = _coverage(group)
            answer["web"].append({"event_name": name, "event_match_quality": {
                "composite_score": match_score(coverage),
                "match_key_feedback": [{"identifier": key, "coverage": {"percentage": round(100 * share, 1)}}
                                       for key, share in coverage.items()]}})
    if "offline" in sections:
        answer["offline"] = []
        for name, group in sorted(offline.items()):
            coverage = _coverage(group)
            score = match_score(coverage)
            answer["offline"].append({"event_name": name, "composite": {"score": score}, "match_key": {
                "score": score, "coverage": {"email": round(100 * coverage.get("em", 0.0), 1),
                                             "phone": round(100 * coverage.get("ph", 0.0), 1)}}})
    return answer
