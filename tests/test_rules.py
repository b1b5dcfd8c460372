"""capi_pipeline.rules: golden table of Meta's per-row rules on canonical frames, SeenEvents, the too_old fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capi_pipeline.rules import ISO_4217, RULE_ORDER, RuleResult, RuleSettings, SeenEvents, check_rows

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
NOW = 1_795_392_000  # 2026-11-23T00:00:00Z
DAY = 86_400
QUARANTINE_KEYS = {"file", "row", "event_name", "event_id", "rule", "field", "message"}
EXTINFO = ["a2", "com.example", "1.0", "1.0.0", "14", "Pixel", "en_US", "UTC", "", "1080", "2400", "2.5", "8",
           "128", "64", "Europe/Berlin"]


def offline(**over: object) -> dict:
    row = {"_file": "part-0.parquet", "_row": 1, "event_name": "Purchase", "event_time": NOW - 3600,
           "event_id": "S1-20261122-1", "action_source": "physical_store", "custom_data.value": 12.5,
           "custom_data.currency": "usd", "user_data.em": "person@example.com"}
    row.update(over)
    return row


def app(**over: object) -> dict:
    row = offline(action_source="app", event_id="app-1", **{"app_data.advertiser_tracking_enabled": 1,
                                                              "app_data.extinfo": list(EXTINFO)})
    row.update(over)
    return row


def web(**over: object) -> dict:
    row = offline(action_source="website", event_id="web-1", event_source_url="https://shop.example.com/p",
                  **{"user_data.client_user_agent": "Mozilla/5.0"})
    row.update(over)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df["event_time"] = df["event_time"].astype("Int64")
    if "app_data.advertiser_tracking_enabled" in df:
        df["app_data.advertiser_tracking_enabled"] = df["app_data.advertiser_tracking_enabled"].astype("Int64")
    return df


GOLDEN = [
    # (id, row, expected rule or None, expected field)
    ("purchase_ok", offline(), None, None),
    ("lead_ok_no_value", offline(event_name="Lead", **{"custom_data.value": np.nan,
                                                        "custom_data.currency": None}), None, None),
    ("app_ok", app(), None, None),
    ("web_ok", web(), None, None),
    ("store_30_days_ok", offline(event_time=NOW - 30 * DAY), None, None),
    ("future_within_tolerance", offline(event_time=NOW + 600), None, None),
    ("currency_case_insensitive", offline(**{"custom_data.currency": " eUr "}), None, None),
    ("partner_pair_ok", offline(**{"user_data.partner_id": "XY123", "user_data.partner_name": "liveramp"}),
     None, None),
    ("missing_event_name", offline(event_name=None), "missing_event_name", "event_name"),
    ("blank_event_name", offline(event_name="  "), "missing_event_name", "event_name"),
    ("missing_event_id", offline(event_id=""), "missing_event_id", "event_id"),
    ("unparseable_time", offline(event_time=None), "missing_event_time", "event_time"),
    ("bad_action_source", offline(action_source="store"), "invalid_action_source", "action_source"),
    ("null_action_source", offline(action_source=None), "invalid_action_source", "action_source"),
    ("store_too_old", offline(event_time=NOW - 71 * DAY), "event_too_old", "event_time"),
    ("phone_too_old", offline(action_source="phone_call", event_time=NOW - 8 * DAY), "event_too_old",
     "event_time"),
    ("in_future", offline(event_time=NOW + 601), "event_in_future", "event_time"),
    ("purchase_no_value", offline(**{"custom_data.value": np.nan}), "purchase_missing_value", "custom_data.value"),
    ("purchase_negative", offline(**{"custom_data.value": -1.0}), "purchase_missing_value", "custom_data.value"),
    ("purchase_inf", offline(**{"custom_data.value": np.inf}), "purchase_missing_value", "custom_data.value"),
    ("purchase_no_currency", offline(**{"custom_data.currency": " "}), "purchase_missing_currency",
     "custom_data.currency"),
    ("unknown_currency", offline(**{"custom_data.currency": "XYZ"}), "unknown_currency", "custom_data.currency"),
    ("unknown_currency_lead", offline(event_name="Lead", **{"custom_data.currency": "ABC"}), "unknown_currency",
     "custom_data.currency"),
    ("lead_inf_value", offline(event_name="Lead", **{"custom_data.value": np.inf}), "invalid_value",
     "custom_data.value"),
    ("lead_no_value", offline(event_name="Lead", **{"custom_data.value": np.nan}), None, None),
    ("app_ape_2", app(**{"app_data.application_tracking_enabled": 2}),
     "app_invalid_application_tracking_enabled", "app_data.application_tracking_enabled"),
    ("app_ape_1", app(**{"app_data.application_tracking_enabled": 1}), None, None),
    ("app_ape_missing", app(**{"app_data.application_tracking_enabled": None}), None, None),
    ("app_no_ate", app(**{"app_data.advertiser_tracking_enabled": None}),
     "app_missing_advertiser_tracking_enabled", "app_data.advertiser_tracking_enabled"),
    ("app_ate_2", app(**{"app_data.advertiser_tracking_enabled": 2}),
     "app_missing_advertiser_tracking_enabled", "app_data.advertiser_tracking_enabled"),
    ("app_extinfo_15", app(**{"app_data.extinfo": EXTINFO[:15]}), "app_invalid_extinfo", "app_data.extinfo"),
    ("app_extinfo_version", app(**{"app_data.extinfo": ["w1"] + EXTINFO[1:]}), "app_invalid_extinfo",
     "app_data.extinfo"),
    ("app_extinfo_no_os", app(**{"app_data.extinfo": EXTINFO[:4] + [""] + EXTINFO[5:]}), "app_invalid_extinfo",
     "app_data.extinfo"),
    ("app_extinfo_none", app(**{"app_data.extinfo": None}), "app_invalid_extinfo", "app_data.extinfo"),
    ("web_no_ua", web(**{"user_data.client_user_agent": None}), "website_missing_user_agent",
     "user_data.client_user_agent"),
    ("web_no_url", web(event_source_url=""), "website_missing_event_source_url", "event_source_url"),
    ("partner_id_only", offline(**{"user_data.partner_id": "XY123", "user_data.partner_name": None}),
     "partner_pair_incomplete", "user_data.partner_name"),
    ("partner_name_only", offline(**{"user_data.partner_id": " ", "user_data.partner_name": "liveramp"}),
     "partner_pair_incomplete", "user_data.partner_id"),
    # order: the first failing rule wins
    ("old_and_no_value", offline(event_time=NOW - 90 * DAY, **{"custom_data.value": np.nan}), "event_too_old",
     "event_time"),
    ("no_id_and_bad_currency", offline(event_id=None, **{"custom_data.currency": "XYZ"}), "missing_event_id",
     "event_id"),
]


def _row_frame(row: dict) -> pd.DataFrame:
    # every row alone, with the columns of all golden rows present (absent keys -> NA), as mapping would emit
    columns = sorted({k for _, r, _, _ in GOLDEN for k in r})
    df = frame([{c: row.get(c) for c in columns}])
    return df


@pytest.mark.parametrize(("row", "rule", "field"), [pytest.param(r, ru, f, id=i) for i, r, ru, f in GOLDEN])
def test_golden(row: dict, rule: str | None, field: str | None) -> None:
    result = check_rows(_row_frame(row), now=NOW, settings=RuleSettings())
    assert isinstance(result, RuleResult)
    if rule is None:
        assert result.valid.tolist() == [True] and result.rejections == [] and result.counts == {}
        return
    assert result.valid.tolist() == [False]
    (rej,) = result.rejections
    assert set(rej) == QUARANTINE_KEYS
    assert (rej["rule"], rej["field"]) == (rule, field)
    assert (rej["file"], rej["row"]) == ("part-0.parquet", 1)
    assert result.counts == {rule: 1}
    assert "person@example.com" not in rej["message"] and "XY123" not in rej["message"]


def test_golden_all_at_once_matches_row_by_row() -> None:
    rows = [dict(r, _row=i + 1) for i, (_, r, _, _) in enumerate(GOLDEN)]
    columns = sorted({k for r in rows for k in r})
    result = check_rows(frame([{c: r.get(c) for c in columns} for r in rows]), now=NOW, settings=RuleSettings())
    expected = {i + 1: rule for i, (_, _, rule, _) in enumerate(GOLDEN) if rule}
    assert {r["row"]: r["rule"] for r in result.rejections} == expected
    assert sum(result.counts.values()) == len(expected)
    # failures count every failing row: old_and_no_value also lacks a value
    assert result.failures["purchase_missing_value"] == result.counts["purchase_missing_value"] + 1


def test_messages() -> None:
    rows = [offline(event_time=NOW - 71 * DAY), offline(action_source="phone_call", event_time=NOW - 9 * DAY),
            offline(event_time=NOW + 3600)]
    result = check_rows(frame(rows), now=NOW, settings=RuleSettings())
    assert [r["message"] for r in result.rejections] == [
        "event_time is 71 days old; physical_store allows 62",
        "event_time is 9 days old; this action_source allows 7",
        "event_time is 3600 s in the future; the tolerance is 600 s",
    ]


def test_settings_are_configurable() -> None:
    rows = [offline(event_time=NOW - 10 * DAY), offline(action_source="phone_call", event_time=NOW - 10 * DAY),
            offline(event_time=NOW + 120)]
    strict = RuleSettings(max_age_days=14, physical_store_max_age_days=5, future_tolerance_s=60)
    result = check_rows(frame(rows), now=NOW, settings=strict)
    assert [r["rule"] for r in result.rejections] == ["event_too_old", "event_in_future"]
    assert result.valid.tolist() == [False, True, False]


def test_missing_columns_mean_missing_values() -> None:
    df = pd.DataFrame({"event_name": ["Purchase"], "event_time": pd.array([NOW], dtype="Int64"),
                       "event_id": ["a"], "action_source": ["app"]})
    result = check_rows(df, now=NOW, settings=RuleSettings())
    assert result.rejections[0]["rule"] == "purchase_missing_value"
    assert result.failures == {"purchase_missing_value": 1, "purchase_missing_currency": 1,
                               "app_missing_advertiser_tracking_enabled": 1, "app_invalid_extinfo": 1}
    assert result.rejections[0]["file"] is None and result.rejections[0]["row"] is None


def test_empty_frame() -> None:
    df = frame([offline()]).iloc[:0]
    result = check_rows(df, now=NOW, settings=RuleSettings(), seen=SeenEvents())
    assert len(result.valid) == 0 and result.rejections == []


def test_rule_order_is_the_vocabulary() -> None:
    assert RULE_ORDER[-1] == "duplicate_event_id" and len(set(RULE_ORDER)) == len(RULE_ORDER)
    assert all(r == r.lower() and " " not in r for r in RULE_ORDER)


def test_iso_4217() -> None:
    assert {"USD", "EUR", "JPY", "GBP", "BRL", "XOF"} <= ISO_4217
    assert not {"XYZ", "XAU", "XXX", "XTS", "usd"} & ISO_4217
    assert all(len(c) == 3 and c.isupper() for c in ISO_4217)


# --------------------------------------------------------------------------------------------------- dedup
def test_seen_events_across_chunks() -> None:
    seen = SeenEvents()
    first = frame([offline(event_id="a"), offline(event_id="b"), offline(event_id="a"),
                   offline(event_id="a", event_name="Lead"), offline(event_id=None)])
    assert seen.mark(first).tolist() == [False, False, True, False, False]
    second = frame([offline(event_id="b"), offline(event_id="c"), offline(event_id=None)])
    assert seen.mark(second).tolist() == [True, False, False]
    assert len(seen) == 4


def test_check_rows_with_seen_keeps_good_copy_after_bad_one() -> None:
    seen = SeenEvents()
    chunk1 = frame([offline(event_id="o1", **{"custom_data.currency": "XYZ"}), offline(event_id="o2")])
    r1 = check_rows(chunk1, now=NOW, settings=RuleSettings(), seen=seen)
    assert [r["rule"] for r in r1.rejections] == ["unknown_currency"]
    chunk2 = frame([offline(event_id="o1", _row=7), offline(event_id="o2", _row=8)])
    r2 = check_rows(chunk2, now=NOW, settings=RuleSettings(), seen=seen)
    assert r2.valid.tolist() == [True, False]
    (dup,) = r2.rejections
    assert (dup["row"], dup["rule"], dup["field"], dup["event_id"]) == (8, "duplicate_event_id", "event_id", "o2")


def test_seen_events_scale() -> None:
    seen = SeenEvents()
    n = 200_000
    ids = pd.Series([f"e{i}" for i in range(n)])
    chunk = pd.DataFrame({"event_name": "Purchase", "event_id": ids})
    assert not seen.mark(chunk).any()
    again = pd.DataFrame({"event_name": ["Purchase", "Lead"], "event_id": ["e5", "e5"]})
    assert seen.mark(again).tolist() == [True, False]


def test_seen_events_split_in_halves_matches_mark() -> None:
    """hashes() + mark_hashes() decide exactly like mark()."""
    chunks = [frame([offline(event_id="a"), offline(event_id="b"), offline(event_id="a"), offline(event_id=None)]),
              frame([offline(event_id="b"), offline(event_id="c"), offline(event_id="c", event_name="Lead")])]
    whole, split = SeenEvents(), SeenEvents()
    for chunk in chunks:
        pos, h = SeenEvents.hashes(chunk)
        dup = np.zeros(len(chunk), dtype=bool)
        dup[pos] = split.mark_hashes(h)
        assert dup.tolist() == whole.mark(chunk).tolist()
    assert len(split) == len(whole) == 4


@pytest.mark.parametrize("seed", range(5))
def test_seen_events_hashes_of_text_columns_match_the_general_path(seed: int) -> None:
    """Object columns of str (the Arrow path) hash like the same values in pandas' str dtype (the general
    path): same keyed rows, same hashes; blanks, Python-only whitespace and the separator itself included."""
    import random

    rng = random.Random(seed)
    cells = [None, "", " ", "Purchase", " Purchase ", "\x1cLead\x1f", "é", "a\x1fb", "x", "\u3000y", "1", " 1"]
    n = 200
    obj = pd.DataFrame({"event_name": pd.Series([rng.choice(cells) for _ in range(n)], dtype=object),
                        "event_id": pd.Series([rng.choice(cells) for _ in range(n)], dtype=object)})
    general = obj.astype("str").where(obj.notna(), None).astype("string")
    (pos_a, h_a), (pos_b, h_b) = SeenEvents.hashes(obj), SeenEvents.hashes(general)
    assert pos_a.tolist() == pos_b.tolist() and len(pos_a) > 0
    assert h_a.tolist() == h_b.tolist()


@pytest.mark.parametrize("seed", range(4))
def test_mark_hashes_matches_a_set_over_calls_with_many_repeats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    seen, reference = SeenEvents(), set()
    for _ in range(30):
        h = rng.integers(0, 400, size=int(rng.integers(0, 60)), dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        expected = []
        for v in h.tolist():
            expected.append(v in reference)
            reference.add(v)
        assert seen.mark_hashes(h).tolist() == expected
    assert len(seen) == len(reference)


def test_seen_events_many_chunks_stay_sorted_and_linear() -> None:
    """200 chunks: remembered keys stay one sorted array (merged per chunk, never re-sorted as a whole)."""
    import time

    seen = SeenEvents()
    started = time.perf_counter()
    for c in range(200):
        ids = np.arange(c * 5_000, (c + 1) * 5_000).astype(str)
        assert not seen.mark_hashes(pd.util.hash_array(ids.astype(object), categorize=False)).any()
    assert len(seen) == 1_000_000
    assert np.all(np.diff(seen._seen.astype(np.float64)) >= 0)
    assert seen.mark_hashes(pd.util.hash_array(np.array(["17", "x"], dtype=object), categorize=False)).tolist() \
        == [True, False]
    assert time.perf_counter() - started < 30


# --------------------------------------------------------------------------------------------------- fixture
def test_too_old_fixture() -> None:
    (case,) = json.loads((FIXTURES / "too_old" / "expected.json").read_text())
    src = pd.read_parquet(FIXTURES / "too_old" / case["file"])
    # the minimal mapping this scenario needs (mapping.py owns the real one)
    times = pd.to_datetime(src["event_time"], utc=True, errors="coerce", format="ISO8601")
    seconds = (times - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    canon = pd.DataFrame({
        "_file": case["file"], "_row": np.arange(1, len(src) + 1), "event_name": src["event_name"],
        "event_time": seconds.astype("Int64"), "event_id": src["order_id"].fillna(src["lead_id"]),
        "action_source": src["action_source"], "custom_data.value": src["value"],
        "custom_data.currency": src["currency"],
    })
    result = check_rows(canon, now=case["now"], settings=RuleSettings())
    assert {str(r["row"]): r["rule"] for r in result.rejections} == case["rules"]


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_columns_mapping_vouches_for_decide_as_when_converted_again(kind: str, tmp_path: Path) -> None:
    """`to_canonical` marks event_name, event_id and action_source as already trimmed text (`TRIMMED_TEXT`);
    `check_rows` then reads them as they are, with the same verdicts and records as its general path."""
    import datetime as dt
    import time

    from capi_pipeline import extract, mapping
    from capi_pipeline.columns import TRIMMED_TEXT
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.sample import generate

    day = dt.date.today() - dt.timedelta(days=1)
    smp = generate(kind, 3000, day, tmp_path, seed=9, bad_rate=0.2, fmt="parquet")
    cfg = load_pipeline(smp.pipeline_path)
    now = int(time.time())
    for f in smp.files:
        for chunk in extract.read_chunks(Path(f), cfg.source.format, 1000, name="f"):
            canon = mapping.to_canonical(chunk.frame, cfg, file="f", first_row=chunk.first_row)
            assert canon.attrs[TRIMMED_TEXT] == ("event_name", "event_id", "action_source")
            plain = canon.copy()
            plain.attrs = {}
            vouched, general = check_rows(canon, now=now), check_rows(plain, now=now)
            assert vouched.valid.tolist() == general.valid.tolist()
            assert vouched.rejections == general.rejections and vouched.counts == general.counts
            assert sum(vouched.counts.values()) > 0
