"""What one database session (a round of updates, a task's unit of work) remembers between the
service calls made in it: one typed object, kept in the session's ``info`` so that the async session
and the sync one SQLAlchemy runs flushes in see the same.

The processor preloads a round's users, conversation states and latest tips in three queries, and
the services then answer from here instead of asking the database once per update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from bot.db.models import OutboxMessage, Tip, User

_KEY = "reunite.session_state"


class ReuniteSyncSession(Session):
    """The sync session behind every AsyncSession of the bot (``create_sessionmaker``): the project's
    flush hooks (:mod:`bot.db.batch_insert`, the broadcast lane's) listen on it, not on every
    SQLAlchemy session in the process."""


@dataclass
class SessionState:
    #: users of a preloaded round that have no row yet (no need to look them up)
    users_absent: set[int] = field(default_factory=set)
    #: everyone who gets coordinator alerts privately, once asked (None: not asked yet, or roles changed)
    coordinators: list[User] | None = None
    #: tipster id -> their latest tip (or None), for a preloaded round (None: not preloaded)
    latest_tips: dict[int, Tip | None] | None = None
    #: users known to have no conversation state
    without_conversation: set[int] = field(default_factory=set)
    #: outbox rows queued in this session, handed to the sender once committed
    queued_rows: list[OutboxMessage] = field(default_factory=list)
    #: a broadcast or a case was written: what the sender's broadcast lane has to send may have changed
    lane_may_change: bool = False


def state_of(session: AsyncSession | Session) -> SessionState:
    """The state of ``session`` (made on first use)."""
    state = session.info.get(_KEY)
    if state is None:
        state = session.info[_KEY] = SessionState()
    return state
