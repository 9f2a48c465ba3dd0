"""What the benchmarks measure: a worker's peak memory is its own, not its parent's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")
def test_a_worker_reports_its_own_peak_memory_not_its_parents() -> None:
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # resident, not just mapped
    code = "from bench.common import peak_rss_mb; print(peak_rss_mb())"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    del ballast
    assert float(done.stdout) < 200  # the child imports little; the parent held 300 MB more
