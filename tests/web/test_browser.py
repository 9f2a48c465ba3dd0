"""The control centre in a real browser (Debian's Chromium through Playwright) against a real
``fluxion-etl serve`` and the KLK simulator, once on SQLite and once on PostgreSQL.

The tests of a module share one service, in this order: the first one sees a world never synced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select
from web_support import PHONE, Stack

from fluxion_etl.store import audit
from fluxion_etl.store.db import create_db_engine
from fluxion_etl.store.schema import sales_lines

pytestmark = pytest.mark.browser

LOCATIONS = ("tienda_01", "tienda_02", "tienda_03", "tienda_04")
RAW_KEY = re.compile(r"\b(?:overview|runs|run|schedules|gaps|locations|flash|error)\.[a-z_]+\b")


@pytest.fixture(scope="module")
def db(stack: Stack) -> Iterator[Engine]:
    engine = create_db_engine(stack.database_url)
    yield engine
    engine.dispose()


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _wait_finished(page: Any) -> None:
    """The run page refreshes itself until the run ends (no reload by the test)."""
    expect(page.locator("#live")).to_have_attribute("data-live", "off", timeout=30_000)


def test_the_overview_goes_from_stale_to_fresh_after_a_sync(page: Any, stack: Stack) -> None:
    page.goto(stack.url + "/")
    expect(page.locator("td.cell")).to_have_count(2 * len(LOCATIONS))
    expect(page.locator("td.cell.state-stale")).to_have_count(2 * len(LOCATIONS))
    expect(page.locator("td.cell.state-stale").first).to_contain_text("nunca sincronizada")
    expect(page.locator(".attention li")).to_have_count(2 * len(LOCATIONS))
    for job in ("inventario", "ventas"):
        page.get_by_role("button", name=f"Sincronizar {job} (todas)").click()
        page.wait_for_url(re.compile(r"/runs/\d+$"))
        _wait_finished(page)
        expect(page.locator(".page-head .badge")).to_have_text("correcta")
        page.goto(stack.url + "/")
    expect(page.locator("td.cell.state-fresh")).to_have_count(2 * len(LOCATIONS))
    expect(page.locator("td.cell.state-stale")).to_have_count(0)
    expect(page.locator("td.cell").first).to_contain_text("Al día")
    expect(page.locator(".banner-good")).to_contain_text("Todo al día")


def test_a_schedule_is_switched_off_and_on(page: Any, stack: Stack, db: Engine) -> None:
    page.goto(stack.url + "/schedules")
    card = page.locator("article[data-schedule='sales']")
    card.get_by_role("button", name="Desactivar").click()  # the confirmation is accepted
    expect(page.locator(".flash")).to_contain_text("Programación «sales» desactivada.")
    expect(card).to_have_class(re.compile(r"\bis-off\b"))
    page.goto(stack.url + "/")
    expect(page.locator(".banner-warn")).to_contain_text("«sales»")
    page.goto(stack.url + "/schedules")
    card.get_by_role("button", name="Activar").click()
    expect(page.locator(".flash")).to_contain_text("Programación «sales» activada.")
    expect(card).not_to_have_class(re.compile(r"\bis-off\b"))
    with db.connect() as conn:
        trail = audit.entries(conn, action="schedule.update", limit=2)
    assert [(e.actor, e.detail) for e in trail] == [
        ("ops.admin", {"enabled": {"from": False, "to": True}}),
        ("ops.admin", {"enabled": {"from": True, "to": False}}),
    ]


def test_a_run_started_by_hand_is_watched_until_it_finishes(page: Any, stack: Stack) -> None:
    stack.faults("catalogue@*:latency=0.7")  # slow enough to be seen running
    try:
        page.goto(stack.url + "/schedules")
        card = page.locator("article[data-schedule='inventory']")
        card.get_by_role("button", name="Ejecutar ahora").click()
        page.wait_for_url(re.compile(r"/runs/\d+$"))
        page.evaluate("window.notReloaded = true")
        expect(page.locator("#live")).to_have_attribute("data-live", "on")
        _wait_finished(page)
    finally:
        stack.faults("")
    assert page.evaluate("window.notReloaded") is True  # the page refreshed itself in place
    expect(page.locator(".page-head .badge")).to_have_text("correcta")
    expect(page.locator("tr.item-row[data-status='succeeded']")).to_have_count(len(LOCATIONS))
    expect(page.locator(".facts")).to_contain_text("ops.admin")


def test_a_failed_run_shows_its_error_and_logs_and_reruns_the_failed_location(
    page: Any, stack: Stack
) -> None:
    stack.faults("catalogue@tienda_04:error_body:msg=Servidor de la sucursal caído")
    run = stack.sync("/api/etl/sync", {"ubicacion_id": None})
    stack.faults("")
    assert run["status"] == "partial"
    page.goto(stack.url + "/runs")
    page.select_option("select[name='status']", "partial")
    page.get_by_role("button", name="Filtrar").click()
    page.click(f"a[href='/runs/{run['id']}']")
    failed = page.locator("tr.item-row[data-location='tienda_04']")
    expect(failed).to_contain_text("fallida")
    expect(failed).to_contain_text("KLK respondió con error")
    expect(failed).to_contain_text("Servidor de la sucursal caído")
    page.fill("#log-filter", "tienda_04")
    visible = page.locator("ol.logs li:visible")
    expect(visible.filter(has_text="location failed")).to_have_count(1)
    assert all("tienda_04" in text for text in visible.all_inner_texts())
    assert page.locator("ol.logs li").count() > visible.count()
    page.get_by_role("button", name="Repetir las ubicaciones que fallaron (1)").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    _wait_finished(page)
    expect(page.locator(".page-head .badge")).to_have_text("correcta")
    expect(page.locator("tr.item-row")).to_have_count(1)
    expect(page.locator("tr.item-row")).to_have_attribute("data-location", "tienda_04")


def test_gaps_made_by_klk_faults_are_recovered_except_where_klk_still_fails(
    page: Any, stack: Stack, db: Engine
) -> None:
    today = stack.today()
    days = [today - timedelta(days=n) for n in (4, 3, 2)]
    stack.sync("/api/etl/sync/ventas", {"ubicacion_id": None})  # yesterday and today
    stack.sync("/api/etl/sync/ventas", _days(days[0], days[0]))  # history starts four days ago
    stack.faults("sales@tienda_02:http_503;sales@tienda_03:http_503")
    assert stack.sync("/api/etl/sync/ventas", _days(days[1], days[2]))["status"] == "partial"
    stack.faults("sales@tienda_03:http_503")  # tienda_02's KLK is back; tienda_03's is not

    page.goto(stack.url + "/gaps")
    for location_id in ("tienda_02", "tienda_03"):
        for day in days[1:]:
            expect(_gap_row(page, location_id, day)).to_have_count(1)
            cell = page.locator(f"tr[data-location='{location_id}'] td[data-day='{day}']")
            expect(cell).to_have_class(re.compile(r"\bcov-none\b"))
    for location_id in ("tienda_01", "tienda_04"):
        expect(_gap_row(page, location_id, days[1])).to_have_count(0)
    page.get_by_role("button", name="Recuperar todos").click()
    expect(page.locator(".flash")).to_contain_text("Recuperación en marcha: 2 ejecuciones nuevas")
    _wait_recoveries(stack)

    page.goto(stack.url + "/gaps")
    for day in days[1:]:
        expect(_gap_row(page, "tienda_02", day)).to_have_count(0)
        expect(_gap_row(page, "tienda_03", day)).to_have_count(1)
        assert _loaded(db, "tienda_02", day) == _truth(stack, "tienda_02", day)


def _gap_row(page: Any, location_id: str, day: date) -> Any:
    return page.locator(f"section.gap-group[data-location='{location_id}'] tr[data-day='{day}']")


def _days(first: date, last: date) -> dict[str, Any]:
    return {"ubicacion_id": None, "fecha_inicio": first.isoformat(), "fecha_fin": last.isoformat()}


def _wait_recoveries(stack: Stack) -> None:
    runs = stack.api("GET", "/api/etl/runs", params={"trigger": "recovery"}).json()["runs"]
    assert len(runs) == 2
    for run in runs:
        stack.wait_run(int(run["id"]))


def _loaded(db: Engine, location_id: str, day: date) -> tuple[set[tuple[str, int]], Decimal]:
    query = select(sales_lines.c.invoice_number, sales_lines.c.line_number, sales_lines.c.total_bs)
    query = query.where(sales_lines.c.location_id == location_id)
    with db.connect() as conn:
        rows = conn.execute(query.where(sales_lines.c.business_day == day)).all()
    return {(r.invoice_number, r.line_number) for r in rows}, sum(
        (Decimal(r.total_bs) for r in rows), Decimal("0.00")
    )


def _truth(stack: Stack, location_id: str, day: date) -> tuple[set[tuple[str, int]], Decimal]:
    truth = stack.sim(
        "GET", "/_sim/truth/sales", params={"location": location_id, "day": day.isoformat()}
    ).json()
    assert truth["lines"] > 0
    keys = {(item["invoice_number"], int(item["line_number"])) for item in truth["items"]}
    return keys, Decimal(truth["total_bs"])


def test_every_page_fits_a_phone_and_shows_no_untranslated_key(
    browser: Any, stack: Stack, signed_in: dict[str, Any]
) -> None:
    visitor = browser.new_context(viewport=PHONE)
    member = browser.new_context(viewport=PHONE, storage_state=signed_in)
    try:
        login = visitor.new_page()
        login.goto(stack.url + "/login")
        _fits(login, "/login")
        page = member.new_page()
        for path in ("/", "/runs", "/runs/1", "/schedules", "/gaps", "/locations"):
            page.goto(stack.url + path)
            _fits(page, path)
            assert not RAW_KEY.search(page.inner_text("body")), path
    finally:
        visitor.close()
        member.close()


def _fits(page: Any, path: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} is {width} px wide on a 390 px phone"


def test_the_language_switch_turns_the_pages_english_and_back(page: Any, stack: Stack) -> None:
    page.goto(stack.url + "/runs")
    page.click("form.lang button[value='en']")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("nav.nav")).to_contain_text("Overview")
    expect(page.locator("h1")).to_have_text("Runs")
    assert page.url == stack.url + "/runs"
    page.click("form.lang button[value='es']")
    expect(page.locator("nav.nav")).to_contain_text("Resumen")


def test_logging_in_leads_back_to_the_page_asked_for_and_logging_out_ends_it(
    browser: Any, stack: Stack
) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(stack.url + "/runs?job=sales")
        assert page.url == stack.url + "/login?next=%2Fruns%3Fjob%3Dsales"
        page.fill("#token", "flx_not-a-token")
        page.click("form[action='/login'] button")
        expect(page.locator(".flash-error")).to_contain_text("no existe o fue revocado")
        page.fill("#token", stack.token)
        page.click("form[action='/login'] button")
        page.wait_for_url(stack.url + "/runs?job=sales")
        expect(page.locator(".who")).to_have_text("ops.admin")
        page.click("form[action='/logout'] button")
        page.wait_for_url(re.compile(r"/login"))
        expect(page.locator(".flash")).to_contain_text("Sesión cerrada.")
        page.goto(stack.url + "/runs")
        assert page.url.startswith(stack.url + "/login?next=")
    finally:
        context.close()
