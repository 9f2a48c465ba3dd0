"""Running the simulator: in a background thread (tests, demo, benchmarks) or in its own process.

with running_simulator(world, faults) as url:      # http://127.0.0.1:<free port>
    ...
with simulator_process(locations=200, skus=15000) as sim:
    sim.url, sim.process                              # a real `fluxion-etl klk-sim` process
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from fluxion_etl.sim.app import create_app
from fluxion_etl.sim.faults import FaultPlan
from fluxion_etl.sim.world import SimWorld

LISTENING = "klk-sim listening on "
"""The line ``klk-sim`` prints on stdout once bound, so a parent learns a port-0 address."""


def bind(host: str, port: int) -> socket.socket:
    """A bound socket; port 0 picks a free one (read it back with ``getsockname``).

    Named IPPROTO_TCP so that asyncio sets TCP_NODELAY on every accepted connection (with proto
    0 it does not, and an answer written as head then body waits for the client's delayed ACK,
    40 ms on Linux, on every keep-alive call), as ``fluxion-etl serve`` does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"


def uvicorn_server(app: Starlette) -> uvicorn.Server:
    """Quiet, and quick to stop: a hanging request may delay shutdown by at most a second."""
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    return uvicorn.Server(config)


def serve(
    world: SimWorld,
    faults: FaultPlan | None,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None],
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; ``announce`` gets the LISTENING line."""
    sock = bind(host, port)
    announce(f"{LISTENING}{url_of(sock)}")
    uvicorn_server(create_app(world, faults)).run(sockets=[sock])


@contextlib.contextmanager
def running_simulator(
    world: SimWorld, faults: FaultPlan | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve ``world`` on a background thread and yield its URL; stops (hangs too) on exit."""
    app = create_app(world, faults)
    server = uvicorn_server(app)
    sock = bind(host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        yield url_of(sock)
    finally:
        app.state.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_started(server: uvicorn.Server, thread: threading.Thread, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the KLK simulator did not start (see the log above)")
        time.sleep(0.01)


@dataclass(frozen=True, slots=True)
class SimulatorProcess:
    url: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def simulator_process(
    *,
    locations: int = 20,
    skus: int = 4000,
    lines_per_day: int = 2000,
    seed: int = 1,
    faults: str | None = None,
    clock: str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = 60,
) -> Iterator[SimulatorProcess]:
    """Run ``fluxion-etl klk-sim`` on a free loopback port in a child process; stop it on exit.

    ``clock`` is a clock spec shared with the caller (``manual:ISO`` or
    ``scaled:START@EPOCHxSPEED``, see domain/clock.py) so both processes see the same time.
    """
    args = [
        sys.executable, "-m", "fluxion_etl.sim", "--host", "127.0.0.1", "--port", "0",
        "--locations", str(locations), "--skus", str(skus),
        "--lines-per-day", str(lines_per_day), "--seed", str(seed),
        *(["--faults", faults] if faults else []), *(["--clock", clock] if clock else []),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own CLI
    try:
        yield SimulatorProcess(_read_url(process, startup_timeout), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def _read_url(process: subprocess.Popen[str], timeout: float) -> str:
    """Wait for the LISTENING line (read on a helper thread so the timeout holds)."""
    found: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(LISTENING):
                found.append(line.removeprefix(LISTENING).strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        raise RuntimeError(f"klk-sim did not report its address within {timeout:.0f} s")
    return found[0]
