"""Public references: tips ``T-XXXX-XXXX``, cases ``C-XXXXXX``, broadcasts ``B-XXXXXX``.

X is Crockford base32, random (never sequential, so a reference says nothing about volume or
order). People read them aloud and type them on phones, so reading is forgiving: any case, spaces
or missing hyphens, and Crockford's substitutions (O as 0, I and L as 1).
"""

from __future__ import annotations

import re
import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SUBSTITUTIONS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def _random_symbols(count: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(count))


def new_tip_reference() -> str:
    return f"T-{_random_symbols(4)}-{_random_symbols(4)}"


def new_case_code() -> str:
    return f"C-{_random_symbols(6)}"


def new_broadcast_reference() -> str:
    return f"B-{_random_symbols(6)}"


def new_deep_link_token() -> str:
    """An opaque token for ``/start c_<token>``: Telegram allows ``A-Za-z0-9_-`` up to 64 characters."""
    return secrets.token_urlsafe(12)


_SHAPES = {"T": (4, 4), "C": (6,), "B": (6,)}


def parse_reference(text: str, prefix: str) -> str | None:
    """The canonical reference ``text`` stands for, or None if it is not one of ``prefix``'s kind."""
    cleaned = re.sub(r"[\s\-_.]", "", text.upper())
    if cleaned.startswith(prefix):
        cleaned = cleaned[1:]
    cleaned = cleaned.translate(_SUBSTITUTIONS)
    groups = _SHAPES[prefix]
    if len(cleaned) != sum(groups) or any(ch not in CROCKFORD for ch in cleaned):
        return None
    parts, start = [], 0
    for size in groups:
        parts.append(cleaned[start:start + size])
        start += size
    return "-".join([prefix, *parts])


_ALIAS_ADJECTIVES = (
    "Amber", "Blue", "Bright", "Calm", "Clever", "Gentle", "Golden", "Green", "Honest", "Jade",
    "Kind", "Lucky", "Misty", "Quiet", "Rapid", "Silver", "Steady", "Sunny", "Swift", "Wise",
)
_ALIAS_ANIMALS = (
    "Badger", "Crane", "Dolphin", "Falcon", "Finch", "Fox", "Hare", "Heron", "Ibis", "Koala",
    "Lynx", "Magpie", "Otter", "Owl", "Panda", "Robin", "Swan", "Tiger", "Wren", "Yak",
)


def new_alias() -> str:
    """A random name coordinators can call a tipster by; per tip, never derived from the Telegram id."""
    return f"{secrets.choice(_ALIAS_ADJECTIVES)} {secrets.choice(_ALIAS_ANIMALS)} {secrets.randbelow(90) + 10}"
