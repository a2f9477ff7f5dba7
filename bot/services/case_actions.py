"""What verifying and closing a case sets in motion, whoever does it: a chat command or the console."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Case
from bot.services import broadcasts, case_changes, case_notices, cases, retention


async def verify_case(session: AsyncSession, case: Case, actor_id: int, now: datetime) -> bool:
    """A pending case becomes public (flyer, deep link) and its family is told; False (nothing
    done) if it was not pending."""
    if case.status != cases.STATUS_PENDING:
        return False
    cases.verify(session, case, actor_id, now)
    await case_notices.tell_family(session, case, "family_case_verified")
    return True


async def close_case(session: AsyncSession, case: Case, actor_id: int, status: str, now: datetime,
                     media_dir: Path) -> bool:
    """Found or withdrawn: the appeal ends everywhere (deep link, flyers, broadcasts: they stop and
    their messages of the last 48 hours are deleted, face matching: its biometrics are purged) and
    its family is told. False (nothing done) if it was closed already."""
    if status not in cases.CLOSED_STATUSES:
        raise ValueError(status)
    if case.status in cases.CLOSED_STATUSES:
        return False
    cases.close(session, case, actor_id, status, now)
    # the family reads that the appeal closed before what that stops (their broadcasts)
    await case_notices.tell_family(session, case, f"family_case_closed_{status}")
    await broadcasts.withdraw_case(session, case, now)
    # once its broadcasts stopped, so their cards go with the flyers
    await retention.purge_closed_case(session, case.id, media_dir)
    await case_changes.withdraw_pending(session, case, media_dir)
    return True
