"""Operator commands beside the API: ``token`` (create, list, revoke), ``runs logs``,
``runs cancel`` and ``freshness``. Changes are recorded in the audit trail as ``cli:<user>``."""

from __future__ import annotations

import getpass
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import Engine

from fluxion_etl.cli.common import clock_from_env, print_json, print_table, settings_and_config
from fluxion_etl.cli.run import runs_app
from fluxion_etl.domain.clock import Clock
from fluxion_etl.engine import freshness
from fluxion_etl.errors import BadInputError
from fluxion_etl.store import audit, ledger, sync_state, tokens
from fluxion_etl.store.db import check_schema, create_db_engine
from fluxion_etl.store.runlogs import LogRow

token_app = typer.Typer(help="API bearer tokens (scopes: read, trigger, admin).")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command("freshness")(freshness_command)
    runs_app.command("logs")(runs_logs)
    runs_app.command("payloads")(runs_payloads)
    runs_app.command("cancel")(runs_cancel)


@contextmanager
def _database() -> Iterator[tuple[Engine, Clock]]:
    """The database (schema checked) and the clock for one command; closed afterwards."""
    settings, _ = settings_and_config()
    engine = create_db_engine(settings.database_url, pool_size=1)
    try:
        check_schema(engine)
        yield engine, clock_from_env()
    finally:
        engine.dispose()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


# --- tokens ----------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    scope: Annotated[str, typer.Option(help="read, trigger (also starts runs) or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses it, e.g. eventbridge or ana.perez.")],
) -> None:
    """Create a token and print it once; only its hash is stored."""
    wanted = tokens.parse_scope(scope)
    with _database() as (engine, clock), engine.begin() as conn:
        created = tokens.create_token(conn, name=name, scope=wanted, now=clock.now())
        audit.record(
            conn,
            actor=_actor(),
            action="token.create",
            target=f"token:{name}",
            now=clock.now(),
            detail={"scope": wanted.value},
        )
    typer.echo(created.secret)
    typer.echo(
        f"token {name!r} ({wanted.value}) created: copy it now, it is not shown again. "
        "Send it as 'Authorization: Bearer <token>'.",
        err=True,
    )


