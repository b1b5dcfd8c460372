"""`init` over real sample files and odd CSVs (the YAML and contract load), `check` against the real sandbox."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from capi_pipeline import quickstart
from capi_pipeline.config import load_pipeline
from capi_pipeline.contracts import load_contract, resolve_contract_path
from capi_pipeline.errors import ConfigurationError

OFFLINE_MAPPING = {
    "event_name": "event_name", "event_time": "event_time", "action_source": "action_source",
    "user_data.em": ["email", "email_alt"], "user_data.ph": "phone", "user_data.fn": "first_name",
    "user_data.ln": "last_name", "user_data.ge": "gender", "user_data.db": "date_of_birth", "user_data.ct": "city",
    "user_data.st": "state", "user_data.zp": "zip", "user_data.country": "country",
    "user_data.external_id": "loyalty_id", "user_data.lead_id": "lead_id", "user_data.partner_id": "rampid",
    "user_data.partner_name": "identity_partner", "custom_data.value": "value", "custom_data.currency": "currency",
    "custom_data.order_id": "order_id", "custom_data.contents": {"column": "items", "parse": "json"},
    "custom_data.store_data.store_code": "store_code",
}
APP_MAPPING = {
    "event_name": "event_name", "event_time": "event_ts_ms", "user_data.madid": "madid",
    "user_data.anon_id": "anon_id", "user_data.client_ip_address": "client_ip_address", "user_data.em": "email",
    "user_data.ph": "phone", "user_data.country": "country", "custom_data.value": "value",
    "custom_data.currency": "currency", "app_data.advertiser_tracking_enabled": "advertiser_tracking_enabled",
    "app_data.application_tracking_enabled": "application_tracking_enabled",
    "app_data.install_referrer": "install_referrer", "app_data.extinfo": [f"ext_{i:02d}" for i in range(16)],
}


def _init_args(file: Path, kind: str, out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quickstart.add_init_arguments(parser)
    return parser.parse_args([str(file), "--kind", kind, "--dataset-id", "1234567890", "--out", str(out), *extra])


# ---------------------------------------------------------------------------------------------- init: samples

@pytest.mark.parametrize(("kind", "expected", "event_id", "unit"), [
    ("offline", OFFLINE_MAPPING, {"keys": ["order_id", "lead_id"]}, "auto"),
    ("app", APP_MAPPING, {"column": "event_id"}, "ms"),
])
def test_init_on_sample_output(tmp_path: Path, yesterday: Any, capsys: pytest.CaptureFixture[str], kind: str,
                               expected: dict[str, Any], event_id: dict[str, Any], unit: str) -> None:
    from capi_pipeline import sample

    smp = sample.generate(kind, 400, yesterday, tmp_path / "wh")
    assert quickstart.cmd_init(_init_args(smp.files[0], kind, tmp_path / "conf")) == 0
    out = capsys.readouterr().out
    assert "not mapped:" not in out and "warning" not in out
    yaml_path = tmp_path / "conf" / f"{kind}.pipeline.yaml"
    cfg = load_pipeline(yaml_path)
    assert cfg.name == kind
    assert cfg.source.path == f"../wh/{kind}/dt={{date}}/part-*.parquet"
    assert cfg.partition_glob(yesterday.isoformat()).parent.resolve() == smp.files[0].parent.resolve()
    assert cfg.event_time.unit == unit
    assert cfg.defaults["action_source"] == ("app" if kind == "app" else "physical_store")
    assert cfg.destinations[0].dataset_id == "1234567890"
    got = {path: (list(src.columns) if src.many else {"column": src.columns[0], "parse": src.parse} if src.parse
                  else src.columns[0]) for path, src in cfg.mapping.items()}
    assert got == expected
    assert (cfg.event_id.column, list(cfg.event_id.keys)) == (event_id.get("column"), event_id.get("keys", []))
    contract = load_contract(resolve_contract_path(cfg.contract, cfg.base_dir))
    columns = {c.name: c for c in contract.columns}
    assert list(columns) == list(pd.read_parquet(smp.files[0]).columns)
    assert columns["email"].pii and columns["phone"].pii and not columns["event_name"].pii
    assert columns["value"].logical_type == "number"


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_init_pipeline_validates_the_sample(tmp_path: Path, yesterday: Any, kind: str) -> None:
    """The written YAML and starter contract run: `validate` keeps the sample's good rows, rejects its bad ones."""
    from capi_pipeline import pipeline, sample

    smp = sample.generate(kind, 400, yesterday, tmp_path / "wh")
    result = quickstart.init(smp.files[0], kind=kind, dataset_id="1234567890", out_dir=tmp_path / "conf")
    cfg = load_pipeline(result.pipeline_path)
    run = pipeline.validate(cfg, yesterday.isoformat(), out_dir=tmp_path / "run")
    totals = run.stats.totals()
    assert totals["rows_read"] == 400
    assert 400 - smp.bad_rows - smp.weak_rows <= totals["rows_valid"] <= 400 - smp.bad_rows
    assert run.stats.rejected_by_stage.get("contract", 0) == 0  # the starter contract is permissive
    assert (run.out_dir / "report.html").is_file()


