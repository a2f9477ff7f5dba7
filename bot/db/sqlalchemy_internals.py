"""Every part of SQLAlchemy the bot uses that is not its public API, in one place.

Pinned by pyproject.toml to the minor version the tests run (2.1: ``await_`` moved to
``sqlalchemy.util`` there); tests/test_batch_insert.py checks what ``register_persistent`` relies on.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
from sqlalchemy.orm import Session
from sqlalchemy.util import await_

__all__ = ["AsyncAdapt_aiosqlite_connection", "await_", "register_persistent"]


def register_persistent(session: Session, objects: list) -> None:
    """What a flush does with the objects it inserted: identity, clean history, and in the
    transaction's list of new objects (a rollback expunges them); the unit of work's own last step,
    for rows inserted with a Core INSERT (bot/db/batch_insert.py)."""
    session._register_persistent({inspect(obj) for obj in objects})
