"""A ``fluxion-etl`` process imports only the command modules of the command it runs.

A ``worker`` process starts for every run the subprocess launcher hands off, several at once
under a burst of API calls, on the cores that answer those calls; each module it imports costs
CPU there. The other commands' modules (the KLK simulator above all) stay out of it, and every
command still gets from its modules exactly what registering all of them gives it. What the
imports made is frozen, out of the garbage collector's walks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ops_support import TODAY, local, run_row, simulated_chain
from sqlalchemy import Engine

from fluxion_etl.cli.main import COMMAND_MODULES, MODULES_OF_COMMAND
from fluxion_etl.domain.requests import RunRequest
from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.engine.submit import submit

NOT_FOR_A_WORKER = (
    "fluxion_etl.sim",
    "fluxion_etl.ops",
    *(f"fluxion_etl.cli.{name}" for name in COMMAND_MODULES if name != "service"),
)
"""What a worker imported before it imported only its own command module (the simulator alone
cost it about 0.1 s of CPU)."""

# Runs ``fluxion-etl ARGS`` as ``python -m fluxion_etl`` does; on exit, writes to the file named
# by the first argument the modules the process imported and the state of its garbage collector.
RECORDING_ENTRY = """
import atexit, gc, json, runpy, sys
out = sys.argv.pop(1)
def record():
    state = {"modules": sorted(sys.modules), "frozen": gc.get_freeze_count(),
             "collecting": gc.isenabled()}
    open(out, "w").write(json.dumps(state))
atexit.register(record)
sys.argv[0] = "fluxion-etl"
runpy.run_module("fluxion_etl", run_name="__main__")
"""

# Prints, as JSON, the command tree (names and parameters) of each command named in the
# arguments, with ``app`` given only the modules ``main`` gives that command; or, with no
# argument, of every command with every module registered.
COMMAND_TREE = """
import json, sys
import typer.main
from fluxion_etl.cli import main

def tree(command):
    params = sorted(p.name or "" for p in command.params)
    subs = getattr(command, "commands", {})
    return {"params": params, "commands": {n: tree(c) for n, c in sorted(subs.items())}}

main._register(main.modules_for(sys.argv[1:]))
commands = typer.main.get_command(main.app).commands
names = sys.argv[1:] or sorted(commands)
print(json.dumps({name: tree(commands[name]) for name in names if name in commands}))
"""


def test_a_worker_process_executes_its_run_without_the_other_commands_modules(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with simulated_chain(engine, start=local(TODAY, 10)) as chain:
        env = {**os.environ, **chain.worker_env(tmp_path)}
        request = RunRequest(job=Job.INVENTORY, trigger=Trigger.API, requested_by="test")
        run_id = submit(
            engine, request, config=chain.config, settings=chain.settings, clock=chain.clock
        ).run_id
        worker, state = _recorded(tmp_path, env, "worker", "--run-id", str(run_id))

    assert (worker.returncode, worker.stdout) == (0, f"run {run_id}: succeeded\n"), worker.stderr
    assert run_row(engine, run_id).status == RunStatus.SUCCEEDED
    modules = state["modules"]
    assert "fluxion_etl.engine.runner" in modules  # the record is of the worker's process
    assert [m for m in modules if m.startswith(NOT_FOR_A_WORKER)] == []


def test_a_process_freezes_what_its_imports_made_and_goes_on_collecting(tmp_path: Path) -> None:
    version, state = _recorded(tmp_path, dict(os.environ), "version")

    assert version.returncode == 0, version.stderr
    assert state["frozen"] > 10_000  # the modules' objects: out of every collection
    assert state["collecting"] is True  # what the command makes is collected as usual


def test_every_command_gets_from_its_own_modules_what_all_modules_give_it() -> None:
    every = _command_trees()
    # One process per command: a module that adds commands to another's group (``ops`` adds
    # ``runs logs``) would otherwise lend them to commands whose entry does not name it.
    with ThreadPoolExecutor(max_workers=4) as pool:
        alone = dict(
            zip(every, pool.map(lambda name: _command_trees(name).get(name), every), strict=True)
        )

    assert sorted(MODULES_OF_COMMAND) == sorted(every)
    assert alone == every


def _recorded(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``fluxion-etl ARGS`` in a process of its own, and what ``RECORDING_ENTRY`` recorded."""
    record = tmp_path / "process.json"
    done = subprocess.run(
        [sys.executable, "-c", RECORDING_ENTRY, str(record), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, dict(json.loads(record.read_text("utf-8")))


def _command_trees(*names: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", COMMAND_TREE, *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return dict(json.loads(out))
