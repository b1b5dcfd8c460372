"""The Airflow DAG factory (dags/capi_pipelines.py): DagBag integrity and `dag.test()` runs against the sandbox.

Airflow reads its configuration once, at import, so it never runs inside the pytest process: one driver
subprocess per module (AIRFLOW_HOME in a temp folder, SQLite metadata DB, DAGs folder = <repo>/dags) imports
Airflow once and answers JSON commands on stdin (migrate, parse the DagBag, `dag.test()` one logical date).
The sandbox runs here, so its counters are read between runs. Backfills are three `dag.test(logical_date=...)`
runs: `airflow backfill create` only records runs that a scheduler then executes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
TOKEN = "capi-test-token-7c1f0e9a"  # must never show up in the driver's output (task logs)
MARK = "@@capi-driver@@"
TASKS = ["prepare_run", "list_files", "validate_file", "deliver_file", "build_report", "fetch_quality"]

_DRIVER = r'''
import json, os, sys, time, traceback
MARK = sys.argv[1]

def reply(obj):
    sys.stdout.write(MARK + json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()

HEAVY = ("pandas", "great_expectations", "capi_pipeline.pipeline")
import airflow  # noqa: F401  (configuration is read here, from the environment the test set)
from airflow.dag_processing.dagbag import DagBag

def bag():
    started = time.perf_counter()
    b = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return b, time.perf_counter() - started

def op_migrate(cmd):
    from airflow.utils.db import upgradedb
    upgradedb()
    return {}

def op_dagbag(cmd):
    b, seconds = bag()
    stats = {s.file: s.duration.total_seconds() for s in b.dagbag_stats}
    dags = {}
    for dag_id, d in b.dags.items():
        dags[dag_id] = {
            "tags": sorted(d.tags), "catchup": d.catchup, "fileloc": d.fileloc,
            "timetable": type(d.timetable).__name__, "params": sorted(d.params.keys()),
            "tasks": {t.task_id: {"retries": t.retries, "backoff": float(t.retry_exponential_backoff),
                                  "retry_delay": t.retry_delay.total_seconds()} for t in d.tasks},
            "outlets": [getattr(o, "name", str(o)) for t in d.tasks for o in (t.outlets or [])],
        }
    return {"import_errors": b.import_errors, "dags": dags, "bag_seconds": seconds, "file_seconds": stats,
            "heavy_modules": [m for m in HEAVY if m in sys.modules]}

def op_test(cmd):
    import datetime as dt
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    b, _ = bag()
    assert not b.import_errors, b.import_errors
    dag = b.get_dag(cmd["dag_id"])
    if not cmd.get("keep_retries"):
        for t in dag.tasks:  # a failure fails the run now instead of waiting for retry delays
            t.retries = 0
    logical = (dt.datetime.fromisoformat(cmd["logical_date"]).replace(tzinfo=dt.timezone.utc)
               if cmd["logical_date"] else None)
    started = time.perf_counter()
    dr = dag.test(logical_date=logical, run_conf=cmd.get("conf") or None)
    seconds = time.perf_counter() - started
    with create_session() as s:
        tis = s.query(TaskInstance).filter(TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dr.run_id)
        states = {}
        for ti in tis:
            key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
            states[key] = {"state": str(ti.state.value if hasattr(ti.state, "value") else ti.state),
                           "try_number": ti.try_number, "label": ti.rendered_map_index}
        events = [{"name": name, "extra": ev.extra}
                  for ev, name in s.query(AssetEvent, AssetModel.name)
                  .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                  .filter(AssetEvent.source_run_id == dr.run_id)]
    return {"state": str(dr.state.value if hasattr(dr.state, "value") else dr.state), "run_id": dr.run_id,
            "tis": states, "asset_events": events, "seconds": seconds}

OPS = {"migrate": op_migrate, "dagbag": op_dagbag, "test": op_test}
reply({"ready": True})
for line in sys.stdin:
    cmd = json.loads(line)
    for k in cmd.get("unset", []):
        os.environ.pop(k, None)
    os.environ.update(cmd.get("env", {}))
    try:
        reply({"ok": True, **OPS[cmd["op"]](cmd)})
    except Exception as exc:  # report, keep serving
        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
'''


class Driver:
    """One Airflow process for the module; `call` sends a command and waits for its JSON answer."""

    def __init__(self, home: Path) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "CAPI_", "META_CAPI"))}
        env.update({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "GX_ANALYTICS_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
        })
        script = home / "driver.py"
        script.write_text(_DRIVER, encoding="utf-8")
        self.output: list[str] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, str(script), MARK], cwd=home, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()
        self._wait(120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self._answers.put(json.loads(line[len(MARK):]))
            else:
                self.output.append(line)
        self._answers.put({"ok": False, "error": "driver exited", "traceback": "".join(self.output[-40:])})

    def _wait(self, timeout: float) -> dict[str, Any]:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("Airflow driver did not answer in time:\n" + "".join(self.output[-60:])) from None

    def call(self, op: str, timeout: float = 180, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **cmd}) + "\n")
        self.proc.stdin.flush()
        answer = self._wait(timeout)
        assert answer.get("ok"), f"{answer.get('error')}\n{answer.get('traceback')}"
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def conn_env(endpoint: str, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """AIRFLOW_CONN_META_CAPI in Airflow's JSON form: password = token, extra = endpoint (+ overrides)."""
    return {"AIRFLOW_CONN_META_CAPI": json.dumps(
        {"conn_type": "generic", "password": token, "extra": {"endpoint": endpoint, **extra}})}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    started = time.perf_counter()
    driver = Driver(tmp_path_factory.mktemp("airflow_home"))
    try:
        driver.call("migrate")
        print(f"\nairflow driver ready (import + db migrate) in {time.perf_counter() - started:.1f} s")
        yield driver
    finally:
        driver.close()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, token=TOKEN)) as sb:
        yield sb


