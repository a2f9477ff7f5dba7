"""The calls to Telegram the sender makes, and what it keeps of their answers (message ids, the
file_ids of uploads, so a file goes up once and is re-sent by file_id)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, ReplyKeyboardMarkup
from telegram.error import BadRequest

from bot.db.models import DELIVERY_SENT, OUT_SENT
from bot.services import deliveries
from bot.services.deliveries import Card, DeliveryResult, Job
from bot.services.media import media_path
from bot.services.outbox import Outgoing, SendResult
from bot.transport.http import AiohttpRequest


class TelegramCalls:
    def __init__(self, bot: Bot, request: AiohttpRequest, media_dir: Path, file_ids: dict[str, str]) -> None:
        self.bot = bot
        self._request = request  # the bot's own connection pool, for plain calls (see plain_call)
        self.media_dir = media_dir
        self._file_ids = file_ids  # sha256 -> file_id, shared with the sender and its broadcast lane
        self.sent_count = 0

    async def send_card(self, job: Job, card: Card) -> DeliveryResult:
        """A broadcast's card: by file_id once uploaded, else uploaded (its file_id kept)."""
        file_id = self._file_ids.get(card.photo_sha256)
        if file_id is not None:
            sent = await self.plain_call("sendPhoto", chat_id=job.chat_id, photo=file_id, caption=card.caption,
                                         reply_markup=card.reply_markup)
            self.sent_count += 1
            return DeliveryResult(job.delivery_id, DELIVERY_SENT, message_id=sent["message_id"])
        message = await self.bot.send_photo(job.chat_id, await self._stored_file(card.photo_sha256),
                                            caption=card.caption,
                                            reply_markup=InlineKeyboardMarkup.de_json(card.reply_markup, self.bot))
        self.sent_count += 1
        uploaded = self._remember_upload(card.photo_sha256, message.photo[-1].file_id) if message.photo else ()
        return DeliveryResult(job.delivery_id, DELIVERY_SENT, message_id=message.message_id, uploaded=uploaded)

    async def withdraw(self, job: Job) -> DeliveryResult:
        if job.message_id is not None:  # none: the card never reached them, there is nothing to take down
            await self.bot.delete_message(job.chat_id, job.message_id)
        return DeliveryResult(job.delivery_id, deliveries.DELETED)

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

    async def send(self, chat_id: int, batch: list[Outgoing]) -> SendResult:
        """One call for ``batch``: a message, a digest of alerts, an album, a document, an edit."""
        ids = tuple(row.id for row in batch)
        head = batch[0]
        payload = head.payload
        if head.method == "sendMessage":
            text = payload["text"]
            if len(batch) > 1:
                lines = [payload.get("digest_header", ""), *(row.digest_line or "" for row in batch)]
                text = "\n\n".join(lines).strip()
            message = await self.plain_call("sendMessage", chat_id=chat_id, text=text,
                                            reply_markup=payload.get("reply_markup") if len(batch) == 1 else None)
            self.sent_count += 1
            return SendResult(ids, OUT_SENT, message_id=message["message_id"])
        if head.method == "sendPhoto":
            hashes = [row.payload["photo_sha256"] for row in batch]
            if len(batch) == 1:
                # a single photo may carry buttons (a match alert's Confirm lead / Reject)
                message = await self.bot.send_photo(chat_id, await self._stored_file(hashes[0]),
                                                    caption=payload.get("caption"),
                                                    reply_markup=self._keyboard(payload))
                messages = [message]
            else:
                media = [InputMediaPhoto(await self._stored_file(sha), caption=row.payload.get("caption"))
                         for sha, row in zip(hashes, batch, strict=False)]
                messages = list(await self.bot.send_media_group(chat_id, media))
            uploaded = tuple(upload for sha, message in zip(hashes, messages, strict=False) if message.photo
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
            await self.plain_call("editMessageText", chat_id=chat_id, message_id=payload["message_id"],
                                  text=payload["text"])
            return SendResult(ids, OUT_SENT, message_id=payload["message_id"])
        if head.method == "answerCallbackQuery":
            try:
                await self.plain_call("answerCallbackQuery", callback_query_id=payload["callback_query_id"],
                                      text=payload.get("text"))
            except BadRequest:
                pass  # too old to answer: the button simply stops spinning on the client
            return SendResult(ids, OUT_SENT)
        result = await self.plain_call(head.method, chat_id=chat_id, **payload)
        self.sent_count += 1
        return SendResult(ids, OUT_SENT, message_id=result.get("message_id") if isinstance(result, dict) else None)

    async def plain_call(self, method: str, **params):
        """A call whose answer is read as JSON (a dict, or True), not built into PTB objects: parsing
        each Message cost more CPU than the call itself, and building each call through ``Bot`` (its
        parameters re-encoded one by one) nearly as much; only a sent message's id is kept. The
        parameters are encoded as PTB encodes them, and Telegram's refusals raise PTB's own errors
        (RetryAfter, Forbidden, BadRequest ...), mapped by PTB (``AiohttpRequest.post_form``)."""
        fields = {key: value if isinstance(value, str) else json.dumps(value)
                  for key, value in params.items() if value is not None}
        return await self._request.post_form(f"{self.bot.base_url}/{method}", fields)

