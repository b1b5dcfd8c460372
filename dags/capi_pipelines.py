"""One Airflow DAG per capi-pipeline YAML: warehouse partition -> Meta's Conversions API.

Every pipeline file in the folder named by ``CAPI_PIPELINES_DIR`` (default: ``dags/pipelines/`` next to this
file) becomes the DAG ``capi_<name>``. A pipeline file is ``*.pipeline.yaml``, or any other ``*.yaml`` whose top
level has ``name:`` and ``source:`` (contracts, ``*.odcs.yaml``, are never taken).

    prepare_run ─> list_files ─> validate_file[file] ─> deliver_file[file] ─> build_report ─> fetch_quality
    (date, run     (partition    (mapped, pass 1 over   (mapped, pass 2 +     (report.json   (Meta's Dataset
     folder,        files)        the whole partition    upload, exactly once   = Asset        Quality API)
     Connection                   before any request)    via the ledger)        outlet)
     extra)

Parsing this file reads the YAML files and nothing else: no Connection, no network, no pandas or GX
(``capi_pipeline.pipeline`` is imported inside the tasks). XCom carries paths and counts, never rows.

Run settings (environment of the DAG processor and of the workers):
    CAPI_PIPELINES_DIR   folder of pipeline YAMLs (default ``<this folder>/pipelines``)
    CAPI_START_DATE      first logical date, YYYY-MM-DD, UTC (default 2026-01-01); with ``catchup=True`` the
                         scheduler runs every day from there, so set it to your first partition
The partition date of a run is its logical date (``ds``): the scheduled run for day D starts after D ends
(cron data intervals), ``airflow dags test capi_<name> D`` and ``airflow backfill create`` deliver day D.

Secrets: the token is the password of the Connection the destination names (``destination.connection_id``,
default ``meta_capi``); its extra may set ``endpoint``, ``api_version`` and ``dataset_id``. It is read inside
the tasks, masked in the logs, and falls back to the YAML's ``token_env`` variable when the Connection is absent.

Errors: a configuration error, bad input, a contract violation or a terminal upload error (bad token,
permission, unknown dataset) fails the task at once (``AirflowFailException``); transient upload errors are
raised as they are, so Airflow's retries (exponential backoff) apply, and the ledger resends only what is missing.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, get_current_context, task

log = logging.getLogger(__name__)

PIPELINES_DIR = Path(os.environ.get("CAPI_PIPELINES_DIR") or Path(__file__).resolve().parent / "pipelines")
DEFAULT_START_DATE = "2026-01-01"
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "capi",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,  # about 1, 2, 4 min (plus jitter): Meta throttles for minutes
    "max_retry_delay": timedelta(minutes=30),
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_KINDS = {"offline_conversions": "offline", "app_events": "app", "website_events": "website"}
_CRON_PRESETS = {"@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- parse time: YAML only ---------------------------------------------------------------------------------

def pipeline_files(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The pipeline YAMLs of `folder` with their parsed top level; unreadable files are logged and skipped."""
    if not folder.is_dir():
        log.warning("capi: pipelines folder %s does not exist; no capi DAGs", folder)
        return []
    found = []
    for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
        if path.name.endswith((".odcs.yaml", ".odcs.yml")):
            continue
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 (safe loader)
        except (OSError, yaml.YAMLError) as exc:
            log.warning("capi: skipping %s: %s", path, type(exc).__name__)
            continue
        if not isinstance(doc, dict):
            continue
        if path.name.endswith((".pipeline.yaml", ".pipeline.yml")) or ("name" in doc and "source" in doc):
            found.append((path, doc))
    return found


def start_date() -> datetime:
    text = os.environ.get("CAPI_START_DATE") or DEFAULT_START_DATE
    return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)


def schedule_for(value: Any) -> Any:
    """Cron strings become data-interval timetables: the run for day D starts when D ends and has ds = D."""
    if value is None:
        return CronDataIntervalTimetable("@daily", timezone="UTC")
    text = str(value).strip()
    if text.lower() in ("none", "null", "manual", ""):
        return None
    if text in _CRON_PRESETS or len(text.split()) in (5, 6):
        return CronDataIntervalTimetable(text, timezone="UTC")
    return text  # "@once", "@continuous": Airflow's own meaning


