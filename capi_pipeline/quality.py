"""Match quality: our own predicted score per event name, and Meta's scores from the Dataset Quality API.

`predict_match_quality` is pure (counts in, scores out). `fetch_dataset_quality` is the one network call (through
`CapiClient.dataset_quality`); `add_meta_scores` writes Meta's answer into a stored report.json and re-renders
report.html; `cmd_quality` is the `capi-pipeline quality` subcommand.

Predicted score (an ESTIMATE: Meta does not publish its formula; capi.md §9 only ranks keys High / Medium / Low):

    coverage(k) = events of that name sent with key k / events of that name        (0..1)
    S           = sum over keys of WEIGHT[k] * coverage(k)
    score       = round(10 * (1 - exp(-S / 4)), 1)                                 (0..10)
    overall     = event-weighted mean of the per-name scores

    WEIGHT: High em, fbc 3.0; Medium fb_login_id, db, country, ph, external_id, fbp, madid, partner_id 1.5;
            client_ip_address 1.0; Low lead_id, fn, ln, ct, zp, client_user_agent, anon_id 0.5; st, ge 0.25.

The saturating curve gives diminishing returns: e-mail alone on every event scores 5.3, e-mail + phone 6.8,
e-mail + phone + name, city, zip, country, date of birth and an external id 9.4; keys on a fraction of the events
count for that fraction.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capi_pipeline.errors import ConfigurationError, DeliveryError
from capi_pipeline.report import atomic_write_text

__all__ = [
    "EMQ_WEIGHTS",
    "FORMULA",
    "OFFLINE_FIELDS",
    "WEB_FIELDS",
    "add_meta_scores",
    "add_quality_arguments",
    "cmd_quality",
    "fetch_dataset_quality",
    "latest_report",
    "normalize_dataset_quality",
    "predict_match_quality",
]

_HIGH, _MEDIUM, _LOW = 3.0, 1.5, 0.5
EMQ_WEIGHTS: dict[str, float] = {
    "em": _HIGH, "fbc": _HIGH,
    "fb_login_id": _MEDIUM, "db": _MEDIUM, "country": _MEDIUM, "ph": _MEDIUM, "external_id": _MEDIUM,
    "fbp": _MEDIUM, "madid": _MEDIUM, "partner_id": _MEDIUM,
    "client_ip_address": 1.0,
    "lead_id": _LOW, "fn": _LOW, "ln": _LOW, "ct": _LOW, "zp": _LOW, "client_user_agent": _LOW, "anon_id": _LOW,
    "st": 0.25, "ge": 0.25,
}
_SCALE = 4.0
FORMULA = (
    "ESTIMATE, not Meta's formula: score = round(10 * (1 - exp(-S / 4)), 1) with "
    "S = sum of weight(key) * share of the event name's events that carry the key; weights from Meta's published "
    "priorities: em, fbc 3.0; fb_login_id, db, country, ph, external_id, fbp, madid, partner_id 1.5; "
    "client_ip_address 1.0; lead_id, fn, ln, ct, zp, client_user_agent, anon_id 0.5; st, ge 0.25; other keys 0. "
    "overall = event-weighted mean."
)

# capi.md §9. dedupe_key_feedback is left out: its sub-fields are not documented firmly enough to request.
WEB_FIELDS = ("web{event_name,event_match_quality{composite_score,match_key_feedback{identifier,coverage{percentage},"
              "potential_aly_acr_increase{percentage,description}},diagnostics},"
              "event_coverage{percentage,goal_percentage,description},data_freshness{upload_frequency,description}}")
OFFLINE_FIELDS = ("offline{event_name,composite{score,recommendation},"
                  "match_key{score,recommendation,coverage{email,phone}},frequency{score},freshness{score}}")


# ---------------------------------------------------------------------------------------------- predicted

def predict_match_quality(key_coverage_by_event: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """Estimated match quality per event name from key coverage (see the module docstring for the formula).

    `key_coverage_by_event[name]["_events"]` is the number of events of that name; every other entry is the number
    of those events sent with that user_data key. Names without events are left out.
    """
    by_event: dict[str, Any] = {}
    weighted, total = 0.0, 0
    for name in sorted(key_coverage_by_event):
        counts = key_coverage_by_event[name]
        events = int(counts.get("_events", 0) or 0)
        if events <= 0:
            continue
        coverage = {key: min(1.0, int(n) / events) for key, n in counts.items()
                    if key != "_events" and int(n or 0) > 0}
        score = score_from_coverage(coverage)
        by_event[name] = {
            "score": score, "events": events,
            "coverage": {k: round(v, 4) for k, v in
                         sorted(coverage.items(), key=lambda kv: (-EMQ_WEIGHTS.get(kv[0], 0.0), kv[0]))},
        }
        weighted += score * events
        total += events
    return {"formula": FORMULA, "by_event": by_event, "overall": round(weighted / total, 1) if total else None}


def score_from_coverage(coverage: Mapping[str, float]) -> float:
    """0..10 from per-key coverage shares (0..1)."""
    s = sum(EMQ_WEIGHTS.get(key, 0.0) * max(0.0, min(1.0, float(share))) for key, share in coverage.items())
    return round(10.0 * (1.0 - math.exp(-s / _SCALE)), 1)


# ---------------------------------------------------------------------------------------------- Meta's scores

def fetch_dataset_quality(client: Any, agent_name: str | None = None) -> dict[str, Any]:
    """Meta's web EMQ and offline scores for the client's dataset, normalized (see `normalize_dataset_quality`).

    Web and offline are asked for separately: the offline section is beta, and a dataset without it answers
    code 100, which is recorded under "unavailable" instead of failing the web scores. Token, permission and
    dataset errors (190, 10, 2044055) propagate as `TerminalUploadError`.
    """
    if agent_name is not None and hasattr(client, "settings") and dataclasses.is_dataclass(client.settings):
        client = type(client)(client.session, dataclasses.replace(client.settings, partner_agent=agent_name))
    answers: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for section, fields in (("web", WEB_FIELDS), ("offline", OFFLINE_FIELDS)):
        try:
            answers[section] = client.dataset_quality(fields)
        except DeliveryError as exc:
            if exc.code != 100 or exc.subcode == 2044055:
                raise
            unavailable[section] = str(exc)
    summary = normalize_dataset_quality({**_section(answers.get("web"), "web"),
                                         **_section(answers.get("offline"), "offline")})
    if unavailable:
        summary["unavailable"] = unavailable
    return summary


def _section(answer: Any, name: str) -> dict[str, Any]:
    if not isinstance(answer, Mapping):
        return {}
    if isinstance(answer.get("data"), list):  # some Graph edges wrap the node in data[]
        merged: dict[str, Any] = {}
        for item in answer["data"]:
            if isinstance(item, Mapping):
                merged.update(item)
        answer = merged
    return {name: answer[name]} if name in answer else {}


def normalize_dataset_quality(answer: Mapping[str, Any]) -> dict[str, Any]:
    """Graph's answer -> `{"web": {event: {"composite_score", "match_key_feedback", ...}},
    "offline": {event: {"score", "match_key_score", "coverage", ...}}}`."""
    web: dict[str, Any] = {}
    for item in _items(answer.get("web")):
        emq = item.get("event_match_quality") or {}
        feedback: dict[str, Any] = {}
        for fb in _items(emq.get("match_key_feedback")):
            ident = fb.get("identifier")
            if ident is None:
                continue
            entry: dict[str, Any] = {"coverage": _pct_of(fb.get("coverage"))}
            increase = _pct_of(fb.get("potential_aly_acr_increase"))
            if increase is not None:
                entry["potential_increase"] = increase
            feedback[str(ident)] = entry
        out: dict[str, Any] = {"composite_score": _number(emq.get("composite_score")),
                               "match_key_feedback": feedback}
        coverage = _pct_of(item.get("event_coverage"))
        if coverage is not None:
            out["event_coverage"] = coverage
        freshness = item.get("data_freshness")
        if isinstance(freshness, Mapping) and freshness.get("upload_frequency"):
            out["upload_frequency"] = str(freshness["upload_frequency"])
        diagnostics = emq.get("diagnostics")
        if isinstance(diagnostics, list):
            out["diagnostics"] = len(diagnostics)
        web[str(item.get("event_name"))] = out
    offline: dict[str, Any] = {}
    for item in _items(answer.get("offline")):
        composite = item.get("composite") or {}
        match_key = item.get("match_key") or {}
        out = {"score": _number(composite.get("score")), "match_key_score": _number(match_key.get("score"))}
        cov = match_key.get("coverage")
        if isinstance(cov, Mapping):
            out["coverage"] = {str(k): _number(v) for k, v in cov.items()}
        for part in ("frequency", "freshness"):
            if isinstance(item.get(part), Mapping):
                out[f"{part}_score"] = _number(item[part].get("score"))
        if composite.get("recommendation"):
            out["recommendation"] = str(composite["recommendation"])[:300]
        offline[str(item.get("event_name"))] = out
    return {"web": web, "offline": offline}


def _items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping) and isinstance(value.get("data"), list):
        value = value["data"]
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _pct_of(value: Any) -> float | None:
    if isinstance(value, Mapping):
        return _number(value.get("percentage"))
    return None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- reports

def latest_report(output_root: Path, pipeline_name: str) -> Path | None:
    """The most recently written `<output_root>/<pipeline_name>/<date>/report.json`, or None."""
    found = [p for p in (Path(output_root) / pipeline_name).glob("*/report.json") if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime, p.parent.name))


def add_meta_scores(report_path: Path, scores: Mapping[str, Any]) -> None:
    """Set `match_quality.meta` in a stored report.json (atomic rewrite) and re-render report.html next to it.

    `scores` is `{"fetched_at": iso, "datasets": {dataset_id: summary}}` (what `cmd_quality` builds); a bare
    `{dataset_id: summary}` is wrapped into that shape.
    """
    from capi_pipeline import report_html

    if "datasets" not in scores:
        scores = {"fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "datasets": dict(scores)}

    report_path = Path(report_path)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    report.setdefault("match_quality", {})
    if not isinstance(report["match_quality"], dict):
        report["match_quality"] = {}
    report["match_quality"]["meta"] = dict(scores)
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n")
    report_html.write_html(report, report_path.parent)


# ---------------------------------------------------------------------------------------------- CLI

def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Fetch Meta's Event Match Quality (website events) and offline scores for each "
                          "destination dataset from the Dataset Quality API, print them, and store them in the "
                          "run's report.json / report.html.")
    parser.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    parser.add_argument("--date", help="update the report of this partition date (default: the newest report)")
    parser.add_argument("--out", type=Path, help="the run's output folder, if `run --out` was used")
    parser.add_argument("--endpoint", help="Graph API base URL (overrides the YAML), e.g. http://127.0.0.1:8765")
    parser.add_argument("--agent-name", help="filter by partner_agent (default: the pipeline's partner_agent)")


def cmd_quality(args: argparse.Namespace) -> int:
    """`capi-pipeline quality`: 0 scores fetched (and stored when a report exists); errors raise (1 or 2)."""
    from capi_pipeline import __version__
    from capi_pipeline.client import CapiClient, ClientSettings, make_session
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.pipeline import resolve_token

    cfg = load_pipeline(args.pipeline)
    if getattr(args, "endpoint", None):
        cfg = cfg.with_endpoint(args.endpoint)
    date = getattr(args, "date", None)
    if date:
        try:
            date = dt.date.fromisoformat(date).isoformat()
        except ValueError:
            raise ConfigurationError(f"--date {date!r} is not a date in YYYY-MM-DD form") from None
    datasets: dict[str, Any] = {}
    for dest in cfg.destinations:
        token = resolve_token(dest)
        session = make_session(1)
        try:
            client = CapiClient(session, ClientSettings(
                endpoint=dest.endpoint, api_version=dest.api_version, dataset_id=dest.dataset_id, token=token,
                timeout_s=cfg.batching.timeout_s,
                partner_agent=dest.partner_agent or f"capi-pipeline-{__version__}"))
            summary = fetch_dataset_quality(client, agent_name=getattr(args, "agent_name", None))
        finally:
            session.close()
        datasets[dest.dataset_id] = summary
        print(format_summary(dest.dataset_id, summary))
    scores = {"fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "datasets": datasets}

    out_override = getattr(args, "out", None)
    if date:
        path: Path | None = cfg.output_dir(date, out_override) / "report.json"
        if not path.is_file():
            path = None
    elif out_override is not None:
        path = Path(out_override) / "report.json" if (Path(out_override) / "report.json").is_file() else None
    else:
        path = latest_report(cfg.resolve(cfg.output), cfg.name)
    if path is None:
        print("no report.json found to update (run the pipeline first, or pass --date/--out)")
    else:
        add_meta_scores(path, scores)
        print(f"report updated: {path} (and report.html)")
    return 0


def format_summary(dataset_id: str, summary: Mapping[str, Any]) -> str:
    """Human-readable lines for one dataset."""
    lines = [f"dataset {dataset_id}"]
    web, offline = summary.get("web") or {}, summary.get("offline") or {}
    if web:
        lines.append("  website events (Event Match Quality, 0-10):")
        for name, entry in sorted(web.items()):
            keys = ", ".join(f"{k} {v.get('coverage'):g}%" for k, v in entry.get("match_key_feedback", {}).items()
                             if v.get("coverage") is not None)
            lines.append(f"    {name:<28} {_fmt(entry.get('composite_score')):>5}" + (f"   {keys}" if keys else ""))
    if offline:
        lines.append("  offline events (composite score, 0-10; 8.5 unlocks omnichannel ads):")
        for name, entry in sorted(offline.items()):
            cov = entry.get("coverage") or {}
            extra = ", ".join(f"{k} {_fmt(v)}%" for k, v in cov.items())
            keys = _fmt(entry.get("match_key_score"))
            lines.append(f"    {name:<28} {_fmt(entry.get('score')):>5}   match keys {keys}"
                         + (f" ({extra})" if extra else ""))
    if not web and not offline:
        lines.append("  no scores yet (Meta needs recent website or offline events; app events have no score)")
    for section, why in (summary.get("unavailable") or {}).items():
        lines.append(f"  {section}: unavailable ({why})")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1f}"
