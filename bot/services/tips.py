"""Tips: how a tipster's messages become tips, and what coordinators do with them.

Joining rules (DESIGN.md flow 1): a message joins the tipster's latest tip if it comes within 10
minutes of that tip's last message, within 24 hours of a coordinator's reply to it, or as a Telegram
reply to its acknowledgement; an album is one tip with one acknowledgement. Otherwise it starts a tip.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bot.db.models import (
    AUTHOR_TEAM,
    AUTHOR_TIPSTER,
    PRIORITY_ACK,
    TIP_DISMISSED,
    TIP_NEW,
    TIP_USEFUL,
    Case,
    Tip,
    TipEntry,
    TipMedia,
    User,
)
from bot.db.session_state import state_of
from bot.i18n import t
from bot.services import audit, outbox
from bot.services.media import StoredImage
from bot.services.references import new_alias, new_tip_reference, parse_reference

JOIN_WINDOW = timedelta(minutes=10)
TEAM_REPLY_WINDOW = timedelta(hours=24)
TIP_STATUSES = (TIP_NEW, TIP_USEFUL, TIP_DISMISSED)


@dataclass(frozen=True)
class TipContent:
    """One message's worth of tip: text, a location, an image, or an edit of an earlier message."""

    kind: str  # text | photo | location | edit
    text: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    image: StoredImage | None = None
    media_group_id: str | None = None


@dataclass(frozen=True)
class TipUpdate:
    tip: Tip
    entry: TipEntry
    media: TipMedia | None
    is_new: bool
    # False for the second and later photos of an album: it gets one acknowledgement
    needs_ack: bool
    case: Case | None


_LATEST_TIMES = (
    select(Tip.tipster_id, func.max(Tip.last_message_at).label("latest"))
    .where(Tip.tipster_id.in_(bindparam("tipster_ids", expanding=True))).group_by(Tip.tipster_id).subquery()
)
# Built once: SQLAlchemy finds a statement's compiled form by a key it derives from the statement's
# structure, and a statement object remembers its key; built anew per round, the key was derived
# again every time (the costliest part of this query for a round of one update).
_LATEST_TIPS = select(Tip).join(_LATEST_TIMES, (Tip.tipster_id == _LATEST_TIMES.c.tipster_id)
                                & (Tip.last_message_at == _LATEST_TIMES.c.latest))


async def preload_latest_tips(session: AsyncSession, tipster_ids: set[int]) -> None:
    """One query for the latest tip of every tipster in a batch, instead of one per message."""
    rows = await session.scalars(_LATEST_TIPS, {"tipster_ids": list(tipster_ids)})
    latest: dict[int, Tip | None] = dict.fromkeys(tipster_ids)
    for tip in rows:
        latest[tip.tipster_id] = tip
    state_of(session).latest_tips = latest


async def _latest_tip(session: AsyncSession, tipster_id: int) -> Tip | None:
    preloaded = state_of(session).latest_tips or {}
    if tipster_id in preloaded:
        return preloaded[tipster_id]
    return await session.scalar(
        select(Tip).where(Tip.tipster_id == tipster_id).order_by(Tip.last_message_at.desc()).limit(1)
    )


async def _open_tip(session: AsyncSession, tipster_id: int, now: datetime, replied_tip_id: int | None) -> Tip | None:
    if replied_tip_id is not None:
        tip = await session.get(Tip, replied_tip_id)
        if tip is not None and tip.tipster_id == tipster_id:
            return tip
    latest = await _latest_tip(session, tipster_id)
    if latest is None:
        return None
    if now - latest.last_message_at <= JOIN_WINDOW:
        return latest
    if latest.last_team_reply_at is not None and now - latest.last_team_reply_at <= TEAM_REPLY_WINDOW:
        return latest
    return None


