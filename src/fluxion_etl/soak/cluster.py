"""The soak's own PostgreSQL cluster: created with ``initdb`` on a free port, restarted at will.

Restarting the server is one of the injected faults, so the soak never touches a server anyone
else uses. The cluster lives under a temporary directory, listens on 127.0.0.1 only with trust
authentication, and is stopped (and its directory removed) however the soak ends.

PostgreSQL refuses to run as root: as root, every server command runs as the ``postgres`` user
(``runuser``), which then owns the data directory.

The "failed commit" fault is installed here too (``install_commit_fault``): a deferred constraint
trigger on ``sync_state`` that raises at COMMIT while a budget (a sequence, so a rolled-back
transaction still spends it) lasts. Only the soak's database ever gets it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text

DATABASE = "soak"
COMMIT_FAULT_MESSAGE = "soak: injected commit failure"  # raised by the trigger below
_SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")


class ClusterError(RuntimeError):
    """The soak's PostgreSQL cluster could not be created, started or stopped."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed version first)."""
    env = os.environ.get("FLUXION_SOAK_PG_BINDIR")
    if env:
        return Path(env)
    candidates = sorted(
        (p for pattern in _SEARCH for p in Path("/").glob(pattern.lstrip("/"))),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit()) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """A throwaway cluster: ``create()``, then ``start``/``restart``/``stop``; ``destroy()``."""

    bindir: Path
    root: Path
    port: int

    @classmethod
    def create(cls, *, bindir: Path | None = None, parent: Path | None = None) -> PgCluster:
        found = bindir or find_bindir()
        if found is None:
            raise ClusterError("initdb not found: install PostgreSQL server binaries")
        root = Path(tempfile.mkdtemp(prefix="fluxion-soak-pg-", dir=parent))
        cluster = cls(bindir=found, root=root, port=free_port())
        if os.geteuid() == 0:
            shutil.chown(root, user="postgres")
        cluster._run(
            "initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        return cluster

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, in-flight transactions roll back."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast")

    def destroy(self) -> None:
        with contextlib.suppress(ClusterError, OSError, subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def dump(self, target: Path, database: str = DATABASE) -> bool:
        """``pg_dump -Fc`` of the soak database (restore it with ``pg_restore`` to look closer)."""
        result = subprocess.run(  # noqa: S603 - a fixed program, our own arguments
            [str(self.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-Fc", "-f", str(target), database],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def admin_engine(self, database: str = "postgres") -> Engine:
        return create_engine(
            self.url(database),
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "fluxion-soak"},
        )

    def create_database(self, name: str = DATABASE) -> None:
        engine = self.admin_engine()
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "120",
            "-o", options, *extra,
        )  # fmt: skip

    def _run(self, program: str, *args: str) -> None:
        command: Sequence[str] = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(  # noqa: S603 - fixed programs, our own arguments
            command, capture_output=True, text=True, timeout=180, check=False, cwd=self.root
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ClusterError(f"{program} {args[0] if args else ''} failed: {' | '.join(detail)}")


@contextlib.contextmanager
def own_cluster(parent: Path | None = None) -> Iterator[PgCluster]:
    """A started cluster with the soak database; stopped and removed on exit, whatever happens."""
    cluster = PgCluster.create(parent=parent)
    try:
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        cluster.destroy()


# --- database-side faults ----------------------------------------------------------------------

_COMMIT_FAULT_SQL = (
    "CREATE SEQUENCE IF NOT EXISTS soak_commit_budget MINVALUE 0 START 0",
    """
    CREATE OR REPLACE FUNCTION soak_fail_commit() RETURNS trigger AS $$
    DECLARE left_over bigint;
    BEGIN
        IF TG_OP = 'UPDATE' AND NEW.last_success_at IS NOT DISTINCT FROM OLD.last_success_at THEN
            RETURN NULL;
        END IF;
        IF NEW.last_success_at IS NULL THEN
            RETURN NULL;
        END IF;
        SELECT last_value INTO left_over FROM soak_commit_budget;
        IF left_over > 0 THEN
            PERFORM setval('soak_commit_budget', left_over - 1, true);
            RAISE EXCEPTION 'soak: injected commit failure';
        END IF;
        RETURN NULL;
    END $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS soak_fail_commit ON sync_state",
    """
    CREATE CONSTRAINT TRIGGER soak_fail_commit AFTER INSERT OR UPDATE ON sync_state
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION soak_fail_commit()
    """,
)


def install_commit_fault(engine: Engine) -> None:
    """The trigger that makes the next ``n`` successful loads fail at COMMIT once armed."""
    with engine.begin() as conn:
        for statement in _COMMIT_FAULT_SQL:
            conn.execute(text(statement))


def arm_commit_failures(engine: Engine, count: int) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT setval('soak_commit_budget', :n, true)"), {"n": count})


def commit_budget_left(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT last_value FROM soak_commit_budget")).scalar_one())


# The statements of a location's load: staging COPY, the merges, the history, void removal.
LOAD_QUERIES = ("%fluxion_stage%", "%sales_lines%", "%inventory_current%", "%inventory_history%")


def terminate_loading_backend(engine: Engine) -> int | None:
    """Kill the server process of one ETL connection in the middle of a load; its pid or None.

    A transaction that has written (it holds a transaction id) and whose current or last
    statement is one of a load's is cut: the client sees its connection die before COMMIT, and
    the transaction rolls back.
    """
    query = text(
        "SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = 'fluxion-etl'"
        " AND backend_xid IS NOT NULL AND query ILIKE ANY (:patterns) LIMIT 1"
    )
    with engine.connect() as conn:
        found = conn.execute(query, {"db": DATABASE, "patterns": list(LOAD_QUERIES)})
        pid = found.scalar_one_or_none()
        if pid is None:
            return None
        killed = conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    return int(pid) if killed else None


def wait_ready(engine: Engine, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
