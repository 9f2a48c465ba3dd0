"""A database that cannot be used as configured is one line on stderr and exit 2, never a
traceback; the password stays hidden. ``db upgrade`` refuses a revision it does not ship or one
behind the schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def fluxion(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLUXION_DATABASE_URL": database_url}
    env.pop("FLUXION_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "fluxion_etl", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://etl:s3cret@127.0.0.1:1/chain", "port 1 failed"),
        ("postgresql+psycopg://etl:s3cret@127.0.0.1/chain?sslmode=bogus", "sslmode"),
        ("sqlite:///{tmp}/no/such/dir/fluxion.db", "unable to open database file"),
    ],
)
@pytest.mark.parametrize("command", [("runs", "list"), ("db", "current"), ("db", "upgrade")])
def test_an_unusable_database_is_one_line_and_exit_2(
    tmp_path: Path, url: str, reason: str, command: tuple[str, ...]
) -> None:
    if command == ("runs", "list") and url.startswith("sqlite"):
        pytest.skip("a missing SQLite file is refused before connecting: the test below")
    done = fluxion(*command, database_url=url.format(tmp=tmp_path), cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: cannot use the database ")
    assert reason in lines[0]
    assert "s3cret" not in done.stderr
    assert "FLUXION_DATABASE_URL" in lines[0]


def test_db_upgrade_refuses_an_unknown_revision_and_a_step_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fluxion.db"

    unknown = fluxion("db", "upgrade", "9999", database_url=url, cwd=tmp_path)
    to_head = fluxion("db", "upgrade", database_url=url, cwd=tmp_path)
    back = fluxion("db", "upgrade", "0001", database_url=url, cwd=tmp_path)

    assert (unknown.returncode, to_head.returncode, back.returncode) == (2, 0, 2)
    assert "unknown revision '9999'; give one of 0001" in unknown.stderr
    assert "past 0001: upgrade only moves forward" in back.stderr
    assert "Traceback" not in unknown.stderr + back.stderr


def test_a_mistyped_sqlite_path_is_refused_without_creating_a_file(tmp_path: Path) -> None:
    typo = tmp_path / "fluxoin.db"

    done = fluxion("runs", "list", database_url=f"sqlite:///{typo}", cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert f"there is no database at {typo}" in done.stderr
    assert not typo.exists()
