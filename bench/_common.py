"""Helpers shared by the benchmarks: timing, peak memory, sample data, the one-line results.

Memory is the resident-set high-water mark (VmHWM in /proc/self/status, `ru_maxrss` elsewhere). On Linux the
mark can be reset (`reset_peak_rss`), so one process can measure phases separately; where it cannot, the peak
covers the whole process and the benches say so.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NullTransport", "SandboxProcess", "Timer", "bench_date", "fmt_mb", "peak_rss_mb", "print_ratio", "reset_peak_rss", "rss_mb", "timed"]

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `python bench/x.py` from a checkout without an installed package
    sys.path.insert(0, str(_ROOT))

_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def peak_rss_mb() -> float:
    """Resident-set high-water mark of this process, in MiB (since start or the last `reset_peak_rss`)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        if sys.platform == "darwin":
            kb //= 1024
    return kb / 1024


def rss_mb() -> float:
    """Current resident set, in MiB."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else peak_rss_mb()


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def fmt_mb(mb: float) -> str:
    return f"{mb:,.0f} MiB"


@dataclass
class Timer:
    seconds: float = 0.0  # wall clock
    cpu: float = 0.0  # this process's CPU time (all threads): what the work costs when the machine is shared
    walls: list[float] = field(default_factory=list)  # every run's wall clock, when several were timed


@contextmanager
def timed() -> Iterator[Timer]:
    """`with timed() as t: ...` then `t.seconds` (wall clock) and `t.cpu` (process CPU seconds)."""
    t = Timer()
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start
        t.cpu = time.process_time() - cpu


def process_cpu(pid: int) -> tuple[float, float, int] | None:
    """(user CPU s, system CPU s, minor page faults) of a process so far, from /proc (None elsewhere): the cost of
    worker processes, which `timed` (this process only) does not see."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])


def bench_date() -> dt.date:
    """The sample's latest finished day: every sample event is then inside Meta's 7-day window and none is in
    the future, at any hour."""
    from capi_pipeline.sample import latest_complete_day

    return latest_complete_day()


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "inf/s"


def print_ratio(label: str, ours: float, theirs: float) -> None:
    """The result line the benches end with, e.g. `transform speed-up vs facebook-business SDK: 23.4x`."""
    ratio = ours / theirs if theirs > 0 else float("inf")
    print(f"{label}: {ratio:.1f}x", flush=True)


def workdir(path: str | None, name: str) -> Path:
    """A work folder: the one given, else a fresh one under $TMPDIR."""
    import tempfile

    if path:
        p = Path(path).expanduser().resolve()
        p.mkdir(parents=True, exist_ok=True)
        return p
    return Path(tempfile.mkdtemp(prefix=f"capi-bench-{name}-"))


def cpu_info() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {load()}"


def load() -> str:
    """The 1-minute load average: above the CPU count, other processes are eating into the timings."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "load n/a"
    busy = " (machine busy: compare CPU seconds, not wall)" if one > (os.cpu_count() or 1) * 0.75 else ""
    return f"load {one:.1f}{busy}"


class NullTransport:
    """A `requests` transport that sends nothing: mounted on a session, it takes each prepared request (headers and
    body already built, as they would go on the wire), counts its body's bytes and answers 200 with
    `{"events_received": N, "messages": [], "fbtrace_id": ...}`, N set by `expect(n)` before each request.

    Lets a bench time an HTTP client up to the socket without a server's CPU in the numbers.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.body_bytes = 0
        self._expected = 0

    def expect(self, events: int) -> None:
        self._expected = events

    def send(self, request: Any, **_: Any) -> Any:
        import requests

        body = request.body or b""
        self.requests += 1
        self.body_bytes += len(body if isinstance(body, bytes) else body.encode())
        response = requests.Response()
        response.status_code = 200
        response._content = (b'{"events_received":%d,"messages":[],"fbtrace_id":"bench"}' % self._expected)
        response.headers["Content-Type"] = "application/json"
        response.request, response.url, response.encoding = request, request.url, "utf-8"
        return response

    def close(self) -> None:
        pass

    def mount_on(self, session: Any) -> Any:
        for prefix in ("https://", "http://"):
            session.mount(prefix, self)
        return session


