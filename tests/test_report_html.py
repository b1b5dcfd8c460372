"""report.html: well-formed, self-contained, shows the counts, escapes everything, links relative files."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from capi_pipeline import report_html
from capi_pipeline.quality import predict_match_quality
from capi_pipeline.report import RunStats, write_json


def _parse(text: str) -> ET.Element:
    """The page must be XHTML-valid: only the HTML5 doctype needs to go before an XML parser reads it."""
    assert text.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(text.removeprefix("<!DOCTYPE html>\n"))


def empty_report() -> dict[str, Any]:
    return RunStats(pipeline="offline_sample", date="2026-11-22", mode="validate").to_dict()


def full_stats(tmp_path: Path) -> RunStats:
    s = RunStats(pipeline="offline_sample", date="2026-11-22", mode="run")
    s.files = ["offline/dt=2026-11-22/part-00000.parquet", "offline/dt=2026-11-22/part-00001.parquet"]
    s.rows_by_file = Counter({s.files[0]: 7000, s.files[1]: 5345})
    s.rows_read = 12345
    s.reject("contract", "missing_value", 120)
    s.reject("rules", "event_too_old", 45)
    s.reject("user_data", "no_customer_information", 7)
    s.events_built = 12173
    s.events_by_name = Counter({"Purchase": 9000, "Lead": 3000, "Other": 173})
    s.key_coverage_before = Counter({"em": 11800, "ph": 10000, "fn": 9000, "country": 12000})
    s.key_coverage_after = Counter({"em": 11500, "ph": 9100, "fn": 8990, "country": 11990})
    s.key_coverage_by_event["Purchase"].update({"_events": 9000, "em": 8600, "ph": 7000, "fn": 6900})
    s.key_coverage_by_event["Lead"].update({"_events": 3000, "em": 2800, "lead_id": 3000})
    s.fields_dropped = Counter({"ph:invalid_phone": 900, "em:invalid_email": 300})
    s.values_dropped = Counter({"custom_data.contents:invalid_json": 4})
    s.hashed = Counter({"em": 11200, "ph": 9100})
    s.prehashed = Counter({"em": 300})
    s.ldu = Counter({"CA": 800, "TX": 120})
    s.add_event_ages([600, 4 * 3600, 30 * 3600, 30 * 3600, 100 * 3600])
    s.delivery = {"1000000000000001": {
        "batches": 13, "requests": 16, "events_sent": 12173, "events_delivered": 12000, "events_failed": 173,
        "events_rejected": 0, "events_skipped_already_sent": 0, "events_resent": 0, "retries": 3, "throttled": 2,
        "bisections": 0,
        "failures": [{"batch_id": "b-0007", "events": 173, "code": 190, "subcode": None, "http_status": 401,
                      "fbtrace_id": "AbCdEf123", "message": "Invalid OAuth access token"}],
        "fbtrace_ids": ["AbCdEf123", "XyZ987"]}}
    s.stage_seconds = Counter({"validate": 1.5, "map": 0.4, "normalize_hash": 2.25, "deliver:1000000000000001": 8.0})
    s.started_at, s.finished_at = 1_763_800_000.0, 1_763_800_012.5
    s.predicted_match_quality = predict_match_quality(s.key_coverage_by_event)
    s.meta_match_quality = {"fetched_at": "2026-11-23T08:00:00Z", "datasets": {"1000000000000001": {
        "web": {}, "offline": {"Purchase": {"score": 7.9, "match_key_score": 8.1}}}}}
    s.quarantine_file = str(tmp_path / "out" / "quarantine.csv")
    s.data_docs = str(tmp_path / "out" / "data_docs" / "index.html")
    return s


def test_empty_report_renders_well_formed(tmp_path: Path) -> None:
    path = report_html.write_html(empty_report(), tmp_path)
    text = path.read_text(encoding="utf-8")
    root = _parse(text)
    assert root.tag == "html"
    assert "No row was rejected." in text
    assert "Nothing was sent" in text
    assert [e.text for e in root.iter("div") if e.get("class") == "n"] == ["0"] * 5


def test_full_report_shows_counts_and_sections(tmp_path: Path) -> None:
    report = full_stats(tmp_path).to_dict()
    text = report_html.render_html(report, base_dir=tmp_path / "out")
    root = _parse(text)
    tiles = [e.text for e in root.iter("div") if e.get("class") == "n"]
    assert tiles == ["12,345", "172", "12,173", "12,000", "173"]
    for needle in ("missing_value", "event_too_old", "ph:invalid_phone", "CA", "Purchase", "Lead",
                   "AbCdEf123", "XyZ987", "b-0007", "normalize_hash", "7.9", "ESTIMATE", "&lt;=24h",
                   "custom_data.contents:invalid_json"):
        assert needle in text, needle
    assert len(list(root.iter("svg"))) >= 8
    assert root.find(".//h2") is not None


@pytest.mark.parametrize(("change", "level", "colour"), [
    ({}, "ok", "#1e8e3e"),
    ({"rows_rejected": 3}, "rejections", "#d98a00"),
    ({"events_rejected_by_meta": 1}, "rejections", "#d98a00"),
    ({"rows_rejected": 3, "events_failed": 1}, "failed", "#c5221f"),
    ({"errors": ["dataset 1: token rejected"]}, "failed", "#c5221f"),
])
def test_status_colour(change: dict[str, Any], level: str, colour: str) -> None:
    report = {**empty_report(), **change}
    got_level, got_colour, _ = report_html.status_of(report)
    assert (got_level, got_colour) == (level, colour)
    assert f"--status:{colour}" in report_html.render_html(report)


def test_status_counts_meta_rejections_once() -> None:
    """rows_rejected includes the rows Meta refused (meta_rejected): the sentence does not add them again."""
    report = {**empty_report(), "rows_rejected": 5, "events_rejected_by_meta": 5}
    assert report_html.status_of(report)[2].startswith("5 rows were rejected")


def test_keys_never_hashed_get_no_hashed_row_and_a_dry_run_sends_nothing() -> None:
    """lead_id counts 0 hashed and 0 pre-hashed: no "0 (of 0)" row; a dry run's events are written, not sent."""
    report = {**empty_report(), "mode": "dry-run", "events_sent": 9, "events_delivered": 9,
              "customer_information": {"hashed": {"em": 9, "lead_id": 0}, "prehashed": {"em": 1, "lead_id": 0}}}
    html = report_html.render_html(report)
    assert "(of 10)" in html and "(of 0)" not in html
    assert "written (dry run) <b>9</b>" in html and "sent <b>" not in html