def kind_of(doc: dict[str, Any]) -> str:
    """offline | app | website from the contract name, else the contract's stem."""
    contract = str(doc.get("contract") or "")
    stem = Path(contract.removeprefix("builtin:")).name
    for suffix in (".odcs.yaml", ".odcs.yml", ".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    return _KINDS.get(stem, stem or "unknown")


# --- run time: helpers the tasks call ----------------------------------------------------------------------

@contextmanager
def airflow_errors() -> Iterator[None]:
    """Terminal capi errors fail the task without retries; everything else propagates to Airflow's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from capi_pipeline.errors import ConfigurationError, InputError, TerminalUploadError

    try:
        yield
    except (ConfigurationError, InputError, TerminalUploadError) as exc:
        # messages carry ids (file, row, rule, fbtrace_id), never customer values or the token
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def partition_date(context: Any) -> str:
    """The `date` param when given, else the run's logical date (Airflow 3 runs may have none)."""
    from airflow.sdk.exceptions import AirflowFailException

    override = (context["params"] or {}).get("date")
    if override:
        try:
            datetime.strptime(str(override), "%Y-%m-%d")
        except ValueError:
            raise AirflowFailException(f"param date={override!r} is not YYYY-MM-DD") from None
        return str(override)
    if context.get("ds") is None:  # triggered without a logical date: nothing says which partition
        raise AirflowFailException("this run has no logical date: trigger it with the `date` param (YYYY-MM-DD)")
    return str(context["ds"])


def get_connection(conn_id: str) -> Any | None:
    """The Connection, or None when it is not defined (the YAML's token_env is used then)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        log.info("capi: connection %r is not defined; using the pipeline YAML and its token_env", conn_id)
        return None


def connection_settings(pipeline_path: str, run_dir: str) -> dict[str, Any]:
    """Resolve each destination's Connection extra (no secrets): the pipeline file and endpoint to run with.

    An `endpoint` in the extra is passed to the pipeline functions as their endpoint override. When an extra
    changes `dataset_id` or `api_version`, an effective copy of the YAML (paths made absolute, no secrets) is
    written to the run folder and used instead, so the ledger and the report see the dataset actually sent to.
    """
    from capi_pipeline.config import load_pipeline

    cfg = load_pipeline(pipeline_path)
    overrides: list[dict[str, str]] = []
    for dest in cfg.destinations:
        conn = get_connection(dest.connection_id)
        extra = dict(conn.extra_dejson) if conn is not None else {}
        overrides.append({k: str(extra[k]).strip() for k in ("endpoint", "api_version", "dataset_id")
                          if extra.get(k) not in (None, "")})
    endpoints = {o["endpoint"].rstrip("/") for o in overrides if "endpoint" in o}
    changed = any(o.get("dataset_id", d.dataset_id) != d.dataset_id
                  or o.get("api_version", d.api_version) != d.api_version
                  for o, d in zip(overrides, cfg.destinations))
    if not changed and len(endpoints) <= 1 and (not endpoints or all("endpoint" in o for o in overrides)):
        return {"pipeline": pipeline_path, "endpoint": endpoints.pop() if endpoints else None}
    return {"pipeline": write_effective_yaml(cfg, run_dir, overrides), "endpoint": None}


def write_effective_yaml(cfg: Any, run_dir: str, overrides: list[dict[str, str]]) -> str:
    """A copy of the pipeline YAML with the Connection overrides applied and every relative path made absolute."""
    doc = yaml.load(cfg.path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506
    doc["source"]["path"] = str(cfg.resolve(cfg.source.path))
    if not cfg.contract.startswith("builtin:"):
        doc["contract"] = str(cfg.resolve(cfg.contract))
    doc["ledger"] = cfg.ledger_location()
    doc["output"] = str(cfg.resolve(cfg.output))
    dests = doc["destinations"] if "destinations" in doc else [doc["destination"]]
    for raw, extra in zip(dests, overrides):
        raw.update(extra)
    out = Path(run_dir) / "pipeline.effective.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(out)


def resolve_tokens(pipeline_path: str) -> dict[str, str]:
    """dataset_id -> access token from each destination's Connection password, registered with the masker."""
    from airflow.sdk.log import mask_secret

    from capi_pipeline.config import load_pipeline

    tokens: dict[str, str] = {}
    for dest in load_pipeline(pipeline_path).destinations:
        conn = get_connection(dest.connection_id)
        if conn is not None and conn.password:
            mask_secret(conn.password)  # Airflow masks connection passwords already; this also covers the
            tokens[dest.dataset_id] = conn.password  # supervisor's log stream on every Airflow 3.x version
    return tokens


# --- the DAG -----------------------------------------------------------------------------------------------

def build_dag(path: Path, doc: dict[str, Any]) -> Any:
    """The DAG of one pipeline file: wiring only, every task body calls `capi_pipeline.pipeline`."""
    name = str(doc["name"])
    kind = kind_of(doc)
    pipeline_path = str(path)
    report_asset = Asset(name=f"capi/{name}/report", group="capi", extra={"pipeline": pipeline_path})

    @dag(
        dag_id=f"capi_{name}",
        description=str(doc.get("description") or f"{kind} conversions from {path.name} to Meta CAPI"),
        schedule=schedule_for(doc.get("schedule")),
        start_date=start_date(),
        catchup=True,
        max_active_runs=1,  # one partition at a time: ordered backfills, one ledger writer, Meta's rate limits
        tags=["capi", kind],
        default_args=DEFAULT_ARGS,
        doc_md=f"Pipeline `{name}` from `{pipeline_path}`.\n\n" + (__doc__ or ""),
        params={
            "date": Param(None, type=["null", "string"], pattern=r"^\d{4}-\d{2}-\d{2}$",
                          description="partition YYYY-MM-DD; empty = the run's logical date"),
            "dry_run": Param(False, type="boolean",
                             description="send nothing: write each request body to the run folder"),
            "test_event_code": Param(None, type=["null", "string"],
                                     description="route events to Events Manager > Test Events"),
            "force": Param(False, type="boolean", description="resend events the ledger records as sent"),
        },
    )
    def capi_pipeline_dag() -> None:
        @task
        def prepare_run() -> dict[str, Any]:
            """The partition date, the run folder and the non-secret Connection settings, resolved once."""
            from capi_pipeline import pipeline

            context = get_current_context()
            date = partition_date(context)
            with airflow_errors():
                run_dir = pipeline.run_dir_for(pipeline_path, date, context["run_id"])
                settings = connection_settings(pipeline_path, run_dir)
            log.info("capi %s %s: run folder %s, endpoint override %s", name, date, run_dir, settings["endpoint"])
            return {"date": date, "run_dir": run_dir, **settings}

        @task
        def list_files(plan: dict[str, Any]) -> list[str]:
            """The partition's files (absolute paths); fails when the partition is missing."""
            from capi_pipeline import pipeline

            with airflow_errors():
                files = pipeline.plan_partition(plan["pipeline"], plan["date"])
            log.info("capi %s %s: %d file(s)", name, plan["date"], len(files))
            return files

        @task(map_index_template="{{ capi_file }}")
        def validate_file(file: str, plan: dict[str, Any]) -> dict[str, Any]:
            from capi_pipeline import pipeline

            get_current_context()["capi_file"] = Path(file).name  # type: ignore[typeddict-unknown-key]
            with airflow_errors():
                return pipeline.validate_file(plan["pipeline"], plan["date"], file, run_dir=plan["run_dir"])

        @task(map_index_template="{{ capi_file }}")
        def deliver_file(file: str, plan: dict[str, Any]) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowException

            from capi_pipeline import pipeline

            context = get_current_context()
            context["capi_file"] = Path(file).name  # type: ignore[typeddict-unknown-key]
            params = context["params"]
            dry_run = bool(params.get("dry_run"))
            with airflow_errors():
                result = pipeline.deliver_file(
                    plan["pipeline"], plan["date"], file, run_dir=plan["run_dir"],
                    tokens=None if dry_run else resolve_tokens(plan["pipeline"]),
                    endpoint=plan["endpoint"],
                    dry_run_dir=str(Path(plan["run_dir"]) / "dry_run") if dry_run else None,
                    test_event_code=params.get("test_event_code") or None,
                    force=bool(params.get("force")))
            if result.get("exit_code"):
                # events still undelivered after the client's own retries: Airflow retries the task and the
                # ledger resends exactly those
                raise AirflowException(f"{Path(file).name}: some events were not delivered (see the task log)")
            return result

        @task(outlets=[report_asset])
        def build_report(plan: dict[str, Any], delivered: list[dict[str, Any]]) -> dict[str, Any]:
            """Merge the per-file parts into report.json / report.html / quarantine.csv."""
            from airflow.sdk.exceptions import AirflowFailException

            from capi_pipeline import pipeline

            context = get_current_context()
            with airflow_errors():
                result = pipeline.finalize_run(plan["pipeline"], plan["date"], run_dir=plan["run_dir"])
            if result.get("exit_code"):
                raise AirflowFailException(f"delivery incomplete; report at {result['report']}")
            # the asset event carries where the report is and its counts, never rows
            # (a dry run's too, with mode "dry-run": consumers skip what is not mode "run")
            context["outlet_events"][report_asset].extra = {
                k: v for k, v in result.items() if isinstance(v, (str, int, float, bool)) or v is None
            } | {"date": plan["date"], "files": len(delivered)}
            log.info("capi %s %s: report %s", name, plan["date"], result["report"])
            return result

        @task
        def fetch_quality(plan: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
            """Meta's Event Match Quality for each dataset, added to the report (skipped in dry runs)."""
            from capi_pipeline import pipeline

            if get_current_context()["params"].get("dry_run"):
                return {"report": report["report"], "skipped": "dry_run"}
            with airflow_errors():
                return pipeline.fetch_quality(plan["pipeline"], plan["date"], run_dir=plan["run_dir"],
                                              tokens=resolve_tokens(plan["pipeline"]), endpoint=plan["endpoint"])

        plan = prepare_run()
        files = list_files(plan)
        validated = validate_file.partial(plan=plan).expand(file=files)
        delivered = deliver_file.partial(plan=plan).expand(file=files)
        validated >> delivered  # pass 1 over the whole partition before any request
        fetch_quality(plan, build_report(plan, delivered))

    return capi_pipeline_dag()


def _build_all() -> dict[str, Any]:
    dags: dict[str, Any] = {}
    for path, doc in pipeline_files(PIPELINES_DIR):
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            log.warning("capi: skipping %s: name must match %s", path, _NAME_RE.pattern)
            continue
        dag_id = f"capi_{name}"
        if dag_id in dags:
            log.warning("capi: skipping %s: another pipeline file already defines %s", path, dag_id)
            continue
        dags[dag_id] = build_dag(path, doc)
    return dags


globals().update(_build_all())
