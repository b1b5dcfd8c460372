"""pipeline.py end to end over real files and real HTTP: sample warehouse -> sandbox Graph API."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pandas as pd
import pytest

from capi_pipeline import pipeline
from capi_pipeline.client import Secret
from capi_pipeline.config import load_pipeline
from capi_pipeline.errors import InputError
from capi_pipeline.sample import generate

TOKEN = "EAAB-test-token-never-logged"


def _run(cfg, day: dt.date, out: Path, **kw):
    tokens = {d.dataset_id: Secret(TOKEN) for d in cfg.destinations}
    return pipeline.run(cfg, day.isoformat(), out_dir=out, tokens=tokens, **kw)


@pytest.mark.parametrize(("kind", "ledger"), [("offline", "file"), ("app", "file"), ("offline", "postgresql")])
def test_every_valid_row_delivered_once(kind: str, ledger: str, tmp_path: Path, sandbox, yesterday,
                                        request: pytest.FixtureRequest) -> None:
    smp = generate(kind, 1500, yesterday, tmp_path / "wh", seed=3, bad_rate=0.1)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    if ledger == "postgresql":  # `ledger: postgresql+psycopg://...` in the pipeline YAML
        cfg = dataclasses.replace(cfg, ledger=request.getfixturevalue("postgres_url"))
        assert cfg.ledger_location().startswith("postgresql+psycopg://")
    result = _run(cfg, yesterday, tmp_path / "out")
    t = result.stats.totals()
    assert result.exit_code == 0
    assert t["rows_read"] == 1500
    assert t["rows_rejected"] >= smp.bad_rows * 0.8
    assert t["events_delivered"] == t["rows_valid"] == t["events_sent"] > 1000
    assert t["events_failed"] == 0
    stats = sandbox.stats()["datasets"][cfg.destinations[0].dataset_id]
    assert stats["unique_events"] == t["events_delivered"] and stats["duplicate_events"] == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for key in ("rows_read", "rows_rejected", "events_sent", "events_delivered", "events_failed"):
        assert report[key] == t[key]
    with open(tmp_path / "out" / "quarantine.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == t["rows_rejected"]
    assert all(r["rule"] and r["file"] and int(r["row"]) >= 1 for r in rows)

    # A second run of the same partition sends nothing new (ledger).
    again = _run(cfg, yesterday, tmp_path / "out2")
    assert again.exit_code == 0
    assert again.stats.totals()["events_sent"] == 0
    assert again.stats.totals()["events_skipped_already_sent"] == t["events_delivered"]
    assert sandbox.stats()["datasets"][cfg.destinations[0].dataset_id]["events_received"] == t["events_delivered"]


def test_no_customer_value_or_token_in_outputs(tmp_path: Path, sandbox, yesterday, caplog) -> None:
    smp = generate("offline", 800, yesterday, tmp_path / "wh", seed=5, bad_rate=0.2)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    with caplog.at_level("DEBUG"):
        _run(cfg, yesterday, tmp_path / "out")
    frame = pd.concat(pd.read_parquet(f) for f in smp.files)
    # A customer value is something that identifies a person: a bare "@gmail.com" (an invalid e-mail
    # in the messy sample) is also the text of GX's bundled fonts, so it is not one.
    secrets = {v.strip() for col in ("email", "phone", "last_name") for v in frame[col].dropna().astype(str)
               if len(v.strip()) >= 6 and not v.strip().startswith("@")}
    text_files = [p for p in (tmp_path / "out").rglob("*")
                  if p.is_file() and p.suffix in {".json", ".csv", ".html", ".txt", ".js", ".css", ".log"}]
    assert any(p.name == "report.html" for p in text_files)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in text_files]
    texts.append(caplog.text)
    texts.append(json.dumps(sandbox.requests()))
    blob = "\n".join(texts)
    assert TOKEN not in blob
    leaked = [s for s in secrets if s in blob]
    assert not leaked, f"{len(leaked)} customer values leaked"
    assert not any(r.get("token_in_url") for r in sandbox.requests())


def test_dry_run_writes_bodies_and_sends_nothing(tmp_path: Path, sandbox, yesterday) -> None:
    smp = generate("app", 1200, yesterday, tmp_path / "wh", seed=1, bad_rate=0.0)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    result = pipeline.run(cfg, yesterday.isoformat(), out_dir=tmp_path / "out", dry_run_dir=tmp_path / "dry")
    assert result.exit_code == 0
    files = sorted((tmp_path / "dry").glob("*.json"))
    assert len(files) == 2  # 1200 events in batches of <= 1000
    bodies = [json.loads(f.read_text()) for f in files]
    assert sum(len(b["data"]) for b in bodies) == result.stats.totals()["rows_valid"]
    assert all("access_token" not in json.dumps(b) for b in bodies)
    assert sandbox.stats().get("requests", 0) == 0


def test_corrupt_file_stops_before_sending(tmp_path: Path, sandbox, yesterday) -> None:
    smp = generate("offline", 500, yesterday, tmp_path / "wh", seed=2)
    (smp.files[0].parent / "part-99999.parquet").write_bytes(b"PAR1 this is not parquet")
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    with pytest.raises(InputError) as err:
        _run(cfg, yesterday, tmp_path / "out")
    assert "part-99999.parquet" in str(err.value)
    assert sandbox.stats().get("requests", 0) == 0


def test_missing_partition(tmp_path: Path, yesterday) -> None:
    smp = generate("offline", 10, yesterday, tmp_path / "wh", seed=2)
    cfg = load_pipeline(smp.pipeline_path)
    with pytest.raises(InputError, match="no files"):
        _run(cfg, yesterday - dt.timedelta(days=3), tmp_path / "out")


def test_per_file_stages_match_the_single_run(tmp_path: Path, sandbox, yesterday) -> None:
    smp = generate("offline", 1000, yesterday, tmp_path / "wh", seed=9, bad_rate=0.1, part_rows=400)
    path = str(smp.pipeline_path)
    day = yesterday.isoformat()
    run_dir = pipeline.run_dir_for(path, day, "manual__1")
    files = pipeline.plan_partition(path, day)
    assert len(files) == 3
    for f in files:
        pipeline.validate_file(path, day, f, run_dir=run_dir)
    counts = [pipeline.deliver_file(path, day, f, run_dir=run_dir, tokens={"1000000000000001": TOKEN},
                                    endpoint=sandbox.url) for f in files]
    final = pipeline.finalize_run(path, day, run_dir=run_dir)
    assert final["exit_code"] == 0
    assert final["rows_read"] == 1000
    assert final["events_delivered"] == sum(c["events_delivered"] for c in counts) == final["rows_valid"]
    report = json.loads(Path(final["report"]).read_text())
    assert report["events_delivered"] == final["events_delivered"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_key_first_seen_on_a_contract_rejected_row_makes_its_later_copy_a_duplicate(tmp_path: Path, yesterday,
                                                                                      workers: int) -> None:
    """The first occurrence of event_name + event_id wins even when the contract rejected it, as when a rule
    does: a corrected copy later in the partition is quarantined as duplicate_event_id (README), in this process
    and in the worker processes alike."""
    smp = generate("offline", 40, yesterday, tmp_path / "wh", seed=3, bad_rate=0.0, fmt="csv")
    src = Path(smp.files[0])
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    first = frame.index[frame["value"].str.len() > 0][0]
    bad = frame.loc[[first]].assign(value="-1")  # out_of_range in the contract: pass 1 rejects it
    pd.concat([bad, frame]).to_csv(src, index=False)
    cfg = load_pipeline(smp.pipeline_path)
    out = tmp_path / f"out{workers}"
    pipeline.run(cfg, yesterday.isoformat(), out_dir=out, dry_run_dir=tmp_path / f"dry{workers}", workers=workers)
    rows = {int(r["row"]): r["rule"] for r in csv.DictReader((out / "quarantine.csv").open(encoding="utf-8"))}
    assert rows[1] == "out_of_range" and rows[first + 2] == "duplicate_event_id"


@pytest.mark.parametrize("kind", ["offline", "app"])
def test_worker_processes_change_nothing_but_speed(tmp_path: Path, sandbox, yesterday, kind: str) -> None:
    """Pass 1 and pass 2 in two worker processes: same bodies, batch ids, quarantine and report counts.

    Small chunks over several files, so duplicates cross chunk and file boundaries (decided in chunk order)."""
    import dataclasses

    smp = generate(kind, 6000, yesterday, tmp_path / "wh", seed=5, bad_rate=0.15, part_rows=2500)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, batch_rows=700))
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    outcome = {}
    for workers in (1, 2):
        out, dry = tmp_path / f"out{workers}", tmp_path / f"dry{workers}"
        result = pipeline.run(cfg, yesterday.isoformat(), out_dir=out, dry_run_dir=dry, now=now, workers=workers)
        report = json.loads((out / "report.json").read_text())
        counts = {k: v for k, v in report.items() if k not in ("timing", "quarantine_file")}
        bodies = {p.name: p.read_bytes() for p in sorted(dry.iterdir())}
        outcome[workers] = (result.stats.totals(), counts, (out / "quarantine.csv").read_bytes(), bodies,
                            (out / report["data_docs"]).is_file())
    one, two = outcome[1], outcome[2]
    assert one[0] == two[0] and one[0]["rows_read"] == 6000
    assert one[1] == two[1]
    assert one[2] == two[2] and b"duplicate_event_id" in one[2]
    assert one[3] == two[3] and len(one[3]) >= 5
    assert one[4] and two[4]


def test_worker_failure_stops_the_run_before_sending(tmp_path: Path, sandbox, yesterday) -> None:
    """A table-level contract failure found by a worker raises in order, before any request."""
    smp = generate("offline", 3000, yesterday, tmp_path / "wh", seed=6, bad_rate=0.0, part_rows=1000)
    files = sorted((tmp_path / "wh").rglob("*.parquet"))
    frame = pd.read_parquet(files[1]).drop(columns=["event_name"])
    frame.to_parquet(files[1], index=False)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    from capi_pipeline.errors import ContractViolation

    with pytest.raises(ContractViolation, match="event_name"):
        _run(cfg, yesterday, tmp_path / "out", workers=2)
    assert sandbox.stats()["requests"] == 0


def test_json_cells_that_cannot_be_sent_are_left_out_and_counted(tmp_path: Path, sandbox, yesterday) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    smp = generate("offline", 400, yesterday, tmp_path / "wh", seed=4, bad_rate=0.0)
    part = smp.files[0]
    table = pq.read_table(part)
    items = table.column("items").to_pylist()
    broken = [i for i, v in enumerate(items) if v][:3]
    for i in broken:
        items[i] = '[{"id": "SKU-1", "quantity": 2,}]'  # a JSON list by the contract's shape check, not JSON
    pq.write_table(table.set_column(table.schema.get_field_index("items"), "items", pa.array(items, pa.string())),
                   part)
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    result = _run(cfg, yesterday, tmp_path / "out")
    assert result.exit_code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["events"]["values_dropped"] == {"custom_data.contents:invalid_json": 3}
    assert result.stats.totals()["events_delivered"] == result.stats.totals()["rows_valid"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_mapped_column_missing_from_a_later_file_stops_before_sending(tmp_path: Path, sandbox, yesterday,
                                                                        workers: int) -> None:
    """Pass 1 checks every column the YAML maps in every file (the contract lists only its own): a typo or a
    file without the column is exit 2 naming file and column, before any request (it crashed mid-run)."""
    from capi_pipeline.errors import ContractViolation

    smp = generate("offline", 3000, yesterday, tmp_path / "wh", seed=6, bad_rate=0.0, part_rows=1000)
    files = sorted((tmp_path / "wh").rglob("*.parquet"))
    first = pd.read_parquet(files[0])
    first["note"] = "x"
    first.to_parquet(files[0], index=False)
    yaml_text = Path(smp.pipeline_path).read_text(encoding="utf-8")
    Path(smp.pipeline_path).write_text(yaml_text.replace("mapping:\n", "mapping:\n  custom_data.note: note\n", 1),
                                       encoding="utf-8")
    cfg = load_pipeline(smp.pipeline_path).with_endpoint(sandbox.url)
    before = sandbox.stats().get("requests", 0)
    with pytest.raises(ContractViolation, match=r"part-00001\.parquet: column 'note' used by the pipeline YAML") as err:
        _run(cfg, yesterday, tmp_path / "out", workers=workers)
    assert err.value.exit_code == 2 and err.value.rule == "mapped_column_missing"
    assert sandbox.stats().get("requests", 0) == before


def test_a_run_stopped_by_meta_still_writes_its_report(tmp_path: Path, yesterday) -> None:
    """A terminal answer (a wrong token: code 190) stops the run, but report.json is written with the error, so
    it never describes an older run than the quarantine file beside it."""
    from capi_pipeline.errors import TerminalUploadError
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    smp = generate("offline", 300, yesterday, tmp_path / "wh", seed=3)
    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, token="the-right-token")) as sb:
        cfg = load_pipeline(smp.pipeline_path).with_endpoint(sb.url)
        with pytest.raises(TerminalUploadError):
            _run(cfg, yesterday, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["rows_read"] == 300 and report["mode"] == "run"
    assert len(report["errors"]) == 1 and "TerminalUploadError" in report["errors"][0]
    assert TOKEN not in json.dumps(report) and "the-right-token" not in json.dumps(report)
    with (tmp_path / "out" / "quarantine.csv").open(encoding="utf-8") as fh:
        quarantined = sum(1 for _ in csv.DictReader(fh))
    assert quarantined == report["rows_rejected"] > 0


def test_two_runs_of_one_day_at_once_never_send_twice(tmp_path: Path, yesterday) -> None:
    """A CLI run overlapping an Airflow run (or a re-run started too early): the second is refused while the
    first delivers (RunInProgressError, exit 1), so no event reaches Meta twice; afterwards a re-run sends none."""
    import threading

    from capi_pipeline.errors import RunInProgressError
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    smp = generate("offline", 3000, yesterday, tmp_path / "wh", seed=4)
    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, latency_ms=4000)) as sb:
        cfg = load_pipeline(smp.pipeline_path).with_endpoint(sb.url)
        first: dict[str, object] = {}
        thread = threading.Thread(target=lambda: first.update(result=_run(cfg, yesterday, tmp_path / "o1")))
        thread.start()
        from capi_pipeline.ledger import Ledger, leases

        with Ledger.open(cfg.ledger_location()) as ledger:  # the first run is delivering once it holds its lease
            while thread.is_alive():
                with ledger.engine.begin() as conn:
                    if conn.execute(leases.select()).first() is not None:
                        break
                time.sleep(0.02)
        with pytest.raises(RunInProgressError, match="another run is delivering it"):
            _run(cfg, yesterday, tmp_path / "o2")
        thread.join()
        again = _run(cfg, yesterday, tmp_path / "o3")
        stats = sb.stats()["datasets"][cfg.destinations[0].dataset_id]
    delivered = first["result"].stats.totals()["events_delivered"]  # type: ignore[attr-defined]
    assert first["result"].exit_code == 0 and delivered > 0  # type: ignore[attr-defined]
    assert again.stats.totals()["events_delivered"] == 0
    assert stats["duplicate_events"] == 0 and stats["unique_events"] == delivered


def test_ldu_by_state_reads_each_rows_own_state_and_country(tmp_path: Path, yesterday) -> None:
    # (state, country) -> the LDU state code sent, or None when LDU is off for the row; a row without a valid
    # country counts as US (LDU errs towards applying), a state outside the US never does
    from capi_pipeline import extract
    from capi_pipeline.report import RunStats
    from capi_pipeline.rules import SeenEvents

    cases = [("California", "US", 1000), ("CA", None, 1000), (" colorado ", "usa", 1001), ("CA", "Canada", None),
             ("TX", "Mexico", None), ("Texas", "N/A", 1005), ("NY", "US", None), (None, "US", None),
             ("a" * 64, "US", None)]
    smp = generate("offline", 60, yesterday, tmp_path / "wh", seed=5, bad_rate=0.0)
    cfg = dataclasses.replace(load_pipeline(smp.pipeline_path), ldu=dataclasses.replace(
        load_pipeline(smp.pipeline_path).ldu, policy="by_state"))
    frame = pd.read_parquet(smp.files[0]).head(len(cases)).reset_index(drop=True)
    frame["state"] = [s for s, _, _ in cases]
    frame["country"] = [c for _, c, _ in cases]
    frame["email"] = [f"ldu{i}@example.com" for i in range(len(cases))]  # every row keeps an identifier
    built = pipeline.transform_chunk(cfg, extract.Chunk(file="f", first_row=1, frame=frame), set(),
                                     RunStats(pipeline=cfg.name, date="d"), None,
                                     options=pipeline.normalize_options(cfg),
                                     rule_settings=pipeline.rule_settings_for(cfg), seen=SeenEvents(),
                                     now=int(time.time()))
    bodies = {row: body for row, body in zip(built.rows, (e for b in built.blocks() for e in b.bodies))}
    assert len(bodies) == len(cases)
    for i, (state, country, code) in enumerate(cases):
        body = bodies[i + 1]
        got = body.get("data_processing_options_state") if body["data_processing_options"] else None
        assert got == code, (state, country, body["data_processing_options"])


def test_leases_name_the_files_not_the_yaml_folder(tmp_path: Path) -> None:
    """A CLI run and Airflow's effective YAML (another folder, absolute or symlinked paths) delivering the same
    files for the same dataset and date take the same leases, so the second waits for the first."""
    data = tmp_path / "data" / "part-0.parquet"
    data.parent.mkdir()
    data.write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    one = pipeline.FileValidation(path=data, name="data/part-0.parquet", rows=1)
    two = pipeline.FileValidation(path=tmp_path / "link" / "part-0.parquet", name=str(data), rows=1)
    assert pipeline.lease_names("p/2026-12-04/1", [one]) == pipeline.lease_names("p/2026-12-04/1", [two])