@pytest.fixture(scope="module")
def days() -> list[dt.date]:
    """Three recent partition days (the sandbox enforces Meta's 7-day window), oldest first."""
    from capi_pipeline.sample import latest_complete_day

    last = latest_complete_day()
    return [last - dt.timedelta(days=n) for n in (2, 1, 0)]


def sample(kind: str, dates: list[dt.date], out: Path, rows: int = 300) -> Path:
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.sample import generate

    for day in dates:
        result = generate(kind, rows, day, out)
    load_pipeline(result.pipeline_path)  # the sampled YAML must be a valid pipeline
    return result.pipeline_path


def dataset_stats(sb: Any, dataset_id: str) -> dict[str, int]:
    return dict(sb.stats()["datasets"].get(dataset_id, {"requests": 0, "events_received": 0, "unique_events": 0}))


def dataset_of(pipeline_path: Path) -> str:
    from capi_pipeline.config import load_pipeline

    return load_pipeline(pipeline_path).destinations[0].dataset_id


def assert_success(run: dict[str, Any]) -> None:
    failed = {k: v for k, v in run["tis"].items() if v["state"] != "success"}
    assert run["state"] == "success" and not failed, failed


# --- DagBag integrity --------------------------------------------------------------------------------------

def test_dagbag_integrity(airflow: Driver) -> None:
    bag = airflow.call("dagbag", unset=["CAPI_PIPELINES_DIR"])
    parse = bag["file_seconds"].get("capi_pipelines.py")
    print(f"\nDagBag parse: capi_pipelines.py {parse:.3f} s, whole folder {bag['bag_seconds']:.3f} s")
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == {"capi_offline_sample", "capi_app_sample"}
    assert parse is not None and parse < 2.0
    assert bag["heavy_modules"] == []  # no pandas / GX / capi_pipeline.pipeline at parse time
    for dag_id, d in bag["dags"].items():
        kind = dag_id.removeprefix("capi_").removesuffix("_sample")
        assert d["tags"] == sorted(["capi", kind])
        assert d["catchup"] is True
        assert d["timetable"] == "CronDataIntervalTimetable"
        assert Path(d["fileloc"]) == DAGS / "capi_pipelines.py"
        assert d["params"] == ["date", "dry_run", "force", "test_event_code"]
        assert list(d["tasks"]) == TASKS
        for task_id, t in d["tasks"].items():
            assert t["retries"] >= 2, task_id
            assert t["backoff"] > 1 and t["retry_delay"] == 60, task_id
        assert d["outlets"] == [f"capi/{dag_id.removeprefix('capi_')}/report"]


