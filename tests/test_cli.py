"""cli.py: the command line as users call it, in subprocesses, against a sandbox on a free port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from capi_pipeline.config import load_pipeline

EXE = [sys.executable, "-m", "capi_pipeline"]


def _cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_help_is_fast_and_complete() -> None:
    started = time.perf_counter()
    top = _cli("--help")
    took = time.perf_counter() - started
    assert top.returncode == 0
    for cmd in ("sample", "sandbox", "run", "validate", "normalize", "demo"):
        assert cmd in top.stdout
        sub = _cli(cmd, "--help")
        assert sub.returncode == 0 and "usage:" in sub.stdout
    print(f"--help took {took:.2f}s")


def test_issue_must_show_app_run(tmp_path: Path, yesterday) -> None:
    """sandbox --port P + sample --kind app --rows 3000 + run ... --endpoint ... --out R exits 0."""
    day = yesterday.isoformat()
    proc = subprocess.Popen([*EXE, "sandbox", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        smp = _cli("sample", "--kind", "app", "--rows", "3000", "--date", day, "--out", str(tmp_path / "w"))
        assert smp.returncode == 0, smp.stderr
        run = _cli("run", str(tmp_path / "w" / "app.pipeline.yaml"), "--date", day, "--endpoint", url,
                   "--out", str(tmp_path / "r"), env={"META_CAPI_ACCESS_TOKEN": "x"})
        assert run.returncode == 0, run.stderr
        report = json.loads(next((tmp_path / "r").rglob("report.json")).read_text())
        assert report["rows_read"] == 3000
        assert report["events_delivered"] == report["rows_valid"] == report["events_sent"]
        assert report["events_failed"] == 0
        assert "delivered" in run.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_missing_token_is_a_configuration_error(tmp_path: Path, yesterday) -> None:
    day = yesterday.isoformat()
    assert _cli("sample", "--kind", "offline", "--rows", "50", "--date", day, "--out", str(tmp_path)).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "META_CAPI_ACCESS_TOKEN"}
    run = subprocess.run([*EXE, "run", str(tmp_path / "offline.pipeline.yaml"), "--date", day,
                          "--endpoint", "http://127.0.0.1:9"], capture_output=True, text=True, env=env)
    assert run.returncode == 2
    assert "META_CAPI_ACCESS_TOKEN" in run.stderr
    # a token a header cannot carry (pasted with a line break): named by where it came from, never shown
    env["META_CAPI_ACCESS_TOKEN"] = "CANARYTOKEN\n123abc"
    run = subprocess.run([*EXE, "run", str(tmp_path / "offline.pipeline.yaml"), "--date", day,
                          "--endpoint", "http://127.0.0.1:9"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "META_CAPI_ACCESS_TOKEN" in run.stderr and "line break" in run.stderr
    assert "CANARY" not in run.stderr + run.stdout and "Traceback" not in run.stderr


def test_a_damaged_ledger_is_a_configuration_error(tmp_path: Path, yesterday) -> None:
    """A ledger file that is no database: exit 2 with what to check, no SQLAlchemy traceback, nothing sent."""
    day = yesterday.isoformat()
    assert _cli("sample", "--kind", "offline", "--rows", "50", "--date", day, "--out", str(tmp_path)).returncode == 0
    cfg = load_pipeline(tmp_path / "offline.pipeline.yaml")
    Path(cfg.ledger_location()).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.ledger_location()).write_bytes(b"garbage" * 1000)
    env = {**os.environ, "META_CAPI_ACCESS_TOKEN": "a-long-enough-token"}
    run = subprocess.run([*EXE, "run", str(tmp_path / "offline.pipeline.yaml"), "--date", day,
                          "--endpoint", "http://127.0.0.1:9"], capture_output=True, text=True, env=env)
    assert run.returncode == 2 and "cannot be read or written" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("args, code", [
    (["run", "nope.yaml", "--date", "2026-01-01"], 2),
    (["run", "nope.yaml", "--date", "01/02/2026"], 2),
    (["validate", "nope.yaml", "--date", "2026-01-01"], 2),
])
def test_bad_input_exit_codes(args: list[str], code: int) -> None:
    assert _cli(*args).returncode == code


def test_demo(tmp_path: Path) -> None:
    demo = _cli("demo", "--workdir", str(tmp_path / "demo"), "--rows", "800")
    assert demo.returncode == 0, demo.stderr
    assert "delivered" in demo.stdout
    assert (tmp_path / "demo" / "reports" / "offline_sample" / "report.json").exists()
    assert (tmp_path / "demo" / "reports" / "app_sample" / "report.json").exists()


def test_progress_bar_shows_batches_and_rate(capsys: pytest.CaptureFixture[str]) -> None:
    from capi_pipeline.cli import _ProgressBar
    from capi_pipeline.upload import ProgressInfo

    bar = _ProgressBar()
    bar(ProgressInfo(events_seen=2500, events_delivered=2000, events_failed=1, events_rejected=0, events_skipped=5,
                     batches_done=2, batches_submitted=3, elapsed_s=1.0, rate_eps=2000.0))
    line = capsys.readouterr().err
    assert "delivered     2,000 events" in line and "2,000 ev/s" in line and "batches      2/3" in line
    assert "failed 1" in line and "skipped 5" in line


@pytest.mark.parametrize(("given", "expected"), [("US", "US"), ("gb ", "gb"), ("none", None), ("NONE", None), ("", None)])
def test_default_country_none_means_no_default(given: str, expected: str | None) -> None:
    from capi_pipeline.cli import _default_country

    assert _default_country(given) == expected


def test_an_out_folder_that_cannot_be_made_is_exit_2_without_traceback(tmp_path, capsys) -> None:
    import datetime as dt

    from capi_pipeline import cli
    from capi_pipeline.sample import generate

    day = dt.date(2026, 11, 20)
    smp = generate("offline", 20, day, tmp_path / "wh")
    (tmp_path / "a-file").write_text("x")
    code = cli.main(["validate", str(smp.pipeline_path), "--date", day.isoformat(), "--out",
                     str(tmp_path / "a-file" / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "a-file" in err and "Not a directory" in err and "Traceback" not in err
