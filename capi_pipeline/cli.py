"""The `capi-pipeline` command line: the same code path as the DAGs (`capi_pipeline.pipeline`).

Exit codes: 0 every valid row delivered (or validated), 1 delivery failed, 2 configuration or input error.
Heavy modules (pandas, GX, the sandbox) are imported inside the subcommands so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from capi_pipeline import __version__
from capi_pipeline.errors import CapiPipelineError, ConfigurationError

if TYPE_CHECKING:
    from capi_pipeline.upload import ProgressInfo

__all__ = ["main", "build_parser"]


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in YYYY-MM-DD form") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="capi-pipeline",
        description="Send warehouse conversion events (offline, app) to Meta's Conversions API: "
                    "validated, normalized, hashed, delivered exactly once, with a data-quality report.")
    p.add_argument("--version", action="version", version=f"capi-pipeline {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("sample", help="write messy sample warehouse files and a ready pipeline YAML",
                       description="Write realistic, deliberately messy warehouse exports partitioned as "
                                   "DIR/<kind>/dt=YYYY-MM-DD/part-*.parquet and DIR/<kind>.pipeline.yaml.")
    from capi_pipeline import sample

    sample.add_arguments(s)

    s = sub.add_parser("sandbox", help="run the local Graph API stand-in",
                       description="A local stand-in for POST /{version}/{dataset_id}/events that enforces "
                                   "Meta's validation rules, with fault injection.")
    from capi_pipeline.sandbox import add_arguments as sandbox_arguments

    sandbox_arguments(s)

    s = sub.add_parser("run", help="validate, normalize, hash and deliver one daily partition",
                       description="Read the date's partition, validate it against its contract, normalize and "
                                   "hash customer information, build CAPI events and deliver them exactly once.")
    _pipeline_args(s)
    s.add_argument("--endpoint", help="Graph API base URL (overrides the YAML), e.g. http://127.0.0.1:8765")
    s.add_argument("--dry-run", metavar="DIR", type=Path,
                   help="send nothing; write each request body that would be POSTed as one JSON file in DIR")
    s.add_argument("--test-event-code", metavar="CODE", help="route events to Events Manager > Test Events")
    s.add_argument("--force", action="store_true", help="resend events the ledger already records as sent")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    s = sub.add_parser("validate", help="contract and Meta's rules only; writes report and quarantine, sends nothing")
    _pipeline_args(s)

    s = sub.add_parser("normalize", help="show how user_data values are normalized and hashed (debugging)",
                       description="Read a .parquet or .csv whose columns are named by user_data keys (plus "
                                   "country as context) and write the same columns as they would be sent, with "
                                   "a reasons column.")
    s.add_argument("input", type=Path)
    s.add_argument("--out", required=True, type=Path, help="output file (.parquet or .csv)")
    s.add_argument("--no-hash", action="store_true", help="normalized but not hashed")
    s.add_argument("--default-country", metavar="CC", default="US",
                   help="ISO alpha-2 country for rows without one (default US; 'none': no default)")
    s.add_argument("--dob-order", choices=("mdy", "dmy"), default="mdy",
                   help="order of ambiguous slashed dates of birth (default mdy)")

    from capi_pipeline import quality, quickstart

    s = sub.add_parser("quality", help="fetch Meta's match-quality scores into the newest report",
                       description="Read Meta's Dataset Quality API (web and offline fields) for each destination "
                                   "and add Meta's scores to the latest report.")
    quality.add_quality_arguments(s)
    s = sub.add_parser("init", help="write a pipeline YAML and a starter contract from a sample export",
                       description="Map a sample export's columns to CAPI fields by name and content; write a "
                                   "pipeline YAML and a starter ODCS contract; say what could not be mapped.")
    quickstart.add_init_arguments(s)
    s = sub.add_parser("check", help="send one test event to each destination to verify dataset id and token")
    quickstart.add_check_arguments(s)

    s = sub.add_parser("demo", help="the README's main job: sample data, local sandbox, both pipelines",
                       description="Sample offline and app data for yesterday in New York (the sample's "
                                   "clock), start the sandbox on a free loopback port, run both pipelines against "
                                   "it, print a summary.")
    s.add_argument("--workdir", type=Path, default=Path("work/demo"), help="where samples and reports go")
    s.add_argument("--rows", type=int, default=5000, help="rows per kind (default 5000)")
    return p


def _pipeline_args(s: argparse.ArgumentParser) -> None:
    s.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    s.add_argument("--date", required=True, type=_date, help="partition date YYYY-MM-DD")
    s.add_argument("--out", type=Path, help="output folder for report and quarantine (default: the YAML's)")


_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except CapiPipelineError as exc:
        print(f"capi-pipeline {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except _FILE_ERRORS as exc:  # an --out / --dry-run folder that cannot be made or written: a usage error
        print(f"capi-pipeline {args.command}: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _cmd_sample(args: argparse.Namespace) -> int:
    from capi_pipeline import sample

    return sample.main_from_args(args)


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from capi_pipeline.sandbox import main_from_args

    return main_from_args(args)


def _load(args: argparse.Namespace) -> Any:
    from capi_pipeline.config import load_pipeline

    return load_pipeline(args.pipeline)


def _cmd_run(args: argparse.Namespace) -> int:
    from capi_pipeline import pipeline

    cfg = _load(args)
    if args.endpoint:
        cfg = cfg.with_endpoint(args.endpoint)
    if args.test_event_code:
        cfg = cfg.with_test_event_code(args.test_event_code)
    progress = None if args.no_progress or not sys.stderr.isatty() else _ProgressBar()
    result = pipeline.run(cfg, args.date, out_dir=args.out, dry_run_dir=args.dry_run, force=args.force,
                          progress=progress)
    if progress:
        progress.done()
    _print_summary(cfg.name, result)
    return result.exit_code


def _cmd_validate(args: argparse.Namespace) -> int:
    from capi_pipeline import pipeline

    result = pipeline.validate(_load(args), args.date, out_dir=args.out)
    _print_summary(result.stats.pipeline, result)
    return result.exit_code


def _cmd_normalize(args: argparse.Namespace) -> int:
    from capi_pipeline import pipeline

    if not args.input.exists():
        raise ConfigurationError(f"{args.input}: no such file")
    rows = pipeline.normalize_file(args.input, args.out, hash=not args.no_hash,
                                   default_country=_default_country(args.default_country), dob_order=args.dob_order)
    print(f"normalized {rows} rows -> {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from capi_pipeline import pipeline, sample
    from capi_pipeline.client import Secret
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.sandbox import SandboxConfig, run_sandbox

    workdir: Path = args.workdir
    day = sample.latest_complete_day()
    print(f"capi-pipeline demo: sampling {args.rows} offline and {args.rows} app rows for {day} into {workdir}")
    samples = [sample.generate(kind, args.rows, day, workdir / "warehouse") for kind in ("offline", "app")]
    code = 0
    with run_sandbox(SandboxConfig(host="127.0.0.1", port=0, db_path=str(workdir / "sandbox.sqlite"))) as sb:
        print(f"sandbox Graph API listening on {sb.url}")
        for smp in samples:
            cfg = load_pipeline(smp.pipeline_path).with_endpoint(sb.url)
            tokens = {d.dataset_id: Secret("demo-token") for d in cfg.destinations}
            started = time.perf_counter()
            result = pipeline.run(cfg, day.isoformat(), tokens=tokens, out_dir=workdir / "reports" / cfg.name)
            _print_summary(cfg.name, result, seconds=time.perf_counter() - started)
            code = max(code, result.exit_code)
        stats = sb.stats()
    received = sum(d.get("events_received", 0) for d in stats.get("datasets", {}).values())
    print(f"sandbox received {received} events in {stats.get('requests', 0)} requests; "
          f"exit code {code}")
    return code


def _print_summary(name: str, result: Any, seconds: float | None = None) -> None:
    t = result.stats.totals()
    took = f" in {seconds:.1f}s" if seconds is not None else ""
    sent = (f"dry run: events written {t['events_delivered']} (nothing sent)" if result.stats.mode == "dry-run"
            else f"events sent {t['events_sent']}, delivered {t['events_delivered']}, failed {t['events_failed']}")
    print(f"[{name}] rows read {t['rows_read']}, rejected {t['rows_rejected']}, valid {t['rows_valid']}; "
          f"{sent}"
          f"{', skipped (already sent) ' + str(t['events_skipped_already_sent']) if t['events_skipped_already_sent'] else ''}"
          f"{took}")
    by_rule = result.stats.rejected_by_rule
    if by_rule:
        print("  rejected by rule: " + ", ".join(f"{rule} {n}" for rule, n in by_rule.most_common()))
    print(f"  report: {result.report_path}")
    if result.stats.quarantine_file:
        print(f"  quarantine: {result.stats.quarantine_file}")


def _default_country(text: str) -> str | None:
    """`--default-country none` (or an empty value): rows without a country get none."""
    return None if text.strip().lower() in ("", "none") else text.strip()


class _ProgressBar:
    """A one-line progress display on stderr for interactive runs."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, info: ProgressInfo) -> None:
        now = time.perf_counter()
        if now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write(f"\r  delivered {info.events_delivered:>9,} events  {info.rate_eps:>9,.0f} ev/s  "
                         f"batches {info.batches_done:>6,}/{info.batches_submitted:,}  "
                         f"failed {info.events_failed:,}  skipped {info.events_skipped:,}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _cmd_quality(args: argparse.Namespace) -> int:
    from capi_pipeline import quality

    return quality.cmd_quality(args)


def _cmd_init(args: argparse.Namespace) -> int:
    from capi_pipeline import quickstart

    return quickstart.cmd_init(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from capi_pipeline import quickstart

    return quickstart.cmd_check(args)


_COMMANDS = {
    "quality": _cmd_quality,
    "init": _cmd_init,
    "check": _cmd_check,
    "sample": _cmd_sample,
    "sandbox": _cmd_sandbox,
    "run": _cmd_run,
    "validate": _cmd_validate,
    "normalize": _cmd_normalize,
    "demo": _cmd_demo,
}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

