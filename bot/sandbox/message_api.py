"""The Bot API methods about messages (send, edit, delete, files, callback answers), each as Telegram
answers it, with its limits, flood control and errors; :class:`~bot.sandbox.standin.StandIn` dispatches
calls here and to :mod:`bot.sandbox.bot_setup_api`."""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import TYPE_CHECKING, Any

from bot.sandbox.formatting import formatted, with_links
from bot.sandbox.images import encode_photo
from bot.sandbox.wire import (
    BLOCKED_DESCRIPTION,
    MAX_CAPTION,
    MAX_DOC_UPLOAD,
    MAX_DOWNLOAD,
    MAX_PHOTO_UPLOAD,
    MAX_TEXT,
    NOT_A_MEMBER,
    USER_PHOTO_MAX_SIDE,
    ApiError,
    FloodBucket,
    as_quoted,
    as_returned,
    bad_request,
    to_bool,
    to_float,
    to_int,
    utf16_len,
)

if TYPE_CHECKING:
    from bot.sandbox.standin import StandIn

# inline keyboard buttons that do something without callback data or a URL
OTHER_BUTTON_KINDS = ("switch_inline_query", "switch_inline_query_current_chat", "login_url", "web_app", "pay",
                      "callback_game", "copy_text", "switch_inline_query_chosen_chat")


def _text_button_refused() -> ApiError:
    return bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")


def _upload_name(field: str, value: Any) -> str:
    """The multipart part that carried an upload: the field itself, or the one ``attach://name`` names."""
    return field if value in (None, "") else str(value)[len("attach://"):]


