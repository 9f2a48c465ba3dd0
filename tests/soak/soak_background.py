"""The short soak, started in the background when the test session starts.

The soak spends most of its minutes waiting on its services and its simulated clock; started with
the session it runs beside the rest of the suite (on the other core), and
``test_soak_short.py`` only collects its verdict. ``tests/conftest.py`` starts it when that test
was collected and stops it (SIGINT: the soak stops its services and its cluster) if the session
ends first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SEED = 7
TIMEOUT = 1800.0  # real seconds, only so that a wedged soak ends; four minutes on a calm machine
COMMAND = [sys.executable, "-m", "fluxion_etl.soak", "--mode", "short", "--seed", str(SEED)]


@dataclass(frozen=True, slots=True)
class SoakResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class _Background:
    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.out: Path | None = None
        self.err: Path | None = None

    def start(self) -> None:
        if self.process is not None:
            return
        folder = Path(tempfile.mkdtemp(prefix="fluxion-soak-test-"))
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        self.started = time.monotonic()
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                COMMAND, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=os.environ.copy()
            )

    def wait(self) -> SoakResult:
        self.start()
        assert self.process is not None
        assert self.out is not None
        assert self.err is not None
        left = max(1.0, TIMEOUT - (time.monotonic() - self.started))
        try:
            self.process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            self.stop()
        code = self.process.returncode
        return SoakResult(
            returncode=code if code is not None else -1,
            stdout=self.out.read_text(errors="replace"),
            stderr=self.err.read_text(errors="replace"),
            seconds=time.monotonic() - self.started,
        )

    def stop(self) -> None:
        """Interrupt a soak still running (it cleans up on SIGINT); kill it if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


SOAK = _Background()
