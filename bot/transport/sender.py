"""The one sender: takes outbox rows by priority and sends them within Telegram's limits.

Limits (FIELD-NOTES): about 30 messages/s per bot overall (we pace at ``REUNITE_SEND_RATE``, 25/s by
default, a little under), about 1/s to one private chat, 20/minute to a group. When a chat cannot
take its messages one by one, queued alerts for it are merged into digests and queued photos of one
tip into albums: nothing is dropped and nothing waits without bound. A 429 pauses all sending for the
time Telegram asks. Acknowledgements go first, then coordinator alerts, then bulk messages.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from bisect import insort
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.db.models import OUT_FAILED, OUT_PENDING, OUT_SENT, OUT_UNKNOWN, PRIORITY_BULK, OutboxMessage
from bot.services import outbox, users
from bot.services.media import media_path
from bot.services.outbox import Outgoing, SendResult

log = logging.getLogger(__name__)

PRIVATE_CHAT_INTERVAL = 1.0  # seconds between messages to one person
GROUP_CHAT_INTERVAL = 3.0  # 20 per minute
UNPACED_METHODS = {"answerCallbackQuery"}  # not messages: no flood limit
ALBUM_MAX = 10
RETRY_BACKOFF_MAX = 60.0
FLUSH_INTERVAL = 0.05
RESCAN_INTERVAL = 2.0
# any constant will do: it names the lock "the sender of this bot" among all workers on PostgreSQL
SENDER_LOCK_KEY = 0x5E1D_0B07


def retry_after_seconds(error: RetryAfter) -> float:
    # PTB 22.2+ gives a timedelta when PTB_TIMEDELTA is set, an int otherwise
    value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


@dataclass
class _Chat:
    queue: list  # of (priority, id, Outgoing), kept sorted
    ready_at: float = 0.0
    busy: bool = False
    version: int = 0


class Sender:
    def __init__(self, bot, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], media_dir,
                 rate: float, max_in_flight: int = 6):
        self.bot = bot
        self.engine = engine
        self.sessionmaker = sessionmaker
        self.media_dir = media_dir
        self.rate = rate  # messages per second overall; 0 = unpaced (capacity benchmarks only)
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
        self.sent_count = 0

    # -- intake ---------------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed somewhere: look in the database for them."""
        self._look_in_database = True
        self._wake.set()

    def push(self, rows: list[Outgoing]) -> None:
        """Rows the update processor just committed: queued without reading them back."""
        for row in rows:
            if row.id not in self._known:
                self._add(row)
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
            chat = self._chats[row.chat_id] = _Chat(queue=[])
        head_before = chat.queue[0] if chat.queue else None
        gather = row.payload.get("gather_seconds")
        if gather and head_before is None and not chat.busy:
            # the rest of an album is on its way as separate updates: wait for it, send one album
            chat.ready_at = max(chat.ready_at, time.monotonic() + gather)
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

    async def _take_token(self, cost: int) -> None:
        if self.rate <= 0 or cost == 0:
            return
        capacity = max(1.0, self.rate / 5)  # a fifth of a second of burst keeps us under the cap
        while True:
            now = time.monotonic()
            self._tokens = min(capacity, self._tokens + (now - self._tokens_at) * self.rate)
            self._tokens_at = now
            if self._tokens >= 1.0:
                self._tokens -= cost
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send forever. On PostgreSQL only the worker holding the advisory lock sends."""
        if self.engine.dialect.name == "postgresql":
            async with self.engine.connect() as lock_connection:
                while not await lock_connection.scalar(text(f"SELECT pg_try_advisory_lock({SENDER_LOCK_KEY})")):
                    await asyncio.sleep(2.0)
                await self._run()
        else:
            await self._run()

    async def _run(self) -> None:
        flusher = asyncio.create_task(self._flush_forever())
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
                    await self._idle_wait()
                    continue
                chat = self._chats[chat_id]
                batch = self._take_batch(chat)
                paced = batch[0].method not in UNPACED_METHODS
                await self._take_token(len(batch) if batch[0].method == "sendPhoto" else int(paced))
                await self._slots.acquire()
                chat.busy = True
                task = asyncio.create_task(self._send(chat_id, chat, batch, paced))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        finally:
            flusher.cancel()
            # a write the flusher was in the middle of is handed back (see _flush), then done here
            await asyncio.gather(flusher, return_exceptions=True)
            for task in list(self._in_flight):
                task.cancel()
            await self._flush()

    async def _idle_wait(self) -> None:
        timeout = RESCAN_INTERVAL
        if self._waiting:
            timeout = min(timeout, max(0.0, self._waiting[0][0] - time.monotonic()))
        # not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that races the event
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()

    async def _send(self, chat_id: int, chat: _Chat, batch: list[Outgoing], paced: bool) -> None:
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
                self._requeue(chat, [self._retried(row) for row in batch], delay=retry_in)
        finally:
            self._slots.release()
        if result is not None:
            self._results.append(result)
        if paced:
            interval = GROUP_CHAT_INTERVAL if chat_id < 0 else PRIVATE_CHAT_INTERVAL
            chat.ready_at = time.monotonic() + interval
        chat.busy = False
        if chat.queue:
            self._schedule(chat_id, chat)
        self._wake.set()

    def _forget_idle_chats(self) -> None:
        # a chat's pacing must outlive its queue (the next answer still waits its second), not forever
        now = time.monotonic()
        for chat_id in [c for c, chat in self._chats.items() if not chat.queue and not chat.busy
                        and chat.ready_at < now]:
            del self._chats[chat_id]

    @staticmethod
    def _retried(row: Outgoing) -> Outgoing:
        return Outgoing(row.id, row.chat_id, row.method, row.payload, row.digest_line, row.priority,
                        row.attempts + 1)

    def _requeue(self, chat: _Chat, batch: list[Outgoing], delay: float = 0.0) -> None:
        for row in batch:
            insort(chat.queue, (row.priority, row.id, row))
        if delay:
            chat.ready_at = time.monotonic() + delay

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

    def _keyboard(self, payload: dict) -> InlineKeyboardMarkup | None:
        markup = payload.get("reply_markup")
        return InlineKeyboardMarkup.de_json(markup, self.bot) if markup else None

    async def _call(self, chat_id: int, batch: list[Outgoing]) -> SendResult:
        ids = tuple(row.id for row in batch)
        head = batch[0]
        payload = head.payload
        if head.method == "sendMessage":
            text = payload["text"]
            if len(batch) > 1:
                text = "\n\n".join([payload.get("digest_header", ""), *(row.digest_line for row in batch)]).strip()
            message = await self.bot.send_message(chat_id, text,
                                                  reply_markup=self._keyboard(payload) if len(batch) == 1 else None)
            self.sent_count += 1
            return SendResult(ids, OUT_SENT, message_id=message.message_id)
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
        if head.method == "answerCallbackQuery":
            try:
                await self.bot.answer_callback_query(payload["callback_query_id"], text=payload.get("text"))
            except BadRequest:
                pass  # too old to answer: the button simply stops spinning on the client
            return SendResult(ids, OUT_SENT)
        result = await self.bot.do_api_request(head.method, api_kwargs={"chat_id": chat_id, **payload},
                                               return_type=Message)
        self.sent_count += 1
        return SendResult(ids, OUT_SENT, message_id=getattr(result, "message_id", None))

    # -- writing results ------------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self._flush()
            except Exception:  # the database is briefly locked or down: keep the results, try again
                log.warning("could not record send results yet", exc_info=True)

    async def _flush(self) -> None:
        if not self._results and not self._blocked_chats:
            return
        results, self._results = self._results, []
        blocked, self._blocked_chats = self._blocked_chats, []
        try:
            async with self.sessionmaker() as session:
                for chat_id in blocked:
                    await users.mark_blocked(session, chat_id)
                    await outbox.fail_pending_for_chat(session, chat_id, "blocked")
                await outbox.apply_results(session, results)
        except BaseException:  # also a stop cancelling the write: these messages were sent, keep saying so
            self._results[:0] = results
            self._blocked_chats[:0] = blocked
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
            if not any(c.queue for c in self._chats.values()) and not self._in_flight and not self._results:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("outbox not drained")
