"""capi_pipeline.report: the event-age buckets (vectorized) against the rule written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from capi_pipeline.report import AGE_BUCKETS_H, RunStats


def _by_hand(ages: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for age in ages:
        hours = age / 3600
        label = next((f"<={b}h" for b in AGE_BUCKETS_H if hours <= b), "older")
        out[label] = out.get(label, 0) + 1
    return out


@pytest.mark.parametrize("ages", [
    [],
    [0, -600, 3600, 3601, 6 * 3600, 24 * 3600, 168 * 3600, 24 * 62 * 3600, 24 * 62 * 3600 + 1],
    np.random.default_rng(7).integers(-7200, 90 * 86_400, 20_000).tolist(),
])
def test_event_age_buckets(ages: list[int]) -> None:
    stats = RunStats(pipeline="p", date="d")
    stats.add_event_ages(ages)
    stats.add_event_ages(np.asarray(ages, dtype=np.int64))  # arrays too, counted again
    assert dict(stats.event_age_hours) == {k: 2 * v for k, v in _by_hand(ages).items()}


def test_values_dropped_reach_the_report_and_merge() -> None:
    part = RunStats(pipeline="p", date="d")
    part.values_dropped["custom_data.contents:invalid_json"] += 2
    whole = RunStats(pipeline="p", date="d")
    whole.merge(RunStats.from_state(part.to_state()))  # Airflow's per-file parts go through to_state
    whole.merge(part)
    assert whole.to_dict()["events"]["values_dropped"] == {"custom_data.contents:invalid_json": 4}


def test_quarantine_shows_ids_but_never_the_rejected_value(tmp_path: Path) -> None:
    """event_name / event_id identify the row, unless that is the value a rule rejected (an e-mail typed into
    event_name) or it looks like an e-mail: then `<withheld>`. A duplicate's event_id is the id, and is shown."""
    import csv

    from capi_pipeline.report import QuarantineWriter

    with QuarantineWriter(tmp_path / "quarantine.csv") as q:
        q.write([
            {"file": "f", "row": 1, "event_name": "jane@example.com", "event_id": "O1", "rule": "value_not_allowed",
             "field": "event_name", "message": "event_name is not one of the allowed values"},
            {"file": "f", "row": 2, "event_name": "Purchase", "event_id": "O2", "rule": "duplicate_event_id",
             "field": "event_id", "message": "dup"},
            {"file": "f", "row": 3, "event_name": "Purchase", "event_id": "bob@example.org", "rule": "event_too_old",
             "field": "event_time", "message": "old"},
            {"file": "f", "row": 4, "event_name": "Lead", "event_id": "O4", "rule": "invalid_value",
             "field": "custom_data.value", "message": "x"},
        ])
    rows = list(csv.DictReader((tmp_path / "quarantine.csv").open(encoding="utf-8")))
    assert [(r["event_name"], r["event_id"]) for r in rows] == [
        ("<withheld>", "O1"), ("Purchase", "O2"), ("Purchase", "<withheld>"), ("Lead", "O4")]
    assert "example" not in (tmp_path / "quarantine.csv").read_text(encoding="utf-8")


def test_quarantine_withholds_ids_made_of_a_rejected_or_contact_value(tmp_path: Path) -> None:
    """An id is withheld on every record of a row when a rule rejected one of its source columns ("Event ID",
    or lead_id when the event_id is made of it); so is an id that looks like a phone number or an e-mail
    typed with a full-width "@" (a shifted CSV row). A formula-looking text is quoted for spreadsheets."""
    import csv

    from capi_pipeline.report import QuarantineWriter

    path = tmp_path / "quarantine.csv"
    rows = [(1, "Lead", "CANARYLEAD", "invalid_pattern", "lead_id"),
            (2, "Lead", "(415) 555-0177", "event_too_old", "event_time"),
            (3, "Zzqvorn", "O3", "missing_value", "event_time"), (3, "Zzqvorn", "O3", "value_not_allowed", "Event Type"),
            (4, "Lead", "jo＠leak.test", "event_too_old", "event_time"),
            (5, "Lead", '=HYPERLINK("http://x.test/")', "event_too_old", "event_time"),
            (6, "Lead", "14155550177", "event_too_old", "event_time")]
    with QuarantineWriter(path, {"event_name": ("Event Type",), "event_id": ("Event ID", "lead_id")}) as q:
        q.write([{"file": "f", "row": r, "event_name": name, "event_id": eid, "rule": rule, "field": fld,
                  "message": "m"} for r, name, eid, rule, fld in rows])
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert [(r["event_name"], r["event_id"]) for r in rows] == [
        ("Lead", "<withheld>"), ("Lead", "<withheld>"), ("<withheld>", "O3"), ("<withheld>", "O3"),
        ("Lead", "<withheld>"), ("Lead", "'=HYPERLINK(\"http://x.test/\")"), ("Lead", "14155550177")]
    text = path.read_text(encoding="utf-8")
    assert "CANARY" not in text and "(415)" not in text and "Zzqvorn" not in text and "leak.test" not in text


def test_coverage_before_is_over_the_rows_whose_keys_were_read() -> None:
    """Customer keys are read from the rows that passed contract and rules: coverage_before divides by those,
    not by every row read (a partition whose rows were all rejected showed 0% for keys every row held)."""
    from capi_pipeline.report import RunStats

    s = RunStats(pipeline="p", date="2026-12-03")
    s.rows_read, s.rows_normalized, s.events_built = 10, 4, 4
    s.key_coverage_before["em"] = 4
    s.key_coverage_after["em"] = 3
    ci = s.to_dict()["customer_information"]
    assert ci["coverage_before"]["em"] == {"rows": 4, "share": 1.0}
    assert ci["coverage_after"]["em"] == {"rows": 3, "share": 0.75}
    merged = RunStats(pipeline="p", date="2026-12-03")
    merged.merge(s)
    merged.merge(s)
    assert merged.rows_normalized == 8
