"""The update inbox: raw updates are committed here before Telegram is told we have them.

A restart (or a second worker) finds every update that was received but not yet processed, and an
update id already stored is never processed twice.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Base, InboxUpdate

# after this many failed attempts an update is set aside (kept, with its error) instead of retried
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class RawUpdate:
    update_id: int
    user_key: int
    payload: dict


def user_key(payload: dict) -> int:
    """Whose update this is: updates with the same key are handled one at a time, in order."""
    for field in ("message", "edited_message", "callback_query", "my_chat_member", "chat_member",
                  "inline_query", "chosen_inline_result", "pre_checkout_query", "shipping_query",
                  "poll_answer", "message_reaction"):
        body = payload.get(field)
        if isinstance(body, dict):
            sender = body.get("from") or body.get("user")
            if isinstance(sender, dict) and "id" in sender:
                return int(sender["id"])
            chat = body.get("chat")
            if isinstance(chat, dict) and "id" in chat:
                return int(chat["id"])
    for field in ("channel_post", "edited_channel_post"):
        body = payload.get(field)
        if isinstance(body, dict) and isinstance(body.get("chat"), dict):
            return int(body["chat"]["id"])
    return 0


def received(payloads: list[dict]) -> list[RawUpdate]:
    """Updates as Telegram sent them (PTB copies what it reads, so the payloads are kept as given)."""
    return [RawUpdate(int(p["update_id"]), user_key(p), p) for p in payloads]


# run by every round of updates: built once (see tips._LATEST_TIPS), on the table rather than the
# model, as the rows are plain values (the ORM's bulk INSERT path adds nothing but CPU here)
_INBOX = Base.metadata.tables[InboxUpdate.__tablename__]
_ADD_NEW = {
    name: dialect_insert(_INBOX).on_conflict_do_nothing(index_elements=["update_id"]).returning(_INBOX.c.update_id)
    for name, dialect_insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


async def add(session: AsyncSession, updates: list[RawUpdate], handled: Collection[int] = frozenset()) -> set[int]:
    """Insert the updates not seen before, without committing; returns their ids (already-known ids
    are skipped). Those in ``handled`` are being handled in this transaction: stored as processed,
    without the payload (it names the sender), as :func:`mark_processed` leaves them."""
    if not updates:
        return set()
    now = datetime.now(UTC)
    rows = [
        {"update_id": raw.update_id, "user_key": raw.user_key, "received_at": now, "attempts": 0,
         **({"payload": "{}", "processed_at": now} if raw.update_id in handled
            else {"payload": json.dumps(raw.payload), "processed_at": None})}
        for raw in updates
    ]
    result = await session.execute(_ADD_NEW[session.get_bind().dialect.name], rows)
    return set(result.scalars())


async def store(session: AsyncSession, payloads: list[dict]) -> list[RawUpdate]:
    """Commit updates not seen before, to be handled later; return those that were new."""
    updates = received(payloads)
    new_ids = await add(session, updates)
    await session.commit()
    return [raw for raw in updates if raw.update_id in new_ids]


async def unprocessed(session: AsyncSession) -> list[RawUpdate]:
    rows = await session.scalars(
        select(InboxUpdate).where(InboxUpdate.processed_at.is_(None)).order_by(InboxUpdate.update_id)
    )
    return [RawUpdate(r.update_id, r.user_key, json.loads(r.payload)) for r in rows]


# both run once per round of updates: built once (see tips._LATEST_TIPS)
_HANDLED_AMONG = select(InboxUpdate.update_id).where(
    InboxUpdate.update_id.in_(bindparam("update_ids", expanding=True)), InboxUpdate.processed_at.is_not(None))
# an update set aside in the same round keeps its payload (and its mark)
_MARK_PROCESSED = (update(InboxUpdate).where(InboxUpdate.update_id.in_(bindparam("update_ids", expanding=True)),
                                             InboxUpdate.attempts < MAX_ATTEMPTS)
                   .values(processed_at=bindparam("now"), payload="{}"))


async def processed_among(session: AsyncSession, update_ids: list[int]) -> set[int]:
    """Those of ``update_ids`` already handled (a commit that went through though it was reported
    as failed): handling them again would answer twice."""
    return set(await session.scalars(_HANDLED_AMONG, {"update_ids": update_ids}))


async def mark_processed(session: AsyncSession, update_ids: list[int]) -> None:
    """Done: the raw payload (which names the sender) is dropped; the id stays to refuse re-delivery."""
    if update_ids:
        await session.execute(_MARK_PROCESSED, {"update_ids": update_ids, "now": datetime.now(UTC)})


async def record_failure(session: AsyncSession, update_id: int, error: str) -> int:
    """Count a failed attempt; returns the number of attempts so far."""
    row = await session.get(InboxUpdate, update_id)
    if row is None:
        return MAX_ATTEMPTS
    row.attempts += 1
    row.error = error[:200]
    if row.attempts >= MAX_ATTEMPTS:
        # set aside, not deleted: an operator can look at the payload and the error
        row.processed_at = datetime.now(UTC)
    await session.commit()
    return row.attempts


async def set_aside(session: AsyncSession, raw: RawUpdate, error: str) -> None:
    """Never to be processed (it cannot be); the payload stays for an operator to look at."""
    await session.execute(
        update(InboxUpdate).where(InboxUpdate.update_id == raw.update_id)
        .values(processed_at=datetime.now(UTC), error=error[:200], attempts=MAX_ATTEMPTS,
                payload=json.dumps(raw.payload))
    )
