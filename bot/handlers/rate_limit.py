"""The per-user rate limit, as PTB's own examples do it: a handler in an early group that every update
passes before the others (REUNITE_USER_RATE_LIMIT messages a minute).

Someone over the limit is told once a minute to slow down; what they send is still kept (their tip
is stored), only the acknowledgements are held back. A button press answers a question the bot
asked (a /report step, a review), so it never counts.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque

from telegram import Update
from telegram.ext import Application, TypeHandler

from bot.handlers.common import ReuniteContext, say

RATE_WINDOW_SECONDS = 60.0
# before every other handler group (conversations use -1 and -2; PTB runs one handler per group)
RATE_LIMIT_GROUP = -10


class RateLimiter:
    """Sliding one-minute window per user (in this process), to keep one flooding user from
    crowding out everyone else's answers."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._times: dict[int, deque[float]] = defaultdict(deque)
        self._warned: dict[int, float] = {}

    def check(self, user_id: int) -> tuple[bool, bool]:
        """(over the limit, should warn now)."""
        now = time.monotonic()
        times = self._times[user_id]
        while times and now - times[0] > RATE_WINDOW_SECONDS:
            times.popleft()
        times.append(now)
        if len(times) <= self.per_minute:
            return False, False
        warned_at = self._warned.get(user_id)
        if warned_at is not None and now - warned_at < RATE_WINDOW_SECONDS:
            return True, False
        self._warned[user_id] = now
        return True, True


def register(application: Application, per_minute: int) -> None:
    limiter = RateLimiter(per_minute)

    async def count_message(update: Update, context: ReuniteContext) -> None:
        """A person sending too fast gets one "please slow down" a minute; their messages are kept."""
        scope = context.scope
        if scope.user is None or update.callback_query is not None:
            return
        scope.quiet, warn = limiter.check(scope.user.id)
        if warn and update.effective_chat is not None:
            say(context, update, "slow_down", force=True)

    application.add_handler(TypeHandler(Update, count_message), group=RATE_LIMIT_GROUP)