@token_app.command("list")
def token_list(as_json: AsJson = False) -> None:
    """Every token: name, scope, when created, last used and revoked (never the token itself)."""
    with _database() as (engine, _), engine.connect() as conn:
        rows = tokens.list_tokens(conn)
    if as_json:
        print_json([{**asdict(r), "scope": r.scope.value, "active": r.active} for r in rows])
        return
    table = Table()
    for col in ("name", "scope", "created", "last used", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.name, r.scope.value, _when(r.created_at), _when(r.last_used_at), _when(r.revoked_at)
        )
    print_table(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token at once: its next call is answered 401."""
    with _database() as (engine, clock), engine.begin() as conn:
        if not tokens.revoke_token(conn, name, now=clock.now()):
            raise BadInputError("NAME", f"no active token named {name!r} (see `token list`)")
        audit.record(
            conn, actor=_actor(), action="token.revoke", target=f"token:{name}", now=clock.now()
        )
    typer.echo(f"token {name!r} revoked")


def _when(value: Any) -> str:
    return "" if value is None else value.isoformat(timespec="seconds")


# --- runs logs / cancel ----------------------------------------------------------------------


def runs_logs(
    run_id: Annotated[int, typer.Argument(help="The run's id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until it ends.")
    ] = False,
    poll: Annotated[float, typer.Option(hidden=True, min=0.01)] = 1.0,
) -> None:
    """A run's log lines, kept in the database (readable after its process is gone)."""
    with _database() as (engine, _):
        last = 0
        while True:
            with engine.connect() as conn:
                run = ledger.get_run(conn, run_id)
                if run is None:
                    raise BadInputError("RUN_ID", f"no run {run_id}")
                lines = ledger.read_logs(conn, run_id, after_id=last)
            for line in lines:
                typer.echo(_log_text(line))
            last = lines[-1].id if lines else last
            if not follow or (run.status.is_final and not lines):
                break
            time.sleep(poll)
    if follow:
        typer.echo(f"run {run_id} {run.status.value}")


def runs_payloads(
    run_id: Annotated[int, typer.Argument(help="The run's id.")],
    save: Annotated[
        Path | None,
        typer.Option(
            "--save", help="Write each kept answer to this directory (created), one file each."
        ),
    ] = None,
) -> None:
    """KLK's answers to a run's failed calls, as received (kept for inspection, cut at
    FLUXION_RAW_PAYLOAD_MAX_BYTES): which location and call, why it failed, its size."""
    from fluxion_etl.store.runlogs import read_raw_payloads

    with _database() as (engine, _), engine.connect() as conn:
        if ledger.get_run(conn, run_id) is None:
            raise BadInputError("RUN_ID", f"no run {run_id}")
        payloads = read_raw_payloads(conn, run_id)
    if not payloads:
        typer.echo(f"run {run_id}: no KLK answer kept (none of its calls failed on a body)")
        return
    if save is not None:
        try:
            save.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError("--save", f"cannot create {save}: {exc.strerror}") from None
    for payload in payloads:
        kept = len(payload.body or b"")
        cut = f", first {kept} kept" if payload.truncated else ""
        line = (
            f"{payload.id} {payload.location_id} {payload.call} {payload.category} "
            f"{payload.captured_at.isoformat(timespec='seconds')} {payload.size} bytes{cut}"
        )
        if save is not None:
            name = f"run{run_id}-{payload.id}-{payload.location_id}-{payload.call}.body"
            target = save / name.replace("/", "_")
            target.write_bytes(payload.body or b"")
            line += f" -> {target}"
        typer.echo(line)


def _log_text(line: LogRow) -> str:
    where = f" [{line.location_id}]" if line.location_id else ""
    extra = " ".join(f"{k}={v}" for k, v in (line.fields or {}).items())
    stamp = line.at.isoformat(timespec="seconds")
    return f"{stamp} {line.level:<7}{where} {line.event}" + (f" {extra}" if extra else "")


def runs_cancel(run_id: Annotated[int, typer.Argument(help="The run's id.")]) -> None:
    """Cancel a run: a queued one at once, a running one starts no more locations.
    Exit 1 when the run had already ended."""
    with _database() as (engine, clock), engine.begin() as conn:
        before = ledger.get_run(conn, run_id)
        if before is None:
            raise BadInputError("RUN_ID", f"no run {run_id}")
        after = ledger.request_cancel(conn, run_id, by=_actor(), now=clock.now())
        assert after is not None
        if not before.status.is_final:
            audit.record(
                conn,
                actor=_actor(),
                action="run.cancel",
                target=f"run:{run_id}",
                now=clock.now(),
                detail={"status_before": before.status.value, "status_after": after.status.value},
            )
    if before.status.is_final:
        typer.echo(f"run {run_id} already ended: {before.status.value}")
        raise typer.Exit(0 if after.status.value == "cancelled" else 1)
    if after.status.is_final:
        typer.echo(f"run {run_id} cancelled before it started")
    else:
        typer.echo(f"run {run_id}: cancel requested; it starts no more locations")


# --- freshness -------------------------------------------------------------------------------


def freshness_command(as_json: AsJson = False) -> None:
    """Per location and job: last success, its age, and whether it is stale (SPEC §4.12).
    Exit 1 when anything is stale, so a monitor can run it."""
    settings, config = settings_and_config()
    with _database() as (engine, clock), engine.connect() as conn:
        states = {(s.job.value, s.location_id): s for s in sync_state.all_states(conn)}
    verdicts = freshness.judge_all(
        config.locations,
        {key: state.last_success_at for key, state in states.items()},
        now=clock.now(),
        deadlines=freshness.deadlines_from(settings.deadline_seconds),
    )
    if as_json:
        print_json([{**asdict(v), "job": v.job.value} for v in verdicts])
    else:
        _print_freshness(verdicts)
    if any(v.stale for v in verdicts):
        raise typer.Exit(1)


def _print_freshness(verdicts: list[freshness.Freshness]) -> None:
    table = Table()
    for col in ("location", "job", "last success", "age", "open", "stale"):
        table.add_column(col)
    for v in verdicts:
        age = "never" if v.age_seconds is None else _age(v.age_seconds)
        table.add_row(
            v.location_id,
            v.job.value,
            _when(v.last_success_at),
            age,
            "yes" if v.open_now else "no",
            "STALE" if v.stale else "",
        )
    print_table(table)
    stale = sum(v.stale for v in verdicts)
    typer.echo(f"{stale} of {len(verdicts)} stale" if stale else f"all {len(verdicts)} fresh")


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
