"""Two small things every service asks of a session that SQLAlchemy's types do not say."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_of(session: AsyncSession) -> str:
    """``"sqlite"`` or ``"postgresql"``: the database the session talks to."""
    return session.get_bind().dialect.name


async def rows_changed(session: AsyncSession, statement: Executable, params: Any = None) -> int:
    """Run an UPDATE or DELETE and say how many rows it matched (``execute`` is typed as returning a
    plain Result, but for these statements it is a CursorResult)."""
    result = await session.execute(statement, params)
    return cast(CursorResult[Any], result).rowcount
