"""capi_pipeline.sample: exact shapes, determinism, the pipeline file, and that the mess is the intended mess."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from capi_pipeline import sample
from capi_pipeline.sample import APP_DEFECTS, APP_SCHEMA, OFFLINE_DEFECTS, OFFLINE_SCHEMA, generate

DATE = dt.date(2026, 11, 22)
ISO = {  # the messy country spellings the generator writes -> ISO code
    name: c.iso for c in sample._COUNTRIES for name in c.names
}


def _read(result: sample.SampleResult) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in result.files)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> tuple[sample.SampleResult, pa.Table]:
    result = generate("offline", 4000, DATE, tmp_path_factory.mktemp("offline"), part_rows=2500)
    return result, _read(result)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> tuple[sample.SampleResult, pa.Table]:
    result = generate("app", 4000, DATE, tmp_path_factory.mktemp("app"), part_rows=2500)
    return result, _read(result)


# --- shape ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rows", "part_rows", "sizes"), [
    (0, 100, [0]),
    (1, 100, [1]),
    (100, 100, [100]),
    (101, 100, [100, 1]),
    (250, 100, [100, 100, 50]),
])
def test_rows_and_parts_are_exact(tmp_path: Path, rows: int, part_rows: int, sizes: list[int]) -> None:
    result = generate("offline", rows, DATE, tmp_path, part_rows=part_rows)
    assert [f.name for f in result.files] == [f"part-{i:05d}.parquet" for i in range(len(sizes))]
    assert all(f.parent == tmp_path / "offline" / "dt=2026-11-22" for f in result.files)
    assert [pq.read_metadata(f).num_rows for f in result.files] == sizes
    assert result.rows == rows and result.pipeline_path == tmp_path / "offline.pipeline.yaml"


def test_a_smaller_rerun_removes_stale_parts(tmp_path: Path) -> None:
    generate("app", 300, DATE, tmp_path, part_rows=100)
    result = generate("app", 150, DATE, tmp_path, part_rows=100)
    assert sorted(p.name for p in result.files[0].parent.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]


@pytest.mark.parametrize(("kind", "schema"), [("offline", OFFLINE_SCHEMA), ("app", APP_SCHEMA)])
def test_schema(kind: str, schema: pa.Schema, offline, app) -> None:
    table = (offline if kind == "offline" else app)[1]
    assert table.schema.equals(schema)
    expected = {"value": pa.float64()} | ({"event_ts_ms": pa.int64(), "advertiser_tracking_enabled": pa.int64(),
                                           "application_tracking_enabled": pa.int64()} if kind == "app" else {})
    for f in table.schema:
        assert f.type == expected.get(f.name, pa.string()), f.name
        assert f.nullable


def test_offline_columns_match_the_spec() -> None:
    assert OFFLINE_SCHEMA.names == [
        "order_id", "lead_id", "event_name", "action_source", "event_time", "store_code", "email", "email_alt",
        "phone", "first_name", "last_name", "gender", "date_of_birth", "city", "state", "zip", "country",
        "loyalty_id", "rampid", "identity_partner", "value", "currency", "items"]
    assert APP_SCHEMA.names == (
        ["event_id", "event_name", "event_ts_ms", "advertiser_tracking_enabled", "application_tracking_enabled"]
        + [f"ext_{i:02d}" for i in range(16)]
        + ["madid", "anon_id", "client_ip_address", "email", "phone", "country", "value", "currency",
           "install_referrer"])


# --- determinism ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("kind", ["offline", "app"])
def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path: Path, kind: str, fmt: str) -> None:
    a = generate(kind, 700, DATE, tmp_path / "a", fmt=fmt, part_rows=400)
    b = generate(kind, 700, DATE, tmp_path / "b", fmt=fmt, part_rows=400)
    c = generate(kind, 700, DATE, tmp_path / "c", fmt=fmt, part_rows=400, seed=8)
    for fa, fb, fc in zip(a.files, b.files, c.files):
        assert fa.read_bytes() == fb.read_bytes()
        assert fa.read_bytes() != fc.read_bytes()
    assert a.defects == b.defects


def test_other_dates_give_other_ids_and_the_same_pipeline_file(tmp_path: Path) -> None:
    a = generate("app", 200, DATE, tmp_path)
    text = a.pipeline_path.read_text()
    b = generate("app", 200, DATE + dt.timedelta(days=1), tmp_path)
    assert b.pipeline_path.read_text() == text
    ids = [set(pq.read_table(r.files[0]).column("event_id").drop_null().to_pylist()) for r in (a, b)]
    assert not ids[0] & ids[1]
    offline = [generate("offline", 200, d, tmp_path / "o") for d in (DATE, DATE + dt.timedelta(days=1))]
    leads = [set(pq.read_table(r.files[0]).column("lead_id").drop_null().to_pylist()) for r in offline]
    assert leads[0] and not leads[0] & leads[1]


# --- pipeline file ----------------------------------------------------------------------------------------------

OFFLINE_MAPPING = {
    "event_name": "event_name", "event_time": "event_time", "action_source": "action_source",
    "user_data.em": ["email", "email_alt"], "user_data.ph": "phone", "user_data.fn": "first_name",
    "user_data.ln": "last_name", "user_data.ge": "gender", "user_data.db": "date_of_birth", "user_data.ct": "city",
    "user_data.st": "state", "user_data.zp": "zip", "user_data.country": "country",
    "user_data.external_id": "loyalty_id", "user_data.lead_id": "lead_id", "user_data.partner_id": "rampid",
    "user_data.partner_name": "identity_partner", "custom_data.value": "value",
    "custom_data.currency": "currency", "custom_data.order_id": "order_id",
    "custom_data.contents": {"column": "items", "parse": "json"},
    "custom_data.store_data.store_code": "store_code",
}
APP_MAPPING = {
    "event_name": "event_name", "event_time": "event_ts_ms",
    "app_data.advertiser_tracking_enabled": "advertiser_tracking_enabled",
    "app_data.application_tracking_enabled": "application_tracking_enabled",
    "app_data.extinfo": [f"ext_{i:02d}" for i in range(16)], "app_data.install_referrer": "install_referrer",
    "user_data.madid": "madid", "user_data.anon_id": "anon_id", "user_data.client_ip_address": "client_ip_address",
    "user_data.em": "email", "user_data.ph": "phone", "user_data.country": "country",
    "custom_data.value": "value", "custom_data.currency": "currency",
}
COMMON = {
    "version": 1, "schedule": "@daily",
    "user_data": {"hash": True, "prehashed": [], "default_country": "US", "dob_order": "mdy"},
    "ldu": {"policy": "by_state"}, "batching": {"size": 1000, "concurrency": 4},
    "rules": {"max_age_days": 7, "physical_store_max_age_days": 62},
    "ledger": "state/ledger.sqlite", "output": "out",
}


@pytest.mark.parametrize(("kind", "fmt", "expected"), [
    ("offline", "parquet", COMMON | {
        "name": "offline_sample",
        "source": {"path": "offline/dt={date}/part-*.parquet", "format": "parquet", "batch_rows": 50000},
        "contract": "builtin:offline_conversions", "mapping": OFFLINE_MAPPING,
        "event_time": {"unit": "auto", "timezone": "America/New_York"},
        "event_id": {"keys": ["order_id", "lead_id"]},
        "defaults": {"action_source": "physical_store", "currency": "USD"}}),
    ("app", "csv", COMMON | {
        "name": "app_sample",
        "source": {"path": "app/dt={date}/part-*.csv", "format": "csv", "batch_rows": 50000},
        "contract": "builtin:app_events", "mapping": APP_MAPPING,
        "event_time": {"unit": "ms"}, "event_id": {"column": "event_id"},
        "defaults": {"action_source": "app", "currency": "USD"}, "ldu": {"policy": "off"}}),
])
def test_pipeline_yaml(kind: str, fmt: str, expected: dict) -> None:
    doc = yaml.safe_load(sample.pipeline_yaml(kind, fmt))  # type: ignore[arg-type]
    destination = doc.pop("destination")
    assert doc == expected
    assert destination == {
        "dataset_id": sample.DEFAULT_DATASET_ID[kind], "api_version": "v25.0",
        "endpoint": "https://graph.facebook.com", "token_env": "META_CAPI_ACCESS_TOKEN",
        "connection_id": "meta_capi", "test_event_code": None, "partner_agent": None, "upload_tag": None,
        "namespace_id": None}
    assert list(doc["mapping"]) == list(expected["mapping"])   # the order users read


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_pipeline_yaml_loads_as_a_pipeline(kind: str, tmp_path) -> None:
    from capi_pipeline.config import load_pipeline

    path = tmp_path / f"{kind}.pipeline.yaml"
    path.write_text(sample.pipeline_yaml(kind))  # type: ignore[arg-type]
    cfg = load_pipeline(path)
    assert cfg.name == f"{kind}_sample"


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8765", "http://localhost:1/a b#c"])
def test_pipeline_yaml_destination_overrides(tmp_path: Path, endpoint: str) -> None:
    result = generate("offline", 10, DATE, tmp_path, dataset_id="42", endpoint=endpoint)
    doc = yaml.safe_load(result.pipeline_path.read_text())
    assert doc["destination"]["dataset_id"] == "42" and doc["destination"]["endpoint"] == endpoint


# --- defects ----------------------------------------------------------------------------------------------------

def _valid_offline(table: pa.Table) -> dict[str, np.ndarray]:
    """Recompute each offline defect from the data alone."""
    df = table.to_pandas()
    ts = pd_to_utc(df["event_time"])
    start = dt.datetime(2026, 11, 22, 5, tzinfo=dt.timezone.utc).timestamp()   # New York midnight
    key = df["order_id"].fillna(df["lead_id"])
    return {
        "missing_id": (df["order_id"].isna() & df["lead_id"].isna()).to_numpy(),
        "unparseable_time": np.isnan(ts),
        "too_old": ts < start - 60 * 86400,
        "future_time": ts > start + 2 * 86400,
        "unknown_currency": (df["currency"] == "XYZ").to_numpy(),
        "purchase_without_value": ((df["event_name"] == "Purchase") & df["value"].isna()).to_numpy(),
        "duplicate_id": (key.notna() & key.duplicated()).to_numpy(),
        "partner_id_without_name": (df["rampid"].notna() & df["identity_partner"].isna()).to_numpy(),
    }


def pd_to_utc(text) -> np.ndarray:
    """Epoch seconds of each event_time text (naive = New York), NaN when unreadable."""
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    out = np.full(len(text), np.nan)
    for i, v in enumerate(text):
        try:
            t = dt.datetime.fromisoformat(v)
        except (TypeError, ValueError):
            continue
        out[i] = (t if t.tzinfo else t.replace(tzinfo=new_york)).timestamp()
    return out


def test_offline_defects_are_exactly_the_reported_ones(offline) -> None:
    result, table = offline
    found = _valid_offline(table)
    assert result.bad_rows == 200 == sum(result.defects.values())
    assert set(result.defects) == set(OFFLINE_DEFECTS)
    for name, mask in found.items():
        assert int(mask.sum()) == result.defects[name], name
    assert max(result.defects.values()) - min(result.defects.values()) <= 2   # dealt out evenly
    total = np.sum([m for m in found.values()], axis=0)
    assert total.max() == 1   # one defect per bad row


def test_app_defects_are_exactly_the_reported_ones(app) -> None:
    result, table = app
    df = table.to_pandas()
    start_ms = dt.datetime(2026, 11, 22, 5, tzinfo=dt.timezone.utc).timestamp() * 1000
    ts = df["event_ts_ms"]
    found = {
        "missing_id": df["event_id"].isna(),
        "unparseable_time": ts.isna() | (ts < 1e11),
        "too_old": (ts >= 1e11) & (ts < start_ms - 7 * 86400e3),
        "future_time": ts > start_ms + 2 * 86400e3,
        "unknown_currency": df["currency"] == "XYZ",
        "purchase_without_value": (df["event_name"] == "Purchase") & df["value"].isna(),
        "duplicate_id": df["event_id"].notna() & df["event_id"].duplicated(),
        "missing_att": df["advertiser_tracking_enabled"].isna(),
        "missing_extinfo": df["ext_00"].isna() | (df["ext_00"] == "") | df["ext_04"].isna() | (df["ext_04"] == ""),
    }
    assert result.bad_rows == 200 and set(result.defects) == set(APP_DEFECTS)
    for name, mask in found.items():
        assert int(mask.sum()) == result.defects[name], name
    assert int(np.sum([m.to_numpy() for m in found.values()], axis=0).max()) == 1


@pytest.mark.parametrize(("kind", "rate"), [("offline", 0.0), ("app", 0.0), ("offline", 0.2), ("app", 0.2),
                                            ("offline", 1.0)])
def test_bad_rate(tmp_path: Path, kind: str, rate: float) -> None:
    result = generate(kind, 1000, DATE, tmp_path, bad_rate=rate, part_rows=400)
    assert result.bad_rows == round(1000 * rate)
    if kind == "offline" and rate < 1:
        found = _valid_offline(_read(result))
        assert sum(int(m.sum()) for m in found.values()) == result.bad_rows


def test_weak_rows_only_keep_location(offline) -> None:
    result, table = offline
    df = table.to_pandas()
    ids = ["email", "email_alt", "phone", "first_name", "last_name", "date_of_birth", "loyalty_id", "rampid",
           "lead_id"]
    weak = df[ids].isna().all(axis=1)
    assert 0.015 < result.weak_rows / len(df) < 0.045
    assert int(weak.sum()) == result.weak_rows
    assert df.loc[weak, ["city", "state", "zip", "country"]].notna().all().all()


# --- the mess ---------------------------------------------------------------------------------------------------

def test_offline_variety(offline) -> None:
    _, table = offline
    col = {name: [v for v in table.column(name).to_pylist() if v is not None] for name in table.column_names}
    emails = col["email"]
    assert any(re.fullmatch(r"[0-9a-f]{64}", e) for e in emails)
    assert any(re.fullmatch(r"[0-9A-F]{64}", e) for e in emails)
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert any("@" not in e or e.endswith("@") for e in emails)
    assert {"Zoë", "ANNE-MARIE"} & set(col["first_name"]) and any(" " in n for n in col["first_name"])
    assert any(n in col["last_name"] for n in ("O'Brien", "Nguyễn", "Müller-Lüdenscheidt"))
    assert any(re.fullmatch(r"\d{5}-\d{4}", z) for z in col["zip"])
    assert any(re.fullmatch(r"\d{9}", z) for z in col["zip"])
    assert any(re.fullmatch(r"[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}", z) for z in col["zip"])
    assert {"California", "CA", "ca "} <= set(col["state"])
    assert {"United States", "US", "us", "USA"} <= set(col["country"])
    assert len({ISO[c] for c in col["country"]}) == len(sample._COUNTRIES)
    assert {"Male", "F"} <= set(col["gender"])
    assert any(re.fullmatch(r"\d{2}/\d{2}/\d{4}", d) for d in col["date_of_birth"])
    assert any(re.fullmatch(r"\d{8}", d) for d in col["date_of_birth"])
    assert {"USD", "usd", "EUR", "GBP", "BRL", "JPY", "AUD"} <= set(col["currency"])
    assert all(re.fullmatch(r"XY\d{4}[A-Za-z0-9_-]{43}", r) for r in col["rampid"])
    assert set(col["identity_partner"]) == {"liveramp"}
    assert any(p.startswith("+") for p in col["phone"]) and any(p.startswith("(") for p in col["phone"])
    forms = {"Z": r"\S+Z", "naive": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "offset": r"\S+[+-]\d\d:\d\d"}
    for pattern in forms.values():
        assert any(re.fullmatch(pattern, t) for t in col["event_time"])
    assert {"Purchase", "Lead"} <= set(col["event_name"])
    assert {"physical_store", "phone_call", "system_generated"} == set(col["action_source"])
    assert all(re.fullmatch(r"S\d{4}-20261122-\d{6,}", o) for o in col["order_id"])
    assert all(re.fullmatch(r"\d{16}", x) for x in col["lead_id"])


def test_offline_event_mix_and_money(offline) -> None:
    _, table = offline
    df = table.to_pandas()
    share = df["event_name"].value_counts(normalize=True)
    assert 0.68 < share["Purchase"] < 0.82 and 0.18 < share["Lead"] < 0.30
    leads = df[df["event_name"] == "Lead"]
    assert leads["order_id"].isna().all() and leads["value"].isna().all() and leads["items"].isna().all()
    buys = df[(df["event_name"] == "Purchase") & df["value"].notna()]
    for value, currency, items in buys[["value", "currency", "items"]].head(300).itertuples(index=False):
        lines = json.loads(items)
        assert 1 <= len(lines) <= 4 and all(set(x) == {"id", "quantity", "item_price"} for x in lines)
        total = sum(x["quantity"] * x["item_price"] for x in lines)
        assert total <= value + 0.01 and value <= total * 1.09 + 0.01, (value, total)
        if currency.upper() == "JPY":
            assert value == int(value)


def test_app_variety(app) -> None:
    _, table = app
    col = {name: [v for v in table.column(name).to_pylist() if v is not None] for name in table.column_names}
    assert set(col["event_name"]) == {"MobileAppInstall", "AddToCart", "Purchase", "CompleteRegistration",
                                      "StartTrial"}
    assert {"a2", "i2"} <= set(col["ext_00"]) and set(col["ext_01"]) == {"com.example.shop"}
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(uuid, e) for e in col["event_id"])
    assert any(re.fullmatch(uuid, m) for m in col["madid"])
    assert any(re.fullmatch(uuid.upper().replace("A-F", "A-F"), m) for m in col["madid"])
    assert "00000000-0000-0000-0000-000000000000" in col["madid"]
    assert all(re.fullmatch("XZ" + uuid.upper(), a) for a in col["anon_id"])
    assert any("." in ip for ip in col["client_ip_address"]) and any(":" in ip for ip in col["client_ip_address"])
    import ipaddress

    for ip in col["client_ip_address"][:500]:
        ipaddress.ip_address(ip)
    assert set(col["advertiser_tracking_enabled"]) == {0, 1}
    assert all(c.startswith("utm_source=") for c in col["install_referrer"])


def _e164_country(raw: str, country_text: str | None) -> tuple[str, str]:
    region = ISO.get(country_text or "", "US")
    text = raw.split(" x")[0].split(" ext")[0].split(" #")[0]
    if text.startswith("00"):
        text = "+" + text[2:]
    return text, region


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_phones_are_valid_for_their_country(kind: str, offline, app) -> None:
    table = (offline if kind == "offline" else app)[1]
    valid = total = 0
    regions: set[str] = set()
    pairs = zip(table.column("phone").to_pylist(), table.column("country").to_pylist())
    for raw, country in list(pairs)[:2000]:
        if raw is None or country is None or raw in sample._INVALID_PHONE:
            continue
        text, region = _e164_country(raw, country)
        total += 1
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == region:
            valid += 1
            regions.add(region)
    assert total > 200 and valid / total > 0.97, (valid, total)
    assert len(regions) >= 6


def test_every_phone_kind_generates_valid_numbers() -> None:
    """Each prefix / length / format in the reference data is valid in libphonenumber."""
    rng = np.random.default_rng(0)
    t = sample._tables()
    for ci, c in enumerate(sample._COUNTRIES):
        places = np.flatnonzero(t.place_country == ci)
        for pi in places:
            phones = sample._phones(rng, np.full(80, pi), np.zeros(80, bool)).to_pylist()
            bad = [p for p in phones if not phonenumbers.is_valid_number(
                phonenumbers.parse(*_e164_country(p, c.iso)))]
            assert len(bad) <= 2, (c.iso, bad[:5])


# --- which day to sample ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "day"), [
    ("2026-12-05T00:30:00+00:00", "2026-12-03"),  # 19:30 on the 4th in New York: the 4th is not over there
    ("2026-12-05T04:59:59+00:00", "2026-12-03"),
    ("2026-12-05T05:00:00+00:00", "2026-12-04"),  # midnight in New York (EST, UTC-5)
    ("2026-07-05T03:59:59+00:00", "2026-07-03"),
    ("2026-07-05T04:00:00+00:00", "2026-07-04"),  # midnight in New York (EDT, UTC-4)
    ("2026-12-05T23:59:59+00:00", "2026-12-04"),
    ("2026-12-05T09:00:00+09:00", "2026-12-03"),  # any timezone-aware clock: 00:00 UTC
])
def test_latest_complete_day_is_over_in_new_york(now: str, day: str) -> None:
    assert sample.latest_complete_day(dt.datetime.fromisoformat(now)) == dt.date.fromisoformat(day)


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_the_latest_complete_day_has_no_event_in_the_future_at_any_hour(tmp_path: Path, kind: str) -> None:
    """Sampled just after midnight UTC (New York's evening), the partition's last event is still in the past."""
    from capi_pipeline import extract, mapping
    from capi_pipeline.config import load_pipeline

    now = dt.datetime(2026, 12, 5, 0, 1, tzinfo=dt.timezone.utc)
    result = generate(kind, 3000, sample.latest_complete_day(now), tmp_path, bad_rate=0.0)
    cfg = load_pipeline(result.pipeline_path)
    latest = max(int(mapping.to_canonical(chunk.frame, cfg, file=chunk.file, first_row=chunk.first_row)
                     ["event_time"].max())
                 for f in result.files for chunk in extract.read_chunks(f, cfg.source.format, 5000, name=f.name))
    assert now.timestamp() - 24 * 3600 < latest < now.timestamp()


# --- CLI and formats --------------------------------------------------------------------------------------------

def test_csv_round_trip(tmp_path: Path) -> None:
    result = generate("offline", 500, DATE, tmp_path, fmt="csv", part_rows=300)
    assert [f.name for f in result.files] == ["part-00000.csv", "part-00001.csv"]
    strings = {n: pa.string() for n in OFFLINE_SCHEMA.names if n != "value"}
    table = pa.concat_tables(pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
        column_types=strings | {"value": pa.float64()}, strings_can_be_null=False,
        quoted_strings_can_be_null=False)) for f in result.files)
    assert table.column_names == OFFLINE_SCHEMA.names and table.num_rows == 500
    parquet = _read(generate("offline", 500, DATE, tmp_path / "pq", part_rows=300))
    assert table.column("order_id").to_pylist() == [v or "" for v in parquet.column("order_id").to_pylist()]
    assert table.column("value").to_pylist()[:50] == parquet.column("value").to_pylist()[:50]
    assert yaml.safe_load(result.pipeline_path.read_text())["source"]["format"] == "csv"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sample.add_arguments(parser)
    args = parser.parse_args(["--kind", "app", "--rows", "120", "--date", "2026-11-22", "--out", str(tmp_path),
                              "--seed", "3", "--bad-rate", "0.1", "--format", "csv", "--part-rows", "50"])
    assert sample.main_from_args(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "120 rows" in line and "12 bad" in line
    assert len(list((tmp_path / "app" / "dt=2026-11-22").glob("part-*.csv"))) == 3
    for bad in (["--bad-rate", "1.5"], ["--date", "22/11/2026"], ["--kind", "web"], ["--rows", "-1"]):
        argv = ["--kind", "offline", "--rows", "1", "--date", "2026-11-22", "--out", str(tmp_path), "--bad-rate",
                "0.1"]
        argv[argv.index(bad[0]) + 1] = bad[1]
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


@pytest.mark.parametrize("kwargs", [{"kind": "web"}, {"rows": -1}, {"bad_rate": 1.5}, {"fmt": "xlsx"},
                                    {"part_rows": 0}, {"dataset_id": "abc"}, {"seed": -1}])
def test_bad_arguments_are_configuration_errors(tmp_path: Path, kwargs: dict) -> None:
    from capi_pipeline.errors import ConfigurationError

    args = {"kind": "offline", "rows": 1, "date": DATE, "out": tmp_path} | kwargs
    with pytest.raises(ConfigurationError):
        generate(**args)


def test_speed_is_printed_not_asserted(tmp_path: Path) -> None:
    """CAPI_SAMPLE_ROWS=1000000 pytest -s -k speed prints the 1M-row time; the default keeps the suite fast."""
    rows = int(os.environ.get("CAPI_SAMPLE_ROWS", "20000"))
    began = time.perf_counter()
    result = generate("offline", rows, DATE, tmp_path)
    print(f"\nsample offline: {rows:,} rows in {time.perf_counter() - began:.2f} s")
    assert result.rows == rows
