"""Reunite: a Telegram tip line and flyer service for missing-person cases."""

__version__ = "0.1.0"
