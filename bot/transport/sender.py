"""The one sender: takes outbox rows by priority and sends them within Telegram's limits.

Limits (FIELD-NOTES): about 30 messages/s per bot overall (we pace at ``REUNITE_SEND_RATE``, 25/s by
default, a little under); about 1 message/s per person with a burst of 2 (so a photo tip's match alert
follows its tip alert at once), 20/minute per group. When a chat cannot take its messages one by one,
queued alerts for it are merged into digests and queued photos of one tip into albums: nothing is
dropped and nothing waits without bound. A 429 pauses all sending for the time Telegram asks.
Acknowledgements go first, then coordinator alerts, then bulk messages, then broadcasts: their
deliveries come from the database a window at a time (bot/transport/broadcast_lane.py), each claimed
(``sending``, committed) just before its call, so a crash never sends one twice.

Beside it: the pacing (``pacing.py``), the calls themselves (``telegram_calls.py``) and what a
refusal means (``refusals.py``, one reading for answers and broadcast sends alike). What is left here
(about 530 lines) is one loop and the state it shares with its send tasks and the writing of their
results: the chats' queues, the calls in flight, the results not yet written; split further, each
part would reach into the others'.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from bisect import insort
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.db.models import (
    DELIVERY_BLOCKED,
    DELIVERY_FAILED,
    DELIVERY_UNKNOWN,
    OUT_FAILED,
    OUT_PENDING,
    OUT_UNKNOWN,
    PRIORITY_BULK,
    OutboxMessage,
)
from bot.services import broadcasts, deliveries, outbox, users
from bot.services.broadcasts import ProgressReporter
from bot.services.deliveries import DeliveryResult, Job
from bot.services.outbox import Outgoing, SendResult
from bot.transport.broadcast_lane import IDLE_LOOK_INTERVAL, BroadcastLane
from bot.transport.http import AiohttpRequest
from bot.transport.pacing import ChatPace, ChatQueue, OverallPace, messages_in
from bot.transport.refusals import CALL_ERRORS, Refusal, Refused, classify
from bot.transport.telegram_calls import TelegramCalls

log = logging.getLogger(__name__)

ALBUM_MAX = 10
RETRY_BACKOFF_MAX = 60.0
FLUSH_INTERVAL = 0.05
RESCAN_INTERVAL = 2.0
# while broadcast sends wait for a token (the bot's or their chat's), the loop looks again this soon
LANE_RETRY_INTERVAL = 0.02
PROGRESS_INTERVAL = 2.0
STOP_GRACE_SECONDS = 5.0
# Calls to Telegram in flight at once. With PTB's httpx backend every extra call cost CPU (httpcore
# checked each pooled connection before every request), so text tips wanted 6; on AiohttpRequest that
# cost is gone. Interleaved runs on aiohttp (bench/RESULTS.md): 16 gave broadcasts 564-872 msgs/s at
# 1.1-1.4 ms of CPU per card against 490-613 at 1.4-1.8 with 6, and text tips the same within the
# noise (287-289 vs 289-295 committed/s, p99 0.5-2.0 s vs 0.5-1.4 s). It is also the most deliveries
# a crash can leave `unknown`. The app's connection pool is larger (bot/app.py).
MAX_IN_FLIGHT = 16
# Broadcast sends are claimed (one commit) when at least this share of the calls have ended, not
# one by one as each ends: a few commits a second fewer at capacity for the same sends, which leaves
# SQLite's one writer to tips more often (CPU per card was the same within the noise: bench/RESULTS.md).
CLAIM_WHEN_FREE = 0.25
# any constant will do: it names the lock "the sender of this bot" among all workers on PostgreSQL
SENDER_LOCK_KEY = 0x5E1D_0B07
# how often a worker that is not the sender asks whether it may take over
LOCK_RETRY_INTERVAL = 2.0



class Sender:
    def __init__(self, bot, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], media_dir,
                 rate: float, *, request: AiohttpRequest, max_in_flight: int = MAX_IN_FLIGHT):
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.media_dir = media_dir
        self.rate = rate  # messages per second overall; 0 = unpaced (capacity benchmarks only)
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._chats: dict[int, ChatQueue] = {}
        self._ready: list = []  # heap of (priority, id, chat_id, version)
        self._waiting: list = []  # heap of (ready_at, chat_id, version)
        self._known: set[int] = set()  # rows in memory or in flight
        self._max_seen_id = 0
        self._file_ids: dict[str, str] = {}
        self._calls = TelegramCalls(bot, request, media_dir, self._file_ids)
        self._results: list[SendResult] = []
        self._blocked_chats: list[int] = []
        self._wake = asyncio.Event()
        self._look_in_database = False
        self._pause_until = 0.0
        self._pace = OverallPace(rate)
        self._in_flight: set[asyncio.Task] = set()
        self._lane = BroadcastLane(sessionmaker, rate, self._file_ids)
        self._uploading: set[str] = set()  # cards on their way up: their other sends wait for the file_id
        self._delivery_results: list[DeliveryResult] = []
        self._flush_soon = asyncio.Event()
        self._progress = ProgressReporter()
        self._sending = False  # this worker is the one sender (on SQLite, from the start of run())
        self._flushing = 0  # results taken out of the lists above and being written

    @property
    def sent_count(self) -> int:
        """Messages this worker sent (tests: which worker is the sender)."""
        return self._calls.sent_count

    # -- intake ---------------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed somewhere: look in the database for them."""
        self._look_in_database = True
        self._lane.look_soon()
        self._wake.set()

    def push(self, rows: list[Outgoing], broadcasts_changed: bool = False) -> None:
        """Rows just committed in this process: queued without reading them back. A worker that is
        not the sender leaves them to the one that is, which finds them in the database: kept here,
        they would go out a second time when this worker took over. ``broadcasts_changed``: the same
        commit may have started or stopped a broadcast (:func:`broadcasts.lane_may_change`)."""
        if not self._sending:
            return
        for row in rows:
            if row.id not in self._known:
                self._add(row)
        if broadcasts_changed:
            self._lane.look_soon()
        self._wake.set()

    async def _load(self, full_scan: bool) -> None:
        async with self.sessionmaker() as session:
            query = select(OutboxMessage).where(OutboxMessage.status == OUT_PENDING)
            if not full_scan:
                query = query.where(OutboxMessage.id > self._max_seen_id)
            query = query.order_by(OutboxMessage.id).limit(5000)
            # a row whose "sent" is written while the query runs is forgotten meanwhile, yet the query
            # may still have read it as pending: whatever was known when it started is not new
            known_before = set(self._known)
            rows = [Outgoing.from_row(r) for r in await session.scalars(query)
                    if r.id not in known_before and r.id not in self._known]
            stored_files = [sha for r in rows for key in ("photo_sha256", "document_sha256")
                            if (sha := r.payload.get(key)) and sha not in self._file_ids]
            self._file_ids.update(await outbox.uploaded_file_ids(session, stored_files))
        for row in rows:
            self._add(row)

    def _add(self, row: Outgoing) -> None:
        self._known.add(row.id)
        self._max_seen_id = max(self._max_seen_id, row.id)
        chat = self._chats.get(row.chat_id)
        if chat is None:
            chat = self._chats[row.chat_id] = ChatQueue([], ChatPace(row.chat_id))
        head_before = chat.queue[0] if chat.queue else None
        gather = row.payload.get("gather_seconds")
        if gather and head_before is None and not chat.busy:
            # the rest of an album is on its way as separate updates: wait for it, send one album
            chat.held_until = max(chat.held_until, time.monotonic() + gather)
        insort(chat.queue, (row.priority, row.id, row))
        if not chat.busy and chat.queue[0] is not head_before:
            self._schedule(row.chat_id, chat)

    def _schedule(self, chat_id: int, chat: ChatQueue) -> None:
        chat.version += 1
        if chat.ready_at <= time.monotonic():
            priority, row_id, _ = chat.queue[0]
            heapq.heappush(self._ready, (priority, row_id, chat_id, chat.version))
        else:
            heapq.heappush(self._waiting, (chat.ready_at, chat_id, chat.version))

    # -- choosing -------------------------------------------------------------------------------

    def _next_chat(self) -> int | None:
        now = time.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            _, chat_id, version = heapq.heappop(self._waiting)
            chat = self._chats.get(chat_id)
            if chat and chat.version == version and chat.queue and not chat.busy:
                priority, row_id, _ = chat.queue[0]
                heapq.heappush(self._ready, (priority, row_id, chat_id, version))
        while self._ready:
            _, _, chat_id, version = heapq.heappop(self._ready)
            chat = self._chats.get(chat_id)
            if chat and chat.version == version and chat.queue and not chat.busy:
                return chat_id
        return None

    def _take_batch(self, chat: ChatQueue) -> list[Outgoing]:
        """The head row, plus same-kind rows merged with it: a digest of alerts or an album."""
        head = chat.queue[0][2]
        batch = [head]
        if head.digest_line and len(chat.queue) > 1:
            size = outbox.utf16_length(head.payload.get("digest_header", "") + head.digest_line) + 2
            for _, _, row in chat.queue[1:]:
                line_size = outbox.utf16_length(row.digest_line or "") + 2
                if not row.digest_line or size + line_size > outbox.TEXT_LIMIT:
                    break
                batch.append(row)
                size += line_size
        elif head.method == "sendPhoto" and head.payload.get("album_key"):
            for _, _, row in chat.queue[1:ALBUM_MAX]:
                if row.method != "sendPhoto" or row.payload.get("album_key") != head.payload["album_key"]:
                    break
                batch.append(row)
        del chat.queue[: len(batch)]
        return batch

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send forever. On PostgreSQL only the worker holding the advisory lock sends; the others
        wait, and one of them takes over when it stops."""
        if self.engine.dialect.name != "postgresql":
            await self._run()
            return
        async with self.engine.connect() as connection:
            # autocommit: a server may end a session left idle in a transaction, and the lock with it,
            # while this worker goes on sending
            lock_connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                while not await lock_connection.scalar(text(f"SELECT pg_try_advisory_lock({SENDER_LOCK_KEY})")):
                    await asyncio.sleep(LOCK_RETRY_INTERVAL)
                await self._run()
            finally:
                # the lock belongs to the connection, which the pool would keep open: closed, the
                # lock passes to another worker now, not when this process exits
                await lock_connection.invalidate()

    async def _run(self) -> None:
        self._sending = True
        async with self.sessionmaker() as session:
            interrupted = await deliveries.recover(session)
        if interrupted:
            log.warning("%d broadcast sends were cut off by the last stop: marked unknown, not repeated", interrupted)
        flusher = asyncio.create_task(self._flush_forever())
        reporter = asyncio.create_task(self._report_progress_forever())
        try:
            await self._load(full_scan=True)
            last_scan = time.monotonic()
            while True:
                self._wake.clear()
                if self._look_in_database:
                    self._look_in_database = False
                    await self._load(full_scan=False)
                if time.monotonic() - last_scan > RESCAN_INTERVAL:
                    self._forget_idle_chats()
                    await self._load(full_scan=True)
                    last_scan = time.monotonic()
                pause = self._pause_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                chat_id = self._next_chat()
                if chat_id is None:
                    if not await self._start_broadcast_sends():
                        await self._idle_wait()
                    continue
                chat = self._chats[chat_id]
                batch = self._take_batch(chat)
                messages = messages_in(batch)
                affordable_at = chat.pace.ready_at(messages)
                if affordable_at > time.monotonic():  # an album: the chat has a token, not all it needs
                    self._requeue(chat, batch, held_until=affordable_at)
                    self._schedule(chat_id, chat)
                    continue
                chat.busy = True  # from here: the batch is out of the queue but not yet in flight
                await self._pace.take(messages)
                await self._slots.acquire()
                task = asyncio.create_task(self._send(chat_id, chat, batch, messages))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        finally:
            flusher.cancel()
            reporter.cancel()
            # a write the flusher was in the middle of is handed back (see _flush), then done here
            await asyncio.gather(flusher, reporter, return_exceptions=True)
            if self._in_flight:
                # calls already made finish, so a stop (unlike a crash) leaves no broadcast send unknown
                await asyncio.wait(list(self._in_flight), timeout=STOP_GRACE_SECONDS)
            for task in list(self._in_flight):
                task.cancel()
            await self._flush()

    async def _idle_wait(self) -> None:
        timeout = LANE_RETRY_INTERVAL if len(self._lane) else IDLE_LOOK_INTERVAL
        if self._waiting:
            timeout = min(timeout, max(0.0, self._waiting[0][0] - time.monotonic()))
        # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that races the event
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    async def _send(self, chat_id: int, chat: ChatQueue, batch: list[Outgoing], messages: int) -> None:
        result: SendResult | None
        try:
            result = await self._calls.send(chat_id, batch)
        except CALL_ERRORS as error:
            result = self._refused(chat_id, chat, batch, classify(error))
        finally:
            self._slots.release()
        if result is not None:
            self._results.append(result)
        chat.pace.spend(messages)
        chat.busy = False
        if chat.queue:
            self._schedule(chat_id, chat)
        self._wake.set()

    def _refused(self, chat_id: int, chat: ChatQueue, batch: list[Outgoing], refusal: Refusal) -> SendResult | None:
        """What becomes of an answer or alert Telegram did not take (None: it waits its turn again)."""
        ids = tuple(row.id for row in batch)
        if refusal.kind is Refused.WAIT:
            self._pause(refusal.wait_seconds)
            self._requeue(chat, batch)
            return None
        if refusal.kind is Refused.BLOCKED:
            self._blocked_chats.append(chat_id)
            # they stay "known" so no rescan picks them up again: the flush marks them failed
            chat.queue.clear()
            return SendResult(ids, OUT_FAILED, error=refusal.error)
        if refusal.kind is Refused.BAD_REQUEST:
            log.warning("outbox %s refused: %s", ids, refusal.error)
            return SendResult(ids, OUT_FAILED, error=refusal.error)
        # it may have reached Telegram: bulk messages are never repeated; answers are retried
        if batch[0].priority >= PRIORITY_BULK:
            return SendResult(ids, OUT_UNKNOWN, error=refusal.error)
        retry_in = min(RETRY_BACKOFF_MAX, 2.0 ** (max(row.attempts for row in batch) + 1))
        self._requeue(chat, [self._retried(row) for row in batch], held_until=time.monotonic() + retry_in)
        return SendResult(ids, OUT_PENDING, error=refusal.error, retry_in=retry_in)

    def _pause(self, seconds: float) -> None:
        log.warning("Telegram asked us to wait %.0fs", seconds)
        self._pause_until = max(self._pause_until, time.monotonic() + seconds)

    def _forget_idle_chats(self) -> None:
        # a chat's pacing must outlive its queue, not forever: forgotten before its bucket is full
        # again, it would come back with a full one and get more than Telegram allows
        now = time.monotonic()
        for chat_id in [c for c, chat in self._chats.items() if not chat.queue and not chat.busy
                        and chat.pace.full_at() <= now]:
            del self._chats[chat_id]

    @staticmethod
    def _retried(row: Outgoing) -> Outgoing:
        return Outgoing(row.id, row.chat_id, row.method, row.payload, row.digest_line, row.priority,
                        row.attempts + 1)

    def _requeue(self, chat: ChatQueue, batch: list[Outgoing], held_until: float = 0.0) -> None:
        for row in batch:
            insort(chat.queue, (row.priority, row.id, row))
        if held_until:
            chat.held_until = held_until

    # -- broadcasts -----------------------------------------------------------------------------

    async def _start_broadcast_sends(self) -> bool:
        """Start as many broadcast sends as tokens and free slots allow; False if none could go."""
        await self._lane.refill()
        free = self._max_in_flight - len(self._in_flight)
        if self._in_flight and free < self._max_in_flight * CLAIM_WHEN_FREE:
            return False  # more calls end soon: claim for them together
        budget = free if self.rate <= 0 else min(free, int(self._pace.available()))
        if budget <= 0 or not len(self._lane):
            return False
        jobs = self._lane.take(budget, self._reserve)
        if not jobs:
            return False
        results, self._delivery_results = self._delivery_results, []
        try:
            jobs, dropped = await self._lane.claim(jobs, results)
        except BaseException as error:  # nothing was claimed or recorded: try again later
            self._delivery_results[:0] = results
            for job in jobs:
                self._release(job)
            self._lane.put_back_unclaimed(jobs)
            if not isinstance(error, Exception):
                raise
            log.warning("could not claim broadcast sends yet", exc_info=True)
            return False
        for job in dropped:
            self._release(job)
        for job in jobs:
            self._pace.spend(1)
            await self._slots.acquire()
            task = asyncio.create_task(self._deliver(job))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return bool(jobs)

    def _reserve(self, job: Job) -> bool:
        """Whether ``job`` may go now, and if so hold its chat (and its card's first upload) for it."""
        chat = self._chats.get(job.chat_id)
        if chat is not None and (chat.busy or chat.queue or chat.ready_at > time.monotonic()):
            return False  # the chat's answers go first, and it must have a token
        if not job.is_withdrawal:
            card = self._lane.card(job)
            if card is None:
                return False
            if card.photo_sha256 not in self._file_ids:
                if card.photo_sha256 in self._uploading:
                    return False  # uploaded once, then sent by file_id
                self._uploading.add(card.photo_sha256)
        if chat is None:
            chat = self._chats[job.chat_id] = ChatQueue([], ChatPace(job.chat_id))
        chat.busy = True
        return True

    def _release(self, job: Job) -> None:
        chat = self._chats[job.chat_id]
        chat.busy = False
        if chat.queue:
            self._schedule(job.chat_id, chat)
        card = None if job.is_withdrawal else self._lane.card(job)
        if card is not None and card.photo_sha256 not in self._file_ids:
            self._uploading.discard(card.photo_sha256)

    async def _deliver(self, job: Job) -> None:
        """One broadcast message sent (or, for a closed case, deleted), and what became of it."""
        result: DeliveryResult | None
        card = None if job.is_withdrawal else self._lane.card(job)
        try:
            if job.is_withdrawal:
                result = await self._calls.withdraw(job)
            elif card is None:  # its broadcast ended while the send waited for a slot
                result = self._failed(job, DELIVERY_FAILED, "broadcast ended")
            else:
                result = await self._calls.send_card(job, card)
        except CALL_ERRORS as error:
            result = self._delivery_refused(job, classify(error))
        finally:
            self._slots.release()
        if result is not None:
            self._delivery_results.append(result)
            if not len(self._lane):  # else the next claim writes it, in the same commit
                self._flush_soon.set()
        if not job.is_withdrawal:  # a deletion puts no message in the chat
            self._chats[job.chat_id].pace.spend(1)
        self._release(job)
        self._wake.set()

    def _delivery_refused(self, job: Job, refusal: Refusal) -> DeliveryResult | None:
        """What becomes of a broadcast send Telegram did not take (None: it waits its turn again)."""
        if refusal.kind is Refused.WAIT:
            self._pause(refusal.wait_seconds)
            self._lane.put_back(job)
            return None
        if refusal.kind is Refused.BLOCKED:
            self._blocked_chats.append(job.chat_id)
            return self._failed(job, DELIVERY_BLOCKED, refusal.error)
        if refusal.kind is Refused.BAD_REQUEST:
            return self._failed(job, DELIVERY_FAILED, refusal.error)
        return self._failed(job, DELIVERY_UNKNOWN, refusal.error)  # it may have arrived: never again

    @staticmethod
    def _failed(job: Job, status: str, error: str) -> DeliveryResult:
        """A send that did not go as planned ends ``status``; a deletion that failed is not tried again."""
        return DeliveryResult(job.delivery_id, deliveries.DELETED if job.is_withdrawal else status, error=error[:200])


    async def _report_progress_forever(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            try:
                async with self.sessionmaker() as session:
                    await self._progress.report(session, datetime.now(UTC), self.rate)
                    self.push(outbox.committed_rows(session), broadcasts.lane_may_change(session))
            except Exception:  # the database is briefly locked or down: the next round catches up
                log.warning("could not report broadcast progress", exc_info=True)

    # -- writing results ------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            # a broadcast's last results are written at once (a claim carries the others): until
            # then a crash would leave them unknown
            waiter = asyncio.ensure_future(self._flush_soon.wait())
            try:
                await asyncio.wait({waiter}, timeout=FLUSH_INTERVAL)
            finally:
                waiter.cancel()
            self._flush_soon.clear()
            try:
                await self._flush()
            except Exception:  # the database is briefly locked or down: keep the results, try again
                log.warning("could not record send results yet", exc_info=True)

    async def _flush(self) -> None:
        if not self._results and not self._blocked_chats and not self._delivery_results:
            return
        results, self._results = self._results, []
        blocked, self._blocked_chats = self._blocked_chats, []
        delivered, self._delivery_results = self._delivery_results, []
        self._flushing += 1
        try:
            async with self.sessionmaker() as session:
                for chat_id in blocked:
                    await users.mark_blocked(session, chat_id)
                    await outbox.fail_pending_for_chat(session, chat_id, "blocked")
                    await deliveries.block_pending_for_chat(session, chat_id)
                await deliveries.write_results(session, delivered, datetime.now(UTC))
                await outbox.apply_results(session, results)  # commits all of it
        except BaseException:  # also a stop cancelling the write: these messages were sent, keep saying so
            self._results[:0] = results
            self._blocked_chats[:0] = blocked
            self._delivery_results[:0] = delivered
            raise
        finally:
            self._flushing -= 1
        # only now that the database no longer says "pending" may a rescan see these rows without
        # taking them for unsent ones
        for result in results:
            if result.status != OUT_PENDING:
                self._known.difference_update(result.row_ids)

    async def wait_until_drained(self, timeout: float = 30.0) -> None:
        """For tests and shutdown: until nothing is queued or in flight and results are written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(c.queue or c.busy for c in self._chats.values()) and not self._in_flight \
                    and not self._results and not self._delivery_results and not self._flushing:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("outbox not drained")
