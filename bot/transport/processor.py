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
from bot.services import alerts, conversation, inbox, outbox, tips, users
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


# updates that download files are handled on their own, so a slow download never holds up others
SLOW_FIELDS = ("photo", "document", "video", "animation", "voice", "audio", "video_note", "sticker")
BATCH_SIZE = 200


def is_slow(raw: RawUpdate) -> bool:
    message = raw.payload.get("message") or raw.payload.get("edited_message") or {}
    return any(field in message for field in SLOW_FIELDS)


class UpdateProcessor:
    """Each user's updates in order, one at a time. Ready updates of different users are handled
    together in one transaction with one commit: per-commit and per-query costs are paid once per
    batch, which is what lets a surge of tips be committed as it arrives. Updates that download
    files run alone, beside the batches."""

    def __init__(self, application: Application, sessionmaker: async_sessionmaker[AsyncSession],
                 settings: Settings, on_committed, max_slow_parallel: int = 4):
        self.application = application
        self.sessionmaker = sessionmaker
        self.settings = settings
        # hands committed outbox rows to the sender, and says whether updates with files were among them
        self._on_committed = on_committed
        self._queues: dict[int, deque[RawUpdate]] = {}
        self._busy: set[int] = set()  # users with an update being handled
        self._slow_slots = asyncio.Semaphore(max_slow_parallel)
        self._slow_tasks: set[asyncio.Task] = set()
        self._rate = RateLimiter(settings.user_rate_limit)
        self._seen: set[int] = set()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="update-processor")

    def submit(self, updates: list[RawUpdate]) -> None:
        """Queue stored updates; each user's run in the order given."""
        for raw in updates:
            if raw.update_id in self._seen:
                continue
            self._seen.add(raw.update_id)
            self._queues.setdefault(raw.user_key, deque()).append(raw)
        if self._queues:
            self._idle.clear()
            self._ready.set()

    async def recover(self) -> int:
        """Queue what was stored but not processed before the last stop."""
        async with self.sessionmaker() as session:
            pending = await inbox.unprocessed(session)
        self.submit(pending)
        return len(pending)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    @property
    def idle(self) -> bool:
        """Nothing queued or being handled (a committed batch is idle only once handed to the sender)."""
        return self._idle.is_set()

    async def stop(self) -> None:
        tasks = [*self._slow_tasks, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while batch := self._take_ready():
                failures = await self._process_batch(batch)
                if failures:
                    log.warning("a round of %d updates failed (%s): each is retried alone", len(batch),
                                type(next(iter(failures.values()))).__name__)
                for raw in batch:
                    if raw.update_id in failures:
                        self._start_alone(raw)  # retried on its own, with backoff
                    else:
                        self._finish(raw)
            if not self._queues:
                self._idle.set()

    def _take_ready(self) -> list[RawUpdate]:
        """The next update of every user who is not busy: slow ones start alone, the rest batch."""
        batch = []
        for key, queue in self._queues.items():
            if key in self._busy:
                continue
            raw = queue[0]
            if is_slow(raw):
                self._start_alone(raw)
                continue
            self._busy.add(key)
            batch.append(raw)
            if len(batch) >= BATCH_SIZE:
                break
        return batch

    def _start_alone(self, raw: RawUpdate) -> None:
        self._busy.add(raw.user_key)
        task = asyncio.create_task(self._alone(raw))
        self._slow_tasks.add(task)
        task.add_done_callback(self._slow_tasks.discard)

    async def _alone(self, raw: RawUpdate) -> None:
        try:
            async with self._slow_slots:
                await self._process_with_retries(raw)
        finally:
            self._finish(raw)
            self._ready.set()

    def _finish(self, raw: RawUpdate) -> None:
        queue = self._queues.get(raw.user_key)
        if queue and queue[0] is raw:
            queue.popleft()
            if not queue:
                del self._queues[raw.user_key]
        self._busy.discard(raw.user_key)
        self._seen.discard(raw.update_id)
        if not self._queues:
            self._idle.set()

    async def _process_with_retries(self, raw: RawUpdate) -> None:
        for delay in (*RETRY_DELAYS, None):
            error = (await self._process_batch([raw])).get(raw.update_id)
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

    async def _process_batch(self, batch: list[RawUpdate]) -> dict[int, BaseException]:
        """Handle ``batch`` in one transaction. If any update fails, nothing of the batch is kept and
        every update of it is returned, to be handled again on its own (only the failing one fails
        again); failures are rare, so this is cheaper than a savepoint per update."""
        async with self.sessionmaker() as session:
            try:
                handled_before = await inbox.processed_among(session, [raw.update_id for raw in batch])
                batch = [raw for raw in batch if raw.update_id not in handled_before]
                # the identity map holds objects weakly: keep the preloaded rows alive for the batch
                preloaded = await self._preload(session, batch)
                for raw in batch:
                    error = await self._handle(session, raw)
                    if error is not None:
                        await session.rollback()
                        return {other.update_id: error for other in batch}
                await inbox.mark_processed(session, [raw.update_id for raw in batch])
                await session.commit()
                del preloaded
            except Exception as error:  # the database was briefly locked or down: nothing was kept
                await session.rollback()
                return {raw.update_id: error for raw in batch}
            # only an update with a file can have given the face worker something to do
            self._on_committed(outbox.committed_rows(session), any(is_slow(raw) for raw in batch))
        return {}

    async def _preload(self, session: AsyncSession, batch: list[RawUpdate]) -> list:
        user_ids = {raw.user_key for raw in batch if raw.user_key > 0}
        if not user_ids:
            return []
        await tips.preload_latest_tips(session, user_ids)
        preloaded = [*await users.preload(session, user_ids), *await conversation.preload(session, user_ids)]
        # asked now, before anything is added: asked by the first tip's alert, the query would flush
        # that tip and hold SQLite's one write lock for the rest of the batch, while the poller's and
        # the sender's writes wait in SQLite's busy handler (it sleeps in steps of up to 100 ms)
        await alerts.recipients(session, self.settings.coordinator_chat_id)
        return preloaded

    async def _handle(self, session: AsyncSession, raw: RawUpdate) -> BaseException | None:
        try:
            update = Update.de_json(raw.payload, self.application.bot)
        except Exception as error:  # a shape PTB does not know: retrying will not help
            log.error("update %s cannot be read (%s); set aside", raw.update_id, error)
            await inbox.set_aside(session, raw.update_id, f"unreadable: {type(error).__name__}")
            return None
        scope = UpdateScope(session=session, settings=self.settings, user=None, now=datetime.now(timezone.utc))
        token = current_scope.set(scope)
        try:
            sender = update.effective_user
            if sender is not None and not sender.is_bot:
                scope.user = await users.get_or_create(session, sender.id, sender.language_code,
                                                       self.settings.admins)
                # a button press answers a question we asked (a /report step, a review): not flooding
                if update.callback_query is None:
                    scope.quiet, warn = self._rate.check(sender.id)
                    if warn and update.effective_chat is not None:
                        say(_ScopeOnly(self.application, scope), update, "slow_down", force=True)
            await self.application.process_update(update)
        except Exception as error:
            return error
        finally:
            current_scope.reset(token)
        return scope.errors[0] if scope.errors else None


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
