"""The console's tip queue: tips found by status, case, date, photo, place and words, and the places
tips were sent from (for the map)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AUTHOR_TIPSTER, Case, Tip, TipEntry, TipMedia
from bot.services import tips
from bot.services.references import parse_reference

MAX_SEARCH_CHARS = 100


@dataclass(frozen=True)
class TipFilter:
    status: str | None = None
    case_id: int | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    has_photo: bool = False
    has_place: bool = False
    words: str = ""  # in what the tipster wrote, or a tip reference


def _has_place():
    return or_(exists().where(TipEntry.tip_id == Tip.id, TipEntry.latitude.is_not(None)),
               exists().where(TipMedia.tip_id == Tip.id, TipMedia.gps_lat.is_not(None)))


def _conditions(wanted: TipFilter) -> list:
    where = []
    if wanted.status in tips.TIP_STATUSES:
        where.append(Tip.status == wanted.status)
    if wanted.case_id is not None:
        where.append(Tip.case_id == wanted.case_id)
    if wanted.since is not None:
        where.append(Tip.created_at >= wanted.since)
    if wanted.until is not None:
        where.append(Tip.created_at < wanted.until)
    if wanted.has_photo:
        where.append(exists().where(TipMedia.tip_id == Tip.id))
    if wanted.has_place:
        where.append(_has_place())
    words = wanted.words.strip()[:MAX_SEARCH_CHARS]
    if words:
        reference = parse_reference(words, "T")
        # lower() on both sides: SQLite's LIKE folds ASCII only, PostgreSQL's not at all
        pattern = "%" + words.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        said = exists().where(TipEntry.tip_id == Tip.id, TipEntry.author == AUTHOR_TIPSTER,
                              func.lower(TipEntry.text).like(pattern, escape="\\"))
        where.append(or_(said, Tip.reference == reference) if reference else said)
    return where


async def find(session: AsyncSession, wanted: TipFilter, *, offset: int, limit: int) -> tips.TipPage:
    """The tips ``wanted`` describes, newest first, paged."""
    return await tips.page_where(session, _conditions(wanted), offset=offset, limit=limit)


async def by_references(session: AsyncSession, references: list[str]) -> list[Tip]:
    """The tips named (typed references are read as /tip reads them); unknown ones are left out."""
    canonical = {ref for text in references if (ref := parse_reference(text, "T"))}
    if not canonical:
        return []
    return list(await session.scalars(select(Tip).where(Tip.reference.in_(canonical))))


async def with_case_code(session: AsyncSession, tip: Tip) -> str | None:
    return await session.scalar(select(Case.code).where(Case.id == tip.case_id)) if tip.case_id else None


@dataclass(frozen=True)
class TipPlace:
    reference: str
    latitude: float
    longitude: float
    at: datetime
    case_id: int | None


async def places(session: AsyncSession, *, case_id: int | None, since: datetime | None,
                 until: datetime | None, limit: int = 2000) -> list[TipPlace]:
    """Where tips put someone: shared locations and photos' GPS, newest first."""
    wanted = TipFilter(case_id=case_id, since=since, until=until)
    where = _conditions(wanted)
    shared = await session.execute(
        select(Tip.reference, TipEntry.latitude, TipEntry.longitude, TipEntry.created_at, Tip.case_id)
        .join(TipEntry, TipEntry.tip_id == Tip.id).where(TipEntry.latitude.is_not(None), *where)
        .order_by(TipEntry.created_at.desc()).limit(limit))
    photographed = await session.execute(
        select(Tip.reference, TipMedia.gps_lat, TipMedia.gps_lon, TipMedia.created_at, Tip.case_id)
        .join(TipMedia, TipMedia.tip_id == Tip.id).where(TipMedia.gps_lat.is_not(None), *where)
        .order_by(TipMedia.created_at.desc()).limit(limit))
    found = [TipPlace(*row) for row in [*shared, *photographed]]
    return sorted(found, key=lambda place: place.at, reverse=True)[:limit]