class SandboxProcess:
    """The sandbox in a child process, so its request handling does not share this process's GIL.

    `with SandboxProcess(latency_ms=50) as sb: sb.url, sb.stats()` (stats as `Sandbox.stats()` returns them).
    """

    def __init__(self, latency_ms: float = 0, *, null_sink: bool = False, keys_only: bool = False,
                 start_timeout_s: float = 120) -> None:
        self.latency_ms = latency_ms
        self.null_sink = null_sink
        self.keys_only = keys_only
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self._proc: Any = None

    def __enter__(self) -> SandboxProcess:
        import subprocess
        import threading

        cmd = [sys.executable, "-m", "capi_pipeline", "sandbox", "--port", "0", "--latency-ms", str(self.latency_ms)]
        if self.keys_only:
            cmd.append("--keys-only")
        if self.null_sink:
            cmd = [sys.executable, str(Path(__file__).resolve()), "null-sink"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                      cwd=str(_ROOT))
        found: list[str] = []

        def read() -> None:
            for line in self._proc.stdout:
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    found.append(m.group(1))
                    break
            for _ in self._proc.stdout:  # keep draining so the child never blocks on a full pipe
                pass

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.start_timeout_s
        while not found:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.05)
        self.url = found[0]
        return self

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the endpoint's process used so far (None off Linux)."""
        used = process_cpu(self._proc.pid) if self._proc is not None else None
        return used[0] + used[1] if used else None

    def stats(self) -> dict[str, Any]:
        import requests

        response = requests.get(f"{self.url}/_sandbox/stats", timeout=60)
        response.raise_for_status()
        return response.json()

    def dataset(self, dataset_id: str) -> dict[str, int]:
        return self.stats()["datasets"].get(dataset_id, {})

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except Exception:
                self._proc.kill()
                self._proc.wait()


def serve_null_sink() -> None:
    """A Graph stand-in that only counts: answers every `/events` POST with events_received = len(data).

    For measuring the pipeline without the sandbox's per-event validation and storage; stats as the sandbox's.
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import orjson

    counts: dict[str, dict[str, int]] = {}
    lock = threading.Lock()
    events_path = re.compile(r"/v\d+\.\d+/(\d+)/events/?")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, payload: Any) -> None:
            body = orjson.dumps(payload)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            # headers and body in one write, as the sandbox does: two small writes meet Nagle and delayed ACKs
            # (~40 ms per response, which made this stand-in the slowest part of the run)
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()

        def do_GET(self) -> None:
            with lock:
                snapshot = {k: dict(v) for k, v in counts.items()}
            self._answer(200, {"datasets": snapshot})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            m = events_path.fullmatch(self.path.split("?", 1)[0])
            try:
                data = orjson.loads(raw).get("data") if m else None
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, list):
                self._answer(400, {"error": {"message": "bad request", "code": 100}})
                return
            with lock:
                entry = counts.setdefault(m.group(1), {"requests": 0, "events_received": 0, "unique_events": 0})
                entry["requests"] += 1
                entry["events_received"] += len(data)
                entry["unique_events"] += len(data)  # not de-duplicated: the uploader's own counts are checked
            self._answer(200, {"events_received": len(data), "messages": [], "fbtrace_id": "null-sink"})

    import gc

    from capi_pipeline.sandbox.server import QUIET_GC_THRESHOLDS

    gc.set_threshold(*QUIET_GC_THRESHOLDS)  # as the sandbox: decoded bodies are freed by reference counting
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"null sink listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__" and sys.argv[1:] == ["null-sink"]:
    serve_null_sink()
