"""The stage functions that the CLI and the Airflow DAGs both call.

A row's path to Meta, in order:

    extract.read_chunks        file -> chunks with source row numbers
    contracts.ContractValidator.check_table / validate     pass 1, whole partition, before anything is sent
    mapping.to_canonical       source columns -> CAPI-named columns, event_time in seconds, stable event_id
    rules.check_rows           Meta's per-row rules (time window, Purchase value/currency, app_data, ...)
    normalize.normalize_user_data   normalize + hash each user_data key
    payload.build_events       events + Limited Data Use, as JSON in blocks
    upload.deliver             batches -> client.CapiClient (or DryRunClient), exactly once via ledger.Ledger
    report                     report.json / report.html / quarantine.csv in the run's output folder

Pass 1 validates every file of the partition (a table-level failure stops the run before any request); pass 2
re-reads the files, skips the rows pass 1 rejected and streams events into the uploader, so the transform overlaps
with the uploads and memory does not grow with the partition. On large partitions both passes run chunk by chunk in
worker processes (`workers.TransformPool`, one per core, at most 2) while this process reads, uploads and writes the
ledger; chunk order, duplicate decisions and outputs are the same as in one process.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capi_pipeline import __version__, extract, mapping, payload
from capi_pipeline.config import DestinationConfig, PipelineConfig, load_pipeline
from capi_pipeline.errors import CapiPipelineError, ConfigurationError, InputError, TerminalUploadError
from capi_pipeline.report import QuarantineWriter, RunStats, write_json

__all__ = [
    "deliver_file",
    "fetch_quality",
    "finalize_run",
    "normalize_file",
    "plan_partition",
    "run_dir_for",
    "validate_file",
    "FileValidation",
    "RunResult",
    "load_pipeline",
    "lease_names",
    "partition_files",
    "resolve_token",
    "run",
    "validate",
    "normalize_options",
    "rule_settings_for",
    "transform_workers",
]

log = logging.getLogger("capi_pipeline")
# GX announces every ephemeral docs folder at INFO; our own logs say what matters.
logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass
class FileValidation:
    """Pass-1 result for one file: which rows the contract rejected."""

    path: Path
    name: str
    rows: int
    rejected_rows: set[int] = field(default_factory=set)


@dataclass
class RunResult:
    stats: RunStats
    out_dir: Path
    report_path: Path
    exit_code: int

    @property
    def summary(self) -> dict[str, Any]:
        return self.stats.totals()


def partition_files(cfg: PipelineConfig, date: str) -> list[Path]:
    files = extract.list_partition(cfg.partition_glob(date), max_files=cfg.source.max_files)
    if not files:
        raise InputError(f"{cfg.partition_glob(date)}: no files for {date} (rule: partition_exists)")
    return files


def resolve_token(dest: DestinationConfig, env: Mapping[str, str] | None = None) -> Any:
    """The access token from the environment variable the destination names, as a masked `Secret`."""
    from capi_pipeline.client import Secret

    value = (env if env is not None else os.environ).get(dest.token_env, "").strip()
    if not value:
        raise ConfigurationError(
            f"no access token: set the environment variable {dest.token_env} "
            f"(dataset {dest.dataset_id}); on Airflow use the connection {dest.connection_id!r}")
    return Secret(_checked_token(value, f"the environment variable {dest.token_env}"))


_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII: what an HTTP header can carry, and every Meta token is


def _checked_token(value: str, where: str) -> str:
    """The token, if a header can carry it; else an error that names where it came from, never the token (an
    HTTP library's own error would quote the whole header)."""
    if not _TOKEN_TEXT.fullmatch(value):
        raise ConfigurationError(f"the access token in {where} holds a space, a line break or a non-ASCII "
                                 "character: check how the secret was stored (copy it again)")
    return value


def normalize_options(cfg: PipelineConfig) -> Any:
    from capi_pipeline.normalize import NormalizeOptions

    country = cfg.user_data.default_country.lower() if cfg.user_data.default_country else None
    return NormalizeOptions(hash=cfg.user_data.hash, default_country=country, dob_order=cfg.user_data.dob_order,
                            hash_external_id=cfg.user_data.hash_external_id)


def rule_settings_for(cfg: PipelineConfig) -> Any:
    """The pipeline's `rules.RuleSettings` (event time windows)."""
    from capi_pipeline.rules import RuleSettings

    return RuleSettings(max_age_days=cfg.rules.max_age_days,
                        physical_store_max_age_days=cfg.rules.physical_store_max_age_days,
                        future_tolerance_s=cfg.rules.future_tolerance_s)


def _quarantine(cfg: PipelineConfig, path: Path) -> QuarantineWriter:
    """The quarantine file, told which source columns the event ids are made of (to withhold a rejected one)."""
    return QuarantineWriter(path, mapping.key_columns(cfg))


DRY_RUN_REPORTS = "dry-run"  # a dry run's report goes to <output>/<name>/<date>/dry-run/ (unless --out says where)


def validate(cfg: PipelineConfig, date: str, *, out_dir: Path | None = None, now: int | None = None) -> RunResult:
    """Contract and Meta's rules only: writes the report and the quarantine, sends nothing."""
    out = cfg.output_dir(date, out_dir)
    stats = RunStats(pipeline=cfg.name, date=date, mode="validate")
    with _report_on_failure(stats, out), _quarantine(cfg, out / "quarantine.csv") as quarantine:
        stats.quarantine_file = str(quarantine.path)
        validations = _validate_partition(cfg, date, stats, quarantine)
        for _ in _events(cfg, validations, stats, quarantine, now=now):
            pass
    return _finish(stats, out, exit_code=0)


def run(cfg: PipelineConfig, date: str, *, out_dir: Path | None = None, dry_run_dir: Path | None = None,
        force: bool = False, tokens: Mapping[str, Any] | None = None, now: int | None = None,
        progress: Callable[[Any], None] | None = None, workers: int | None = None) -> RunResult:
    """Read the date's partition, validate, transform and deliver it; write report and quarantine.

    `workers` processes run the transform (None: one per CPU core, at most 2, for partitions of at least
    `PARALLEL_MIN_ROWS` rows; 1: all in this process). Results do not depend on it.
    """
    out = cfg.output_dir(date, out_dir)
    if dry_run_dir and out_dir is None:
        out = out / DRY_RUN_REPORTS  # the day's real report stays as it is
    stats = RunStats(pipeline=cfg.name, date=date, mode="dry-run" if dry_run_dir else "run")
    tokens = _tokens(cfg, tokens, dry_run_dir)
    # started before pass 1, so the workers' imports overlap with the contract pass
    pool = _transform_pool(cfg, partition_files(cfg, date), workers)
    try:
        with _report_on_failure(stats, out), _quarantine(cfg, out / "quarantine.csv") as quarantine:
            stats.quarantine_file = str(quarantine.path)
            validations = _validate_partition(cfg, date, stats, quarantine, pool=pool)
            exit_code = _deliver(cfg, date, validations, stats, quarantine, tokens=tokens, dry_run_dir=dry_run_dir,
                                 force=force, now=now, progress=progress, pool=pool)
            if pool is not None:
                _set_data_docs(stats, pool.finish_docs(), quarantine.path.parent)
    finally:
        if pool is not None:
            pool.close()
    return _finish(stats, out, exit_code=exit_code)


TRANSFORM_ROWS = 25_000  # pass 2 reads at most this many rows per chunk (see `transform_rows`)


def transform_rows(cfg: PipelineConfig) -> int:
    """Rows per pass-2 chunk: `source.batch_rows`, at most `TRANSFORM_ROWS`.

    A transformed chunk is several times its input in memory (frames of every stage, then the events'
    JSON), in the worker that builds it and again in this process until it is uploaded; smaller chunks keep
    both flat at no measurable cost per row. Pass 1 keeps `batch_rows` (its duplicate check is per chunk).
    """
    return max(1, min(cfg.source.batch_rows, TRANSFORM_ROWS))


PARALLEL_MIN_ROWS = 200_000  # below this, starting worker processes (~1-2 s of imports each) does not pay
_PARALLEL_MIN_BYTES = 32 * 1024 * 1024  # the same for formats without a row count (CSV, JSON lines)
MAX_WORKERS = 2


def transform_workers(cfg: PipelineConfig, files: list[Path], workers: int | None = None) -> int:
    """Transform processes for these files: `workers` if given, else `CAPI_WORKERS`, else one per core (at most
    `MAX_WORKERS`) for a large partition and 1 (this process) otherwise."""
    if workers is None:
        env = os.environ.get("CAPI_WORKERS", "").strip()
        workers = int(env) if env.isdigit() else None
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = min(MAX_WORKERS, cores)
        if workers > 1 and not _large(cfg, files):
            workers = 1
    return workers


def _transform_pool(cfg: PipelineConfig, files: list[Path], workers: int | None) -> Any:
    """A `workers.TransformPool`, or None to transform in this process."""
    workers = transform_workers(cfg, files, workers)
    if workers <= 1:
        return None
    from capi_pipeline.workers import TransformPool
    from capi_pipeline.contracts import load_contract, resolve_contract_path

    # the contract is read here, so a broken one fails before any process starts
    contract = load_contract(resolve_contract_path(cfg.contract, cfg.base_dir))
    return TransformPool(workers, {"cfg": cfg, "contract": contract, "options": normalize_options(cfg),
                                   "rule_settings": rule_settings_for(cfg)})


def _large(cfg: PipelineConfig, files: list[Path]) -> bool:
    rows = 0
    for path in files:
        n = extract.count_rows(path, cfg.source.format)
        if n is None:
            try:
                return sum(p.stat().st_size for p in files) >= _PARALLEL_MIN_BYTES
            except OSError:
                return False
        rows += n
    return rows >= PARALLEL_MIN_ROWS and rows >= 4 * cfg.source.batch_rows


def _tokens(cfg: PipelineConfig, tokens: Mapping[str, Any] | None, dry_run_dir: Path | None) -> dict[str, Any]:
    from capi_pipeline.client import Secret

    out = {k: v if isinstance(v, Secret) else Secret(_checked_token(str(v).strip(), f"the token for dataset {k}"))
           for k, v in (tokens or {}).items()}
    if dry_run_dir is None:
        for dest in cfg.destinations:
            if dest.dataset_id not in out:
                out[dest.dataset_id] = resolve_token(dest)
    return out


@contextlib.contextmanager
def _report_on_failure(stats: RunStats, out: Path) -> Iterator[None]:
    """A run that stops on an error still writes its report (with the error under `errors`), so the day's
    report always matches the quarantine file beside it; the error then goes on to the caller."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, CapiPipelineError):
            text, code = f"{type(exc).__name__}: {exc}", exc.exit_code  # our messages carry no customer values
        elif isinstance(exc, KeyboardInterrupt):
            text, code = "interrupted", 130
        else:  # unexpected: its text could hold anything, so only its type
            text, code = f"{type(exc).__name__} (see the log)", 1
        stats.errors.append(text)
        try:
            _finish(stats, out, exit_code=code)
        except Exception as report_error:  # noqa: BLE001 - the original error matters more
            log.warning("could not write the report of the failed run to %s (%s)", out,
                        type(report_error).__name__)
        raise


def _finish(stats: RunStats, out: Path, *, exit_code: int) -> RunResult:
    stats.finished_at = time.time()
    try:
        from capi_pipeline.quality import predict_match_quality
    except ImportError:
        pass
    else:
        stats.predicted_match_quality = predict_match_quality(
            {k: dict(v) for k, v in stats.key_coverage_by_event.items()})
    path = _write_report(stats, out)
    return RunResult(stats=stats, out_dir=out, report_path=path, exit_code=exit_code)


def _deliver(cfg: PipelineConfig, date: str, validations: list[FileValidation], stats: RunStats,
             quarantine: QuarantineWriter, *, tokens: Mapping[str, Any], dry_run_dir: Path | None, force: bool,
             now: int | None, progress: Callable[[Any], None] | None, pool: Any = None) -> int:
    """Pass 2 into the uploader, once per destination dataset; returns the exit code."""
    from capi_pipeline import upload
    from capi_pipeline.client import CapiClient, DryRunClient, make_session
    from capi_pipeline.ledger import Ledger

    settings = upload.UploadSettings(batch_size=cfg.batching.size, concurrency=cfg.batching.concurrency,
                                     max_attempts=cfg.batching.max_attempts,
                                     max_retry_seconds=cfg.batching.max_retry_seconds)
    exit_code = 0
    for i, dest in enumerate(cfg.destinations):
        # Only the first pass over the rows counts them; later destinations rebuild the same events.
        first = i == 0
        events = _events(cfg, validations, stats if first else RunStats(pipeline=cfg.name, date=date),
                         quarantine if first else None, now=now, pool=pool)
        scope = f"{cfg.name}/{date}/{dest.dataset_id}"
        started = time.perf_counter()
        if dry_run_dir is not None:
            folder = dry_run_dir if len(cfg.destinations) == 1 else dry_run_dir / dest.dataset_id
            client: Any = DryRunClient(folder, _client_settings(dest, None, cfg))
            result = upload.deliver(events, client=client, settings=settings, ledger=None, scope=scope,
                                    force=True, progress=progress)
        else:
            try:
                ledger = Ledger.open(cfg.ledger_location())
            except Exception as exc:
                if _is_database_error(exc):
                    raise _unusable_ledger(cfg, exc) from None
                raise
            session = make_session(cfg.batching.concurrency)
            try:
                client = CapiClient(session, _client_settings(dest, tokens[dest.dataset_id], cfg))
                # one run at a time per file: a second one would resend what the first has in flight
                with ledger.lease(lease_names(scope, validations)):
                    result = upload.deliver(events, client=client, settings=settings, ledger=ledger, scope=scope,
                                            force=force, progress=progress)
            except BaseException as exc:  # what was done before any stop still reaches report and quarantine
                if (partial := getattr(exc, "result", None)) is not None:
                    stats.delivery[dest.dataset_id] = _delivery_summary(partial)
                    _quarantine_rejected(quarantine, partial, stats if first else None)
                if _is_database_error(exc):
                    raise _unusable_ledger(cfg, exc) from None
                raise
            finally:
                with contextlib.suppress(Exception):  # a damaged ledger may not close cleanly either
                    ledger.close()
                session.close()
        stats.stage_seconds[f"deliver:{dest.dataset_id}"] += time.perf_counter() - started
        stats.delivery[dest.dataset_id] = _delivery_summary(result)
        _quarantine_rejected(quarantine, result, stats if first else None)
        if result.events_failed:
            exit_code = 1
    return exit_code


# --- the same stages cut per file, for Airflow's mapped tasks -------------------------------------------------

def run_dir_for(pipeline_path: str, date: str, run_id: str | None = None) -> str:
    """Where one run's partial results go: `<output>/<name>/<date>/_parts/<run_id>`."""
    cfg = load_pipeline(pipeline_path)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in (run_id or "manual"))
    return str(cfg.output_dir(date) / "_parts" / safe)