class MessageMethods:
    # answered by the methods named _m_<method> below
    METHODS = (
        "sendChatAction", "getFile", "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup",
        "sendLocation", "editMessageText", "editMessageCaption", "editMessageReplyMarkup", "deleteMessage",
        "deleteMessages", "answerCallbackQuery", "getChat", "leaveChat",
    )

    def __init__(self, standin: StandIn) -> None:
        self.s = standin

    def _chat_id(self, params: dict) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise bad_request("chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for cid, chat in self.s._chats.items():
                if chat.get("username", "").lower() == raw[1:].lower():
                    return cid
            raise bad_request("chat not found")
        return to_int(raw, "chat_id")

    def _chat_for_send(self, chat_id: int) -> dict:
        chat = self.s._chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        if chat_id in self.s._blocked:
            raise ApiError(403, BLOCKED_DESCRIPTION)
        if chat_id in self.s._left_groups:
            raise ApiError(403, NOT_A_MEMBER)
        return chat

    def _flood(self, chat_id: int | None, n: int = 1) -> None:
        if not self.s._flood_control:
            return
        now = time.monotonic()
        scale = self.s._flood_scale
        b = self.s._buckets.get(None)
        if b is None:
            b = self.s._buckets[None] = FloodBucket(30.0 * scale, 30.0 * scale, now)
        wait = b.wait_time(n, now)
        cb = None
        if chat_id is not None:
            cb = self.s._buckets.get(chat_id)
            if cb is None:
                if chat_id > 0:  # private chat: ~1/s with a short burst
                    cb = FloodBucket(1.0 * scale, 3.0 * scale, now)
                else:  # group, supergroup, channel: 20 per minute
                    cb = FloodBucket(20.0 / 60.0 * scale, 20.0 * scale, now)
                self.s._buckets[chat_id] = cb
            wait = max(wait, cb.wait_time(n, now))
        if wait > 0:
            self.s.stats["flood_429"] += 1
            retry = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", retry)
        b.tokens -= n
        if cb is not None:
            cb.tokens -= n

    def _text_fields(self, params: dict, text_key: str, ents_key: str, limit: int, required: bool) -> dict:
        raw = params.get(text_key)
        if raw is None or raw == "":
            if required:
                raise bad_request("message text is empty")
            return {}
        raw = str(raw)
        ents = params.get(ents_key)
        if ents:
            text, entities = raw, ents
        else:
            text, entities = formatted(raw, params.get("parse_mode"))
        if required and not text.strip():
            raise bad_request("message text is empty")
        if utf16_len(text) > limit:
            raise bad_request("message is too long" if text_key == "text" else "message caption is too long")
        out: dict[str, Any] = {text_key: text}
        entities = with_links(text, entities)
        if entities:
            out[ents_key] = entities
        return out

    def _markup(self, params: dict) -> tuple[dict | None, dict | None]:
        """-> (inline markup kept on the message, other keyboard kept privately for the page)."""
        markup = params.get("reply_markup")
        if not markup:
            return None, None
        if not isinstance(markup, dict):
            raise bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list):
                raise bad_request("can't parse inline keyboard button: field \"inline_keyboard\" must be an Array")
            for row in rows:
                if not isinstance(row, list):
                    raise bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                for btn in row:
                    if not isinstance(btn, dict) or not btn.get("text"):
                        raise _text_button_refused()
                    if "callback_data" in btn:
                        data = btn["callback_data"]
                        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                            raise bad_request("BUTTON_DATA_INVALID")
                    elif "url" in btn:
                        if not re.match(r"(https?|tg)://\S+$", str(btn["url"])):
                            raise bad_request(f"inline keyboard button URL '{btn['url']}' is invalid: Wrong HTTP URL")
                    elif not any(k in btn for k in OTHER_BUTTON_KINDS):
                        raise _text_button_refused()
            return markup, None
        if "keyboard" in markup or "remove_keyboard" in markup or "force_reply" in markup:
            return None, markup
        raise bad_request("can't parse reply keyboard markup JSON object")

    def _reply_to(self, params: dict, chat_id: int) -> dict | None:
        rp = params.get("reply_parameters")
        mid: Any = None
        allow = to_bool(params.get("allow_sending_without_reply", False))
        if isinstance(rp, dict):
            mid = rp.get("message_id")
            allow = allow or to_bool(rp.get("allow_sending_without_reply", False))
        elif params.get("reply_to_message_id") not in (None, ""):
            mid = params["reply_to_message_id"]
        if mid is None:
            return None
        target = self.s._by_id.get(chat_id, {}).get(to_int(mid, "reply message identifier"))
        if target is None or target.get("_deleted"):
            if allow:
                return None
            raise bad_request("message to be replied not found")
        return as_quoted(target)

    def _out_message(self, chat: dict, method: str, fields: dict, files: dict | None, params: dict,
                     keyboard: dict | None, reply: dict | None) -> dict:
        chat_id = chat["id"]
        entry: dict[str, Any] = {"message_id": self.s._mid(chat_id), "from": self.s.bot_user, "chat": chat,
                                 "date": int(time.time())}
        if reply is not None:
            entry["reply_to_message"] = reply
        entry.update(fields)
        entry["_dir"] = "out"
        entry["_method"] = method
        entry["_files"] = files or {}
        entry["_deleted"] = False
        if keyboard is not None:
            entry["_reply_keyboard"] = keyboard
        self.s._record(chat_id, entry)
        self.s._sent.setdefault(chat_id, []).append(entry)
        self.s.stats["sent_messages"] += 1
        return entry

    def _bot_entry(self, params: dict, not_found: str) -> tuple[int, dict]:
        if params.get("inline_message_id"):
            raise bad_request("inline messages are not supported by the stand-in")
        chat_id = self._chat_id(params)
        mid = to_int(params.get("message_id"), "message_id")
        entry = self.s._by_id.get(chat_id, {}).get(mid)
        if entry is None or entry.get("_deleted"):
            raise bad_request(not_found)
        return chat_id, entry

    def _input_file(self, value: Any, files: dict, field: str,
                    kind: str) -> tuple[dict | None, tuple[bytes, str | None, str | None] | None]:
        """-> (existing file record, or None; upload (bytes, filename, content type), or None)."""
        if isinstance(value, str) and value.startswith("attach://"):
            up = files.get(value[len("attach://"):])
            if up is None:
                raise bad_request(f"file {value} not found in the request")
            return None, up
        if value is None or value == "":
            up = files.get(field)
            if up is None:
                raise bad_request(f"there is no {kind} in the request")
            return None, up
        if isinstance(value, (bytes, bytearray)):
            return None, (bytes(value), None, None)
        value = str(value)
        rec = self.s.files.get(value)
        if rec is None:
            if value.startswith(("http://", "https://")):
                raise bad_request("failed to get HTTP URL content")
            raise bad_request("wrong file identifier/HTTP URL specified")
        if rec["kind"] != kind:
            raise bad_request("type of file mismatch")
        return rec, None

    async def _photo_sizes(self, value: Any, files: dict, field: str) -> tuple[list[dict], dict]:
        rec, up = self._input_file(value, files, field, "photo")
        if rec is not None:
            return rec["sizes"], {}
        assert up is not None
        data = up[0]
        if len(data) > MAX_PHOTO_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        encoded = await asyncio.to_thread(encode_photo, data, USER_PHOTO_MAX_SIDE, keep_if_small_jpeg=True, strict=True)
        return self.s.files.register_photo(encoded), {_upload_name(field, value): data}

    def _document(self, value: Any, files: dict, field: str) -> tuple[dict, dict]:
        rec, up = self._input_file(value, files, field, "document")
        if rec is not None:
            return rec["document"], {}
        assert up is not None
        data, filename, ctype = up
        if len(data) > MAX_DOC_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        if filename in (None, "", "application.octet-stream"):
            filename = filename or "file"
        return self.s.files.register_document(data, filename, ctype), {_upload_name(field, value): data}


    def _m_sendChatAction(self, p: dict, f: dict) -> bool:
        self._chat_for_send(self._chat_id(p))
        return True

    def _m_getFile(self, p: dict, f: dict) -> dict:
        rec = self.s.files.get(str(p.get("file_id") or ""))
        if rec is None:
            raise bad_request("invalid file_id")
        if rec["file_size"] > MAX_DOWNLOAD:
            raise bad_request("file is too big")
        return {key: rec[key] for key in ("file_id", "file_unique_id", "file_size", "file_path")}

    def _m_sendMessage(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        fields = self._text_fields(p, "text", "entities", MAX_TEXT, True)
        if isinstance(p.get("link_preview_options"), dict):
            fields["link_preview_options"] = p["link_preview_options"]
        inline, keyboard = self._markup(p)
        if inline:
            fields["reply_markup"] = inline
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id)
        return as_returned(self._out_message(chat, "sendMessage", fields, None, p, keyboard, reply))

    async def _m_sendPhoto(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        fields = self._text_fields(p, "caption", "caption_entities", MAX_CAPTION, False)
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._input_file(p.get("photo"), f, "photo", "photo")  # validate before taking flood tokens
        self._flood(chat_id)
        sizes, uploads = await self._photo_sizes(p.get("photo"), f, "photo")
        fields = {"photo": sizes, **fields}
        if to_bool(p.get("has_spoiler", False)):
            fields["has_media_spoiler"] = True
        if inline:
            fields["reply_markup"] = inline
        chat = self._chat_for_send(chat_id)
        return as_returned(self._out_message(chat, "sendPhoto", fields, uploads, p, keyboard, reply))

    def _m_sendDocument(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        caption = self._text_fields(p, "caption", "caption_entities", MAX_CAPTION, False)
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._input_file(p.get("document"), f, "document", "document")
        self._flood(chat_id)
        doc, uploads = self._document(p.get("document"), f, "document")
        fields: dict[str, Any] = {"document": doc, **caption}
        if inline:
            fields["reply_markup"] = inline
        return as_returned(self._out_message(chat, "sendDocument", fields, uploads, p, keyboard, reply))

    async def _m_sendMediaGroup(self, p: dict, f: dict) -> list[dict]:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise bad_request("wrong number of media specified: an album has 2 to 10 items" if isinstance(media, list)
                              else "can't parse media JSON object")
        types = set()
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document", "video", "audio"):
                raise bad_request("can't parse InputMedia: media type is not supported")
            types.add(item["type"])
        if len(types) > 1 and ("document" in types or "audio" in types):
            raise bad_request("document and audio can't be mixed with other media types")
        if types - {"photo", "document"}:
            raise bad_request("only photo and document albums are supported by the stand-in")
        captions = [self._text_fields(item, "caption", "caption_entities", MAX_CAPTION, False) for item in media]
        for item in media:
            self._input_file(item.get("media"), f, "media", item["type"])
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id, len(media))
        group_id = str(13_000_000_000_000_000 + next(self.s._group_ids))
        built = []
        for item, cap in zip(media, captions, strict=False):
            if item["type"] == "photo":
                sizes, uploads = await self._photo_sizes(item.get("media"), f, "media")
                built.append(({"photo": sizes, **cap}, uploads))
            else:
                doc, uploads = self._document(item.get("media"), f, "media")
                built.append(({"document": doc, **cap}, uploads))
        chat = self._chat_for_send(chat_id)
        out = []
        for fields, uploads in built:
            fields["media_group_id"] = group_id
            out.append(as_returned(self._out_message(chat, "sendMediaGroup", fields, uploads, p, None, reply)))
        return out

    def _m_sendLocation(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        lat = to_float(p.get("latitude"), "latitude")
        lon = to_float(p.get("longitude"), "longitude")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise bad_request("wrong location specified")
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id)
        fields: dict[str, Any] = {"location": {"latitude": lat, "longitude": lon}}
        if inline:
            fields["reply_markup"] = inline
        return as_returned(self._out_message(chat, "sendLocation", fields, None, p, keyboard, reply))

    def _edit_common(self, p: dict, entry: dict, chat_id: int, new: dict, markup: dict | None) -> dict:
        if entry["_dir"] != "out":
            raise bad_request("message can't be edited")
        same = all(entry.get(k) == v for k, v in new.items()) and entry.get("reply_markup") == markup
        if same:
            raise bad_request("message is not modified: specified new message content and reply markup are exactly "
                              "the same as a current content and reply markup of the message")
        self._chat_for_send(chat_id)
        self._flood(chat_id)
        for k, v in new.items():
            if v is None:
                entry.pop(k, None)
            else:
                entry[k] = v
        if markup is None:
            entry.pop("reply_markup", None)
        else:
            entry["reply_markup"] = markup
        entry["edit_date"] = int(time.time())
        self.s._touch(chat_id, entry)
        return as_returned(entry)

    def _m_editMessageText(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        if "text" not in entry:
            raise bad_request("there is no text in the message to edit")
        fields = self._text_fields(p, "text", "entities", MAX_TEXT, True)
        inline, _ = self._markup(p)
        new = {"text": fields["text"], "entities": fields.get("entities")}
        if isinstance(p.get("link_preview_options"), dict):
            new["link_preview_options"] = p["link_preview_options"]
        return self._edit_common(p, entry, chat_id, new, inline)

    def _m_editMessageCaption(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        if not any(k in entry for k in ("photo", "document", "video", "audio", "animation")):
            raise bad_request("there is no caption in the message to edit")
        fields = self._text_fields(p, "caption", "caption_entities", MAX_CAPTION, False)
        inline, _ = self._markup(p)
        new = {"caption": fields.get("caption"), "caption_entities": fields.get("caption_entities")}
        return self._edit_common(p, entry, chat_id, new, inline)

    def _m_editMessageReplyMarkup(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        inline, _ = self._markup(p)
        return self._edit_common(p, entry, chat_id, {}, inline)

    def _delete(self, chat_id: int, mid: int) -> bool:
        entry = self.s._by_id.get(chat_id, {}).get(mid)
        if entry is None or entry.get("_deleted"):
            return False
        chat = self.s._chats.get(chat_id, {})
        if entry["_dir"] == "in" and chat.get("type") not in ("private", "group", "supergroup"):
            return False
        entry["_deleted"] = True
        self.s._touch(chat_id, entry)
        return True

    def _m_deleteMessage(self, p: dict, f: dict) -> bool:
        chat_id = self._chat_id(p)
        if chat_id not in self.s._chats:
            raise bad_request("chat not found")
        if not self._delete(chat_id, to_int(p.get("message_id"), "message_id")):
            raise bad_request("message to delete not found")
        return True

    def _m_deleteMessages(self, p: dict, f: dict) -> bool:
        chat_id = self._chat_id(p)
        if chat_id not in self.s._chats:
            raise bad_request("chat not found")
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise bad_request("message_ids must be an array of 1-100 message identifiers")
        for mid in ids:
            self._delete(chat_id, to_int(mid, "message_ids"))
        return True

    def _m_answerCallbackQuery(self, p: dict, f: dict) -> bool:
        cq_id = str(p.get("callback_query_id") or "")
        cb = self.s._callbacks.get(cq_id)
        if cb is None or cb["answered"]:
            raise bad_request("query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        cb["answered"] = True
        answer = {"callback_query_id": cq_id, "text": text, "show_alert": to_bool(p.get("show_alert", False)),
                  "url": p.get("url")}
        self.s.callback_answers[cq_id] = answer
        entry = self.s._by_id.get(cb["chat_id"], {}).get(cb["message_id"])
        if entry is not None and text:
            entry["_callback_answer"] = dict(answer, at=time.time())
            self.s._touch(cb["chat_id"], entry)
        return True

    def _m_leaveChat(self, p: dict, f: dict) -> bool:
        """The bot leaves a group; Telegram then sends a my_chat_member update (member -> left)."""
        chat_id = self._chat_id(p)
        group = self.s._groups.get(chat_id)
        if group is None:
            raise bad_request("chat not found")
        if chat_id in self.s._left_groups:
            raise ApiError(403, NOT_A_MEMBER)
        self.s._left_groups.add(chat_id)
        self.s._group_member_update(group, self.s.bot_user, "member", "left")
        return True

    def _m_getChat(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self.s._chats.get(chat_id)
        if chat is None:
            raise bad_request("chat not found")
        return dict(chat, accent_color_id=0, max_reaction_count=11,
                    accepted_gift_types={"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                         "premium_subscription": False, "gifts_from_channels": False})
