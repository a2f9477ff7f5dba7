"""Local Telegram Bot API stand-in and browser chat (see `standin.py`)."""

from bot.sandbox.standin import SimGroup, SimUser, StandIn

__all__ = ["StandIn", "SimUser", "SimGroup"]