# ---------------------------------------------------------------------------------------------- init: odd CSVs

EMAILS = ["Ann.Lee@Example.com", " bob@example.org", "carla+x@example.net"]


def _odd_frame() -> pd.DataFrame:
    sha = [hashlib.sha256(e.strip().lower().encode()).hexdigest() for e in EMAILS]
    return pd.DataFrame({
        "Contact": EMAILS,                                          # e-mails by content
        "E-Mail SHA256": sha,                                       # em by name, pre-hashed by content
        "Tel": ["+1 650 555 1212", "(650) 555-1313", "+44 20 7946 0958"],
        "GivenName": ["Ann", "Bob", "Carla"],
        "Family Name": ["Lee", "Ng", "Díaz"],
        "Sex": ["F", "M", "F"],
        "DOB": ["1985-07-14", "1990-01-02", "1979-12-31"],
        "Town": ["Austin", "Boston", "Denver"],
        "Province": ["TX", "MA", "CO"],
        "PostCode": ["73301", "02134", "80202"],
        "CountryCode": ["US", "US", "US"],
        "CRM ID": ["c1", "c2", "c3"],
        "Transaction ID": ["t1", "t2", "t3"],
        "Revenue": ["10.50", "3", "99.99"],
        "Event Type": ["Purchase", "Purchase", "Purchase"],
        "when": ["2026-11-20T10:00:00Z", "2026-11-20 11:00:00", "2026-11-20T12:00:00-05:00"],
        "remote": ["203.0.113.9", "2001:db8::1", "198.51.100.7"],
        "mystery_hash": sha,
        "notes": ["called twice", "vip", ""],
        "StoreID": ["S1", "S2", "S1"],
    })


