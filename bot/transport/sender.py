"""The one sender: takes outbox rows by priority and sends them within Telegram's limits.

Limits (FIELD-NOTES): about 30 messages/s per bot overall (we pace at ``REUNITE_SEND_RATE``, 25/s by
default, a little under); about 1 message/s per person with a burst of 2 (so a photo tip's match alert
follows its tip alert at once), 20/minute per group. When a chat cannot take its messages one by one,
queued alerts for it are merged into digests and queued photos of one tip into albums: nothing is
dropped and nothing waits without bound. A 429 pauses all sending for the time Telegram asks.
Acknowledgements go first, then coordinator alerts, then bulk messages, then broadcasts: their
deliveries come from the database a window at a time (bot/transport/broadcast_lane.py), each claimed
(``sending``, committed) just before its call, so a crash never sends one twice.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from bisect import insort
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import InlineKeyboardMarkup, InputMediaPhoto, ReplyKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.db.models import (
    DELIVERY_BLOCKED,
    DELIVERY_FAILED,
    DELIVERY_SENT,
    DELIVERY_UNKNOWN,
    OUT_FAILED,
    OUT_PENDING,
    OUT_SENT,
    OUT_UNKNOWN,
    PRIORITY_BULK,
    OutboxMessage,
)
from bot.services import broadcasts, deliveries, outbox, users
from bot.services.broadcasts import ProgressReporter
from bot.services.deliveries import DeliveryResult, Job
from bot.services.media import media_path
from bot.services.outbox import Outgoing, SendResult
from bot.transport.broadcast_lane import IDLE_LOOK_INTERVAL, BroadcastLane
from bot.transport.http import AiohttpRequest

log = logging.getLogger(__name__)

PRIVATE_CHAT_RATE = 1.0  # messages a second to one person
# Telegram allows "short bursts" (the stand-in models 3). One under it: the exact limit is not
# published, and a sender that has just started (a restart, another worker taking over) takes every
# chat's bucket for full while Telegram still counts what the last one sent.
PRIVATE_CHAT_BURST = 2
GROUP_CHAT_RATE = 20 / 60  # 20 a minute
# Enough for a photo tip's match alert to follow its tip alert in a group too; far under the 20 the
# stand-in's bucket holds. Telegram only says "20 a minute": counted as a sliding minute, a burst of B
# would let B - 1 more than that through, so B stays small (2 lets one more than a strict 3 s spacing).
GROUP_CHAT_BURST = 2
UNPACED_METHODS = {"answerCallbackQuery"}  # not messages: no flood limit
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


def retry_after_seconds(error: RetryAfter) -> float:
    # PTB 22.2+ gives a timedelta when PTB_TIMEDELTA is set, an int otherwise
    value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


class _ChatPace:
    """A chat's token bucket, as Telegram limits one chat: about one message a second with short
    bursts (20 a minute in a group). A strict interval instead would hold a photo tip's match alert a
    second behind its tip alert, and after an album of N, which Telegram counts as N messages, it
    would not wait long enough. Tokens are spent when a call ends: by then Telegram has counted it
    (a chat has one call in flight at a time)."""

    def __init__(self, chat_id: int):
        group = chat_id < 0
        self.rate = GROUP_CHAT_RATE if group else PRIVATE_CHAT_RATE
        self.burst = GROUP_CHAT_BURST if group else PRIVATE_CHAT_BURST
        self.tokens = float(self.burst)  # as of counted_at; below zero after an album bigger than the burst
        self.counted_at = time.monotonic()

    def spend(self, messages: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.counted_at) * self.rate) - messages
        self.counted_at = now

    def ready_at(self, messages: int = 1) -> float:
        """When the chat may take ``messages``: once the bucket holds that many, or is full for more,
        as the stand-in models Telegram (an album bigger than the burst then goes into debt). Else a
        /tip answer followed at once by the tip's photos as one album would be refused."""
        missing = min(messages, self.burst) - self.tokens
        return self.counted_at + max(0.0, missing) / self.rate

    def full_at(self) -> float:
        return self.ready_at(self.burst)


@dataclass
class _Chat:
    queue: list  # of (priority, id, Outgoing), kept sorted
    pace: _ChatPace
    held_until: float = 0.0  # an album being gathered, an album waiting for its tokens, or a retry's backoff
    busy: bool = False
    version: int = 0

    @property
    def ready_at(self) -> float:
        return max(self.held_until, self.pace.ready_at())