def plan_partition(pipeline_path: str, date: str) -> list[str]:
    """The partition's files, absolute; `InputError` when there are none."""
    return [str(p) for p in partition_files(load_pipeline(pipeline_path), date)]


def validate_file(pipeline_path: str, date: str, file: str, *, run_dir: str) -> dict[str, Any]:
    """Pass 1 for one file; a table-level failure raises `ContractViolation` before anything is sent."""
    from capi_pipeline.contracts import ContractValidator, load_contract, resolve_contract_path

    cfg = load_pipeline(pipeline_path)
    part = _part_paths(run_dir, file)
    stats = RunStats(pipeline=cfg.name, date=date)
    validator = ContractValidator(load_contract(resolve_contract_path(cfg.contract, cfg.base_dir)))
    with _quarantine(cfg, part["validate_q"]) as quarantine:
        fv = _validate_file(cfg, validator, Path(file), stats, quarantine)
    _save_json(part["validate"], {"file": file, "name": fv.name, "rows": fv.rows,
                                  "rejected_rows": sorted(fv.rejected_rows), "stats": stats.to_state()})
    return {"file": file, "rows": fv.rows, "rejected": len(fv.rejected_rows), "part": str(part["validate"])}


def deliver_file(pipeline_path: str, date: str, file: str, *, run_dir: str, tokens: Mapping[str, str] | None = None,
                 endpoint: str | None = None, dry_run_dir: str | None = None, test_event_code: str | None = None,
                 force: bool = False) -> dict[str, Any]:
    """Pass 2 and upload for one validated file; idempotent through the ledger."""
    cfg = _overridden(load_pipeline(pipeline_path), endpoint, test_event_code)
    part = _part_paths(run_dir, file)
    saved = _load_json(part["validate"])
    fv = FileValidation(path=Path(file), name=saved["name"], rows=saved["rows"],
                        rejected_rows=set(saved["rejected_rows"]))
    stats = RunStats(pipeline=cfg.name, date=date, mode="dry-run" if dry_run_dir else "run")
    dry = Path(dry_run_dir) if dry_run_dir else None
    with _quarantine(cfg, part["deliver_q"]) as quarantine:
        exit_code = _deliver(cfg, date, [fv], stats, quarantine, tokens=_tokens(cfg, tokens, dry),
                             dry_run_dir=dry, force=force, now=None, progress=_log_progress)
    _save_json(part["deliver"], {"file": file, "exit_code": exit_code, "stats": stats.to_state()})
    return {"file": file, "exit_code": exit_code, **stats.totals()}