def test_init_on_odd_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "exports" / "orders_2026-11-20.csv"
    src.parent.mkdir()
    _odd_frame().to_csv(src, index=False)
    assert quickstart.cmd_init(_init_args(src, "offline", tmp_path / "conf")) == 0
    out = capsys.readouterr().out
    cfg = load_pipeline(tmp_path / "conf" / "orders.pipeline.yaml")
    m = {path: list(s.columns) if s.many else s.columns[0] for path, s in cfg.mapping.items()}
    assert m == {
        "event_name": "Event Type", "event_time": "when", "user_data.em": ["E-Mail SHA256", "Contact"],
        "user_data.ph": "Tel", "user_data.fn": "GivenName", "user_data.ln": "Family Name", "user_data.ge": "Sex",
        "user_data.db": "DOB", "user_data.ct": "Town", "user_data.st": "Province", "user_data.zp": "PostCode",
        "user_data.country": "CountryCode", "user_data.external_id": "CRM ID",
        "user_data.client_ip_address": "remote", "custom_data.order_id": "Transaction ID",
        "custom_data.value": "Revenue", "custom_data.store_data.store_code": "StoreID",
    }
    assert cfg.user_data.prehashed == ("E-Mail SHA256",)
    assert cfg.source.format == "csv"
    assert cfg.source.path == "../exports/orders_{date}.csv"
    assert cfg.partition_glob("2026-11-20").resolve() == src.resolve()
    assert list(cfg.event_id.keys) == ["Transaction ID"]
    assert cfg.defaults == {"action_source": "physical_store", "currency": "USD"}
    assert "mystery_hash: holds SHA-256 hashes" in out
    assert "notes: no CAPI field matches" in out
    contract = load_contract(tmp_path / "conf" / "orders.odcs.yaml")
    assert {c.name for c in contract.columns if c.pii} == {
        "Contact", "E-Mail SHA256", "Tel", "GivenName", "Family Name", "Sex", "DOB", "Town", "Province", "PostCode",
        "CountryCode", "CRM ID", "remote"}
    assert all(c.logical_type == "string" for c in contract.columns)  # extract reads CSV as text
    # nothing from the sample but column names is written or printed
    written = out + (tmp_path / "conf" / "orders.pipeline.yaml").read_text() + \
        (tmp_path / "conf" / "orders.odcs.yaml").read_text()
    for value in EMAILS + ["650", "Díaz", "203.0.113.9", "called twice"]:
        assert value.strip() not in written


def test_init_without_dates_writes_an_edit_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "leads.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "email": f"u{i}@example.com", "x": 1}) for i in range(3)) + "\n")
    assert quickstart.cmd_init(_init_args(src, "offline", tmp_path)) == 0
    out = capsys.readouterr().out
    text = (tmp_path / "leads.pipeline.yaml").read_text()
    assert "# EDIT: where one day's files are" in text
    assert "EDIT_ME_event_name_column" in text and "EDIT_ME_event_time_column" in text
    cfg = load_pipeline(tmp_path / "leads.pipeline.yaml")
    assert cfg.source.path == "dt={date}/*.jsonl" and cfg.source.format == "jsonl"
    assert "warning: no column found for event_time" in out
    assert "warning: no event_id, order_id or lead_id column" in out
    assert "email" not in cfg.event_id.keys  # a customer column never becomes the event id


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "orders_2026-11-20.csv"
    _odd_frame().to_csv(src, index=False)
    quickstart.cmd_init(_init_args(src, "offline", tmp_path))
    with pytest.raises(ConfigurationError, match="already exists"):
        quickstart.cmd_init(_init_args(src, "offline", tmp_path))
    assert quickstart.cmd_init(_init_args(src, "offline", tmp_path, "--force")) == 0


