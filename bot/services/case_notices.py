"""What coordinators and a case's family are told about it: a new report, the family's changes and
requests, verification and closing. Each in the reader's own language."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import PRIORITY_ALERT, Case, User
from bot.i18n import t
from bot.services import alerts, outbox


async def alert_coordinators(session: AsyncSession, coordinator_chat_id: int | None, case: Case, key: str,
                             **values: object) -> None:
    """Message ``key`` about ``case`` to the coordinator group, or to each coordinator privately."""
    for recipient in await alerts.recipients(session, coordinator_chat_id):
        outbox.enqueue_text(session, recipient.chat_id,
                            t(recipient.language, key, code=case.code, name=case.name, **values),
                            priority=PRIORITY_ALERT)


async def tell_family(session: AsyncSession, case: Case, key: str, **values: object) -> None:
    """Message ``key`` to the family who reported ``case`` (an imported case has none to tell)."""
    if case.reported_by is None:
        return
    family = await session.get_one(User, case.reported_by)
    outbox.enqueue_text(session, family.id, t(family.language, key, code=case.code, name=case.name, **values),
                        priority=PRIORITY_ALERT)
