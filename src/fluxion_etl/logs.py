"""Logging setup: structlog, JSON in production, readable on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(fmt: str = "auto", *, quiet: bool = False) -> None:
    """``auto`` = console renderer on a terminal, JSON otherwise. ``quiet`` keeps stdout for the
    command's own output by sending log lines to stderr at warning level and above."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # JSON: one object per line, a traceback as a field; the console renderer prints its own.
    rendering: list[structlog.types.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if use_json
        # Plain tracebacks: the console renderer's default (rich) prints every frame's local
        # variables, which hold bearer tokens, settings and database URLs with their passwords.
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    level = logging.WARNING if quiet else logging.INFO
    structlog.configure(
        processors=[
            # run_id, job and location_id bound by the runner for the lines of a run
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *rendering,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )


def _current_stderr(*_args: Any) -> structlog.PrintLogger:
    """A logger on ``sys.stderr`` as it is when the logger is made, not when logging was set up:
    a command runner or test harness that swaps the stream (and closes its own) is followed."""
    return structlog.PrintLogger(file=sys.stderr)
