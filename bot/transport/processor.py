"""Handles updates: one at a time per user, in order; different users in parallel.

An update's handler changes, its queued answers and the inbox row's "processed" mark are committed
together, so an update is handled exactly once even across a crash: either everything it did is
there, or nothing and it runs again after the restart. Updates fresh from Telegram are stored in
the inbox by the same transaction that handles them (or, if they must wait, stores them for later);
the poller confirms them to Telegram only after that commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update
from telegram.ext import Application

from bot.config import Settings
from bot.services import broadcasts, conversation, inbox, outbox, text_input, tips, users
from bot.services.inbox import RawUpdate
from bot.transport.scope import UpdateScope, current_scope

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 2.0, 5.0, 15.0)

# updates that download files are handled on their own, so a slow download never holds up others
SLOW_FIELDS = ("photo", "document", "video", "animation", "voice", "audio", "video_note", "sticker")
BATCH_SIZE = 200


def is_slow(raw: RawUpdate) -> bool:
    message = raw.payload.get("message") or raw.payload.get("edited_message") or {}
    return any(field in message for field in SLOW_FIELDS)


@dataclass(frozen=True)
class _Delivery:
    updates: list[RawUpdate]
    stored: asyncio.Future  # done once the updates are committed to the inbox


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
        # hands committed outbox rows to the sender, and says whether updates with files were among
        # them and whether a broadcast may have started or stopped
        self._on_committed = on_committed
        self._queues: dict[int, deque[RawUpdate]] = {}
        self._busy: set[int] = set()  # users with an update being handled
        self._slow_slots = asyncio.Semaphore(max_slow_parallel)
        self._slow_tasks: set[asyncio.Task] = set()
        self._seen: set[int] = set()
        self._deliveries: list[_Delivery] = []  # fresh from Telegram, for the next round to store
        # queued from the inbox (recovered at start, a webhook request, a retry): the round first
        # checks they were not handled already
        self._stored_elsewhere: set[int] = set()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._runner: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        """Start handling; the task ends only if the processor fails (the poller then waits forever)."""
        self._runner = asyncio.create_task(self._run(), name="update-processor")
        return self._runner

    def submit(self, updates: list[RawUpdate]) -> None:
        """Queue stored updates; each user's run in the order given."""
        self._stored_elsewhere.update(raw.update_id for raw in updates)
        self._enqueue(updates)

    async def deliver(self, payloads: list[dict]) -> None:
        """Updates fresh from Telegram: the next round stores them, handling those it can at once.
        Returns once they are committed (then Telegram may be told it can forget them)."""
        delivery = _Delivery(inbox.received(payloads), asyncio.get_running_loop().create_future())
        self._deliveries.append(delivery)
        self._idle.clear()
        self._ready.set()
        await delivery.stored

    def _enqueue(self, updates: list[RawUpdate]) -> None:
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
            while True:
                deliveries, self._deliveries = self._deliveries, []
                batch = self._take_ready()
                arrived = [raw for delivery in deliveries for raw in delivery.updates]
                if not batch and not arrived:
                    break
                await self._round(batch, arrived, deliveries)
            if not self._queues and not self._deliveries:
                self._idle.set()

    async def _round(self, batch: list[RawUpdate], arrived: list[RawUpdate], deliveries: list[_Delivery]) -> None:
        """Handle ``batch`` and those of the ``arrived`` updates whose users have nothing before them,
        and store all the arrived ones, in one transaction."""
        waiting: set[int] = set()  # users with an arrived update that waits: their later ones wait too
        for raw in arrived:
            if raw.user_key in self._busy or raw.user_key in self._queues or raw.user_key in waiting \
                    or is_slow(raw):
                waiting.add(raw.user_key)
            else:
                self._busy.add(raw.user_key)
                batch.append(raw)
        in_round = {raw.update_id for raw in batch}
        failures, stored = await self._process_batch(batch, arrived)
        if failures:
            log.warning("a round of %d updates failed (%s): each is retried alone", len(batch),
                        type(next(iter(failures.values()))).__name__)
            if arrived:  # nothing of the round was kept: the arrived updates are stored on their own first
                stored = {raw.update_id for raw in await self._store(arrived)}
                # known already: a commit reported as failed may have gone through and stored those
                # that were to wait; queued, they are looked up before they are handled
                self.submit([raw for raw in arrived if raw.update_id not in stored and raw.update_id not in in_round])
        for delivery in deliveries:
            if not delivery.stored.done():  # the poller may have been stopped meanwhile
                delivery.stored.set_result(None)
        arrived_ids = {raw.update_id for raw in arrived}
        for raw in batch:
            if raw.update_id in failures and (raw.update_id not in arrived_ids or raw.update_id in stored):
                self._start_alone(raw)  # retried on its own, with backoff
            else:
                self._finish(raw)
        self._enqueue([raw for raw in arrived if raw.update_id in stored and raw.update_id not in in_round])

    async def _store(self, updates: list[RawUpdate]) -> list[RawUpdate]:
        """Commit ``updates`` to the inbox for later (retrying while the database is locked or down:
        until then Telegram keeps them); returns those that were new."""
        while True:
            try:
                async with self.sessionmaker() as session:
                    return await inbox.store(session, [raw.payload for raw in updates])
            except Exception:
                log.warning("could not store updates yet; retrying", exc_info=True)
                await asyncio.sleep(1.0)

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
        self._stored_elsewhere.discard(raw.update_id)
        if not self._queues and not self._deliveries:
            self._idle.set()

    async def _process_with_retries(self, raw: RawUpdate) -> None:
        for delay in (*RETRY_DELAYS, None):
            failures, _ = await self._process_batch([raw])
            error = failures.get(raw.update_id)
            if error is None:
                return
            # a failed commit may have gone through after all: the next attempt looks first
            self._stored_elsewhere.add(raw.update_id)
            async with self.sessionmaker() as session:
                attempts = await inbox.record_failure(session, raw.update_id, type(error).__name__)
            log.warning("update %s failed (attempt %s): %s", raw.update_id, attempts, type(error).__name__,
                        exc_info=error)
            if attempts >= inbox.MAX_ATTEMPTS or delay is None:
                log.error("update %s set aside after %s attempts", raw.update_id, attempts)
                return
            await asyncio.sleep(delay)

    async def _process_batch(self, batch: list[RawUpdate], arrived: list[RawUpdate] | None = None
                             ) -> tuple[dict[int, BaseException], set[int]]:
        """Handle ``batch`` in one transaction, which also stores the ``arrived`` updates (fresh from
        Telegram; those in ``batch`` as handled). Returns the failures and the ids of the arrived
        updates that were new (known ones are neither stored nor handled again). If any update
        fails, nothing of the round is kept and every update of it is returned as failed, to be
        handled again on its own (only the failing one fails again); failures are rare, so this is
        cheaper than a savepoint per update."""
        arrived = arrived or []
        async with self.sessionmaker() as session:
            try:
                stored = await inbox.add(session, arrived, handled={raw.update_id for raw in batch})
                arrived_ids = {raw.update_id for raw in arrived}
                batch = [raw for raw in batch if raw.update_id not in arrived_ids or raw.update_id in stored]
                if self._stored_elsewhere.intersection(raw.update_id for raw in batch):
                    handled_before = await inbox.processed_among(session, [raw.update_id for raw in batch])
                    batch = [raw for raw in batch if raw.update_id not in handled_before]
                # the identity map holds objects weakly: keep the preloaded rows alive for the batch
                preloaded = await self._preload(session, batch)
                for raw in batch:
                    error = await self._handle(session, raw)
                    if error is not None:
                        await session.rollback()
                        return {other.update_id: error for other in batch}, set()
                await inbox.mark_processed(session, [raw.update_id for raw in batch
                                                     if raw.update_id not in arrived_ids])
                await session.commit()
                del preloaded
            except Exception as error:  # the database was briefly locked or down: nothing was kept
                await session.rollback()
                return {raw.update_id: error for raw in batch}, set()
            # only an update with a file can have given the face worker something to do
            self._on_committed(outbox.committed_rows(session), any(is_slow(raw) for raw in batch),
                               broadcasts.lane_may_change(session))
        return {}, stored

    async def _preload(self, session: AsyncSession, batch: list[RawUpdate]) -> list:
        user_ids = {raw.user_key for raw in batch if raw.user_key > 0}
        if not user_ids:
            return []
        await tips.preload_latest_tips(session, user_ids)
        # the coordinators too, now, before anything is added: asked by the first tip's alert, the
        # query would flush that tip and hold SQLite's one write lock for the rest of the batch
        users_and_coordinators = await users.preload(
            session, user_ids, with_coordinators=self.settings.coordinator_chat_id is None)
        return [*users_and_coordinators, *await conversation.preload(session, user_ids)]

    async def _handle(self, session: AsyncSession, raw: RawUpdate) -> BaseException | None:
        try:
            # the one place what people type is cleaned, before any handler reads it
            update = Update.de_json(text_input.clean_update(raw.payload), self.application.bot)
        except Exception as error:  # a shape PTB does not know: retrying will not help
            log.error("update %s cannot be read (%s); set aside", raw.update_id, error)
            await inbox.set_aside(session, raw, f"unreadable: {type(error).__name__}")
            return None
        scope = UpdateScope(session=session, settings=self.settings, user=None, now=datetime.now(UTC))
        token = current_scope.set(scope)
        try:
            sender = update.effective_user
            if sender is not None and not sender.is_bot:
                scope.user = await users.get_or_create(session, sender.id, sender.language_code,
                                                       self.settings.admins)
            await self.application.process_update(update)
        except Exception as error:
            return error
        finally:
            current_scope.reset(token)
        return scope.errors[0] if scope.errors else None


async def collect_handler_error(update: object, context) -> None:
    """PTB's error handler: the failure is handed back to the processor, which rolls back and retries."""
    current_scope.get().errors.append(context.error)