def finalize_run(pipeline_path: str, date: str, *, run_dir: str) -> dict[str, Any]:
    """Merge the per-file parts into one report.json / report.html / quarantine.csv."""
    import shutil

    cfg = load_pipeline(pipeline_path)
    parts = Path(run_dir)
    out = cfg.output_dir(date)
    stats = RunStats(pipeline=cfg.name, date=date)
    exit_code = 0
    delivered_any = False
    for vpath in sorted(parts.glob("*.validate.json")):
        stats.merge(RunStats.from_state(_load_json(vpath)["stats"]))
    for dpath in sorted(parts.glob("*.deliver.json")):
        saved = _load_json(dpath)
        part_stats = RunStats.from_state(saved["stats"])
        part_stats.rows_read = 0  # rows were counted by the validate part
        part_stats.files = []
        stats.merge(part_stats)
        stats.mode = part_stats.mode
        delivered_any = True
        exit_code = max(exit_code, int(saved["exit_code"]))
    if not delivered_any:
        stats.mode = "validate"
    if stats.mode == "dry-run":
        out = out / DRY_RUN_REPORTS  # the day's real report stays as it is
    out.mkdir(parents=True, exist_ok=True)
    qpath = out / "quarantine.csv"
    with qpath.open("w", encoding="utf-8", newline="") as fh:
        header_written = False
        for q in sorted(parts.glob("*.csv")):
            with q.open(encoding="utf-8", newline="") as src:
                header = src.readline()
                if not header_written:
                    fh.write(header)
                    header_written = True
                shutil.copyfileobj(src, fh)
    stats.quarantine_file = str(qpath)
    result = _finish(stats, out, exit_code=exit_code)
    return {"report": str(result.report_path), "exit_code": exit_code, "mode": stats.mode, **stats.totals()}


