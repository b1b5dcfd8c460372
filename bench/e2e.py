"""End to end: a generated offline partition through `pipeline.run` into the local sandbox.

    python bench/e2e.py [--rows 1000000] [--workdir DIR] [--batch-rows N] [--part-rows 250000]
                        [--concurrency N] [--profile cprofile|pyinstrument --profile-rows 200000]

Three processes, so that each number means one thing:
  1. a child generates the sample (parquet part files; its memory never counts);
  2. the sandbox runs in its own process (zero latency; its CPU use does compete on this machine: it validates
     and stores every event, as Meta would do remotely);
  3. a child runs `capi_pipeline.pipeline.run` (contract pass, then map, rules, normalize + hash, payload,
     upload with the SQLite ledger) and reports its wall time, `RunStats.stage_seconds`, and its peak RSS
     (VmHWM) plus the RSS sampled every second, so flat memory on large partitions is visible.
Targets (the issue): 1,000,000 rows <= 30 s wall and <= 1.5 GB peak RSS on 2 cores; 10,000,000 rows <= 1.5 GB.
`--profile` profiles the transform of `--profile-rows` rows in-process instead (cProfile from the stdlib, or
pyinstrument if importable) and prints the top entries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common as c

THROWAWAY_TOKEN = "bench-throwaway-token-not-a-secret"
GIB = 1024.0
TARGET_WALL_S = 30.0
TARGET_RSS_MB = 1.5 * 1000**3 / 2**20  # 1.5 GB


# ---------------------------------------------------------------------------------------------- children

def _child_generate(args: argparse.Namespace) -> int:
    from capi_pipeline.sample import generate

    date = c.bench_date()
    result = generate("offline", args.rows, date, Path(args.workdir), seed=args.seed, bad_rate=0.05,
                      fmt="parquet", part_rows=args.part_rows)
    print(json.dumps({"pipeline": str(result.pipeline_path), "date": date.isoformat(), "files": len(result.files),
                      "rows": result.rows, "bad_rows": result.bad_rows}))
    return 0


class _RssSampler(threading.Thread):
    """Prints the RSS every `every_s` seconds (one line) and remembers the samples."""

    def __init__(self, every_s: float, out: Any) -> None:
        super().__init__(daemon=True)
        self.every_s = every_s
        self.out = out
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.started_at = time.perf_counter()

        self.total_samples: list[float] = []  # this process + its transform workers
        self.total_series: list[tuple[float, float]] = []  # (t, total) every `every_s`, for the RSS-over-time line
        self.children_hwm: dict[str, float] = {}  # child pid -> its own high-water mark (VmHWM), MiB
        self.fine_s = 0.25  # the total is sampled this often (a 1 s sample misses short peaks)

    def run(self) -> None:
        next_coarse = self.every_s
        while not self.stop.wait(self.fine_s):
            t = time.perf_counter() - self.started_at
            own = c.rss_mb()
            total = own + _children_rss_mb(self.children_hwm)
            self.total_samples.append(total)
            if t >= next_coarse:
                next_coarse += self.every_s
                self.samples.append((t, own))
                self.total_series.append((t, total))


def _children_rss_mb(hwm: dict[str, float] | None = None) -> float:
    """Summed RSS of this process's child processes (Linux /proc; 0 elsewhere); records each one's VmHWM."""
    total = 0.0
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return 0.0
    for task in tasks:
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
                    elif line.startswith("VmHWM:") and hwm is not None:
                        hwm[pid] = max(hwm.get(pid, 0.0), int(line.split()[1]) / 1024)
            except (OSError, ValueError):
                pass
    return total


def _child_run(args: argparse.Namespace) -> int:
    from capi_pipeline.config import load_pipeline
    from capi_pipeline.pipeline import run

    cfg = load_pipeline(args.pipeline).with_endpoint(args.endpoint)
    if args.batch_rows:
        cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, batch_rows=args.batch_rows))
    if args.concurrency:
        cfg = dataclasses.replace(cfg, batching=dataclasses.replace(cfg.batching, concurrency=args.concurrency))
    ledger = Path(cfg.ledger_location())
    for suffix in ("", "-wal", "-shm"):  # a fresh ledger: an old one would skip the events as already sent
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    tokens = {d.dataset_id: THROWAWAY_TOKEN for d in cfg.destinations}
    sampler = _RssSampler(1.0, sys.stderr)
    rss_before = c.rss_mb()
    sampler.start()
    started, cpu = time.perf_counter(), time.process_time()
    result = run(cfg, args.date, tokens=tokens, out_dir=Path(args.out), workers=args.workers)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    sampler.stop.set()
    stats = result.stats
    print(json.dumps({
        "wall_s": wall, "cpu_s": cpu, "exit_code": result.exit_code, "rows_read": stats.rows_read,
        "events_built": stats.events_built, "stage_seconds": dict(stats.stage_seconds),
        "rejected_by_stage": dict(stats.rejected_by_stage), "delivery": {
            k: {kk: vv for kk, vv in v.items() if kk not in ("failures", "fbtrace_ids")}
            for k, v in stats.delivery.items()},
        "rss_before_mb": rss_before, "peak_rss_mb": c.peak_rss_mb(), "rss_samples": sampler.samples,
        # the transform workers are joined by then: the largest one's high-water mark (0 without workers)
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "workers_cpu_s": _children_cpu(),
        "peak_total_rss_sampled_mb": max(sampler.total_samples, default=0.0),
        "total_rss_samples": sampler.total_series,
        # an upper bound: every process's own high-water mark added up (they need not peak at the same time)
        "peak_total_rss_bound_mb": c.peak_rss_mb() + sum(sampler.children_hwm.values()),
        "children_peak_rss_mb": sorted(sampler.children_hwm.values(), reverse=True),
        "batch_rows": cfg.source.batch_rows, "concurrency": cfg.batching.concurrency,
        "dataset_ids": [d.dataset_id for d in cfg.destinations],
    }))
    return 0


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _spawn(mode: str, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, *extra]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parent.parent))
    if proc.returncode != 0:
        raise SystemExit(f"the {mode} child failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- profile

def profile_transform(rows: int, seed: int, work: Path, tool: str) -> None:
    """Profile our transform (transform_chunk over in-memory chunks, orjson bodies) on `rows` rows."""
    import transform

    cfg, chunks, _ = transform._load(rows, seed, work)
    now = int(time.time())
    transform.run_ours(cfg, [chunks[0]], now=now)  # warm: lazy imports, first-call caches
    if tool == "pyinstrument":
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
        transform.run_ours(cfg, chunks, now=now)
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        return
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    transform.run_ours(cfg, chunks, now=now)
    prof.disable()
    st = pstats.Stats(prof)
    st.sort_stats("cumulative").print_stats(40)
    st.sort_stats("tottime").print_stats(25)


# ---------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", help="where sample, ledger and report go (default: a new temp folder)")
    parser.add_argument("--batch-rows", type=int, default=None, help="override source.batch_rows (default 50000)")
    parser.add_argument("--part-rows", type=int, default=250_000, help="rows per generated parquet file")
    parser.add_argument("--concurrency", type=int, default=None, help="override batching.concurrency")
    parser.add_argument("--workers", type=int, default=None,
                        help="transform processes for pipeline.run (default: its own choice; 1 = none)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--null-sink", action="store_true",
                        help="upload to a stand-in that only counts events instead of the sandbox (isolates our cost)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the sample in --workdir if it has as many rows and is of the same day")
    parser.add_argument("--profile", choices=("cprofile", "pyinstrument"), default=None)
    parser.add_argument("--profile-rows", type=int, default=200_000)
    parser.add_argument("--child", choices=("generate", "run"), help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--date", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "generate":
        return _child_generate(args)
    if args.child == "run":
        return _child_run(args)

    work = c.workdir(args.workdir, "e2e")
    if args.profile:
        profile_transform(args.profile_rows, args.seed, work, args.profile)
        return 0

    print(f"e2e bench: {args.rows:,} offline rows (parquet parts of {args.part_rows:,}), {c.cpu_info()}", flush=True)
    marker = work / "e2e-sample.json"
    kept = json.loads(marker.read_text()) if args.reuse and marker.exists() else {}
    if kept.get("rows") == args.rows and kept.get("date") == c.bench_date().isoformat():
        sample = kept
        print(f"  reusing the sample in {work}", flush=True)
    else:  # a sample of an earlier day would age towards Meta's 7-day window: rows rejected that today's keeps
        with c.timed() as t:
            sample = _spawn("generate", "--rows", str(args.rows), "--workdir", str(work), "--seed", str(args.seed),
                            "--part-rows", str(args.part_rows))
        marker.write_text(json.dumps(sample))
        print(f"  sample: {sample['files']} files, {sample['bad_rows']:,} bad rows, generated in {t.seconds:.1f}s "
              f"(child process) in {work}", flush=True)

    out = work / "e2e-out"
    shutil.rmtree(out, ignore_errors=True)
    # keys only: the sandbox still parses, validates and de-duplicates every event, but 10M event JSONs would
    # not fit its memory
    with c.SandboxProcess(latency_ms=0, null_sink=args.null_sink, keys_only=True) as sb:
        extra = ["--pipeline", sample["pipeline"], "--date", sample["date"], "--endpoint", sb.url, "--out", str(out)]
        if args.batch_rows:
            extra += ["--batch-rows", str(args.batch_rows)]
        if args.concurrency:
            extra += ["--concurrency", str(args.concurrency)]
        if args.workers is not None:
            extra += ["--workers", str(args.workers)]
        endpoint_cpu_before = sb.cpu_s()
        with c.timed() as t_child:
            r = _spawn("run", *extra)
        endpoint_cpu_after = sb.cpu_s()
        arrived = {d: sb.dataset(d) for d in r["dataset_ids"]}
    endpoint_cpu = None if endpoint_cpu_before is None or endpoint_cpu_after is None \
        else endpoint_cpu_after - endpoint_cpu_before

    rows = r["rows_read"]
    wall = r["wall_s"]
    print(f"  endpoint: {'null sink (counts only)' if args.null_sink else 'sandbox (validates every event, keeps keys)'}")
    print(f"  pipeline.run: batch_rows {r['batch_rows']:,}, upload concurrency {r['concurrency']}, exit code "
          f"{r['exit_code']}", flush=True)
    print("  stage seconds (RunStats.stage_seconds; the transform stages overlap with the upload threads):")
    for stage, s in sorted(r["stage_seconds"].items(), key=lambda kv: -kv[1]):
        print(f"    {stage:<28} {s:8.2f}s")
    print(f"  rejected by stage: {r['rejected_by_stage']}")
    for dataset_id, d in r["delivery"].items():
        got = arrived.get(dataset_id, {})
        print(f"  delivered to {dataset_id}: {d.get('events_delivered', 0):,} events in {d.get('requests', 0):,} "
              f"requests, {d.get('retries', 0)} retries, {d.get('events_failed', 0)} failed; the sandbox holds "
              f"{got.get('unique_events', 0):,} unique events")
    samples = r["rss_samples"]
    if samples:
        step = max(1, len(samples) // 12)
        shown = ", ".join(f"{t:.0f}s {m:,.0f}" for t, m in samples[::step])
        print(f"  RSS over time (MiB): {shown}")
    totals = r.get("total_rss_samples") or []
    if totals and r.get("workers_peak_rss_mb"):
        step = max(1, len(totals) // 12)
        shown = ", ".join(f"{t:.0f}s {m:,.0f}" for t, m in totals[::step])
        print(f"  RSS of pipeline + workers over time (MiB): {shown}")
    peak = r["peak_rss_mb"]
    print(f"  wall: pipeline.run {wall:.1f}s (child process incl. interpreter start and imports {t_child.seconds:.1f}s); "
          f"CPU of the pipeline process {r['cpu_s']:.1f}s; {c.load()}")
    print(f"  throughput: {rows / wall:,.0f} rows/s; {r['events_built']:,} events built")
    print(f"  peak RSS of the pipeline process: {c.fmt_mb(peak)} (RSS before run() {c.fmt_mb(r['rss_before_mb'])})")
    workers = bool(r.get("workers_peak_rss_mb"))
    total = peak
    if workers:
        # the target counts the whole job: the pipeline process and its worker processes together
        total = max(peak, r["peak_total_rss_sampled_mb"])
        own = ", ".join(c.fmt_mb(m) for m in r.get("children_peak_rss_mb", []))
        print(f"  worker processes: peak RSS each {own or c.fmt_mb(r['workers_peak_rss_mb'])}, CPU "
              f"{r['workers_cpu_s']:.1f}s (pipeline process + workers: CPU {r['cpu_s'] + r['workers_cpu_s']:.1f}s)")
        print(f"  peak RSS of pipeline + workers: {c.fmt_mb(total)} (their summed RSS, sampled every 0.25 s); "
              f"at most {c.fmt_mb(r['peak_total_rss_bound_mb'])} (each process's own peak, added up)")
    if endpoint_cpu is not None:
        # on the same cores: the endpoint's work (Meta's, in production) competes with the pipeline's here
        ours = r["cpu_s"] + (r.get("workers_cpu_s") or 0.0)
        print(f"  CPU of the endpoint process: {endpoint_cpu:.1f}s; all processes: {ours + endpoint_cpu:.1f}s on "
              f"{os.cpu_count()} CPUs")
    verdict = []
    if args.rows == 1_000_000:
        verdict.append(f"wall {'OK' if wall <= TARGET_WALL_S else 'OVER'} (target <= {TARGET_WALL_S:.0f}s)")
    verdict.append(f"peak RSS {'OK' if total <= TARGET_RSS_MB else 'OVER'} (target <= 1.5 GB = "
                   f"{TARGET_RSS_MB:,.0f} MiB, pipeline + workers)")
    print(f"  targets: {'; '.join(verdict)}")
    who = "pipeline + workers" if workers else "pipeline process, no workers"
    print(f"e2e: {rows:,} rows in {wall:.1f}s ({rows / wall:,.0f} rows/s), peak RSS {c.fmt_mb(total)} ({who})",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