def _messages_in(batch: list[Outgoing]) -> int:
    """How many messages a call puts in its chat, as Telegram counts them against its limits."""
    if batch[0].method in UNPACED_METHODS:
        return 0
    return len(batch) if batch[0].method == "sendPhoto" else 1


class Sender:
    def __init__(self, bot, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], media_dir,
                 rate: float, *, request: AiohttpRequest, max_in_flight: int = MAX_IN_FLIGHT):
        self.bot = bot
        self._request = request  # the bot's own connection pool, for plain calls (see _plain_call)
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.media_dir = media_dir
        self.rate = rate  # messages per second overall; 0 = unpaced (capacity benchmarks only)
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._chats: dict[int, _Chat] = {}
        self._ready: list = []  # heap of (priority, id, chat_id, version)
        self._waiting: list = []  # heap of (ready_at, chat_id, version)
        self._known: set[int] = set()  # rows in memory or in flight
        self._max_seen_id = 0
        self._file_ids: dict[str, str] = {}
        self._results: list[SendResult] = []
        self._blocked_chats: list[int] = []
        self._wake = asyncio.Event()
        self._look_in_database = False
        self._pause_until = 0.0
        self._tokens = 1.0
        self._tokens_at = time.monotonic()
        self._in_flight: set[asyncio.Task] = set()
        self._lane = BroadcastLane(sessionmaker, rate, self._file_ids)
        self._uploading: set[str] = set()  # cards on their way up: their other sends wait for the file_id
        self._delivery_results: list[DeliveryResult] = []
        self._flush_soon = asyncio.Event()
        self._progress = ProgressReporter()
        self._sending = False  # this worker is the one sender (on SQLite, from the start of run())
        self.sent_count = 0

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
            chat = self._chats[row.chat_id] = _Chat([], _ChatPace(row.chat_id))
        head_before = chat.queue[0] if chat.queue else None
        gather = row.payload.get("gather_seconds")
        if gather and head_before is None and not chat.busy:
            # the rest of an album is on its way as separate updates: wait for it, send one album
            chat.held_until = max(chat.held_until, time.monotonic() + gather)
        insort(chat.queue, (row.priority, row.id, row))
        if not chat.busy and chat.queue[0] is not head_before:
            self._schedule(row.chat_id, chat)

    def _schedule(self, chat_id: int, chat: _Chat) -> None:
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

    def _take_batch(self, chat: _Chat) -> list[Outgoing]:
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

    def _refill_tokens(self) -> float:
        capacity = max(1.0, self.rate / 5)  # a fifth of a second of burst keeps us under the cap
        now = time.monotonic()
        self._tokens = min(capacity, self._tokens + (now - self._tokens_at) * self.rate)
        self._tokens_at = now
        return self._tokens

    async def _take_token(self, cost: int) -> None:
        if self.rate <= 0 or cost == 0:
            return
        while True:
            if self._refill_tokens() >= 1.0:
                self._tokens -= cost
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate)

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
                messages = _messages_in(batch)
                affordable_at = chat.pace.ready_at(messages)
                if affordable_at > time.monotonic():  # an album: the chat has a token, not all it needs
                    self._requeue(chat, batch, held_until=affordable_at)
                    self._schedule(chat_id, chat)
                    continue
                chat.busy = True  # from here: the batch is out of the queue but not yet in flight
                await self._take_token(messages)
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

    async def _send(self, chat_id: int, chat: _Chat, batch: list[Outgoing], messages: int) -> None:
        ids = tuple(row.id for row in batch)
        try:
            result = await self._call(chat_id, batch)
        except RetryAfter as error:
            wait = retry_after_seconds(error)
            log.warning("Telegram asked us to wait %.0fs", wait)
            self._pause_until = max(self._pause_until, time.monotonic() + wait)
            self._requeue(chat, batch)
            result = None
        except Forbidden as error:
            result = SendResult(ids, OUT_FAILED, error=f"forbidden: {error.message}"[:200])
            self._blocked_chats.append(chat_id)
            # they stay "known" so no rescan picks them up again: the flush marks them failed
            chat.queue.clear()
        except BadRequest as error:
            log.warning("outbox %s refused: %s", ids, error.message)
            result = SendResult(ids, OUT_FAILED, error=f"bad request: {error.message}"[:200])
        except (NetworkError, TelegramError, OSError) as error:
            # it may have reached Telegram: bulk messages are never repeated; answers are retried
            if batch[0].priority >= PRIORITY_BULK:
                result = SendResult(ids, OUT_UNKNOWN, error=type(error).__name__)
            else:
                retry_in = min(RETRY_BACKOFF_MAX, 2.0 ** (max(row.attempts for row in batch) + 1))
                result = SendResult(ids, OUT_PENDING, error=type(error).__name__, retry_in=retry_in)
                self._requeue(chat, [self._retried(row) for row in batch],
                              held_until=time.monotonic() + retry_in)
        finally:
            self._slots.release()
        if result is not None:
            self._results.append(result)
        chat.pace.spend(messages)
        chat.busy = False
        if chat.queue:
            self._schedule(chat_id, chat)
        self._wake.set()

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

    def _requeue(self, chat: _Chat, batch: list[Outgoing], held_until: float = 0.0) -> None:
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
        budget = free if self.rate <= 0 else min(free, int(self._refill_tokens()))
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
            if self.rate > 0:
                self._tokens -= 1
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
            chat = self._chats[job.chat_id] = _Chat([], _ChatPace(job.chat_id))
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
        try:
            result = await (self._withdraw(job) if job.is_withdrawal else self._send_card(job))
        except RetryAfter as error:
            wait = retry_after_seconds(error)
            log.warning("Telegram asked us to wait %.0fs", wait)
            self._pause_until = max(self._pause_until, time.monotonic() + wait)
            self._lane.put_back(job)
            result = None
        except Forbidden as error:
            result = self._failed(job, DELIVERY_BLOCKED, f"forbidden: {error.message}")
            self._blocked_chats.append(job.chat_id)
        except BadRequest as error:
            result = self._failed(job, DELIVERY_FAILED, f"bad request: {error.message}")
        except (NetworkError, TelegramError, OSError) as error:
            result = self._failed(job, DELIVERY_UNKNOWN, type(error).__name__)  # it may have arrived: never again
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

    @staticmethod
    def _failed(job: Job, status: str, error: str) -> DeliveryResult:
        """A send that did not go as planned ends ``status``; a deletion that failed is not tried again."""
        return DeliveryResult(job.delivery_id, deliveries.DELETED if job.is_withdrawal else status, error=error[:200])

    async def _send_card(self, job: Job) -> DeliveryResult:
        card = self._lane.card(job)
        file_id = self._file_ids.get(card.photo_sha256)
        if file_id is not None:
            sent = await self._plain_call("sendPhoto", chat_id=job.chat_id, photo=file_id, caption=card.caption,
                                          reply_markup=card.reply_markup)
            self.sent_count += 1
            return DeliveryResult(job.delivery_id, DELIVERY_SENT, message_id=sent["message_id"])
        message = await self.bot.send_photo(job.chat_id, await self._stored_file(card.photo_sha256),
                                            caption=card.caption,
                                            reply_markup=InlineKeyboardMarkup.de_json(card.reply_markup, self.bot))
        self.sent_count += 1
        uploaded = self._remember_upload(card.photo_sha256, message.photo[-1].file_id) if message.photo else ()
        return DeliveryResult(job.delivery_id, DELIVERY_SENT, message_id=message.message_id, uploaded=uploaded)

    async def _withdraw(self, job: Job) -> DeliveryResult:
        await self.bot.delete_message(job.chat_id, job.message_id)
        return DeliveryResult(job.delivery_id, deliveries.DELETED)

    async def _report_progress_forever(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            try:
                async with self.sessionmaker() as session:
                    await self._progress.report(session, datetime.now(timezone.utc), self.rate)
                    self.push(outbox.committed_rows(session), broadcasts.lane_may_change(session))
            except Exception:  # the database is briefly locked or down: the next round catches up
                log.warning("could not report broadcast progress", exc_info=True)

    # -- Telegram calls -------------------------------------------------------------------------

    async def _stored_file(self, sha256: str):
        """The file_id of a file we uploaded before, else the file's bytes to upload."""
        file_id = self._file_ids.get(sha256)
        if file_id:
            return file_id
        return await asyncio.to_thread(media_path(self.media_dir, sha256).read_bytes)

    def _remember_upload(self, sha256: str, file_id: str) -> tuple[tuple[str, str], ...]:
        """Keep a new upload's file_id (also written to the database with the send's result)."""
        if sha256 in self._file_ids:
            return ()
        self._file_ids[sha256] = file_id
        return ((sha256, file_id),)

    def _keyboard(self, payload: dict) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
        """Buttons under the message, or (``keyboard``) in place of the phone's keyboard, such as
        /subscribe's "share my location"."""
        markup = payload.get("reply_markup")
        if not markup:
            return None
        kind = ReplyKeyboardMarkup if "keyboard" in markup else InlineKeyboardMarkup
        return kind.de_json(markup, self.bot)

    async def _call(self, chat_id: int, batch: list[Outgoing]) -> SendResult:
        ids = tuple(row.id for row in batch)
        head = batch[0]
        payload = head.payload
        if head.method == "sendMessage":
            text = payload["text"]
            if len(batch) > 1:
                text = "\n\n".join([payload.get("digest_header", ""), *(row.digest_line for row in batch)]).strip()
            message = await self._plain_call("sendMessage", chat_id=chat_id, text=text,
                                             reply_markup=payload.get("reply_markup") if len(batch) == 1 else None)
            self.sent_count += 1
            return SendResult(ids, OUT_SENT, message_id=message["message_id"])
        if head.method == "sendPhoto":
            hashes = [row.payload["photo_sha256"] for row in batch]
            if len(batch) == 1:
                # a single photo may carry buttons (a match alert's Confirm lead / Reject)
                message = await self.bot.send_photo(chat_id, await self._stored_file(hashes[0]),
                                                    caption=payload.get("caption"), reply_markup=self._keyboard(payload))
                messages = [message]
            else:
                media = [InputMediaPhoto(await self._stored_file(sha), caption=row.payload.get("caption"))
                         for sha, row in zip(hashes, batch)]
                messages = list(await self.bot.send_media_group(chat_id, media))
            uploaded = tuple(upload for sha, message in zip(hashes, messages) if message.photo
                             for upload in self._remember_upload(sha, message.photo[-1].file_id))
            self.sent_count += len(messages)
            return SendResult(ids, OUT_SENT, message_id=messages[0].message_id, uploaded=uploaded)
        if head.method == "sendDocument":
            sha = payload["document_sha256"]
            message = await self.bot.send_document(chat_id, await self._stored_file(sha),
                                                   filename=payload["filename"], caption=payload.get("caption"))
            self.sent_count += 1
            uploaded = self._remember_upload(sha, message.document.file_id) if message.document else ()
            return SendResult(ids, OUT_SENT, message_id=message.message_id, uploaded=uploaded)
        if head.method == "editMessageText":  # a broadcast's progress
            await self._plain_call("editMessageText", chat_id=chat_id, message_id=payload["message_id"],
                                   text=payload["text"])
            return SendResult(ids, OUT_SENT, message_id=payload["message_id"])
        if head.method == "answerCallbackQuery":
            try:
                await self._plain_call("answerCallbackQuery", callback_query_id=payload["callback_query_id"],
                                       text=payload.get("text"))
            except BadRequest:
                pass  # too old to answer: the button simply stops spinning on the client
            return SendResult(ids, OUT_SENT)
        result = await self._plain_call(head.method, chat_id=chat_id, **payload)
        self.sent_count += 1
        return SendResult(ids, OUT_SENT, message_id=result.get("message_id") if isinstance(result, dict) else None)

    async def _plain_call(self, method: str, **params):
        """A call whose answer is read as JSON (a dict, or True), not built into PTB objects: parsing
        each Message cost more CPU than the call itself, and building each call through ``Bot`` (its
        parameters re-encoded one by one) nearly as much; only a sent message's id is kept. The
        parameters are encoded as PTB encodes them, and Telegram's refusals raise PTB's own errors
        (RetryAfter, Forbidden, BadRequest ...), mapped by PTB (``AiohttpRequest.post_form``)."""
        fields = {key: value if isinstance(value, str) else json.dumps(value)
                  for key, value in params.items() if value is not None}
        return await self._request.post_form(f"{self.bot.base_url}/{method}", fields)

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
        try:
            async with self.sessionmaker() as session:
                for chat_id in blocked:
                    await users.mark_blocked(session, chat_id)
                    await outbox.fail_pending_for_chat(session, chat_id, "blocked")
                    await deliveries.block_pending_for_chat(session, chat_id)
                await deliveries.write_results(session, delivered, datetime.now(timezone.utc))
                await outbox.apply_results(session, results)  # commits all of it
        except BaseException:  # also a stop cancelling the write: these messages were sent, keep saying so
            self._results[:0] = results
            self._blocked_chats[:0] = blocked
            self._delivery_results[:0] = delivered
            raise
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
                    and not self._results and not self._delivery_results:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("outbox not drained")
