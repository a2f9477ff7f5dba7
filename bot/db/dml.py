"""UPDATE and DELETE through the session, answered by how many rows they touched."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase


async def rows_affected(session: AsyncSession, statement: UpdateBase) -> int:
    """Run ``statement`` (an UPDATE or DELETE) in the session; the number of rows it matched."""
    result = await session.execute(statement)
    # AsyncSession.execute is typed to answer a Result whatever it runs; for DML it is a CursorResult
    return cast(CursorResult[Any], result).rowcount
