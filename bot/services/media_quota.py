"""A person's daily storage quota: the bytes of images stored for them per day
(``REUNITE_USER_DAILY_MEDIA_MB``; coordinators have none). Checked before a file is downloaded, charged
with what was stored; the image that crosses the line is kept, the next is refused until the next day
(in ``REUNITE_TIMEZONE``). Only today's counts are kept.
"""

from __future__ import annotations

from datetime import date
from typing import TypeGuard

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import MediaQuota, User
from bot.services import users


def applies_to(user: User | None, daily_bytes: int) -> TypeGuard[User]:
    """Whether a quota holds for ``user``: there is one, not a coordinator, and quotas are on."""
    return daily_bytes > 0 and user is not None and not users.is_coordinator(user)


async def has_room(session: AsyncSession, user: User | None, today: date, daily_bytes: int) -> bool:
    """Whether ``user`` may store another image today."""
    if not applies_to(user, daily_bytes):
        return True
    used = await session.get(MediaQuota, (user.id, today))
    return used is None or used.stored_bytes < daily_bytes


async def charge(session: AsyncSession, user: User | None, today: date, stored_bytes: int, daily_bytes: int) -> None:
    """Count ``stored_bytes`` against today's quota of ``user`` (updates of one person are handled one
    at a time, so reading and writing their row cannot race)."""
    if not applies_to(user, daily_bytes):
        return
    used = await session.get(MediaQuota, (user.id, today))
    if used is None:
        await session.execute(delete(MediaQuota).where(MediaQuota.day < today))
        session.add(MediaQuota(user_id=user.id, day=today, stored_bytes=stored_bytes))
    else:
        used.stored_bytes += stored_bytes
