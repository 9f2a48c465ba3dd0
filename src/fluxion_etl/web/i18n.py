"""The control centre's languages: Spanish (what the chain's staff read, the default) and English.

Every string a page shows comes from a catalogue (``locales/es.json``, ``locales/en.json``: flat
maps from a dotted key to a text with ``{name}`` placeholders). Templates call ``t('key')`` for a
fixed text and ``t.enum('run_status', value)`` for a state of the shared vocabulary; Python code
names its messages with ``Message('key', ...)``. A test holds both catalogues to the same keys and
placeholders and finds every key used in templates and code, so a missing translation fails CI
instead of showing a raw key to a store manager.

The language is the ``fluxion_lang`` cookie set by the language switch; without it, Spanish.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import structlog

log = structlog.get_logger("fluxion.web")

LANGUAGES = ("es", "en")
DEFAULT_LANGUAGE = "es"
LANG_COOKIE = "fluxion_lang"


@dataclass(frozen=True, slots=True)
class Message:
    """A text to show later (a flash after a redirect): its key and parameters, not its words."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "info"  # info | success | error

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "params": dict(self.params), "kind": self.kind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        params = data.get("params")
        return cls(
            key=str(data.get("key", "")),
            params=dict(params) if isinstance(params, Mapping) else {},
            kind=str(data.get("kind", "info")),
        )


@cache
def catalogue(lang: str) -> Mapping[str, str]:
    """The catalogue of ``lang`` (read once, on first use)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: use one of {', '.join(LANGUAGES)}")
    text = resources.files("fluxion_etl.web").joinpath(f"locales/{lang}.json").read_text("utf-8")
    data = json.loads(text)
    return {str(key): str(value) for key, value in data.items()}


def pick_language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


@dataclass(frozen=True, slots=True)
class Translator:
    """``t('key', name=value)`` in templates; numbers written the way the language writes them."""

    lang: str

    def __call__(self, key: str, **params: Any) -> str:
        # A singular of its own where the language needs one: ``key.one`` when ``count`` is 1.
        texts = catalogue(self.lang)
        text = texts.get(f"{key}.one") if params.get("count") == 1 else None
        text = text if text is not None else texts.get(key)
        if text is None:
            log.warning("missing translation", key=key, lang=self.lang)
            return key
        try:
            return text.format_map(params) if params else text
        except (KeyError, IndexError, ValueError):
            log.warning("translation placeholders do not match", key=key, lang=self.lang)
            return text

    def enum(self, prefix: str, value: object) -> str:
        """A value of the shared vocabulary (``run_status.failed``); None shows as a dash."""
        if value is None:
            return "—"
        return self(f"{prefix}.{getattr(value, 'value', value)}")

    def message(self, message: Message) -> str:
        return self(message.key, **message.params)

    def number(self, value: int | float) -> str:
        """``12.345`` in Spanish, ``12,345`` in English."""
        text = f"{value:,.0f}" if isinstance(value, int) else f"{value:,.1f}"
        if self.lang == "es":
            return text.translate(str.maketrans(",.", ".,"))
        return text


def translator(lang: str | None) -> Translator:
    return Translator(pick_language(lang))