async def add_message(session: AsyncSession, tipster_id: int, content: TipContent, now: datetime, *,
                      replied_tip_id: int | None = None, about_case: Case | None = None) -> TipUpdate:
    """Record one message of a tipster, joining or starting a tip; nothing is flushed here, so a
    batch of tips is written in a few statements at commit."""
    tip = None if about_case is not None else await _open_tip(session, tipster_id, now, replied_tip_id)
    is_new = tip is None
    needs_ack = True
    if tip is None:
        # a random reference of 40 bits: the unique constraint catches the once-in-a-lifetime clash
        tip = Tip(reference=new_tip_reference(), alias=new_alias(), tipster_id=tipster_id,
                  case_id=about_case.id if about_case else None, status=TIP_NEW, created_at=now,
                  last_message_at=now)
        session.add(tip)
    else:
        tip.last_message_at = now
        if content.media_group_id:
            earlier = await session.scalar(
                select(func.count()).select_from(TipEntry)
                .where(TipEntry.tip_id == tip.id, TipEntry.media_group_id == content.media_group_id)
            )
            needs_ack = not earlier
    latest_tips = state_of(session).latest_tips
    if latest_tips is not None:
        latest_tips[tipster_id] = tip
    entry = TipEntry(tip=tip, author=AUTHOR_TIPSTER, kind=content.kind, text=content.text,
                     latitude=content.latitude, longitude=content.longitude,
                     media_group_id=content.media_group_id, created_at=now)
    session.add(entry)
    media = None
    if content.image is not None:
        image = content.image
        media = TipMedia(tip=tip, entry=entry, sha256=image.sha256, width=image.width, height=image.height,
                         taken_at=image.taken_at, gps_lat=image.gps_lat, gps_lon=image.gps_lon, created_at=now)
        session.add(media)
    case = about_case
    if case is None and tip.case_id is not None:
        case = await session.get(Case, tip.case_id)
    return TipUpdate(tip, entry, media, is_new, needs_ack, case)


async def by_reference(session: AsyncSession, text: str) -> Tip | None:
    reference = parse_reference(text, "T")
    if reference is None:
        return None
    return await session.scalar(
        select(Tip).where(Tip.reference == reference)
        .options(selectinload(Tip.entries), selectinload(Tip.media))
    )


@dataclass(frozen=True)
class TipPage:
    tips: list[tuple[Tip, str | None]]  # (tip, case code)
    total: int
    offset: int


async def recent(session: AsyncSession, *, offset: int = 0, limit: int = 10, case: Case | None = None) -> TipPage:
    """Newest first, paged; with ``case``, only that case's tips."""
    return await page_where(session, [Tip.case_id == case.id] if case is not None else [], offset=offset,
                            limit=limit)


async def page_where(session: AsyncSession, where: list, *, offset: int, limit: int) -> TipPage:
    """The tips meeting every condition in ``where``, newest first, paged (with their entries and images)."""
    total = await session.scalar(select(func.count()).select_from(Tip).where(*where))
    rows = await session.execute(
        select(Tip, Case.code).outerjoin(Case, Case.id == Tip.case_id).where(*where)
        .order_by(Tip.created_at.desc(), Tip.id.desc()).offset(offset).limit(limit)
        .options(selectinload(Tip.entries), selectinload(Tip.media))
    )
    return TipPage([(tip, code) for tip, code in rows], total or 0, offset)


def mark(session: AsyncSession, actor_id: int, tip: Tip, status: str) -> None:
    tip.status = status
    audit.record(session, actor_id, f"tip.mark.{status}", tip.reference)


def add_team_reply(session: AsyncSession, actor_id: int, tip: Tip, text: str, now: datetime) -> None:
    """A coordinator's answer: kept with the tip, and it opens a 24-hour window for the tipster."""
    tip.last_team_reply_at = now
    session.add(TipEntry(tip_id=tip.id, author=AUTHOR_TEAM, kind="text", text=text, created_at=now))
    audit.record(session, actor_id, "tip.reply", tip.reference)


async def reply_to_tipster(session: AsyncSession, actor_id: int, tip: Tip, message: str, now: datetime) -> None:
    """The tipster gets ``message`` from "the Reunite team", never from the coordinator by name."""
    add_team_reply(session, actor_id, tip, message, now)
    tipster = await session.get_one(User, tip.tipster_id)
    outbox.enqueue_text(session, tip.tipster_id, t(tipster.language, "team_reply", reference=tip.reference,
                                                   message=message), priority=PRIORITY_ACK, tip=tip)


def first_text(tip: Tip) -> str:
    for entry in tip.entries:
        if entry.author == AUTHOR_TIPSTER and entry.text:
            return entry.text
    return ""