def fetch_quality(pipeline_path: str, date: str, *, run_dir: str | None = None,
                  tokens: Mapping[str, str] | None = None, endpoint: str | None = None) -> dict[str, Any]:
    """Read Meta's Dataset Quality API for each destination and add the scores to the date's report."""
    from capi_pipeline.client import CapiClient, make_session
    from capi_pipeline.quality import add_meta_scores, fetch_dataset_quality

    cfg = _overridden(load_pipeline(pipeline_path), endpoint, None)
    secrets = _tokens(cfg, tokens, None)
    scores: dict[str, Any] = {}
    for dest in cfg.destinations:
        session = make_session(1)
        try:
            client = CapiClient(session, _client_settings(dest, secrets[dest.dataset_id], cfg))
            scores[dest.dataset_id] = fetch_dataset_quality(client)
        finally:
            session.close()
    report_path = cfg.output_dir(date) / "report.json"
    if report_path.exists():
        add_meta_scores(report_path, scores)
    return {"report": str(report_path), "datasets": list(scores)}


def _overridden(cfg: PipelineConfig, endpoint: str | None, test_event_code: str | None) -> PipelineConfig:
    if endpoint:
        cfg = cfg.with_endpoint(endpoint)
    if test_event_code:
        cfg = cfg.with_test_event_code(test_event_code)
    return cfg


