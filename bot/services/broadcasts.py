"""Broadcasts (DESIGN flow 5): an active case's card sent to every subscriber whose area covers its
last-seen place, each chat once, paced by the one sender.

Life of a broadcast: ``draft`` (its audience size was shown to the requester) -> a coordinator's
"Send" makes it ``sending``; a family's "Ask" makes it ``awaiting_approval`` until a coordinator's
/approve (``sending``) or /reject (``rejected``). ``sending`` ends ``done``, ``cancelled``
(/cancel_broadcast) or ``withdrawn`` (its case was closed). Starting writes one ``deliveries`` row per
chat; the sender (bot/transport/broadcast_lane.py) takes them from there. Privacy rule 3: only an
active (verified, open) case is ever broadcast, checked again when sending starts.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.config import Region
from bot.db.models import (
    BROADCAST_AWAITING_APPROVAL,
    BROADCAST_CANCELLED,
    BROADCAST_DONE,
    BROADCAST_DRAFT,
    BROADCAST_REJECTED,
    BROADCAST_SENDING,
    BROADCAST_WITHDRAWN,
    DELIVERY_BLOCKED,
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    DELIVERY_UNKNOWN,
    PRIORITY_ALERT,
    Broadcast,
    Case,
    Delivery,
    OutboxMessage,
    User,
)
from bot.db.session_state import ReuniteSyncSession, state_of
from bot.i18n import t
from bot.services import audit, cases, outbox, subscriptions
from bot.services.references import new_broadcast_reference, parse_reference


@event.listens_for(ReuniteSyncSession, "before_flush")
def _note_changes_for_the_lane(session: Session, _flush_context, _instances) -> None:
    state = state_of(session)
    if not state.lane_may_change and any(
            isinstance(row, (Broadcast, Case)) for row in itertools.chain(session.new, session.dirty, session.deleted)):
        state.lane_may_change = True


def lane_may_change(session: AsyncSession) -> bool:
    """Whether what ``session`` committed may have started, stopped or withdrawn a broadcast (a
    broadcast or a case was written): the sender's lane then looks in the database at once, rather
    than after every commit (it looks every half second anyway, for other workers' changes)."""
    state = state_of(session)
    changed, state.lane_may_change = state.lane_may_change, False
    return changed


# broadcasts that may still send (or be sent): closing their case withdraws them
OPEN_BROADCAST_STATUSES = (BROADCAST_DRAFT, BROADCAST_AWAITING_APPROVAL, BROADCAST_SENDING)
INSERT_CHUNK = 1000
RECENT_LIMIT = 10
# card language of a subscriber's language (the flyers' "en" | "zh")
CARD_LANGUAGES = {"en": "en", "zh": "zh"}


async def by_reference(session: AsyncSession, text: str) -> Broadcast | None:
    reference = parse_reference(text, "B")
    if reference is None:
        return None
    return await session.scalar(select(Broadcast).where(Broadcast.reference == reference))


def reference_as_typed(text: str) -> str:
    return parse_reference(text, "B") or text[:20]


async def draft(session: AsyncSession, case: Case, requester_id: int, audience: int, now: datetime) -> Broadcast:
    """A broadcast of ``case`` whose ``audience`` size was counted, waiting for the requester's button."""
    while True:
        reference = new_broadcast_reference()
        if await session.scalar(select(Broadcast.id).where(Broadcast.reference == reference)) is None:
            break
    broadcast = Broadcast(reference=reference, case_id=case.id, status=BROADCAST_DRAFT, requested_by=requester_id,
                          audience=audience, created_at=now)
    session.add(broadcast)
    await session.flush()
    return broadcast


def ask_approval(session: AsyncSession, broadcast: Broadcast, actor_id: int) -> None:
    broadcast.status = BROADCAST_AWAITING_APPROVAL
    audit.record(session, actor_id, "broadcast.request", broadcast.reference)


@dataclass(frozen=True)
class CardFile:
    """What a card in one language is made of: the image in the media store and the button's data."""

    sha256: str
    button_data: str


async def start(session: AsyncSession, broadcast: Broadcast, case: Case, *, regions: tuple[Region, ...],
                actor_id: int, now: datetime, card_file) -> int:
    """Start sending: one delivery per chat of today's audience, the card of each language they
    speak (``card_file(card_language)`` -> :class:`CardFile`), and the requester's progress message.
    Returns the number of deliveries."""
    recipients = await subscriptions.audience(session, case, regions)
    cards = {}
    for language in sorted({recipient.language for recipient in recipients}):
        card = await card_file(CARD_LANGUAGES.get(language, "en"))
        cards[language] = {
            "photo_sha256": card.sha256,
            "caption": outbox.clip(t(language, "broadcast_caption", name=case.name, code=case.code,
                                     place=case.last_seen_place or ""), outbox.CAPTION_LIMIT),
            "reply_markup": {"inline_keyboard": [[{"text": t(language, "button_have_information"),
                                                   "callback_data": card.button_data}]]},
        }
    for first in range(0, len(recipients), INSERT_CHUNK):
        await session.execute(insert(Delivery), [
            {"broadcast_id": broadcast.id, "chat_id": recipient.chat_id, "language": recipient.language,
             "status": DELIVERY_PENDING} for recipient in recipients[first:first + INSERT_CHUNK]])
    broadcast.status = BROADCAST_SENDING
    broadcast.audience = len(recipients)
    broadcast.cards = json.dumps(cards, ensure_ascii=False)
    broadcast.started_at = now
    if actor_id != broadcast.requested_by:
        broadcast.approved_by = actor_id
    requester = await _requester(session, broadcast)
    if requester is not None:
        progress = outbox.enqueue_text(session, requester.id,
                                       progress_text(requester.language, broadcast, case, Counts(), rate=None),
                                       priority=PRIORITY_ALERT)
        await session.flush()
        broadcast.progress_outbox_id = progress.id
    audit.record(session, actor_id, "broadcast.start", broadcast.reference)
    return len(recipients)


# -- progress -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Counts:
    """How a broadcast's deliveries stand."""

    total: int = 0
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    unknown: int = 0

    @property
    def remaining(self) -> int:
        return self.pending + self.sending


async def counts(session: AsyncSession, broadcast_id: int) -> Counts:
    rows = dict((await session.execute(select(Delivery.status, func.count())
                                       .where(Delivery.broadcast_id == broadcast_id)
                                       .group_by(Delivery.status))).all())
    return Counts(total=sum(rows.values()), pending=rows.get(DELIVERY_PENDING, 0),
                  sending=rows.get(DELIVERY_SENDING, 0), sent=rows.get(DELIVERY_SENT, 0),
                  failed=rows.get(DELIVERY_FAILED, 0), blocked=rows.get(DELIVERY_BLOCKED, 0),
                  unknown=rows.get(DELIVERY_UNKNOWN, 0))


def _time_left(language: str, remaining: int, rate: float | None) -> str:
    if not rate:
        return t(language, "time_left_unknown")
    seconds = remaining / rate
    if seconds < 60:
        return t(language, "time_left_seconds", seconds=max(1, round(seconds)))
    return t(language, "time_left_minutes", minutes=round(seconds / 60))


def progress_text(language: str, broadcast: Broadcast, case: Case, tally: Counts, rate: float | None) -> str:
    return t(language, "broadcast_progress", reference=broadcast.reference, name=case.name, code=case.code,
             sent=tally.sent, total=broadcast.audience, failed=tally.failed,
             blocked=tally.blocked, left=_time_left(language, broadcast.audience - tally.sent - tally.failed
                                                   - tally.unknown - tally.blocked, rate))


def summary_text(language: str, broadcast: Broadcast, case: Case, tally: Counts) -> str:
    return t(language, f"broadcast_summary_{broadcast.status}", reference=broadcast.reference, name=case.name,
             code=case.code, sent=tally.sent, total=broadcast.audience, failed=tally.failed,
             blocked=tally.blocked, unknown=tally.unknown)


async def _progress_message_id(session: AsyncSession, broadcast: Broadcast) -> int | None:
    if broadcast.progress_outbox_id is None:
        return None
    return await session.scalar(select(OutboxMessage.message_id)
                                .where(OutboxMessage.id == broadcast.progress_outbox_id))


async def _requester(session: AsyncSession, broadcast: Broadcast) -> User | None:
    """Who asked for ``broadcast``; None if they are no longer known (``requested_by`` is no foreign
    key: a coordinator whose role was revoked may since have been forgotten as an idle user)."""
    return await session.get(User, broadcast.requested_by)


async def _edit_progress(session: AsyncSession, broadcast: Broadcast, requester: User, text: str) -> bool:
    """Edit the requester's progress message to ``text``; False while it has not been sent yet."""
    message_id = await _progress_message_id(session, broadcast)
    if message_id is None:
        return False
    outbox.enqueue(session, requester.id, "editMessageText", {"message_id": message_id, "text": text},
                   priority=PRIORITY_ALERT)
    return True


async def finish(session: AsyncSession, broadcast: Broadcast, status: str, now: datetime) -> None:
    """``broadcast`` ends as ``status``: the progress message shows where it stopped, and the
    requester gets a summary."""
    broadcast.status = status
    broadcast.finished_at = now
    requester = await _requester(session, broadcast)
    if requester is None:
        return
    case = await session.get_one(Case, broadcast.case_id)
    tally = await counts(session, broadcast.id)
    await _edit_progress(session, broadcast, requester, progress_text(requester.language, broadcast, case, tally, None))
    outbox.enqueue_text(session, requester.id, summary_text(requester.language, broadcast, case, tally),
                        priority=PRIORITY_ALERT)


class ProgressReporter:
    """Edits each running broadcast's progress message as it goes and finishes the broadcasts that
    have no delivery left. Runs beside the one sender (so once, whatever the number of workers);
    remembers what it last wrote, so an unchanged message is not edited."""

    def __init__(self) -> None:
        self._shown: dict[int, str] = {}
        self._sent_before: dict[int, tuple[datetime, int]] = {}

    def _rate(self, broadcast_id: int, sent: int, now: datetime, configured: float) -> float:
        before = self._sent_before.get(broadcast_id)
        self._sent_before[broadcast_id] = (now, sent)
        if before is None or now <= before[0] or sent <= before[1]:
            return configured
        return (sent - before[1]) / (now - before[0]).total_seconds()

    async def report(self, session: AsyncSession, now: datetime, configured_rate: float) -> None:
        running = list(await session.scalars(select(Broadcast).where(Broadcast.status == BROADCAST_SENDING)))
        for broadcast in running:
            tally = await counts(session, broadcast.id)
            if tally.remaining == 0:
                await finish(session, broadcast, BROADCAST_DONE, now)
                self._shown.pop(broadcast.id, None)
                self._sent_before.pop(broadcast.id, None)
                continue
            requester = await _requester(session, broadcast)
            if requester is None:
                continue
            case = await session.get_one(Case, broadcast.case_id)
            text = progress_text(requester.language, broadcast, case, tally,
                                 self._rate(broadcast.id, tally.sent, now, configured_rate))
            if self._shown.get(broadcast.id) != text and await _edit_progress(session, broadcast, requester, text):
                self._shown[broadcast.id] = text
        await session.commit()


# -- stopping -----------------------------------------------------------------------------------

async def _tell_requester(session: AsyncSession, broadcast: Broadcast, key: str, **values: object) -> None:
    """Message ``key`` to whoever asked for ``broadcast``, in their language."""
    requester = await _requester(session, broadcast)
    if requester is None:
        return
    case = await session.get_one(Case, broadcast.case_id)
    outbox.enqueue_text(session, requester.id, t(requester.language, key, reference=broadcast.reference,
                                                 name=case.name, **values), priority=PRIORITY_ALERT)


async def _stop(session: AsyncSession, broadcast: Broadcast, status: str, now: datetime,
                request_notice: str | None) -> None:
    """``broadcast`` ends as ``status``. Its requester sees where a running one stopped; a request
    still awaiting approval tells them ``request_notice`` (None: they know already), so a family
    is never left waiting for an answer that will not come."""
    if broadcast.status == BROADCAST_SENDING:
        await finish(session, broadcast, status, now)
        return
    if broadcast.status == BROADCAST_AWAITING_APPROVAL and request_notice:
        await _tell_requester(session, broadcast, request_notice)
    broadcast.status, broadcast.finished_at = status, now


async def reject(session: AsyncSession, broadcast: Broadcast, actor_id: int, reason: str, now: datetime) -> None:
    """A family's request is turned down: nothing is sent, and they read ``reason``."""
    audit.record(session, actor_id, "broadcast.reject", broadcast.reference)
    await _tell_requester(session, broadcast, "family_broadcast_rejected", reason=reason)
    broadcast.status, broadcast.finished_at = BROADCAST_REJECTED, now


async def cancel(session: AsyncSession, broadcast: Broadcast, actor_id: int, now: datetime) -> None:
    """Nothing more goes out; sends already in flight finish. A family whose request someone else
    cancelled is told it was not sent."""
    audit.record(session, actor_id, "broadcast.cancel", broadcast.reference)
    await _stop(session, broadcast, BROADCAST_CANCELLED, now,
                None if actor_id == broadcast.requested_by else "family_broadcast_cancelled")


async def withdraw_case(session: AsyncSession, case: Case, now: datetime) -> None:
    """The case was closed: its open broadcasts stop, and a family's request awaiting approval is
    answered. Its broadcast messages of the last 48 hours are deleted by the sender, which finds
    them by the case's closed status (those of finished broadcasts too). Recipients are not told why."""
    for broadcast in await session.scalars(select(Broadcast).where(Broadcast.case_id == case.id,
                                                                   Broadcast.status.in_(OPEN_BROADCAST_STATUSES))):
        await _stop(session, broadcast, BROADCAST_WITHDRAWN, now, "family_broadcast_withdrawn")


# -- listing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listed:
    broadcast: Broadcast
    case_code: str
    sent: int


async def recent(session: AsyncSession, requested_by: int | None, limit: int = RECENT_LIMIT) -> list[Listed]:
    """The newest broadcasts (of one requester, or all), with how many were sent."""
    query = (select(Broadcast, Case.code).join(Case, Case.id == Broadcast.case_id)
             .order_by(Broadcast.created_at.desc(), Broadcast.id.desc()).limit(limit))
    if requested_by is not None:
        query = query.where(Broadcast.requested_by == requested_by)
    rows = (await session.execute(query)).all()
    sent = dict((await session.execute(
        select(Delivery.broadcast_id, func.count()).where(Delivery.broadcast_id.in_([b.id for b, _ in rows]),
                                                          Delivery.status == DELIVERY_SENT)
        .group_by(Delivery.broadcast_id))).all())
    return [Listed(broadcast, code, sent.get(broadcast.id, 0)) for broadcast, code in rows]


def may_broadcast(case: Case) -> bool:
    """Privacy rule 3: only a verified, open appeal."""
    return case.status == cases.STATUS_ACTIVE
