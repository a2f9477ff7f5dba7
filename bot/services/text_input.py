"""Text people give, cleaned in one place before anything reads it: every update (messages, captions,
edits, names, whatever a handler may take) on its way from the inbox to the handlers, and every field
of the case import.

What goes: the characters that change how the text around them is shown without being seen
themselves. Bidirectional overrides, embeddings and isolates (U+202A-202E, U+2066-2069) and marks
(U+200E, U+200F, U+061C) can make a phone number on a flyer read backwards, or a name in a coordinator's
list look like another; zero-width spaces and joiners (U+200B, U+2060-2064, U+FEFF, U+180E) hide text
inside words; control characters have no place in a message. Right-to-left scripts need none of these
to be shown right (the renderer and Telegram apply the Unicode bidirectional algorithm to the letters
themselves), so Arabic and Hebrew stay as written. The zero-width non-joiner and joiner (U+200C,
U+200D) are kept between two letters or symbols, where Persian, Indic scripts and emoji sequences
need them, and dropped elsewhere.
"""

from __future__ import annotations

import re

_INVISIBLE = re.compile(
    "[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    # a joiner or non-joiner not between two non-ASCII, non-space characters
    "|(?<![^\x00-\x7f\\s])[\u200c\u200d]|[\u200c\u200d](?![^\x00-\x7f\\s])"
)
# the parts of a message whose entities (offsets in UTF-16 code units) describe them
_ENTITIES_OF = {"text": "entities", "caption": "caption_entities"}


def clean_text(text: str) -> str:
    """``text`` without the invisible characters this module is about (ASCII is left as it is)."""
    return text if text.isascii() else _INVISIBLE.sub("", text)


def clean_update(payload: dict) -> dict:
    """A copy of a Bot API update with every string cleaned, and the entities of a cleaned text or
    caption moved to where their characters now are (a command stays a command)."""
    return _cleaned(payload)


def _cleaned(value):
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    if not isinstance(value, dict):
        return value
    cleaned = {key: _cleaned(item) for key, item in value.items()}
    for text_key, entities_key in _ENTITIES_OF.items():
        text = value.get(text_key)
        if isinstance(text, str) and cleaned[text_key] != text and isinstance(value.get(entities_key), list):
            cleaned[entities_key] = [_moved(entity, text) for entity in value[entities_key]]
    return cleaned


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _moved(entity, text: str):
    if not isinstance(entity, dict) or not isinstance(entity.get("offset"), int) \
            or not isinstance(entity.get("length"), int):
        return entity
    units = text.encode("utf-16-le")
    start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
    before = units[:start].decode("utf-16-le", errors="replace")
    inside = units[start:end].decode("utf-16-le", errors="replace")
    return {**entity, "offset": _utf16_length(clean_text(before)), "length": _utf16_length(clean_text(inside))}