def _part_paths(run_dir: str, file: str) -> dict[str, Path]:
    import hashlib

    key = hashlib.sha256(file.encode("utf-8")).hexdigest()[:12]
    base = Path(run_dir)
    return {"validate": base / f"{key}.validate.json", "deliver": base / f"{key}.deliver.json",
            "validate_q": base / f"{key}.1-validate.csv", "deliver_q": base / f"{key}.2-deliver.csv"}


def _save_json(path: Path, data: dict[str, Any]) -> None:
    import json

    from capi_pipeline.report import atomic_write_text

    atomic_write_text(path, json.dumps(data))


def _load_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; validate the file before delivering it") from None


def _log_progress(info: Any) -> None:
    """Progress for Airflow task logs comes from upload's own periodic log lines."""


def _client_settings(dest: DestinationConfig, token: Any, cfg: PipelineConfig) -> Any:
    from capi_pipeline.client import ClientSettings, Secret

    return ClientSettings(
        endpoint=dest.endpoint, api_version=dest.api_version, dataset_id=dest.dataset_id,
        token=token if token is not None else Secret(""), timeout_s=cfg.batching.timeout_s,
        test_event_code=dest.test_event_code, partner_agent=dest.partner_agent or f"capi-pipeline-{__version__}",
        upload_tag=dest.upload_tag, namespace_id=dest.namespace_id)


def _quarantine_rejected(quarantine: QuarantineWriter, result: Any, stats: RunStats | None) -> None:
    """The events Meta refused on their own, as quarantine records (counted in `stats` when given)."""
    if result.rejected:
        quarantine.write([{"file": r.file, "row": r.row, "event_name": r.event_name, "event_id": r.event_id,
                           "rule": "meta_rejected", "field": r.field, "message": _meta_message(r)}
                          for r in result.rejected])
        if stats is not None:
            stats.reject("meta", "meta_rejected", len(result.rejected))


def _meta_message(r: Any) -> str:
    parts = [f"Meta rejected the event (code {r.code}"]
    if r.subcode:
        parts.append(f", subcode {r.subcode}")
    parts.append(")")
    if r.fbtrace_id:
        parts.append(f" fbtrace_id {r.fbtrace_id}")
    if r.message:
        parts.append(f": {r.message}")
    return "".join(parts)


def _delivery_summary(result: Any) -> dict[str, Any]:
    return {
        "batches": result.batches, "requests": result.requests, "events_sent": result.events_sent,
        "events_delivered": result.events_delivered, "events_failed": result.events_failed,
        "events_rejected": result.events_rejected,
        "events_skipped_already_sent": result.events_skipped_already_sent, "events_resent": result.events_resent,
        "retries": result.retries, "throttled": result.throttled, "bisections": result.bisections,
        "failures": [vars(f) for f in result.failures][:50], "fbtrace_ids": list(result.fbtrace_ids)[:50],
    }


def _write_report(stats: RunStats, out: Path) -> Path:
    path = write_json(stats, out)
    try:
        from capi_pipeline import report_html
    except ImportError:
        return path
    report_html.write_html(stats.to_dict(), out)
    return path


def _validate_partition(cfg: PipelineConfig, date: str, stats: RunStats,
                        quarantine: QuarantineWriter | None, *, pool: Any = None) -> list[FileValidation]:
    """Pass 1: the contract over every file; raises before anything is sent on a table-level failure.

    With a pool the chunks are validated in its processes (same order, same records); its Data Docs are then
    built by one of pass 1's workers while pass 2 starts (`TransformPool.start_docs`).
    """
    if pool is not None:
        return _validate_partition_pooled(cfg, date, stats, quarantine, pool)
    from capi_pipeline.contracts import ContractValidator, load_contract, resolve_contract_path

    validator = ContractValidator(load_contract(resolve_contract_path(cfg.contract, cfg.base_dir)))
    results = [_validate_file(cfg, validator, path, stats, quarantine) for path in partition_files(cfg, date)]
    if quarantine is not None:
        _set_data_docs(stats, validator.build_data_docs(quarantine.path.parent), quarantine.path.parent)
    return results


def _set_data_docs(stats: RunStats, docs: Any, out: Path) -> None:
    if docs is not None:
        stats.data_docs = str(Path(docs).resolve().relative_to(out.resolve()))


