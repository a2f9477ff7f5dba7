"""Deliveries as the sender sees them: which to send next, claiming them (``sending``, committed
before the call), their results, recovery after a crash, and which sent ones to take down when a
case closes.

Exactly once: a delivery is ``sending`` in the database before its message leaves, and only the one
sender (PostgreSQL advisory lock) claims. A claim succeeds only for a delivery still ``pending`` of
a broadcast still ``sending``, so a cancel or a close committed a moment before stops it. At start,
any ``sending`` left by a crash becomes ``unknown``: it may have arrived, so it is never sent again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.dml import rows_affected
from bot.db.models import (
    BROADCAST_SENDING,
    DELIVERY_BLOCKED,
    DELIVERY_PENDING,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    DELIVERY_UNKNOWN,
    Broadcast,
    Case,
    Delivery,
)
from bot.services import cases, outbox

# Telegram lets a bot delete its messages for 48 hours
DELETABLE_FOR = timedelta(hours=48)


@dataclass(frozen=True)
class Job:
    """A delivery to send, or (``message_id`` set) a sent one to delete; ``claimed`` once it is
    ``sending`` in the database (a delivery put back after a 429 is not claimed again)."""

    delivery_id: int
    broadcast_id: int
    chat_id: int
    language: str
    message_id: int | None = None
    claimed: bool = False

    @property
    def is_withdrawal(self) -> bool:
        return self.message_id is not None


@dataclass(frozen=True)
class Card:
    """A broadcast's message in one language."""

    photo_sha256: str
    caption: str
    reply_markup: dict


@dataclass(frozen=True)
class DeliveryResult:
    delivery_id: int
    status: str  # a delivery status, or DELETED for a withdrawal
    message_id: int | None = None
    error: str | None = None
    uploaded: tuple[tuple[str, str], ...] = ()  # (sha256, file_id) of a card uploaded by this send


DELETED = "deleted"


async def recover(session: AsyncSession) -> int:
    """After a crash: deliveries caught mid-call may have arrived; never send them again."""
    recovered = await rows_affected(session, update(Delivery).where(Delivery.status == DELIVERY_SENDING)
                                    .values(status=DELIVERY_UNKNOWN, error="interrupted"))
    await session.commit()
    return recovered


async def pending_after(session: AsyncSession, after_id: int, limit: int) -> list[Job]:
    """The next ``limit`` pending deliveries of running broadcasts, by id (older broadcasts first)."""
    rows = await session.execute(
        select(Delivery.id, Delivery.broadcast_id, Delivery.chat_id, Delivery.language)
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .where(Broadcast.status == BROADCAST_SENDING, Delivery.status == DELIVERY_PENDING, Delivery.id > after_id)
        .order_by(Delivery.id).limit(limit))
    return [Job(*row) for row in rows]


async def to_withdraw(session: AsyncSession, exclude: set[int], limit: int, now: datetime) -> list[Job]:
    """Sent broadcast messages of closed cases that are young enough to delete and not deleted yet.
    Only cases closed within the last 48 hours can have any."""
    rows = await session.execute(
        select(Delivery.id, Delivery.broadcast_id, Delivery.chat_id, Delivery.language, Delivery.message_id)
        .join(Broadcast, Broadcast.id == Delivery.broadcast_id)
        .join(Case, Case.id == Broadcast.case_id)
        .where(Case.status.in_(cases.CLOSED_STATUSES), Case.closed_at >= now - DELETABLE_FOR,
               Delivery.status == DELIVERY_SENT, Delivery.message_id.is_not(None), Delivery.deleted_at.is_(None),
               Delivery.sent_at >= now - DELETABLE_FOR)
        .order_by(Delivery.id).limit(limit + len(exclude)))
    return [Job(*row) for row in rows if row.id not in exclude][:limit]


async def cards_of(session: AsyncSession, broadcast_ids: set[int]) -> dict[int, dict[str, Card]]:
    """Each broadcast's card by subscriber language."""
    if not broadcast_ids:
        return {}
    rows = await session.execute(select(Broadcast.id, Broadcast.cards).where(Broadcast.id.in_(broadcast_ids)))
    return {broadcast_id: {language: Card(**card) for language, card in json.loads(cards or "{}").items()}
            for broadcast_id, cards in rows}


async def claim(session: AsyncSession, delivery_ids: list[int], results: list[DeliveryResult],
                now: datetime) -> set[int]:
    """Record ``results`` and mark these deliveries ``sending``, in one commit; the ids that may now
    be sent (the others were cancelled, withdrawn or are no longer pending). The sender claims only
    as many as calls have ended, and those calls' results are written here: so the database never
    holds more ``sending`` rows than calls in flight, and a crash leaves no more ``unknown``."""
    await write_results(session, results, now)
    if not delivery_ids:
        await session.commit()
        return set()
    running = select(Broadcast.id).where(Broadcast.status == BROADCAST_SENDING)
    claimed = await session.scalars(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == DELIVERY_PENDING, Delivery.broadcast_id.in_(running))
        .values(status=DELIVERY_SENDING)
        .returning(Delivery.id)
        .execution_options(synchronize_session=False))
    ids = set(claimed)
    await session.commit()
    return ids


async def write_results(session: AsyncSession, results: list[DeliveryResult], now: datetime) -> None:
    """Record what became of sends and deletions, and the file_id of a card uploaded by one, so no
    worker uploads it again (committed by the caller, with the outbox's)."""
    await outbox.remember_uploads(session, tuple(upload for result in results for upload in result.uploaded))
    sent = [{"id": r.delivery_id, "status": r.status, "message_id": r.message_id, "error": r.error,
             "sent_at": now if r.status == DELIVERY_SENT else None} for r in results if r.status != DELETED]
    if sent:
        await session.execute(update(Delivery), sent)
    deleted = [{"id": r.delivery_id, "deleted_at": now, "error": r.error} for r in results if r.status == DELETED]
    if deleted:
        await session.execute(update(Delivery), deleted)


async def block_pending_for_chat(session: AsyncSession, chat_id: int) -> None:
    """The chat blocked us: its other waiting deliveries cannot arrive either."""
    await session.execute(update(Delivery).where(Delivery.chat_id == chat_id, Delivery.status == DELIVERY_PENDING)
                          .values(status=DELIVERY_BLOCKED, error="blocked"))
