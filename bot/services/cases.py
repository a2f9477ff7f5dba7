"""Cases: creation, who may see and change one, photos, verification and closing, the console's
listings and counts, and the deep link a flyer's QR code carries.

Privacy rule 3: a pending case is never confirmed to exist to anyone but its family and coordinators,
so look-ups on someone's behalf go through :func:`managed_case`, which answers None alike for "no such
case" and "not yours".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import PHOTO_ORIGINAL, Case, CasePhoto, Tip, User
from bot.services import audit, users
from bot.services.references import new_case_code, new_deep_link_token, parse_reference

STATUS_PENDING = "pending_review"
STATUS_ACTIVE = "active"
STATUS_FOUND = "found"
STATUS_WITHDRAWN = "withdrawn"
STATUSES = (STATUS_PENDING, STATUS_ACTIVE, STATUS_FOUND, STATUS_WITHDRAWN)
CLOSED_STATUSES = (STATUS_FOUND, STATUS_WITHDRAWN)
OPEN_STATUSES = (STATUS_PENDING, STATUS_ACTIVE)
# the listings /cases and the console offer, and the statuses each lists
LISTINGS = {
    "open": OPEN_STATUSES,
    "pending": (STATUS_PENDING,),
    "active": (STATUS_ACTIVE,),
    "found": (STATUS_FOUND,),
    "withdrawn": (STATUS_WITHDRAWN,),
    "closed": CLOSED_STATUSES,
    "all": STATUSES,
}
DEFAULT_LISTING = "open"


async def create_case(session: AsyncSession, *, name: str, status: str = STATUS_PENDING, language: str = "en",
                      reported_by: int | None = None, **particulars) -> Case:
    now = datetime.now(UTC)
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


def code_as_typed(text: str) -> str:
    """A case code to quote back to someone: canonical if it reads as one, else what they typed, cut short."""
    return parse_reference(text, "C") or text[:20]


def can_manage(user: User, case: Case) -> bool:
    """The family who reported it, and coordinators."""
    return users.is_coordinator(user) or (case.reported_by is not None and case.reported_by == user.id)


async def managed_case(session: AsyncSession, user: User, text: str) -> Case | None:
    """The case ``text`` names if ``user`` may manage it; None whether it is missing or not theirs."""
    case = await by_code(session, text)
    return case if case is not None and can_manage(user, case) else None


async def of_family(session: AsyncSession, user_id: int) -> list[Case]:
    rows = await session.scalars(select(Case).where(Case.reported_by == user_id).order_by(Case.created_at.desc()))
    return list(rows)


def update_particulars(session: AsyncSession, case: Case, columns: dict, actor_id: int, now: datetime) -> None:
    for column, value in columns.items():
        setattr(case, column, value)
    case.updated_at = now
    audit.record(session, actor_id, "case.edit", case.code)


# -- photos -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewPhoto:
    """A stored image (media store) about to become a case photo."""

    sha256: str
    width: int
    height: int
    age_years: float | None = None
    kind: str = PHOTO_ORIGINAL


async def add_photos(session: AsyncSession, case: Case, photos: list[NewPhoto], added_by: int | None,
                     now: datetime) -> list[CasePhoto]:
    """Keep ``photos`` with the case, face_status 'pending' for the face worker; the first photo a
    case gets is its primary (the flyer's large one)."""
    has_primary = await session.scalar(
        select(CasePhoto.id).where(CasePhoto.case_id == case.id, CasePhoto.is_primary.is_(True)).limit(1))
    rows: list[CasePhoto] = []
    for photo in photos:
        row = CasePhoto(case_id=case.id, sha256=photo.sha256, width=photo.width, height=photo.height,
                        age_years=photo.age_years, kind=photo.kind, is_primary=has_primary is None and not rows,
                        added_by=added_by, created_at=now)
        session.add(row)
        rows.append(row)
    case.updated_at = now
    await session.flush()
    return rows


async def photos_of(session: AsyncSession, case_id: int) -> list[CasePhoto]:
    """A case's photos, primary first, then in the order they came."""
    rows = await session.scalars(select(CasePhoto).where(CasePhoto.case_id == case_id)
                                 .order_by(CasePhoto.is_primary.desc(), CasePhoto.id))
    return list(rows)


# -- verification and closing -------------------------------------------------------------------

def verify(session: AsyncSession, case: Case, actor_id: int, now: datetime) -> None:
    """A coordinator checked the case: from now on it may be published."""
    case.status = STATUS_ACTIVE
    case.verified_by = actor_id
    case.updated_at = now
    audit.record(session, actor_id, "case.verify", case.code)


def close(session: AsyncSession, case: Case, actor_id: int, status: str, now: datetime) -> None:
    """Found or withdrawn: the deep link answers "closed" from now on; the record stays as a tombstone."""
    case.status = status
    case.closed_at = now
    case.updated_at = now
    audit.record(session, actor_id, f"case.close.{status}", case.code)


# -- the console's listings and counts ----------------------------------------------------------

async def tip_counts(session: AsyncSession, case_ids: list[int]) -> dict[int, int]:
    if not case_ids:
        return {}
    rows = await session.execute(select(Tip.case_id, func.count()).where(Tip.case_id.in_(case_ids))
                                 .group_by(Tip.case_id))
    return {case_id: count for case_id, count in rows if case_id is not None}  # never None: filtered above


@dataclass(frozen=True)
class CasePage:
    cases: list[Case]
    total: int


async def page(session: AsyncSession, statuses: tuple[str, ...], *, offset: int, limit: int) -> CasePage:
    """Cases in ``statuses``, newest first."""
    where = Case.status.in_(statuses)
    total = await session.scalar(select(func.count()).select_from(Case).where(where))
    rows = await session.scalars(select(Case).where(where).order_by(Case.created_at.desc(), Case.id.desc())
                                 .offset(offset).limit(limit))
    return CasePage(list(rows), total or 0)


@dataclass(frozen=True)
class Stats:
    cases_by_status: dict[str, int]
    tips_by_status: dict[str, int]
    tips_by_day: list[tuple[date, int]]  # the last days in the organisation's time zone, oldest first


async def stats(session: AsyncSession, tz: tzinfo, now: datetime, days: int) -> Stats:
    cases_by_status = dict((await session.execute(select(Case.status, func.count()).group_by(Case.status))).all())
    tips_by_status = dict((await session.execute(select(Tip.status, func.count()).group_by(Tip.status))).all())
    today = now.astimezone(tz).date()
    first_day = today - timedelta(days=days - 1)
    # days are counted in the organisation's zone: bucketing here is the same on SQLite and PostgreSQL
    since = datetime.combine(first_day, datetime.min.time(), tz)
    created = await session.scalars(select(Tip.created_at).where(Tip.created_at >= since))
    per_day = Counter(moment.astimezone(tz).date() for moment in created)
    return Stats(cases_by_status, tips_by_status,
                 [(first_day + timedelta(days=n), per_day[first_day + timedelta(days=n)]) for n in range(days)])


# -- the flyer's deep link ----------------------------------------------------------------------

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
