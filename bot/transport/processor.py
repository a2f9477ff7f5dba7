"""Handles stored updates: one at a time per user, in order; different users in parallel.

Each update gets one database session. The handler's changes, its queued answers and the inbox
row's "processed" mark are committed together, so an update is handled exactly once even across a
crash: either everything it did is there, or nothing and it runs again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from datetime import datetime, timezone

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update
from telegram.ext import Application

from bot.config import Settings
from bot.handlers.common import UpdateScope, current_scope, say
from bot.services import inbox, users
from bot.services.inbox import RawUpdate

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 60.0
RETRY_DELAYS = (0.5, 2.0, 5.0, 15.0)


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


class UpdateProcessor:
    def __init__(self, application: Application, sessionmaker: async_sessionmaker[AsyncSession],
                 settings: Settings, on_committed, max_parallel: int = 8):
        self.application = application
        self.sessionmaker = sessionmaker
        self.settings = settings
        self._on_committed = on_committed  # wakes the sender: new outbox rows may exist
        self._queues: dict[int, deque[RawUpdate]] = {}
        self._workers: set[asyncio.Task] = set()
        self._parallel = asyncio.Semaphore(max_parallel)
        self._rate = RateLimiter(settings.user_rate_limit)
        self._seen: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, updates: list[RawUpdate]) -> None:
        """Queue stored updates; each user's run in the order given."""
        for raw in updates:
            if raw.update_id in self._seen:
                continue
            self._seen.add(raw.update_id)
            queue = self._queues.get(raw.user_key)
            if queue is None:
                queue = self._queues[raw.user_key] = deque()
                task = asyncio.create_task(self._drain(raw.user_key, queue))
                self._workers.add(task)
                task.add_done_callback(self._workers.discard)
            queue.append(raw)
        if self._queues:
            self._idle.clear()

    async def recover(self) -> int:
        """Queue what was stored but not processed before the last stop."""
        async with self.sessionmaker() as session:
            pending = await inbox.unprocessed(session)
        self.submit(pending)
        return len(pending)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def stop(self) -> None:
        for task in list(self._workers):
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    async def _drain(self, key: int, queue: deque[RawUpdate]) -> None:
        try:
            while queue:
                raw = queue[0]
                async with self._parallel:
                    await self._process_with_retries(raw)
                queue.popleft()
                self._seen.discard(raw.update_id)
        finally:
            if self._queues.get(key) is queue and not queue:
                del self._queues[key]
            if not self._queues:
                self._idle.set()

    async def _process_with_retries(self, raw: RawUpdate) -> None:
        for delay in (*RETRY_DELAYS, None):
            error = await self._process_once(raw)
            if error is None:
                return
            async with self.sessionmaker() as session:
                attempts = await inbox.record_failure(session, raw.update_id, type(error).__name__)
            log.warning("update %s failed (attempt %s): %s", raw.update_id, attempts, type(error).__name__,
                        exc_info=error)
            if attempts >= inbox.MAX_ATTEMPTS or delay is None:
                log.error("update %s set aside after %s attempts", raw.update_id, attempts)
                return
            await asyncio.sleep(delay)

    async def _process_once(self, raw: RawUpdate) -> BaseException | None:
        try:
            update = Update.de_json(raw.payload, self.application.bot)
        except Exception as error:  # a shape PTB does not know: retrying will not help
            log.error("update %s cannot be read (%s); set aside", raw.update_id, error)
            async with self.sessionmaker() as session:
                await inbox.set_aside(session, raw.update_id, f"unreadable: {type(error).__name__}")
            return None
        async with self.sessionmaker() as session:
            scope = UpdateScope(session=session, settings=self.settings, user=None,
                                now=datetime.now(timezone.utc))
            token = current_scope.set(scope)
            try:
                sender = update.effective_user
                if sender is not None and not sender.is_bot:
                    scope.user = await users.get_or_create(session, sender.id, sender.language_code,
                                                           self.settings.admins)
                    scope.quiet, warn = self._rate.check(sender.id)
                    if warn and update.effective_chat is not None:
                        say(_ScopeOnly(self.application, scope), update, "slow_down", force=True)
                await self.application.process_update(update)
                if scope.errors:
                    await session.rollback()
                    return scope.errors[0]
                await inbox.mark_processed(session, raw.update_id)
                await session.commit()
            except Exception as error:  # the database was briefly locked or down, a bug...
                await session.rollback()
                return error
            finally:
                current_scope.reset(token)
        self._on_committed()
        return None


class _ScopeOnly:
    """Just enough of a context for :func:`say` outside a handler (the rate-limit notice)."""

    def __init__(self, application: Application, scope: UpdateScope):
        self.application = application
        self.scope = scope
        self.session = scope.session
        self.language = scope.user.language if scope.user else "en"


async def collect_handler_error(update: object, context) -> None:
    """PTB's error handler: the failure is handed back to the processor, which rolls back and retries."""
    current_scope.get().errors.append(context.error)
