"""The soak's processes: the KLK simulator, two ``serve`` processes and their workers.

Every process the soak starts carries ``FLUXION_SOAK_MARKER`` in its environment, and the
subprocess launcher passes its environment on to the workers, so the soak finds *its* workers
(``fluxion_etl worker --run-id N``) by reading ``/proc`` and never touches anyone else's, even
when a killed service left its workers orphaned. Processes are signalled by pid only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from fluxion_etl.soak.cluster import free_port

MARKER_ENV = "FLUXION_SOAK_MARKER"


class ProcessError(RuntimeError):
    """A soak process did not start or answer in time."""


@dataclass(frozen=True, slots=True)
class Worker:
    pid: int
    run_id: int


@dataclass
class ServeProcess:
    """One ``fluxion-etl serve`` on a fixed port (a restart listens on the same address)."""

    index: int
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self, timeout: float) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        self._log = self.log_path.open("ab")
        command = [
            sys.executable, "-m", "fluxion_etl", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--grace", "60",
        ]  # fmt: skip
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            command, env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        self.starts += 1

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        _wait_http(f"{self.url}/healthz", self.process, timeout)

    def kill(self) -> int | None:
        """``kill -9`` (no clean-up of any kind); returns the pid killed."""
        if self.process is None or self.process.poll() is not None:
            return None
        pid = self.process.pid
        os.kill(pid, signal.SIGKILL)
        self.process.wait()
        return pid

    def stop(self, timeout: float) -> int | None:
        """SIGTERM: stop taking work, let running locations finish (``--grace``)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Simulator:
    url: str
    process: subprocess.Popen[str]

    def wait_ready(self, timeout: float) -> None:
        _wait_http(f"{self.url}/_sim/info", self.process, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch_simulator(
    *,
    locations: int,
    skus: int,
    lines_per_day: int,
    seed: int,
    clock: str,
    env: dict[str, str],
    log_path: Path,
) -> Simulator:
    """Start ``klk-sim`` on a port chosen here, so the services can be started at once too."""
    port = free_port()
    command = [
        sys.executable, "-m", "fluxion_etl.sim", "--host", "127.0.0.1", "--port", str(port),
        "--locations", str(locations), "--skus", str(skus), "--lines-per-day", str(lines_per_day),
        "--seed", str(seed), "--clock", clock,
    ]  # fmt: skip
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own CLI
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, text=True
    )
    return Simulator(f"http://127.0.0.1:{port}", process)


def _wait_http(
    url: str, process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessError(f"{url}: the process exited with code {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code < 500:
                return
        time.sleep(0.3)
    raise ProcessError(f"{url} did not answer within {timeout:.0f} s")


def serve_processes(count: int, env: dict[str, str], workdir: Path) -> list[ServeProcess]:
    return [
        ServeProcess(index=i, port=free_port(), env=env, log_path=workdir / f"serve-{i}.log")
        for i in range(count)
    ]


# --- finding this soak's processes --------------------------------------------------------------


def marked_pids(marker: str) -> list[int]:
    """Every live process whose environment carries this soak's marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def workers(marker: str) -> list[Worker]:
    """This soak's live worker processes and the run each executes."""
    out = []
    for pid in marked_pids(marker):
        args = _cmdline(pid)
        if "worker" in args and "--run-id" in args and not _is_zombie(pid):
            index = args.index("--run-id")
            with contextlib.suppress(IndexError, ValueError):
                out.append(Worker(pid, int(args[index + 1])))
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_marked(marker: str) -> list[int]:
    """Last resort at the end: SIGKILL whatever this soak started that is still alive."""
    killed = [pid for pid in marked_pids(marker) if pid != os.getpid() and kill_pid(pid)]
    return killed
