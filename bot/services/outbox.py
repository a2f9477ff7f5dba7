"""The outbox: every message the bot sends is first a row here, written in the same transaction as
the change it reports. So an acknowledgement is never sent for a tip that was not committed, and a
crash between commit and send only delays the message.

Payloads are Bot API parameters as JSON. A photo or document of ours is named by its SHA-256 in the
media store (``photo_sha256``, ``document_sha256``) and uploaded by the sender, never forwarded: a
forward names the original sender. Once uploaded, Telegram's file_id is remembered with the file
(tip images, flyers), and later sends of the same file use it instead of uploading again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    OUT_FAILED,
    OUT_PENDING,
    OUT_SENT,
    PRIORITY_ACK,
    FlyerFile,
    OutboxMessage,
    Tip,
    TipMedia,
)
from bot.db.session_state import state_of

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
LEAVE_CHAT = "leaveChat"


def utf16_length(text: str) -> int:
    """Telegram counts message and caption lengths in UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """``text`` cut to Telegram's ``limit`` with an ellipsis, never splitting a character."""
    if utf16_length(text) <= limit:
        return text
    units = text.encode("utf-16-le")[: (limit - 1) * 2]
    return units.decode("utf-16-le", errors="ignore") + "…"


@dataclass(frozen=True)
class Outgoing:
    """An outbox row as the sender needs it, detached from any session."""

    id: int
    chat_id: int
    method: str
    payload: dict
    digest_line: str | None
    priority: int
    attempts: int

    @classmethod
    def from_row(cls, row: OutboxMessage) -> Outgoing:
        return cls(row.id, row.chat_id, row.method, json.loads(row.payload), row.digest_line,
                   row.priority, row.attempts)


def enqueue(session: AsyncSession, chat_id: int, method: str, payload: dict, *, priority: int = PRIORITY_ACK,
            digest_line: str | None = None, tip: Tip | None = None) -> OutboxMessage:
    row = OutboxMessage(chat_id=chat_id, method=method, payload=json.dumps(payload, ensure_ascii=False),
                        digest_line=digest_line, priority=priority, status=OUT_PENDING, attempts=0,
                        created_at=datetime.now(UTC), tip=tip)
    session.add(row)
    state_of(session).queued_rows.append(row)
    return row


def committed_rows(session: AsyncSession) -> list[Outgoing]:
    """The rows this session queued that its commit wrote (a rolled-back savepoint's are gone)."""
    state = state_of(session)
    rows, state.queued_rows = state.queued_rows, []
    return [Outgoing.from_row(row) for row in rows if row.id is not None and inspect(row).persistent]


def enqueue_text(session: AsyncSession, chat_id: int, text: str, *, priority: int = PRIORITY_ACK,
                 reply_markup: dict | None = None, digest_line: str | None = None,
                 digest_header: str | None = None, tip: Tip | None = None) -> OutboxMessage:
    """A text message; one with a ``digest_line`` may be merged with others under ``digest_header``."""
    payload: dict = {"text": clip(text, TEXT_LIMIT)}
    if reply_markup:
        payload["reply_markup"] = reply_markup
    if digest_header:
        payload["digest_header"] = digest_header
    return enqueue(session, chat_id, "sendMessage", payload, priority=priority, digest_line=digest_line, tip=tip)


def enqueue_photo(session: AsyncSession, chat_id: int, sha256: str, caption: str, *, priority: int,
                  album_key: str | None = None, gather_seconds: float | None = None) -> OutboxMessage:
    """A stored image of ours; photos with the same ``album_key`` to one chat may go as one album,
    and ``gather_seconds`` holds the first one back that long for the others to arrive."""
    payload: dict = {"photo_sha256": sha256, "caption": clip(caption, CAPTION_LIMIT)}
    if album_key:
        payload["album_key"] = album_key
    if gather_seconds:
        payload["gather_seconds"] = gather_seconds
    return enqueue(session, chat_id, "sendPhoto", payload, priority=priority)


def enqueue_document(session: AsyncSession, chat_id: int, sha256: str, filename: str, caption: str | None = None,
                     *, priority: int = PRIORITY_ACK) -> OutboxMessage:
    """A stored file of ours (a flyer's PDF) as a document named ``filename``."""
    payload: dict = {"document_sha256": sha256, "filename": filename}
    if caption:
        payload["caption"] = clip(caption, CAPTION_LIMIT)
    return enqueue(session, chat_id, "sendDocument", payload, priority=priority)


