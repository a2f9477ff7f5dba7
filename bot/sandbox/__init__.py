"""Local Telegram Bot API stand-in and browser chat (see `standin.py`).

Exports are loaded lazily so that `python -m bot.sandbox.standin` runs without a double import.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["StandIn", "SimUser", "SimGroup"]

if TYPE_CHECKING:  # pragma: no cover
    from .standin import SimGroup, SimUser, StandIn


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import standin

        return getattr(standin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