def test_dagbag_reads_capi_pipelines_dir(airflow: Driver, tmp_path: Path, days: list[dt.date]) -> None:
    """Pipeline files are *.pipeline.yaml or *.yaml with name + source; contracts and other YAML are not."""
    sample("offline", days[-1:], tmp_path, rows=20)
    (tmp_path / "offline.pipeline.yaml").rename(tmp_path / "stores.yaml")
    text = (tmp_path / "stores.yaml").read_text(encoding="utf-8")
    (tmp_path / "stores.yaml").write_text(text.replace("name: offline_sample", "name: stores"), encoding="utf-8")
    (tmp_path / "settings.yaml").write_text("name: not_a_pipeline\nretries: 3\n", encoding="utf-8")
    (tmp_path / "stores.odcs.yaml").write_text("name: contract\nsource: x\n", encoding="utf-8")
    (tmp_path / "broken.pipeline.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    bag = airflow.call("dagbag", env={"CAPI_PIPELINES_DIR": str(tmp_path)})
    assert bag["import_errors"] == {}
    assert list(bag["dags"]) == ["capi_stores"]


# --- dag.test() against the sandbox ------------------------------------------------------------------------

def test_offline_backfill_three_days_then_rerun_sends_nothing(
        airflow: Driver, sandbox: Any, days: list[dt.date], tmp_path: Path) -> None:
    pipeline = sample("offline", days, tmp_path / "wh")
    dataset = dataset_of(pipeline)
    env = {"CAPI_PIPELINES_DIR": str(tmp_path / "wh"), **conn_env(sandbox.url)}
    unique = [dataset_stats(sandbox, dataset)["unique_events"]]
    for day in days:
        run = airflow.call("test", dag_id="capi_offline_sample", logical_date=day.isoformat(), env=env)
        print(f"\ndag.test capi_offline_sample {day}: {run['state']} in {run['seconds']:.1f} s")
        assert_success(run)
        assert run["tis"]["validate_file[0]"]["label"] == "part-00000.parquet"
        report = tmp_path / "wh" / "out" / "offline_sample" / day.isoformat() / "report.json"
        assert report.exists()
        [event] = run["asset_events"]
        assert event["name"] == "capi/offline_sample/report"
        assert event["extra"]["report"] == str(report) and event["extra"]["date"] == day.isoformat()
        unique.append(dataset_stats(sandbox, dataset)["unique_events"])
    assert all(b > a for a, b in zip(unique, unique[1:])), unique  # each day delivered its own partition
    assert dataset_stats(sandbox, dataset)["duplicate_events"] == 0

    before = dataset_stats(sandbox, dataset)
    rerun = airflow.call("test", dag_id="capi_offline_sample", logical_date=days[-1].isoformat(), env=env)
    assert_success(rerun)
    assert dataset_stats(sandbox, dataset) == before  # the ledger: not one event request more


def test_app_pipeline_with_date_param_and_dataset_override(
        airflow: Driver, sandbox: Any, days: list[dt.date], tmp_path: Path) -> None:
    """The `date` param overrides the logical date; the Connection extra overrides the YAML's dataset id."""
    sample("app", days[-1:], tmp_path / "wh")
    override = "1000000000000777"
    env = {"CAPI_PIPELINES_DIR": str(tmp_path / "wh"), **conn_env(sandbox.url, dataset_id=override)}
    today = dt.datetime.now(dt.timezone.utc).date()  # no partition for today: only the param can make it pass
    run = airflow.call("test", dag_id="capi_app_sample", logical_date=today.isoformat(), env=env,
                       conf={"date": days[-1].isoformat()})
    assert_success(run)
    assert dataset_stats(sandbox, override)["unique_events"] > 0
    report = json.loads(Path(run["asset_events"][0]["extra"]["report"]).read_text(encoding="utf-8"))
    assert report["date"] == days[-1].isoformat()


def test_dry_run_sends_nothing(airflow: Driver, sandbox: Any, days: list[dt.date], tmp_path: Path) -> None:
    pipeline = sample("app", days[:1], tmp_path / "wh", rows=50)
    before = sandbox.stats()["requests"]
    env = {"CAPI_PIPELINES_DIR": str(tmp_path / "wh")}  # no Connection, no token: a dry run needs neither
    run = airflow.call("test", dag_id="capi_app_sample", logical_date=days[0].isoformat(), env=env,
                       unset=["AIRFLOW_CONN_META_CAPI"], conf={"dry_run": True})
    assert_success(run)
    assert sandbox.stats()["requests"] == before
    bodies = list((pipeline.parent / "out" / "app_sample" / days[0].isoformat() / "_parts").rglob("dry_run/*.json"))
    assert bodies
    # the rehearsal's report has its own folder (a delivered day's report is never replaced) and says what it is
    extra = run["asset_events"][0]["extra"]
    assert extra["mode"] == "dry-run"
    assert Path(extra["report"]).parent == pipeline.parent / "out" / "app_sample" / days[0].isoformat() / "dry-run"
    assert not (pipeline.parent / "out" / "app_sample" / days[0].isoformat() / "report.json").exists()


def test_a_run_without_logical_date_needs_the_date_param(
        airflow: Driver, sandbox: Any, days: list[dt.date], tmp_path: Path) -> None:
    """Airflow 3 runs may have no logical date (a trigger without one): no `ds`, so the `date` param decides,
    and without it the run fails at once with a message instead of a KeyError retried three times."""
    sample("app", days[-1:], tmp_path / "wh", rows=30)
    env = {"CAPI_PIPELINES_DIR": str(tmp_path / "wh"), **conn_env(sandbox.url)}
    run = airflow.call("test", dag_id="capi_app_sample", logical_date=None, env=env, keep_retries=True)
    assert run["state"] == "failed"
    assert run["tis"]["prepare_run"]["state"] == "failed" and run["tis"]["prepare_run"]["try_number"] == 1
    run = airflow.call("test", dag_id="capi_app_sample", logical_date=None, env=env,
                       conf={"date": days[-1].isoformat()})
    assert_success(run)
    assert run["asset_events"][0]["extra"]["mode"] == "run"


def test_bad_token_fails_at_once_without_retries(
        airflow: Driver, sandbox: Any, days: list[dt.date], tmp_path: Path) -> None:
    """Meta's code 190 is terminal: AirflowFailException, so the shipped retries (3) are not used."""
    sample("offline", days[-1:], tmp_path / "wh", rows=30)
    env = {"CAPI_PIPELINES_DIR": str(tmp_path / "wh"), **conn_env(sandbox.url, token="wrong-token")}
    run = airflow.call("test", dag_id="capi_offline_sample", logical_date=days[-1].isoformat(), env=env,
                       keep_retries=True, timeout=120)
    assert run["state"] == "failed"
    assert run["tis"]["deliver_file[0]"]["state"] == "failed"
    assert run["tis"]["deliver_file[0]"]["try_number"] == 1
    assert run["tis"]["build_report"]["state"] == "upstream_failed"
    assert run["seconds"] < 60  # no retry delay was waited for


def test_token_never_in_task_logs(airflow: Driver) -> None:
    """Runs last: every task log line so far went through the driver's stdout."""
    assert any("deliver_file" in line for line in airflow.output)
    leaked = [line for line in airflow.output if TOKEN in line]
    assert not leaked, f"access token printed in task logs: {leaked[:3]}"
