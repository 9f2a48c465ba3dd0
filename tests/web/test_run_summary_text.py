"""A run's message in the page's language, when the runner or the ledger wrote it in one of their
known forms; anything else (a location's own error, KLK's words) as written."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from fluxion_etl.domain.states import Job, RunStatus, Trigger
from fluxion_etl.store.ledger import RunRow
from fluxion_etl.web.i18n import translator
from fluxion_etl.web.pages.runs import run_summary

CARACAS = ZoneInfo("America/Caracas")
NOW = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
RUN = RunRow(
    id=1, job=Job.SALES, status=RunStatus.PARTIAL, trigger=Trigger.API, requested_by="ana",
    scope=None, date_from=None, date_to=None, params={}, idempotency_key=None,
    schedule_name=None, scheduled_for=None, launcher=None, external_ref=None, owner=None,
    created_at=NOW, started_at=NOW, heartbeat_at=NOW, deadline_at=NOW, finished_at=NOW,
    cancel_requested=False, error_category=None, error_message=None,
)  # fmt: skip


@pytest.mark.parametrize(
    ("message", "spanish"),
    [
        (
            "2 of 19 locations not loaded; tienda_03: KLK ventas: http_status: HTTP 503",
            "2 de 19 ubicaciones sin cargar; tienda_03: KLK ventas: http_status: HTTP 503",
        ),
        (
            "1 of 3 locations not loaded; mass deletion held at 1; tienda_02: held",
            "1 de 3 ubicaciones sin cargar; borrado masivo retenido en 1 ubicación; "
            "tienda_02: held",
        ),
        ("cancelled on request", "cancelada a pedido"),
        (
            "cancel requested by rev at 2026-12-06T21:45:41+00:00",
            "rev pidió cancelarla el 06/12 17:45 -04",
        ),
        ("something nobody foresaw", None),
    ],
)
def test_known_run_messages_are_shown_in_spanish(message: str, spanish: str | None) -> None:
    run = replace(RUN, error_message=message)

    assert run_summary(run, translator("es"), CARACAS) == spanish
    english = run_summary(run, translator("en"), CARACAS)
    assert (english is None) is (spanish is None)
