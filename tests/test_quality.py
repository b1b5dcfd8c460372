"""Predicted match quality (golden cases), Meta's Dataset Quality API over the real sandbox, report updates."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capi_pipeline import quality
from capi_pipeline.client import CapiClient, ClientSettings, Secret, make_session
from capi_pipeline.errors import TerminalUploadError
from capi_pipeline.report import RunStats, read_json, write_json
from capi_pipeline.report_html import write_html

DATASET = "1000000000000001"
EM = "a" * 64
PH = "b" * 64


# ---------------------------------------------------------------------------------------------- predicted

@pytest.mark.parametrize(("coverage", "score"), [
    ({}, 0.0),
    ({"em": 1.0}, 5.3),
    ({"em": 0.5}, 3.1),
    ({"em": 1.0, "ph": 1.0}, 6.8),
    ({"em": 1.0, "fbc": 1.0}, 7.8),
    ({"em": 1, "ph": 1, "fn": 1, "ln": 1, "ct": 1, "zp": 1, "country": 1, "db": 1, "external_id": 1}, 9.4),
    ({"madid": 1.0, "anon_id": 1.0, "client_ip_address": 1.0}, 5.3),
    ({"country": 1.0}, 3.1),
    ({"st": 1.0, "ge": 1.0}, 1.2),
    ({"partner_name": 1.0, "unknown_key": 1.0}, 0.0),
    ({"em": 3.0}, 5.3),  # shares above 1 are capped
])
def test_score_golden(coverage: dict[str, float], score: float) -> None:
    assert quality.score_from_coverage(coverage) == score


def test_predict_match_quality_shape() -> None:
    result = quality.predict_match_quality({
        "Purchase": {"_events": 100, "em": 100, "ph": 100, "zp": 0},
        "Lead": {"_events": 300, "em": 150},
        "Empty": {"_events": 0, "em": 0},
    })
    assert result["formula"] == quality.FORMULA and "ESTIMATE" in result["formula"]
    assert set(result["by_event"]) == {"Purchase", "Lead"}
    assert result["by_event"]["Purchase"] == {"score": 6.8, "events": 100, "coverage": {"em": 1.0, "ph": 1.0}}
    assert result["by_event"]["Lead"] == {"score": 3.1, "events": 300, "coverage": {"em": 0.5}}
    assert result["overall"] == round((6.8 * 100 + 3.1 * 300) / 400, 1)
    json.dumps(result)


def test_predict_from_run_stats_counters() -> None:
    stats = RunStats(pipeline="p", date="2026-11-22")
    stats.key_coverage_by_event["Purchase"].update({"_events": 4, "em": 2})
    assert quality.predict_match_quality(stats.key_coverage_by_event)["by_event"]["Purchase"]["coverage"] == {"em": 0.5}
    assert quality.predict_match_quality({}) == {"formula": quality.FORMULA, "by_event": {}, "overall": None}


# ---------------------------------------------------------------------------------------------- normalize

def test_normalize_graph_answer() -> None:
    answer = {
        "web": [{"event_name": "Purchase", "event_match_quality": {
            "composite_score": 6.4, "diagnostics": [{"x": 1}],
            "match_key_feedback": [{"identifier": "email", "coverage": {"percentage": 93.5},
                                    "potential_aly_acr_increase": {"percentage": 4.0, "description": "d"}},
                                   {"identifier": "phone", "coverage": {"percentage": 10}}]},
            "event_coverage": {"percentage": 80, "goal_percentage": 75},
            "data_freshness": {"upload_frequency": "real_time"}}],
        "offline": [{"event_name": "Purchase", "composite": {"score": 8.7, "recommendation": "keep going"},
                     "match_key": {"score": 9.1, "coverage": {"email": 95, "phone": 80}},
                     "frequency": {"score": 10}, "freshness": {"score": 7}}],
    }
    assert quality.normalize_dataset_quality(answer) == {
        "web": {"Purchase": {"composite_score": 6.4, "diagnostics": 1, "event_coverage": 80.0,
                             "upload_frequency": "real_time",
                             "match_key_feedback": {"email": {"coverage": 93.5, "potential_increase": 4.0},
                                                    "phone": {"coverage": 10.0}}}},
        "offline": {"Purchase": {"score": 8.7, "match_key_score": 9.1, "recommendation": "keep going",
                                 "coverage": {"email": 95.0, "phone": 80.0}, "frequency_score": 10.0,
                                 "freshness_score": 7.0}},
    }
    assert quality.normalize_dataset_quality({}) == {"web": {}, "offline": {}}


# ---------------------------------------------------------------------------------------------- sandbox

@pytest.fixture
def sb() -> Iterator[Any]:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, token="right")) as sandbox:
        yield sandbox


def _client(url: str, token: str = "right", dataset: str = DATASET) -> CapiClient:
    return CapiClient(make_session(1), ClientSettings(endpoint=url, api_version="v25.0", dataset_id=dataset,
                                                     token=Secret(token), partner_agent="capi-pipeline-test"))


def _events(now: int) -> list[dict[str, Any]]:
    store = [{"event_name": "Purchase", "event_time": now - 60, "event_id": f"o{i}", "action_source": "physical_store",
              "user_data": {"em": [EM], **({"ph": [PH]} if i % 2 else {})},
              "custom_data": {"value": 10.0, "currency": "USD"}} for i in range(4)]
    web = [{"event_name": "ViewContent", "event_time": now - 60, "event_id": "w1", "action_source": "website",
            "event_source_url": "https://shop.example/p/1",
            "user_data": {"em": [EM], "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"}}]
    return store + web


def test_fetch_dataset_quality_from_sandbox(sb: Any) -> None:
    client = _client(sb.url)
    client.send(_events(int(time.time())), batch_id="b1")
    summary = quality.fetch_dataset_quality(client)
    from capi_pipeline.sandbox.quality import match_score

    assert summary["offline"]["Purchase"]["score"] == match_score({"em": 1.0, "ph": 0.5})
    assert summary["offline"]["Purchase"]["coverage"] == {"email": 100.0, "phone": 50.0}
    web = summary["web"]["ViewContent"]
    assert web["composite_score"] == match_score({"em": 1.0, "client_ip_address": 1.0, "client_user_agent": 1.0})
    assert web["match_key_feedback"]["em"] == {"coverage": 100.0}
    assert "unavailable" not in summary
    calls = [r for r in sb.requests() if "dataset_quality" in str(r.get("path", ""))]
    assert len(calls) == 2
    assert all("right" not in json.dumps(c) for c in calls)


def test_fetch_with_agent_name(sb: Any) -> None:
    client = _client(sb.url)
    client.send(_events(int(time.time()))[:1], batch_id="b1")
    summary = quality.fetch_dataset_quality(client, agent_name="My_Platform")
    assert "Purchase" in summary["offline"]
    paths = [str(r.get("path")) for r in sb.requests() if "dataset_quality" in str(r.get("path", ""))]
    assert all("agent_name=my_platform" in p for p in paths), paths


@pytest.mark.parametrize(("token", "dataset", "code"), [("wrong", DATASET, 190), ("right", "999", 100)])
def test_fetch_errors_are_terminal(sb: Any, token: str, dataset: str, code: int) -> None:
    with pytest.raises(TerminalUploadError) as info:
        quality.fetch_dataset_quality(_client(sb.url, token=token, dataset=dataset))
    assert info.value.code == code
    assert "wrong" not in str(info.value)


class _RecordingClient:
    """Answers like Graph does for a dataset without the beta offline section."""

    def __init__(self) -> None:
        self.fields: list[str] = []

    def dataset_quality(self, fields: str) -> dict:
        from capi_pipeline.client import InvalidEventsError

        self.fields.append(fields)
        if fields.startswith("offline"):
            raise InvalidEventsError("dataset_quality: HTTP 400 code 100: nonexisting field", code=100)
        return {"web": [{"event_name": "Lead", "event_match_quality": {"composite_score": 5}}]}


def test_offline_section_unavailable_keeps_web_scores() -> None:
    client = _RecordingClient()
    summary = quality.fetch_dataset_quality(client)
    assert client.fields == [quality.WEB_FIELDS, quality.OFFLINE_FIELDS]
    assert summary["web"]["Lead"]["composite_score"] == 5.0
    assert summary["offline"] == {}
    assert "code 100" in summary["unavailable"]["offline"]


# ---------------------------------------------------------------------------------------------- reports

def _write_report(out: Path, date: str = "2026-11-22", mtime: float | None = None) -> Path:
    stats = RunStats(pipeline="offline_sample", date=date)
    stats.rows_read = 10
    stats.events_built = 10
    stats.key_coverage_by_event["Purchase"].update({"_events": 10, "em": 10})
    stats.predicted_match_quality = quality.predict_match_quality(stats.key_coverage_by_event)
    path = write_json(stats, out)
    write_html(stats.to_dict(), out)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_latest_report(tmp_path: Path) -> None:
    root = tmp_path / "out"
    assert quality.latest_report(root, "offline_sample") is None
    old = _write_report(root / "offline_sample" / "2026-11-22", mtime=1_000_000)
    new = _write_report(root / "offline_sample" / "2026-11-20", mtime=2_000_000)
    _write_report(root / "other" / "2026-11-23")
    assert quality.latest_report(root, "offline_sample") == new != old


def test_add_meta_scores_round_trip(tmp_path: Path) -> None:
    path = _write_report(tmp_path / "run")
    before = read_json(path)
    scores = {"fetched_at": "2026-11-23T08:00:00Z",
              "datasets": {DATASET: {"web": {}, "offline": {"Purchase": {"score": 8.6, "match_key_score": 9.0}}}}}
    quality.add_meta_scores(path, scores)
    after = read_json(path)
    assert after["match_quality"]["meta"] == scores
    assert after["match_quality"]["predicted"] == before["match_quality"]["predicted"]
    assert {k: v for k, v in after.items() if k != "match_quality"} == \
           {k: v for k, v in before.items() if k != "match_quality"}
    html = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "8.6" in html and "2026-11-23T08:00:00Z" in html
    assert not list((tmp_path / "run").glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------- CLI

def _pipeline_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "p.pipeline.yaml"
    path.write_text(
        "version: 1\nname: offline_sample\nsource: {path: 'x/dt={date}/*.csv', format: csv}\n"
        "contract: builtin:offline_conversions\n"
        f"destination: {{dataset_id: '{DATASET}', token_env: TEST_CAPI_TOKEN}}\n"
        "mapping: {event_name: event_name, event_time: event_time, user_data.em: email}\n"
        "event_id: {keys: [order_id]}\ndefaults: {action_source: physical_store}\noutput: out\n",
        encoding="utf-8")
    return path


def test_cmd_quality_updates_the_newest_report(sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _client(sb.url).send(_events(int(time.time())), batch_id="b1")
    yaml_path = _pipeline_yaml(tmp_path)
    report = _write_report(tmp_path / "out" / "offline_sample" / "2026-11-22")
    monkeypatch.setenv("TEST_CAPI_TOKEN", "right")
    parser = argparse.ArgumentParser()
    quality.add_quality_arguments(parser)
    code = quality.cmd_quality(parser.parse_args([str(yaml_path), "--endpoint", sb.url]))
    out = capsys.readouterr().out
    assert code == 0
    assert f"dataset {DATASET}" in out and "Purchase" in out and "ViewContent" in out
    assert f"report updated: {report}" in out
    meta = read_json(report)["match_quality"]["meta"]
    assert meta["datasets"][DATASET]["offline"]["Purchase"]["score"] > 0
    assert "right" not in out


def test_cmd_quality_wrong_token_and_missing_token(sb: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from capi_pipeline.errors import ConfigurationError

    yaml_path = _pipeline_yaml(tmp_path)
    parser = argparse.ArgumentParser()
    quality.add_quality_arguments(parser)
    args = parser.parse_args([str(yaml_path), "--endpoint", sb.url, "--date", "2026-11-22"])
    monkeypatch.delenv("TEST_CAPI_TOKEN", raising=False)
    with pytest.raises(ConfigurationError):
        quality.cmd_quality(args)
    monkeypatch.setenv("TEST_CAPI_TOKEN", "wrong")
    with pytest.raises(TerminalUploadError) as info:
        quality.cmd_quality(args)
    assert info.value.code == 190 and info.value.exit_code == 1


def test_add_meta_scores_wraps_a_bare_dataset_map(tmp_path: Path) -> None:
    path = _write_report(tmp_path / "run")
    quality.add_meta_scores(path, {DATASET: {"web": {}, "offline": {"Purchase": {"score": 9.2}}}})
    meta = read_json(path)["match_quality"]["meta"]
    assert set(meta) == {"fetched_at", "datasets"}
    assert meta["datasets"][DATASET]["offline"]["Purchase"]["score"] == 9.2
    assert "9.2" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
