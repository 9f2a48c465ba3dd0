"""Every user-visible string exists in Spanish and English: a missing translation fails here, not
in front of a store manager."""

from __future__ import annotations

import ast
import re
import string
from enum import StrEnum
from importlib import resources
from pathlib import Path

import pytest

from fluxion_etl.domain.records import LocationKind, WarehouseRole
from fluxion_etl.domain.requests import ItemCounters
from fluxion_etl.domain.schedules import WEEKDAYS, FireSource
from fluxion_etl.domain.states import (
    ErrorCategory,
    ErrorPhase,
    FireOutcome,
    ItemStatus,
    Job,
    RunStatus,
    Trigger,
)
from fluxion_etl.store.tokens import Scope
from fluxion_etl.web.i18n import LANGUAGES, Translator, catalogue, translator

WEB = Path(str(resources.files("fluxion_etl.web")))
STATIC_CALL = re.compile(r"""\bt\(\s*['"]([^'"]+)['"]""")
ENUM_CALL = re.compile(r"""\bt\.enum\(\s*['"]([^'"]+)['"]""")
MESSAGE_SECTIONS = ("flash.", "error.", "login.")
QUOTED = re.compile(r"""['"]([a-z_]+\.[a-z_]+)['"]""")

# Every value a page can pass to ``t.enum(prefix, value)``.
ENUM_VALUES: dict[str, tuple[str, ...]] = {
    "job": tuple(Job),
    "run_status": tuple(RunStatus),
    "item_status": tuple(ItemStatus),
    "fire_outcome": tuple(FireOutcome),
    "fire_source": tuple(FireSource),
    "error_category": tuple(ErrorCategory),
    "phase": tuple(ErrorPhase),
    "trigger": tuple(Trigger),
    "scope": tuple(Scope),
    "counter": tuple(ItemCounters.__dataclass_fields__),
    "level": ("info", "warning", "error"),
    "scheduler_mode": ("embedded", "external"),
    "freshness": ("fresh", "closed", "stale", "unknown"),
    "freshness_help": ("fresh", "closed", "stale", "unknown"),
    "coverage": ("full", "partial", "provisional", "none", "closed", "unjudged"),
    "weekday": WEEKDAYS,
    "weekday_short": WEEKDAYS,
    "location_kind": tuple(LocationKind),
    "warehouse_role": tuple(WarehouseRole),
}


def _texts(suffix: str) -> dict[Path, str]:
    return {path: path.read_text("utf-8") for path in sorted(WEB.rglob(f"*{suffix}"))}


def _sections() -> set[str]:
    return {key.split(".", 1)[0] for key in catalogue("es")}


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogues_have_exactly_the_same_keys() -> None:
    spanish, english = set(catalogue("es")), set(catalogue("en"))
    assert spanish - english == set(), "missing in English"
    assert english - spanish == set(), "missing in Spanish"


def test_translations_use_the_same_placeholders_and_none_is_empty() -> None:
    for key, spanish in catalogue("es").items():
        english = catalogue("en")[key]
        assert spanish.strip(), key
        assert english.strip(), key
        assert _placeholders(spanish) == _placeholders(english), key


def test_every_key_a_template_names_exists() -> None:
    used = {
        (path.name, key)
        for path, text in _texts(".html").items()
        for key in STATIC_CALL.findall(text) + _quoted_keys(text)
    }
    assert len(used) > 150  # the scan finds the templates' keys (it would pass vacuously if not)
    missing = sorted((name, key) for name, key in used if key not in catalogue("es"))
    assert missing == []


def test_every_vocabulary_a_template_shows_is_translated_whole() -> None:
    prefixes = {p for text in _texts(".html").values() for p in ENUM_CALL.findall(text)}
    assert prefixes - set(ENUM_VALUES) == set(), "a t.enum prefix this test does not know"
    for lang in LANGUAGES:
        missing = [
            f"{prefix}.{value}"
            for prefix in prefixes
            for value in ENUM_VALUES[prefix]
            if f"{prefix}.{value}" not in catalogue(lang)
        ]
        assert missing == [], lang


def test_every_message_the_code_names_exists() -> None:
    """Flash messages and errors are named in Python: ``Message("flash.…")``, or a key chosen by a
    condition and passed on. Every ``Message`` key, and every literal of the message sections,
    must exist."""
    used = {(path.name, key) for path, text in _texts(".py").items() for key in _message_keys(text)}
    assert {"flash.cancelled", "flash.schedule_disabled", "error.scope"} <= {k for _, k in used}
    missing = sorted((name, key) for name, key in used if key not in catalogue("es"))
    assert missing == []


def _message_keys(source: str) -> set[str]:
    keys = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Message":
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                keys.add(first.value)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith(MESSAGE_SECTIONS)
            and _looks_like_key(node.value)
        ):
            keys.add(node.value)
    return keys


def _looks_like_key(text: str) -> bool:
    """``section.name`` of a catalogue section, and not a file name (``login.html``)."""
    if not re.fullmatch(r"[a-z_]+\.[a-z_]+", text) or text.endswith((".html", ".json", ".css")):
        return False
    return text.split(".", 1)[0] in _sections()


def _quoted_keys(text: str) -> list[str]:
    return [key for key in QUOTED.findall(text) if _looks_like_key(key)]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_missing_key_shows_itself_rather_than_failing_the_page(lang: str) -> None:
    assert Translator(lang)("no.such_key") == "no.such_key"


def test_numbers_are_written_as_each_language_writes_them() -> None:
    assert Translator("es").number(12345) == "12.345"
    assert Translator("en").number(12345) == "12,345"
    assert Translator("es").number(1.5) == "1,5"


def test_enum_values_are_translated_by_their_value() -> None:
    assert Translator("es").enum("run_status", RunStatus.FAILED) == "fallida"
    assert Translator("en").enum("run_status", "failed") == "failed"
    assert isinstance(RunStatus.FAILED, StrEnum)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_count_of_one_takes_the_singular_where_there_is_one(lang: str) -> None:
    t = translator(lang)

    one, two = t("gaps.recover_location", count=1), t("gaps.recover_location", count=2)

    assert one == {"es": "Recuperar su hueco", "en": "Recover its gap"}[lang]
    assert "2" in two
    assert t("run.rerun", count=1) == catalogue(lang)["run.rerun"].format(count=1)  # no singular