def test_self_contained(tmp_path: Path) -> None:
    text = report_html.render_html(full_stats(tmp_path).to_dict(), base_dir=tmp_path / "out")
    lowered = text.lower()
    for forbidden in ("http://", "https://", "<script", "<link", "src=", "@import", "url(", "<img", "<iframe"):
        assert forbidden not in lowered, forbidden


def test_links_are_relative(tmp_path: Path) -> None:
    root = _parse(report_html.render_html(full_stats(tmp_path).to_dict(), base_dir=tmp_path / "out"))
    hrefs = {a.text: a.get("href") for a in root.iter("a")}
    assert hrefs["quarantine.csv"] == "quarantine.csv"
    assert hrefs["Great Expectations Data Docs"] == "data_docs/index.html"


def test_remote_data_docs_url_is_not_linked() -> None:
    text = report_html.render_html({**empty_report(), "data_docs": "https://example.com/docs"})
    assert "example.com" not in text


def test_everything_is_escaped() -> None:
    evil = "<script>alert('x')</script>&"
    report = {**empty_report(), "pipeline": evil, "rows_rejected": 1,
              "rejected": {"by_rule": {evil: 1}, "by_stage": {evil: 1}},
              "errors": [evil],
              "delivery": {evil: {"events_failed": 1, "failures": [{"message": evil, "fbtrace_id": evil}],
                                  "fbtrace_ids": [evil]}}}
    text = report_html.render_html(report)
    assert "<script" not in text
    assert "&lt;script&gt;" in text
    _parse(text)


def test_write_html_next_to_report_json(tmp_path: Path) -> None:
    stats = full_stats(tmp_path)
    out = tmp_path / "out"
    write_json(stats, out)
    path = report_html.write_html(stats.to_dict(), out)
    assert path == out / "report.html"
    assert not list(out.glob(".*tmp"))


def test_no_customer_value_reaches_report_html(tmp_path: Path, yesterday: Any) -> None:
    """A real validate run over the sample warehouse: no e-mail or phone from the files appears in the page."""
    pytest.importorskip("capi_pipeline.normalize")
    pytest.importorskip("capi_pipeline.rules")
    import pandas as pd

    from capi_pipeline import pipeline, sample
    from capi_pipeline.config import load_pipeline

    smp = sample.generate("offline", 300, yesterday, tmp_path / "wh")
    result = pipeline.validate(load_pipeline(smp.pipeline_path), yesterday.isoformat(), out_dir=tmp_path / "run")
    text = (result.out_dir / "report.html").read_text(encoding="utf-8")
    _parse(text)
    frame = pd.concat(pd.read_parquet(f) for f in smp.files)
    values = set()
    for col in ("email", "email_alt", "phone", "first_name", "last_name", "loyalty_id", "rampid"):
        values |= {str(v).strip() for v in frame[col].dropna() if len(str(v).strip()) >= 6}
    assert values
    leaked = [v for v in values if v in text]
    assert not leaked, f"{len(leaked)} customer values in report.html"
    assert re.search(r"[^\s@<>\"']+@[^\s@<>\"']+\.[a-z]{2,}", text) is None


@pytest.mark.parametrize("meta", [
    {"fetched_at": "t", "datasets": {"77": {"web": {"Purchase": {"composite_score": 6.6}}, "offline": {}}}},
    {"77": {"web": {"Purchase": {"composite_score": 6.6}}, "offline": {}}},
    {"web": {"Purchase": {"composite_score": 6.6}}, "offline": {}},
])
def test_meta_scores_in_every_stored_shape(meta: dict[str, Any]) -> None:
    report = empty_report()
    report["match_quality"] = {"predicted": predict_match_quality({"Purchase": {"_events": 2, "em": 2}}),
                               "meta": meta}
    root = _parse(report_html.render_html(report))
    cells = [td.text for tr in root.iter("tr") for td in tr.iter("td")]
    assert "Purchase" in cells and "6.6" in cells
