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
