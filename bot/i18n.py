"""Message catalogs: every word the bot says to a person comes from ``bot/locales/<lang>.json`` and
the per-feature files beside it (``<lang>.<feature>.json``, e.g. ``zh_Hans.cases.json``).

The language is the one a user chose with /language, else their Telegram app's language.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALES_DIR = Path(__file__).parent / "locales"
DEFAULT_LANGUAGE = "en"
# code we store -> catalog file
LANGUAGES = {"en": "en", "zh": "zh_Hans"}
LANGUAGE_NAMES = {"en": "English", "zh": "简体中文"}


@cache
def catalog(language: str) -> dict[str, str]:
    name = LANGUAGES.get(language, LANGUAGES[DEFAULT_LANGUAGE])
    messages: dict[str, str] = {}
    for path in [LOCALES_DIR / f"{name}.json", *sorted(LOCALES_DIR.glob(f"{name}.*.json"))]:
        part = json.loads(path.read_text(encoding="utf-8"))
        clash = messages.keys() & part.keys()
        if clash:
            raise ValueError(f"{path.name} repeats message keys: {sorted(clash)}")
        messages.update(part)
    return messages


def language_from_telegram(language_code: str | None) -> str:
    """Telegram's IETF tag (``zh-hans``, ``zh-CN``, ``en-GB``...) -> one of our languages."""
    if language_code and language_code.lower().startswith("zh"):
        return "zh"
    return DEFAULT_LANGUAGE


def t(language: str, key: str, **values: object) -> str:
    """The message ``key`` in ``language`` with ``values`` filled in (English if a key is missing)."""
    template = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE)[key]
    return template.format(**values) if values else template