@dataclass(frozen=True)
class SendResult:
    """What became of a send; one result may cover several rows (a digest or an album)."""

    row_ids: tuple[int, ...]
    status: str  # sent | failed | pending (retry later)
    message_id: int | None = None
    error: str | None = None
    retry_in: float | None = None
    uploaded: tuple[tuple[str, str], ...] = ()  # (sha256, file_id) of files uploaded by this send


# What a message keeps once sent or given up: no words, captions or files (a tipster's words and
# places are in alerts and answers), only its chat and message id (bot.services.retention).
SPENT = {"payload": "{}", "digest_line": None}


async def apply_results(session: AsyncSession, results: list[SendResult]) -> None:
    """Write a batch of send results in one transaction."""
    now = datetime.now(UTC)
    # the common case, sent messages, as one executemany; the rest one statement each
    sent = [{"id": row_id, "status": OUT_SENT, "error": None, "message_id": result.message_id, "sent_at": now,
             **SPENT}
            for result in results if result.status == OUT_SENT and not result.uploaded
            for row_id in result.row_ids]
    if sent:
        await session.execute(update(OutboxMessage), sent)
    for result in results:
        if result.status == OUT_SENT and not result.uploaded:
            continue
        values: dict = {"status": result.status, "error": result.error}
        if result.status != OUT_PENDING:
            values.update(SPENT)
        if result.status == OUT_SENT:
            values.update(message_id=result.message_id, sent_at=now)
        if result.status in (OUT_PENDING, OUT_FAILED):
            values["attempts"] = OutboxMessage.attempts + 1
        if result.retry_in is not None:
            values["not_before"] = now + timedelta(seconds=result.retry_in)
        await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(result.row_ids)).values(**values))
        await remember_uploads(session, result.uploaded)
    await session.commit()


async def remember_uploads(session: AsyncSession, uploaded: tuple[tuple[str, str], ...]) -> None:
    """Keep the file_ids Telegram gave our uploaded files (sha256, file_id), to re-send by file_id."""
    for sha256, file_id in uploaded:
        await session.execute(update(TipMedia).where(TipMedia.sha256 == sha256).values(upload_file_id=file_id))
        await session.execute(update(FlyerFile).where(FlyerFile.sha256 == sha256).values(telegram_file_id=file_id))


async def fail_pending_for_chat(session: AsyncSession, chat_id: int, error: str) -> None:
    """The chat blocked us: nothing queued for it can be delivered."""
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.chat_id == chat_id, OutboxMessage.status == OUT_PENDING)
        .values(status=OUT_FAILED, error=error, **SPENT)
    )


async def uploaded_file_ids(session: AsyncSession, hashes: list[str]) -> dict[str, str]:
    """file_ids of files we uploaded before, so they are re-sent without another upload."""
    if not hashes:
        return {}
    tip_images = await session.execute(
        select(TipMedia.sha256, TipMedia.upload_file_id)
        .where(TipMedia.sha256.in_(hashes), TipMedia.upload_file_id.is_not(None))
    )
    flyers = await session.execute(
        select(FlyerFile.sha256, FlyerFile.telegram_file_id)
        .where(FlyerFile.sha256.in_(hashes), FlyerFile.telegram_file_id.is_not(None))
    )
    return {sha: file_id for sha, file_id in [*tip_images, *flyers]}


async def leaving(session: AsyncSession, chat_id: int) -> bool:
    """The bot is about to leave ``chat_id``: a leaveChat to it is queued and not sent yet."""
    return await session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.chat_id == chat_id, OutboxMessage.method == LEAVE_CHAT,
                                       OutboxMessage.status == OUT_PENDING).limit(1)) is not None


async def tip_of_message(session: AsyncSession, chat_id: int, message_id: int) -> int | None:
    """The tip whose acknowledgement (or team reply) is message ``message_id`` in ``chat_id``."""
    return await session.scalar(
        select(OutboxMessage.tip_id).where(OutboxMessage.chat_id == chat_id,
                                           OutboxMessage.message_id == message_id)
    )