def test_init_refuses_a_csv_without_its_header_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An export without its header (UNLOAD without HEADER): the first row would be the column names, and init
    would print them and write them into the YAML. It refuses, naming the column by position only."""
    from capi_pipeline.errors import InputError

    src = tmp_path / "orders_2026-11-20.csv"
    src.write_text("evt-1,2026-11-20T10:00:00Z,canary-h1@leak.test,+1 415 555 0177,Zzqvorn\n"
                   "evt-2,2026-11-20T11:00:00Z,b@x.test,+1 415 555 0178,Qxlyptra\n", encoding="utf-8")
    with pytest.raises(InputError, match="column 2 reads as") as err:
        quickstart.cmd_init(_init_args(src, "offline", tmp_path))
    assert "canary" not in str(err.value) + capsys.readouterr().out and not list(tmp_path.glob("*.yaml"))
    assert quickstart.header_like_data(["order_id", "ts", "email", "phone", "store 12"]) is None


@pytest.mark.parametrize(("column", "target"), [
    ("email", "user_data.em"), ("E_Mail", "user_data.em"), ("emailAddress", "user_data.em"),
    ("mail", "user_data.em"), ("email_alt", "user_data.em"), ("email2", "user_data.em"),
    ("hashed_email", "user_data.em"), ("msisdn", "user_data.ph"), ("phone_number", "user_data.ph"),
    ("fname", "user_data.fn"), ("surname", "user_data.ln"), ("birthdate", "user_data.db"),
    ("postal_code", "user_data.zp"), ("region", "user_data.st"), ("country_code", "user_data.country"),
    ("loyalty_id", "user_data.external_id"), ("ip_address", "user_data.client_ip_address"),
    ("user_agent", "user_data.client_user_agent"), ("IDFA", "user_data.madid"), ("gaid", "user_data.madid"),
    ("install_id", "user_data.anon_id"), ("RampID", "user_data.partner_id"), ("fbc", "user_data.fbc"),
    ("lead_id", "user_data.lead_id"), ("transaction_id", "custom_data.order_id"), ("total", "custom_data.value"),
    ("currency", "custom_data.currency"), ("store_id", "custom_data.store_data.store_code"),
    ("event_type", "event_name"), ("created_at", "event_time"), ("event_ts_ms", "event_time"),
    ("att", "app_data.advertiser_tracking_enabled"), ("notes", None), ("phone_alt", "user_data.ph"),
    ("city2", None), ("PostCode", "user_data.zp"), ("CountryCode", "user_data.country"),
    ("ZipCode", "user_data.zp"), ("IPAddress", "user_data.client_ip_address"),
    # a Shopify-like export's address block, a German CRM, a call center (accents folded)
    ("Billing Zip", "user_data.zp"), ("Billing Province", "user_data.st"), ("Shipping City", "user_data.ct"),
    ("Billing Country", "user_data.country"), ("Billing Name", None), ("Telefon", "user_data.ph"),
    ("PLZ", "user_data.zp"), ("Ort", "user_data.ct"), ("Vorname", "user_data.fn"), ("Nachname", "user_data.ln"),
    ("Umsatz", "custom_data.value"), ("Währung", "custom_data.currency"), ("Bestellnummer", "custom_data.order_id"),
    ("Prénom", "user_data.fn"), ("Código Postal", "user_data.zp"), ("call_id", "event_id"),
])
def test_name_table(column: str, target: str | None) -> None:
    got = quickstart._target_for(quickstart._canon_name(column))
    assert (got[0] if got else None) == target


def test_extinfo_by_name_for_app() -> None:
    frame = pd.DataFrame({"event_id": ["1"], "event": ["Purchase"], "ts": [1_763_800_000_000], "att": [1],
                          "aaid": ["38400000-8cf0-11bd-b23e-10b96e40000d"],
                          "extinfo_0": ["a2"], "extinfo_4": ["14"], "extinfo_15": ["UTC"]})
    inf = quickstart.infer(frame, "app")
    ext = inf.mapping["app_data.extinfo"]
    assert len(ext) == 16 and ext[0] == "extinfo_0" and ext[4] == "extinfo_4" and ext[15] == "extinfo_15"
    assert ext[1] is None
    assert inf.event_time_unit == "ms"
    assert not inf.warnings


@pytest.mark.parametrize(("path", "stem", "template", "dated"), [
    ("wh/offline/dt=2026-11-22/part-00000.parquet", "offline", "wh/offline/dt={date}/part-*.parquet", True),
    ("exports/Orders 2026-11-20.csv", "orders", "exports/Orders {date}.csv", True),
    ("exports/crm.csv", "crm", "exports/dt={date}/*.csv", False),
    ("2024.jsonl", "p_2024", "dt={date}/*.jsonl", False),
])
def test_stem_and_source_template(tmp_path: Path, path: str, stem: str, template: str, dated: bool) -> None:
    assert quickstart.pipeline_stem(Path(path)) == stem
    assert quickstart.source_template(tmp_path / path, tmp_path) == (template, dated)


# ---------------------------------------------------------------------------------------------- check

@pytest.fixture
def sb() -> Iterator[Any]:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, token="right")) as sandbox:
        yield sandbox


def _check_args(yaml_path: Path, url: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    quickstart.add_check_arguments(parser)
    return parser.parse_args([str(yaml_path), "--test-event-code", "TEST4242", "--endpoint", url])


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_check_sends_one_test_event(sb: Any, tmp_path: Path, yesterday: Any, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], kind: str) -> None:
    from capi_pipeline import sample

    smp = sample.generate(kind, 50, yesterday, tmp_path / "wh")
    yaml_path = quickstart.init(smp.files[0], kind=kind, dataset_id="1234567890", out_dir=tmp_path).pipeline_path
    monkeypatch.setenv("META_CAPI_ACCESS_TOKEN", "right")
    assert quickstart.cmd_check(_check_args(yaml_path, sb.url)) == 0
    out = capsys.readouterr().out
    assert "OK, events_received 1" in out and "fbtrace_id A" in out
    stored = sb.events()
    assert len(stored) == 1
    assert stored[0]["test_event_code"] == "TEST4242"
    event = stored[0]["event"]
    assert event["event_name"] == quickstart.CHECK_EVENT_NAME
    assert event["user_data"]["em"] == [hashlib.sha256(quickstart.CHECK_EMAIL.encode()).hexdigest()]
    assert event["action_source"] == ("app" if kind == "app" else "physical_store")
    if kind == "app":
        assert len(event["app_data"]["extinfo"]) == 16


def test_check_wrong_token(sb: Any, tmp_path: Path, yesterday: Any, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from capi_pipeline import sample

    smp = sample.generate("offline", 20, yesterday, tmp_path / "wh")
    monkeypatch.setenv("META_CAPI_ACCESS_TOKEN", "nope-secret-token")
    assert quickstart.cmd_check(_check_args(smp.pipeline_path, sb.url)) == 1
    out = capsys.readouterr().out
    assert "FAILED (TerminalUploadError)" in out and "code 190" in out
    assert "access token in $META_CAPI_ACCESS_TOKEN" in out
    assert "nope-secret-token" not in out
    assert sb.events() == []


def test_check_without_token_is_a_configuration_error(sb: Any, tmp_path: Path, yesterday: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from capi_pipeline import sample

    smp = sample.generate("offline", 20, yesterday, tmp_path / "wh")
    monkeypatch.delenv("META_CAPI_ACCESS_TOKEN", raising=False)
    with pytest.raises(ConfigurationError) as info:
        quickstart.cmd_check(_check_args(smp.pipeline_path, sb.url))
    assert info.value.exit_code == 2


def test_a_semicolon_export_gets_a_hint() -> None:
    """A ';'-separated CSV reads as one column: `init` says why nothing matched instead of leaving it at that."""
    import pandas as pd

    inf = quickstart.infer(pd.DataFrame({"call_id;agent;phone": ["1;a;+1 415 555 0134"]}), "offline")
    assert any("separated by ';'" in w for w in inf.warnings)


def test_init_finds_a_semicolon_delimiter_and_the_run_reads_with_it(tmp_path) -> None:
    """European spreadsheets export ';'-separated CSV: init writes source.delimiter, and pass 1 reads with it."""
    import datetime as dt

    from capi_pipeline import pipeline
    from capi_pipeline.config import load_pipeline

    day = dt.date(2026, 12, 4)
    part = tmp_path / "exports" / f"dt={day}"
    part.mkdir(parents=True)
    (part / "calls.csv").write_text(
        "call_id;event_name;call_ts;phone;email;value;currency\n"
        "C1;Lead;2026-12-04T10:00:00Z;+1 415 555 0134;a@example.com;12,5;EUR\n"
        "C2;Lead;2026-12-04T11:00:00Z;+1 415 555 0135;b@example.com;9;EUR\n", encoding="utf-8")
    result = quickstart.init(part / "calls.csv", kind="offline", dataset_id="1234567890", out_dir=tmp_path / "conf")
    cfg = load_pipeline(result.pipeline_path)
    assert cfg.source.delimiter == ";" and cfg.mapping["user_data.ph"].columns == ("phone",)
    run = pipeline.validate(cfg, day.isoformat(), out_dir=tmp_path / "out", now=1796400000)
    assert run.stats.rows_read == 2 and run.stats.totals()["rows_rejected"] == 0
    assert run.stats.values_dropped["custom_data.value:invalid_number"] == 1  # "12,5": no decimal commas
