"""The console's overview: figures over time, the map's points, and the audit log."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import MATCH_CONFIRMED, AuditEvent, Case, MatchCandidate
from bot.services import cases


def by_week(days: list[tuple[date, int]]) -> list[tuple[date, int]]:
    """Daily counts summed into weeks (Monday first), oldest first."""
    weeks: Counter[date] = Counter()
    for day, count in days:
        weeks[day - timedelta(days=day.weekday())] += count
    return sorted(weeks.items())


async def confirmed_leads_by_week(session: AsyncSession, tz: tzinfo, now: datetime, weeks: int
                                  ) -> list[tuple[date, int]]:
    """Leads confirmed per week (Monday first) over the last ``weeks`` weeks, oldest first."""
    today = now.astimezone(tz).date()
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    since = datetime.combine(first, datetime.min.time(), tz)
    reviewed = await session.scalars(select(MatchCandidate.reviewed_at).where(
        MatchCandidate.status == MATCH_CONFIRMED, MatchCandidate.reviewed_at >= since))
    # reviewed_at is never None here (compared above); the check is for the type
    counted = Counter(moment.astimezone(tz).date() for moment in reviewed if moment is not None)
    days = [(first + timedelta(days=n), counted[first + timedelta(days=n)]) for n in range((today - first).days + 1)]
    return by_week(days)


@dataclass(frozen=True)
class CasePlace:
    code: str
    name: str
    status: str
    latitude: float
    longitude: float


async def last_seen_places(session: AsyncSession, case_id: int | None) -> list[CasePlace]:
    """Where open cases were last seen (those with a point on the map)."""
    query = select(Case.code, Case.name, Case.status, Case.last_seen_lat, Case.last_seen_lon).where(
        Case.status.in_(cases.OPEN_STATUSES), Case.last_seen_lat.is_not(None), Case.last_seen_lon.is_not(None))
    if case_id is not None:
        query = query.where(Case.id == case_id)
    rows = await session.execute(query.order_by(Case.id))
    # the coordinates are never None here (filtered above); the check is for the type
    return [CasePlace(code, name, status, lat, lon) for code, name, status, lat, lon in rows
            if lat is not None and lon is not None]


@dataclass(frozen=True)
class AuditPage:
    events: list[AuditEvent]
    total: int


async def audit_page(session: AsyncSession, *, offset: int, limit: int) -> AuditPage:
    """The audit log, newest first."""
    total = await session.scalar(select(func.count()).select_from(AuditEvent))
    events = await session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).offset(offset).limit(limit))
    return AuditPage(list(events), total or 0)