def _validate_partition_pooled(cfg: PipelineConfig, date: str, stats: RunStats,
                               quarantine: QuarantineWriter | None, pool: Any) -> list[FileValidation]:
    from capi_pipeline.contracts import _DOCS_KEEP
    from capi_pipeline.workers import validate_tasks

    started = time.perf_counter()
    paths = partition_files(cfg, date)
    results = [FileValidation(path=p, name=extract.display_name(p, cfg.base_dir), rows=0) for p in paths]
    docs: list[bytes] = []
    done = 0  # files before this index are complete

    def close_files(upto: int) -> None:
        nonlocal done
        for fv in results[done:upto]:
            stats.files.append(fv.name)
            stats.rows_by_file[fv.name] = fv.rows
            stats.rows_read += fv.rows
        done = max(done, upto)

    for res in pool.validate(validate_tasks(cfg, [(fv.path, fv.name) for fv in results])):
        close_files(res.file_index)
        fv = results[res.file_index]
        fv.rows += res.rows
        for rec in res.rejections:
            fv.rejected_rows.add(int(rec["row"]))
            stats.reject("contract", rec["rule"])
        if quarantine is not None and res.rejections:
            quarantine.write(res.rejections)
        if res.docs_entry is not None:
            docs.append(res.docs_entry)
            del docs[:-_DOCS_KEEP]
    close_files(len(results))
    stats.stage_seconds["validate"] += time.perf_counter() - started
    if quarantine is not None and docs:
        pool.start_docs(quarantine.path.parent, docs)
    return results


def _validate_file(cfg: PipelineConfig, validator: Any, path: Path, stats: RunStats,
                   quarantine: QuarantineWriter | None) -> FileValidation:
    started = time.perf_counter()
    name = extract.display_name(path, cfg.base_dir)
    fv = FileValidation(path=path, name=name, rows=0)
    checked = False
    for chunk in extract.read_chunks(path, cfg.source.format, cfg.source.batch_rows, name=name,
                                     delimiter=cfg.source.delimiter):
        if not checked:
            validator.check_table(chunk.frame, file=name)
            mapping.check_mapped_columns(chunk.frame.columns, cfg, file=name)
            checked = True
        fv.rows += len(chunk.frame)
        res = validator.validate(chunk.frame, file=name, first_row=chunk.first_row)
        for rec in res.rejections:
            fv.rejected_rows.add(int(rec["row"]))
            stats.reject("contract", rec["rule"])
        if quarantine is not None and res.rejections:
            quarantine.write(res.rejections)
    stats.files.append(name)
    stats.rows_by_file[name] = fv.rows
    stats.rows_read += fv.rows
    stats.stage_seconds["validate"] += time.perf_counter() - started
    return fv


def _is_database_error(exc: BaseException) -> bool:
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, (sqlite3.Error, SQLAlchemyError))


def _unusable_ledger(cfg: PipelineConfig, exc: BaseException) -> ConfigurationError:
    """A database error of the ledger as an error saying what to check (its text, which may quote SQL and
    parameters, stays out)."""
    return ConfigurationError(
        f"the ledger {cfg.ledger_location()} cannot be read or written ({type(exc).__name__}): check that the file "
        "and its folder are writable and the file is a capi-pipeline ledger (a damaged one: restore it or move "
        "it away; without it, a re-run resends the whole day)")


def lease_names(scope: str, validations: Sequence[FileValidation]) -> list[str]:
    """The ledger leases of a delivery: one per file, named by its real path (symlinks resolved), not by how a
    pipeline YAML reaches it: two YAMLs in different folders (a CLI run beside Airflow's effective YAML) that read
    the same files and ledger for the same dataset and date take the same leases."""
    return [f"{scope}/{fv.path.resolve()}" for fv in validations]


def _events(cfg: PipelineConfig, validations: list[FileValidation], stats: RunStats,
            quarantine: QuarantineWriter | None, *, now: int | None, pool: Any = None
            ) -> Iterator[payload.EventBlock]:
    """Pass 2: stream the partition's valid rows as event blocks (a generator the uploader consumes).

    With a `workers.TransformPool` the chunks are transformed in its processes and the blocks carry their
    bodies already serialized (`payload.JsonArray`); here they are dicts. Either way a chunk's events are cut
    into blocks of `payload.block_size(batching.size)`, so requests do not depend on the number of processes.
    """
    from capi_pipeline.rules import KnownDuplicates, SeenEvents, duplicate_mask

    seen = SeenEvents()
    clock = int(time.time()) if now is None else now
    if pool is not None:
        from capi_pipeline.workers import chunk_tasks

        for result in pool.transform(chunk_tasks(cfg, validations), seen=seen, now=clock):
            stats.merge(result.stats)
            if quarantine is not None and result.quarantine:
                quarantine.write(result.quarantine)
            yield from result.events.blocks()
        return
    settings = rule_settings_for(cfg)
    options = normalize_options(cfg)
    for fv in validations:
        for chunk in extract.read_chunks(fv.path, cfg.source.format, transform_rows(cfg), name=fv.name,
                                         delimiter=cfg.source.delimiter):
            dup = duplicate_mask(cfg, seen, chunk.first_row, chunk.frame, fv.rejected_rows)
            built = transform_chunk(cfg, chunk, fv.rejected_rows, stats, quarantine, options=options,
                                    rule_settings=settings, seen=KnownDuplicates(dup), now=clock)
            yield from built.blocks()


