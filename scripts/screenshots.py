"""Regenerate the control centre's screenshots in docs/screenshots (``make screenshots``).

It starts what the browser tests start (``tests/web/web_support.py``): the KLK simulator, a real
``fluxion-etl serve`` over a fresh SQLite database, and Debian's Chromium through Playwright. It
then plays a short story so the pages have something to show (sales and stock loaded, three
stores whose KLK servers fail: failed locations, stale cells, open gaps; a check of the locations
against KLK) and photographs every page on a laptop (the whole page) and the main ones on a phone
(one screen), in Spanish (what the chain's staff read) unless ``--lang en``.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--lang es|en]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "web"))

from web_support import LAPTOP, PHONE, Stack, chromium, running_stack  # noqa: E402

from fluxion_etl.store.db import create_db_engine, upgrade  # noqa: E402

GAPPY = "tienda_03"  # its sales start failing after two good days: gaps
DOWN = "tienda_05"  # its KLK server never answered sales: stale, never synced
NO_STOCK = "tienda_06"  # its catalogue calls fail: inventory stale
PAGES = (
    ("overview", "/"),
    ("runs", "/runs"),
    ("run", "/runs/{failed_run}"),
    ("schedules", "/schedules"),
    ("gaps", "/gaps"),
    ("locations", "/locations"),
)
PHONE_PAGES = ("overview", "run", "gaps")


def story(stack: Stack) -> dict[str, int]:
    """Two days of sales and today's inventory, with three stores in trouble."""
    down = f"sales@{DOWN}:http_503;catalogue@{NO_STOCK}:http_500"
    stack.faults(down)
    before = (stack.today() - timedelta(days=2)).isoformat()
    stack.sync("/api/etl/sync/ventas", {"fecha_inicio": before, "fecha_fin": before})
    stack.sync("/api/etl/sync", {"ubicacion_id": None})
    stack.faults(f"{down};sales@{GAPPY}:error_body:msg=No se pudo conectar con la base de datos")
    failed = stack.sync("/api/etl/sync/ventas", {"ubicacion_id": None})
    return {"failed_run": int(failed["id"])}


def photograph(stack: Stack, out: Path, lang: str, ids: dict[str, int]) -> list[Path]:
    written: list[Path] = []
    with chromium() as browser:
        for device, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            context = browser.new_context(viewport=viewport, device_scale_factor=1)
            page = context.new_page()
            stack.login(page)
            if lang != "es":
                page.click(f"form.lang button[value='{lang}']")
            if device == "laptop":
                page.goto(f"{stack.url}/locations")
                page.click("form[action='/locations/check'] button")
            for name, path in PAGES:
                if device == "phone" and name not in PHONE_PAGES:
                    continue
                page.goto(stack.url + path.format(**ids))
                target = out / f"{name}-{device}.png"
                page.screenshot(path=str(target), full_page=device == "laptop")
                written.append(target)
            context.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--lang", choices=("es", "en"), default="es")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fluxion-shots-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'fluxion.db'}"
        engine = create_db_engine(database_url)
        upgrade(engine)
        engine.dispose()
        with running_stack(
            database_url, Path(tmp), locations=6, skus=300, lines_per_day=400
        ) as stack:
            ids = story(stack)
            for path in photograph(stack, args.out, args.lang, ids):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
