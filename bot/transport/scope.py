"""The scope one update is handled in: its database session, the settings, the person, the time.

The update processor sets it around each update (``current_scope``); handlers read it through
``ReuniteContext`` (bot/handlers/common.py), and PTB's error handler reports a handler's failure
into it, so the processor can roll the round back.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.db.models import User


@dataclass
class UpdateScope:
    """Everything one update is handled with; set by the update processor around each update."""

    session: AsyncSession
    settings: Settings
    user: User | None
    now: datetime
    # over the per-user rate limit: content is still kept, acknowledgements are held back
    quiet: bool = False
    errors: list[BaseException] = field(default_factory=list)


current_scope: contextvars.ContextVar[UpdateScope] = contextvars.ContextVar("current_scope")
