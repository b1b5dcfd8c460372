"""Smoke test of the benchmarks: each runs on a tiny input in a subprocess and ends with its result line.

Numbers are not checked (they depend on the machine); the benches' own plumbing is: the sample, our
transform, the SDK side, the sandbox child, the count check and the ratio / summary line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    pytest.param(["transform.py", "--rows", "2000"],
                 r"^transform speed-up vs facebook-business SDK: \d+\.\dx$", id="transform"),
    pytest.param(["transform.py", "--rows", "2000", "--workers", "2", "--no-compare"],
                 r"^transform speed-up vs facebook-business SDK: \d+\.\dx$", id="transform-2-workers"),
    pytest.param(["upload.py", "--events", "2000", "--latency-ms", "5", "--sdk-batch-sizes", "50,1000"],
                 r"^upload speed-up vs facebook-business BatchProcessor: \d+\.\dx$", id="upload"),
    pytest.param(["e2e.py", "--rows", "2000", "--part-rows", "1000"],
                 r"^e2e: 2,000 rows in \d+\.\ds \([\d,]+ rows/s\), peak RSS [\d,]+ MiB \(pipeline[^)]*\)$", id="e2e"),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("argv", "last_line"), CASES)
def test_bench_prints_its_result_line(argv: list[str], last_line: str, tmp_path: Path) -> None:
    script, *args = argv
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert re.match(last_line, lines[-1]), proc.stdout[-2000:]
    assert "MISSING" not in proc.stdout  # upload: the sandbox counted every event for every uploader
