"""``worker`` (execute one queued run), ``serve`` (API + launcher + scheduler) and ``demo``."""

from __future__ import annotations

import gc
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fluxion_etl.cli.common import clock_from_env, open_runtime, settings_and_config
from fluxion_etl.domain.states import RunStatus
from fluxion_etl.engine.runner import try_execute_run

if TYPE_CHECKING:
    import uvicorn

    from fluxion_etl.service import Service


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("serve")(serve)
    app.command("demo")(demo)


def worker(
    run_id: Annotated[int, typer.Option("--run-id", help="The queued run to execute.")],
) -> None:
    """Execute one queued run and exit (0 succeeded, 1 otherwise, 3 when the run was not queued:
    another process executes it or it has ended). Used by the subprocess and ECS launchers;
    SIGTERM lets running locations finish and leaves the rest to the next run."""
    from fluxion_etl.launchers import EXIT_NOT_CLAIMED

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with open_runtime() as rt:
        rt.stop_requested = stopping.is_set
        status = try_execute_run(rt, run_id)
    if status is None:
        typer.echo(f"run {run_id}: not claimed (another process executes it, or it has ended)")
        raise typer.Exit(EXIT_NOT_CLAIMED)
    typer.echo(f"run {run_id}: {status.value}")
    raise typer.Exit(0 if status is RunStatus.SUCCEEDED else 1)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    migrate: Annotated[
        bool, typer.Option(help="Apply database migrations first (locked; safe with several).")
    ] = False,
    grace: Annotated[float, typer.Option(help="Seconds running locations get on SIGTERM.")] = 30.0,
) -> None:
    """Serve the API with the launcher and the embedded scheduler in one process.

    SIGTERM stops accepting work, lets running locations finish within --grace and leaves the
    rest to the next run. Several processes may share one PostgreSQL."""
    from fluxion_etl.logs import configure_logging
    from fluxion_etl.service import Service
    from fluxion_etl.store.db import create_db_engine, upgrade

    settings, config = settings_and_config()
    configure_logging(settings.log_format)
    if migrate:
        engine = create_db_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
    service = Service.open(settings, config, clock_from_env())
    try:
        http = bind_http(service, host, port)
        start_frozen(service)
        http.run()
    finally:
        service.stop(grace)


def demo(
    port: Annotated[int, typer.Option(min=0, max=65535, help="API port.")] = 8000,
    skus: Annotated[int, typer.Option(min=1, max=50_000, help="Articles per store.")] = 4000,
    lines_per_day: Annotated[int, typer.Option(min=0, max=50_000)] = 2000,
) -> None:
    """Run everything on this machine with nothing configured: KLK simulator, SQLite in the
    working directory, API on 127.0.0.1, and a first sync at once."""
    from fluxion_etl.demo import DemoOptions, run_demo
    from fluxion_etl.logs import configure_logging

    configure_logging("console", quiet=True)
    options = DemoOptions(port=port, directory=Path.cwd(), skus=skus, lines_per_day=lines_per_day)
    run_demo(options, serve=run_http)


def run_http(
    service: Service, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (``demo``: its service started, only its imports frozen)."""
    bind_http(service, host, port).run(on_ready)


@dataclass(frozen=True, slots=True)
class BoundHttp:
    """A uvicorn server with its modules loaded and its socket bound, not yet serving."""

    server: uvicorn.Server
    sock: socket.socket
    url: str

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn handles both: it stops accepting, then returns)."""
        if on_ready is not None:
            threading.Thread(
                target=_when_started, args=(self.server, self.url, on_ready), daemon=True
            ).start()
        self.server.run(sockets=[self.sock])


def bind_http(service: Service, host: str, port: int) -> BoundHttp:
    """The service's app under uvicorn, listening on ``host``:``port`` (announced on stderr)."""
    import uvicorn

    from fluxion_etl.api.writes import coalesced

    config = uvicorn.Config(
        service.app(), host=host, port=port, log_level="warning", access_log=False
    )
    sock = listening_socket(host)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    url = f"http://{host}:{sock.getsockname()[1]}"
    typer.echo(f"fluxion-etl serving on {url}", err=True)
    config.load()  # uvicorn's protocol and loop modules, imported before the freeze
    config.http_protocol_class = coalesced(config.http_protocol_class)
    return BoundHttp(uvicorn.Server(config), sock, url)


def start_frozen(service: Service) -> None:
    """Freeze the startup heap (``freeze_startup_heap``), then start the service's threads: what
    they make (a run's payloads, the scheduler's and maintenance's work) stays collectable."""
    freeze_startup_heap()
    service.start()


def freeze_startup_heap() -> None:
    """Put what the process made before serving (modules, the app, the engine: it lives as long
    as the process) out of the garbage collector's reach.

    A full collection walks every object the collector tracks, and the event loop stands still
    while it does: timed inside a serve process, the first full collection under a burst of
    triggers took about 90 ms, nearly all of it walking the objects built at startup, and it
    doubled the p99 latency of that burst. Frozen, they are never walked again; later full
    collections walk only what was made since (7 ms in the same measurement). The cost: a
    cycle of frozen objects dropped later is never freed (startup makes few such cycles). So
    it is called before any thread of ours starts (``start_frozen``): a thread running
    meanwhile would have what it held at that moment frozen with the rest (``demo`` starts its
    threads first and does not freeze).
    """
    gc.collect()
    gc.freeze()


def listening_socket(host: str) -> socket.socket:
    """A TCP socket for uvicorn. Named IPPROTO_TCP so that asyncio sets TCP_NODELAY on every
    accepted connection: with proto 0 it does not, and an answer written as head then body waits
    for the client's delayed ACK (40 ms on Linux) on every keep-alive request."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _when_started(server: object, url: str, on_ready: Callable[[str], None]) -> None:
    while not getattr(server, "started", False):
        time.sleep(0.05)
    on_ready(url)