def transform_chunk(cfg: PipelineConfig, chunk: extract.Chunk, rejected_rows: set[int], stats: RunStats,
                    quarantine: QuarantineWriter | None, *, options: Any, rule_settings: Any, seen: Any,
                    now: int) -> payload.EventChunk:
    """One chunk through mapping, rules, normalization and payload; rejections go to quarantine. The events in
    blocks of `payload.block_size(batching.size)`."""
    with _gc_paused():
        return _transform_chunk(cfg, chunk, rejected_rows, stats, quarantine, options=options,
                                rule_settings=rule_settings, seen=seen, now=now)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a chunk is transformed.

    A chunk builds millions of small dicts and lists (JSON items, event bodies) that never form cycles, so
    reference counting frees them; the collector would re-scan every new container and, in its full passes,
    everything alive (the chunk's frames included): a quarter to a third of the transform's time, measured on
    the offline sample. It is switched back on after (callers that turned it off keep it off).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _transform_chunk(cfg: PipelineConfig, chunk: extract.Chunk, rejected_rows: set[int], stats: RunStats,
                     quarantine: QuarantineWriter | None, *, options: Any, rule_settings: Any, seen: Any,
                     now: int) -> payload.EventChunk:
    from capi_pipeline import normalize, rules

    t0 = time.perf_counter()
    frame, first_rows = extract.without_rows(chunk.frame, chunk.first_row, rejected_rows)
    canon = mapping.to_canonical(frame, cfg, file=chunk.file, first_row=chunk.first_row)
    canon["_row"] = first_rows
    t1 = time.perf_counter()

    checked = rules.check_rows(canon, now=now, settings=rule_settings)
    valid = np.asarray(checked.valid, dtype=bool)
    rejections = list(checked.rejections)
    if len(canon):
        dup = np.asarray(seen.mark(canon), dtype=bool) & valid
        if dup.any():
            at = np.flatnonzero(dup)
            rejections.extend(_records(canon, at, ["duplicate_event_id"] * len(at), "event_id",
                                       ["event_name + event_id already seen in this partition"] * len(at)))
            valid &= ~dup
    for rule, n in Counter(rec["rule"] for rec in rejections).items():
        stats.reject("rules", rule, n)
    if not valid.all():
        canon = canon[valid].reset_index(drop=True)
    t2 = time.perf_counter()

    fields = []
    for col, key in mapping.user_data_columns(canon):
        source_col = _source_column(cfg, col)
        prehashed = source_col in cfg.user_data.prehashed or cfg.mapping[col.split("#", 1)[0]].prehashed
        fields.append(normalize.RawField(key=key, values=canon[col], prehashed=prehashed))
    ud = normalize.normalize_user_data(fields, options)
    stats.rows_normalized += len(canon)  # coverage_before's denominator: the rows whose keys were read
    for key, n in ud.present_before.items():
        stats.key_coverage_before[key] += n
    for (key, reason), n in ud.drops.items():
        stats.fields_dropped[f"{key}:{reason}"] += n
    stats.hashed.update(ud.hashed)
    stats.prehashed.update(ud.prehashed)
    rejected_ud = ud.row_rejection.notna().to_numpy() if len(canon) else np.zeros(0, dtype=bool)
    values, present = ud.values, ud.present
    keep_ud = None
    if rejected_ud.any():
        at = np.flatnonzero(rejected_ud)
        reasons = ud.row_rejection.to_numpy(dtype=object)[at].tolist()
        rejections.extend(_records(canon, at, reasons, "user_data", [_UD_MESSAGES.get(r, r) for r in reasons]))
        for reason, n in Counter(reasons).items():
            stats.reject("user_data", reason, n)
        keep_ud = ~rejected_ud
        # the raw user_data columns are done with
        canon = canon.loc[keep_ud, [c for c in canon.columns if not c.startswith("user_data.")]
                          ].reset_index(drop=True)
        values = {k: s[keep_ud].reset_index(drop=True) for k, s in values.items()}
        present = {k: p[keep_ud] for k, p in present.items()}
    t3 = time.perf_counter()

    ldu_states = ldu_consent = None
    if cfg.ldu.policy in ("by_state", "consent"):
        ldu_states = _us_states(ud, keep_ud)
    if cfg.ldu.policy == "consent" and cfg.ldu.consent_column:
        consent_src = frame[cfg.ldu.consent_column] if cfg.ldu.consent_column in frame else None
        ldu_consent = _consent(consent_src, first_rows, canon["_row"]) if consent_src is not None else None
    built = payload.build_events(canon, values, ldu_policy=cfg.ldu.policy, ldu_states=ldu_states,
                                 ldu_consent=ldu_consent, user_data_present=present,
                                 block=payload.block_size(cfg.batching.size))
    stats.ldu.update(built.ldu_by_state)
    stats.events_built += len(built.events)
    for col in canon.columns:
        if col.startswith(mapping.DROPPED) and (dropped := int(canon[col].sum())):
            reason, path = col[len(mapping.DROPPED):].split(":", 1)
            stats.values_dropped[f"{path}:{reason}"] += dropped
    if len(canon):
        _count_events(stats, canon, built.present, now)
    if quarantine is not None and rejections:
        quarantine.write(rejections)
    t4 = time.perf_counter()
    stats.stage_seconds["map"] += t1 - t0
    stats.stage_seconds["rules"] += t2 - t1
    stats.stage_seconds["normalize_hash"] += t3 - t2
    stats.stage_seconds["payload"] += t4 - t3
    return built.events


_UD_MESSAGES = {
    "no_customer_information": "no usable customer information parameter remains after normalization",
    "baseline_invalid_combination": "the remaining identifiers are only a combination Meta rejects on its own",
}


def _records(canon: pd.DataFrame, at: np.ndarray, rules: list[str], fld: str | None,
             messages: list[str]) -> list[dict[str, Any]]:
    """Quarantine records for rows `at` of `canon`, read column-wise (ids only, never customer values)."""
    def cells(col: str) -> list[Any]:  # only the rows `at` become Python objects
        return canon[col].iloc[at].to_numpy(dtype=object).tolist() if col in canon.columns else [None] * len(at)

    rows = canon["_row"].to_numpy()[at].tolist()
    return [{"file": f, "row": int(r), "event_name": name, "event_id": eid, "rule": rule, "field": fld,
             "message": message}
            for f, r, name, eid, rule, message in zip(cells("_file"), rows, cells("event_name"),
                                                       cells("event_id"), rules, messages)]


def _count_events(stats: RunStats, canon: pd.DataFrame, present: Mapping[str, np.ndarray], now: int) -> None:
    """Events per name, their ages and per-key coverage per event name, counted on integer name codes."""
    # factorize numbers names in order of first occurrence: the order Counter.update(list) inserts them in
    codes, names = pd.factorize(canon["event_name"].to_numpy(dtype=object), use_na_sentinel=False)
    names = np.asarray(names, dtype=object)
    for name, n in zip(names.tolist(), np.bincount(codes, minlength=len(names)).tolist()):
        stats.events_by_name[name] += n
    stats.add_event_ages(now - canon["event_time"].to_numpy(dtype=np.int64))
    named = ~pd.isna(names)  # value_counts leaves missing names out
    for key, sent in present.items():
        stats.key_coverage_after[key] += int(sent.sum())
        _add_by_event(stats, names, codes[sent], named, key)
    _add_by_event(stats, names, codes, named, "_events")


def _add_by_event(stats: RunStats, names: np.ndarray, codes: np.ndarray, named: np.ndarray, key: str) -> None:
    """Events per name of `codes` into `key`'s column, names in value_counts' order (most events first, ties in
    order of first occurrence), counted with bincount: a chunk has a handful of event names."""
    sub = codes[named[codes]]
    counts = np.bincount(sub, minlength=len(names))
    present = np.flatnonzero(counts)
    first = [int(np.argmax(sub == code)) for code in present.tolist()]
    for k in np.lexsort((first, -counts[present])).tolist():
        code = int(present[k])
        stats.key_coverage_by_event[names[code]][key] += int(counts[code])


def _source_column(cfg: PipelineConfig, canon_col: str) -> str | None:
    path, _, nth = canon_col.partition("#")
    src = cfg.mapping.get(path)
    if src is None or not src.columns:
        return None
    idx = int(nth) - 1 if nth else 0
    return src.columns[idx] if idx < len(src.columns) else None


def _us_states(ud: Any, keep: np.ndarray | None) -> pd.Series | None:
    """Each kept row's US state for LDU, as normalization read it (the first `st` field, not hashed); None
    outside the US. A row without a valid country counts as US, whatever the default country: LDU errs
    towards applying."""
    if ud.plain_st is None:
        return None
    states = ud.plain_st
    if ud.country is not None:
        states = np.where(pd.isna(ud.country) | (ud.country == "us"), states, None)
    return pd.Series(states if keep is None else states[keep], dtype=object)


def _consent(values: pd.Series, rows_kept: np.ndarray, rows_now: pd.Series) -> pd.Series:
    truthy = values.map(lambda v: str(v).strip().lower() in ("1", "true", "yes", "y") if v is not None else False)
    by_row = dict(zip(rows_kept.tolist(), truthy.tolist()))
    return pd.Series([by_row.get(r, False) for r in rows_now.tolist()], dtype=object)


def normalize_file(src: Path, dst: Path, *, hash: bool = True, default_country: str | None = "US",
                   dob_order: str = "mdy") -> int:
    """The `normalize` debugging tool: user_data columns in, the values as they would be sent out."""
    import dataclasses

    from capi_pipeline.normalize import NormalizeOptions, explain

    frame = _read_table(src)
    options = dataclasses.replace(NormalizeOptions(), hash=hash, dob_order=dob_order,
                                  default_country=default_country.lower() if default_country else None)
    try:
        result = explain(frame, options)
    except ValueError as exc:
        raise InputError(f"{src}: {exc}") from None
    _write_table(result, dst)
    return len(result)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__})") from None
    raise ConfigurationError(f"{path}: expected a .parquet or .csv file")


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise ConfigurationError(f"{path}: output must end in .parquet or .csv")
