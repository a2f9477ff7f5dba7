"""Cases as the tip line needs them: creation (reporting arrives with the cases feature) and the
deep link a flyer's QR code carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Case
from bot.services.references import new_case_code, new_deep_link_token, parse_reference

STATUS_PENDING = "pending_review"
STATUS_ACTIVE = "active"
STATUS_FOUND = "found"
STATUS_WITHDRAWN = "withdrawn"
CLOSED_STATUSES = (STATUS_FOUND, STATUS_WITHDRAWN)


async def create_case(session: AsyncSession, *, name: str, status: str = STATUS_PENDING, language: str = "en",
                      reported_by: int | None = None, **particulars) -> Case:
    now = datetime.now(timezone.utc)
    while True:
        code = new_case_code()
        if await session.scalar(select(Case.id).where(Case.code == code)) is None:
            break
    case = Case(code=code, status=status, name=name, language=language, reported_by=reported_by,
                deep_link_token=new_deep_link_token(), created_at=now, updated_at=now, **particulars)
    session.add(case)
    await session.flush()
    return case


async def by_code(session: AsyncSession, text: str) -> Case | None:
    code = parse_reference(text, "C")
    if code is None:
        return None
    return await session.scalar(select(Case).where(Case.code == code))


@dataclass(frozen=True)
class DeepLinkTarget:
    """What a ``/start c_<token>`` leads to. A pending or unknown case is never confirmed to exist."""

    state: str  # active | closed | not_active
    case: Case | None = None


async def resolve_deep_link(session: AsyncSession, token: str) -> DeepLinkTarget:
    case = await session.scalar(select(Case).where(Case.deep_link_token == token)) if token else None
    if case is None or case.status not in (STATUS_ACTIVE, *CLOSED_STATUSES):
        return DeepLinkTarget("not_active")
    if case.status in CLOSED_STATUSES:
        return DeepLinkTarget("closed")
    return DeepLinkTarget("active", case)
