"""Conversation state in the database: a restart or another worker continues where a user was."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import ConversationState
from bot.db.session_state import state_of


@dataclass(frozen=True)
class State:
    flow: str
    step: str
    data: dict
    updated_at: datetime


# built once (see tips._LATEST_TIPS)
_STATES_OF = select(ConversationState).where(ConversationState.user_id.in_(bindparam("user_ids", expanding=True)))


async def preload(session: AsyncSession, user_ids: set[int]) -> list[ConversationState]:
    """Load the states of a batch of users at once; the rows are returned so the caller keeps them
    alive in the session's identity map (which holds objects weakly)."""
    rows = list(await session.scalars(_STATES_OF, {"user_ids": list(user_ids)}))
    state_of(session).without_conversation = user_ids - {row.user_id for row in rows}
    return rows


async def get(session: AsyncSession, user_id: int) -> State | None:
    if user_id in state_of(session).without_conversation:
        return None
    row = await session.get(ConversationState, user_id)
    if row is None:
        return None
    return State(row.flow, row.step, json.loads(row.data), row.updated_at)


async def put(session: AsyncSession, user_id: int, flow: str, step: str, data: dict) -> None:
    state_of(session).without_conversation.discard(user_id)
    row = await session.get(ConversationState, user_id)
    now = datetime.now(UTC)
    if row is None:
        session.add(ConversationState(user_id=user_id, flow=flow, step=step, data=json.dumps(data),
                                      updated_at=now))
    else:
        row.flow, row.step, row.data, row.updated_at = flow, step, json.dumps(data), now


async def clear(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(ConversationState).where(ConversationState.user_id == user_id))
    state_of(session).without_conversation.add(user_id)
