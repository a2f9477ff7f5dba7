"""Conversation state in the database: a restart or another worker continues where a user was."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import ConversationState


@dataclass(frozen=True)
class State:
    flow: str
    step: str
    data: dict
    updated_at: datetime


async def get(session: AsyncSession, user_id: int) -> State | None:
    row = await session.get(ConversationState, user_id)
    if row is None:
        return None
    return State(row.flow, row.step, json.loads(row.data), row.updated_at)


async def put(session: AsyncSession, user_id: int, flow: str, step: str, data: dict) -> None:
    row = await session.get(ConversationState, user_id)
    now = datetime.now(timezone.utc)
    if row is None:
        session.add(ConversationState(user_id=user_id, flow=flow, step=step, data=json.dumps(data),
                                      updated_at=now))
    else:
        row.flow, row.step, row.data, row.updated_at = flow, step, json.dumps(data), now


async def clear(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(ConversationState).where(ConversationState.user_id == user_id))
