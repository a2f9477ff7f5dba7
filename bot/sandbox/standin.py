"""A local stand-in for the Telegram Bot API (the subset a PTB 22 bot uses) plus a browser chat.

`StandIn` is an aiohttp server that speaks `/bot{token}/{method}` and `/file/bot{token}/{path}` like
api.telegram.org, so a real `telegram.ext.Application` built with
`.base_url(f"{api}/bot").base_file_url(f"{api}/file/bot")` runs against it unchanged.  Simulated users
(`SimUser`) create updates; everything the bot sends is recorded per chat and can be observed
(`sent_to`, `wait_for`).  Telegram's flood limits and injected faults (403, 429, 5xx, timeouts) are
enforced on the way.  The same server hosts a JSON API and a browser page (`GET /`) where a person
can act as several Telegram users.

All state lives in plain dicts on the event loop that runs the server: call the Python API
(`user()`, `SimUser.send_*`, ...) from that loop's thread.

Run standalone: `python -m bot.sandbox.standin --port 8081 [--no-flood] [--flood-scale X]`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import signal
import sys
import time
from collections import Counter, deque
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from aiohttp import ClientSession, ClientTimeout, web
from PIL import Image, ImageOps
import uvloop

__all__ = ["StandIn", "SimUser", "SimGroup", "main"]

log = logging.getLogger("reunite.sandbox")

STATIC_DIR = Path(__file__).with_name("static")

# Parameters that arrive as JSON strings inside form bodies.
_JSON_KEYS = frozenset(
    {
        "reply_markup", "entities", "caption_entities", "media", "allowed_updates", "reply_parameters",
        "link_preview_options", "commands", "scope", "menu_button", "rights", "message_ids",
        "results", "reaction",
    }
)
# Methods that put a message in a chat (or change one) and so count against flood limits.
_FLOOD_METHODS = frozenset(
    {
        "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendLocation",
        "editMessageText", "editMessageCaption", "editMessageReplyMarkup",
    }
)
# `fail_next(method=None)` / `slow_next(method=None)` never hit these (they would break polling).
_INFRA_METHODS = frozenset({"getUpdates", "getMe", "deleteWebhook", "setWebhook", "getWebhookInfo", "logOut", "close"})

_MAX_TEXT = 4096
_MAX_CAPTION = 1024
_MAX_PHOTO_UPLOAD = 10 * 1024 * 1024
_MAX_DOC_UPLOAD = 50 * 1024 * 1024
_MAX_DOWNLOAD = 20 * 1024 * 1024
_USER_PHOTO_MAX_SIDE = 1280
_BLOCKED = "Forbidden: bot was blocked by the user"
_NOT_A_MEMBER = "Forbidden: bot is not a member of the group chat"

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def _bad(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


def _u16(s: str) -> int:
    """Length in UTF-16 code units (Telegram's unit for entity offsets)."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def _clean(entry: dict) -> dict:
    """A stored message without the stand-in's private `_` keys: what Telegram would return."""
    return {k: v for k, v in entry.items() if k[0] != "_"}


def _quoted(entry: dict) -> dict:
    """A message as it appears inside `reply_to_message` (no nested reply)."""
    return {k: v for k, v in entry.items() if k[0] != "_" and k != "reply_to_message"}


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=_DUMPS(payload).encode(), status=status, content_type="application/json")


def _error_response(err: ApiError) -> web.Response:
    payload: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
    if err.retry_after is not None:
        payload["parameters"] = {"retry_after": err.retry_after}
    return _json_response(payload, err.code)


def _to_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _to_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid {name} specified") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def _default_description(status: int) -> str:
    if status == 400:
        return "Bad Request: injected error"
    if status == 403:
        return _BLOCKED
    if status == 401:
        return "Unauthorized"
    if status == 404:
        return "Not Found"
    if status == 409:
        return "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
    if status == 500:
        return "Internal Server Error"
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --------------------------------------------------------------------------------------------
# Formatting: parse_mode -> (plain text, entities), like Telegram does, with its errors.
# --------------------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "code": "code", "pre": "pre", "a": "text_link", "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


class _HTMLEntities(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pos = 0
        self.stack: list[list[Any]] = []
        self.entities: list[dict] = []
        self.error: str | None = None

    def _where(self) -> int:
        return sum(len(x.encode()) for x in self.out)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        a = {k: (v or "") for k, v in attrs}
        if tag not in _HTML_TAGS or (tag == "span" and a.get("class") != "tg-spoiler"):
            self.error = f'Unsupported start tag "{tag}" at byte offset {self._where()}'
            return
        self.stack.append([tag, self.pos, a, None])

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.stack or self.stack[-1][0] != tag:
            expected = f'"</{self.stack[-1][0]}>"' if self.stack else "no end tag"
            self.error = f'Unmatched end tag at byte offset {self._where()}, expected {expected}, found "</{tag}>"'
            return
        name, start, attrs, language = self.stack.pop()
        length = self.pos - start
        if name == "code" and self.stack and self.stack[-1][0] == "pre":
            cls = attrs.get("class", "")
            if cls.startswith("language-"):
                self.stack[-1][3] = cls[len("language-"):]
                return
        if length <= 0:
            return
        ent: dict[str, Any] = {"type": _HTML_TAGS[name], "offset": start, "length": length}
        if name == "a":
            href = attrs.get("href", "")
            if not href:
                return
            m = re.fullmatch(r"tg://user\?id=(\d+)", href)
            if m:
                ent = {"type": "text_mention", "offset": start, "length": length, "user": {"id": int(m.group(1)), "is_bot": False, "first_name": ""}}
            else:
                ent["url"] = href
        elif name == "pre" and language:
            ent["language"] = language
        elif name == "blockquote" and "expandable" in attrs:
            ent["type"] = "expandable_blockquote"
        elif name == "tg-emoji":
            ent["custom_emoji_id"] = attrs.get("emoji-id", "")
        self.entities.append(ent)

    def handle_data(self, data: str) -> None:
        if data:
            self.out.append(data)
            self.pos += _u16(data)


def _parse_html(text: str) -> tuple[str, list[dict]]:
    p = _HTMLEntities()
    p.feed(text)
    p.close()
    if p.error is None and p.stack:
        p.error = f'Can\'t find end tag corresponding to start tag "{p.stack[-1][0]}"'
    if p.error:
        raise _bad("can't parse entities: " + p.error)
    return "".join(p.out), p.entities


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_PLAIN = re.compile(r"[^_*\[\]()~`>#+\-=|{}.!\\\n]+")
_MDV2_TYPES = {"*": "bold", "_": "italic", "__": "underline", "~": "strikethrough", "||": "spoiler"}


def _mdv2_unescape(s: str) -> str:
    return re.sub(r"\\([\x01-\x7e])", r"\1", s)


def _find_unescaped(s: str, sub: str, start: int) -> int:
    i = start
    while True:
        j = s.find(sub, i)
        if j < 0:
            return -1
        k = j - 1
        backslashes = 0
        while k >= start and s[k] == "\\":
            backslashes += 1
            k -= 1
        if backslashes % 2 == 0:
            return j
        i = j + 1


def _parse_markdown_v2(s: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    pos = 0
    stack: list[tuple[str, int, int]] = []  # (marker, u16 start, char index)
    entities: list[dict] = []
    bq_start: int | None = None
    i, n = 0, len(s)

    def err(msg: str) -> ApiError:
        return _bad("can't parse entities: " + msg)

    while i < n:
        m = _MDV2_PLAIN.match(s, i)
        if m:
            chunk = m.group(0)
            out.append(chunk)
            pos += _u16(chunk)
            i = m.end()
            continue
        c = s[i]
        if c == "\\":
            if i + 1 < n and 1 <= ord(s[i + 1]) <= 126:
                out.append(s[i + 1])
                pos += 1
                i += 2
                continue
            raise err(f"Character '\\' is reserved and must be escaped with the preceding '\\'")
        if c == "\n":
            out.append("\n")
            if bq_start is not None and not s.startswith(">", i + 1):
                if pos > bq_start:
                    entities.append({"type": "blockquote", "offset": bq_start, "length": pos - bq_start})
                bq_start = None
            pos += 1
            i += 1
            continue
        if c == ">" and (i == 0 or s[i - 1] == "\n"):
            if bq_start is None:
                bq_start = pos
            i += 1
            continue
        if c == "`":
            if s.startswith("```", i):
                j = _find_unescaped(s, "```", i + 3)
                if j < 0:
                    raise err(f"Can't find end of Pre entity at byte offset {len(s[:i].encode())}")
                inner = s[i + 3 : j]
                language = None
                if "\n" in inner:
                    first, rest = inner.split("\n", 1)
                    if first == "" or re.fullmatch(r"[\w+#.-]+", first):
                        language, inner = (first or None), rest
                body = _mdv2_unescape(inner)
                ent: dict[str, Any] = {"type": "pre", "offset": pos, "length": _u16(body)}
                if language:
                    ent["language"] = language
                if body:
                    entities.append(ent)
                out.append(body)
                pos += _u16(body)
                i = j + 3
                continue
            j = _find_unescaped(s, "`", i + 1)
            if j < 0:
                raise err(f"Can't find end of Code entity at byte offset {len(s[:i].encode())}")
            body = _mdv2_unescape(s[i + 1 : j])
            if body:
                entities.append({"type": "code", "offset": pos, "length": _u16(body)})
            out.append(body)
            pos += _u16(body)
            i = j + 1
            continue
        if c == "[":
            stack.append(("[", pos, i))
            i += 1
            continue
        if c == "]":
            if not stack or stack[-1][0] != "[":
                raise err("Character ']' is reserved and must be escaped with the preceding '\\'")
            if not s.startswith("(", i + 1):
                raise err("Character ']' is reserved and must be escaped with the preceding '\\'")
            j = _find_unescaped(s, ")", i + 2)
            if j < 0:
                raise err(f"Can't find end of a URL at byte offset {len(s[:i].encode())}")
            url = _mdv2_unescape(s[i + 2 : j])
            _, start, _ = stack.pop()
            if pos > start:
                mu = re.fullmatch(r"tg://user\?id=(\d+)", url)
                if mu:
                    entities.append({"type": "text_mention", "offset": start, "length": pos - start, "user": {"id": int(mu.group(1)), "is_bot": False, "first_name": ""}})
                else:
                    entities.append({"type": "text_link", "offset": start, "length": pos - start, "url": url})
            i = j + 1
            continue
        marker = None
        if c == "_":
            marker = "__" if s.startswith("__", i) else "_"
        elif c == "|" and s.startswith("||", i):
            marker = "||"
        elif c in "*~":
            marker = c
        if marker is not None:
            if any(e[0] == marker for e in stack):
                if stack[-1][0] != marker:
                    raise err(f"Can't find end of {_MDV2_TYPES[stack[-1][0]].capitalize() if stack[-1][0] in _MDV2_TYPES else 'TextUrl'} entity at byte offset {len(s[:stack[-1][2]].encode())}")
                _, start, _ = stack.pop()
                if pos > start:
                    entities.append({"type": _MDV2_TYPES[marker], "offset": start, "length": pos - start})
            else:
                stack.append((marker, pos, i))
            i += len(marker)
            continue
        if c in _MDV2_RESERVED:
            raise err(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
        out.append(c)  # pragma: no cover - every other char is matched by _MDV2_PLAIN
        pos += _u16(c)
        i += 1
    if stack:
        marker, _, idx = stack[-1]
        kind = _MDV2_TYPES.get(marker, "TextUrl").capitalize()
        raise err(f"Can't find end of {kind} entity at byte offset {len(s[:idx].encode())}")
    if bq_start is not None and pos > bq_start:
        entities.append({"type": "blockquote", "offset": bq_start, "length": pos - bq_start})
    return "".join(out), entities


def _parse_markdown(s: str) -> tuple[str, list[dict]]:
    """Legacy Markdown: *bold* _italic_ `code` ```pre``` [text](url)."""
    out: list[str] = []
    pos = 0
    entities: list[dict] = []
    i, n = 0, len(s)
    plain = re.compile(r"[^*_`\[\\]+")

    def err(at: int) -> ApiError:
        return _bad(f"can't parse entities: Can't find end of the entity starting at byte offset {len(s[:at].encode())}")

    while i < n:
        m = plain.match(s, i)
        if m:
            out.append(m.group(0))
            pos += _u16(m.group(0))
            i = m.end()
            continue
        c = s[i]
        if c == "\\":
            if i + 1 < n and s[i + 1] in "*_`[\\":
                out.append(s[i + 1])
                pos += 1
                i += 2
            else:
                out.append(c)
                pos += 1
                i += 1
            continue
        if c in "*_":
            j = s.find(c, i + 1)
            if j < 0:
                raise err(i)
            body = s[i + 1 : j]
            if body:
                entities.append({"type": "bold" if c == "*" else "italic", "offset": pos, "length": _u16(body)})
            out.append(body)
            pos += _u16(body)
            i = j + 1
            continue
        if c == "`":
            fence = "```" if s.startswith("```", i) else "`"
            j = s.find(fence, i + len(fence))
            if j < 0:
                raise err(i)
            body = s[i + len(fence) : j]
            ent: dict[str, Any] = {"type": "pre" if fence == "```" else "code", "offset": pos}
            if fence == "```" and "\n" in body:
                first, rest = body.split("\n", 1)
                if re.fullmatch(r"[\w+#.-]*", first):
                    body = rest
                    if first:
                        ent["language"] = first
            ent["length"] = _u16(body)
            if body:
                entities.append(ent)
            out.append(body)
            pos += _u16(body)
            i = j + len(fence)
            continue
        if c == "[":
            j = s.find("]", i + 1)
            if j < 0 or not s.startswith("(", j + 1):
                raise err(i)
            k = s.find(")", j + 2)
            if k < 0:
                raise err(i)
            body = s[i + 1 : j]
            if body:
                entities.append({"type": "text_link", "offset": pos, "length": _u16(body), "url": s[j + 2 : k]})
            out.append(body)
            pos += _u16(body)
            i = k + 1
            continue
    return "".join(out), entities


def _format(text: str, parse_mode: Any) -> tuple[str, list[dict] | None]:
    if not parse_mode:
        return text, None
    mode = str(parse_mode).lower()
    if mode == "html":
        plain, ents = _parse_html(text)
    elif mode == "markdownv2":
        plain, ents = _parse_markdown_v2(text)
    elif mode == "markdown":
        plain, ents = _parse_markdown(text)
    else:
        raise _bad("unsupported parse_mode")
    ents.sort(key=lambda e: (e["offset"], -e["length"]))
    return plain, (ents or None)


_COMMAND_RE = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,64})?")


def _auto_entities(text: str) -> list[dict] | None:
    """Telegram marks a leading /command as a bot_command entity."""
    m = _COMMAND_RE.match(text)
    if m and (m.end() == len(text) or not text[m.end()].isalnum()):
        return [{"type": "bot_command", "offset": 0, "length": _u16(m.group(0))}]
    return None


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if img.mode != "RGB":
        img = img.convert("RGB")
    img.save(buf, "JPEG", quality=quality)  # no exif= and no icc_profile=: metadata is dropped
    return buf.getvalue()


def _encode_photo(data: bytes, max_side: int = _USER_PHOTO_MAX_SIDE, *, keep_if_small_jpeg: bool = False, strict: bool = False) -> list[tuple[bytes, int, int]]:
    """Telegram's photo treatment: EXIF orientation applied, re-encoded as JPEG at most `max_side`
    on the long side with no metadata; plus thumbnails. Returns [(bytes, w, h)] smallest first.
    `strict` applies the Bot API's upload limits (bots); a user's app scales any photo itself.
    CPU-bound and thread-safe (touches no StandIn state)."""
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        w0, h0 = img.size
        if strict and (w0 + h0 > 10000 or w0 <= 0 or h0 <= 0 or max(w0, h0) / max(1, min(w0, h0)) > 20):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        kept = None
        if keep_if_small_jpeg and fmt == "JPEG" and max(w0, h0) <= max_side and not img.getexif():
            kept = (data, w0, h0)
        img.draft("RGB", (max_side, max_side))
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGBA") if "A" in img.getbands() or img.mode == "P" else img.convert("RGB")
            if img.mode == "RGBA":
                bg = Image.new("RGB", img.size, (255, 255, 255))
                bg.paste(img, mask=img.getchannel("A"))
                img = bg
        if kept is not None:
            full = img
            sizes = [kept]
        else:
            full = img.copy()
            full.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            sizes = [(_jpeg(full, 87), full.width, full.height)]
    except ApiError:
        raise
    except Exception as exc:  # corrupt, truncated, not an image, decompression bomb
        raise _bad("IMAGE_PROCESS_FAILED") from exc
    for side in (320, 90):
        if max(full.size) > side:
            t = full.copy()
            t.thumbnail((side, side), Image.Resampling.BILINEAR)
            sizes.insert(0, (_jpeg(t, 80), t.width, t.height))
            if len(sizes) >= 3:
                break
    if len(sizes) == 1:  # tiny image: Telegram still gives a thumbnail and the full one
        sizes.insert(0, sizes[0])
    return sizes


def _user_photo(data: bytes) -> list[tuple[bytes, int, int]]:
    try:
        return _encode_photo(data)
    except ApiError as exc:
        raise ValueError(f"a Telegram app could not send this as a photo ({exc.description}); send it as a document") from exc


# --------------------------------------------------------------------------------------------
# Flood control
# --------------------------------------------------------------------------------------------


class _Bucket:
    __slots__ = ("rate", "cap", "tokens", "ts")

    def __init__(self, rate: float, cap: float, now: float):
        self.rate = rate
        self.cap = cap
        self.tokens = cap
        self.ts = now

    def wait_time(self, n: int, now: float) -> float:
        self.tokens = min(self.cap, self.tokens + (now - self.ts) * self.rate)
        self.ts = now
        need = min(float(n), self.cap)  # an album bigger than the burst goes into debt instead
        if self.tokens + 1e-9 >= need:
            return 0.0
        return (need - self.tokens) / self.rate


# --------------------------------------------------------------------------------------------
# Simulated Telegram users
# --------------------------------------------------------------------------------------------


class SimUser:
    """A Telegram user in a private chat with the bot. Every method enqueues update(s)."""

    def __init__(self, standin: "StandIn", user: dict, chat: dict):
        self._s = standin
        self.user = user  # the `from` object
        self.chat = chat  # the private chat object
        self.id: int = user["id"]
        self.chat_id: int = chat["id"]

    @property
    def first_name(self) -> str:
        return self.user["first_name"]

    def __repr__(self) -> str:
        return f"SimUser(id={self.id}, first_name={self.first_name!r})"

    def send_text(self, text: str, *, reply_to_message_id: int | None = None, entities: list[dict] | None = None) -> dict:
        fields: dict[str, Any] = {"text": text}
        ents = entities if entities is not None else _auto_entities(text)
        if ents:
            fields["entities"] = ents
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_photo(self, image: bytes, *, caption: str | None = None, media_group_id: str | None = None, reply_to_message_id: int | None = None) -> dict:
        """Like a Telegram app: re-encoded JPEG <= 1280 px, no EXIF. Not an image -> ValueError."""
        sizes = self._s._register_photo(_user_photo(image))
        return self._photo_message(sizes, caption, media_group_id, reply_to_message_id)

    def _photo_message(self, sizes: list[dict], caption: str | None, media_group_id: str | None, reply_to_message_id: int | None = None) -> dict:
        fields: dict[str, Any] = {"photo": sizes}
        if media_group_id:
            fields["media_group_id"] = media_group_id
        if caption:
            fields["caption"] = caption
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_album(self, images: list[bytes], caption: str | None = None) -> list[dict]:
        if not 2 <= len(images) <= 10:
            raise ValueError("an album has 2 to 10 items")
        encoded = [_user_photo(img) for img in images]
        return self._album([self._s._register_photo(e) for e in encoded], caption)

    def _album(self, photo_sets: list[list[dict]], caption: str | None) -> list[dict]:
        group_id = str(13_000_000_000_000_000 + next(self._s._group_ids))
        return [self._photo_message(sizes, caption if i == 0 else None, group_id) for i, sizes in enumerate(photo_sets)]

    def send_document(self, data: bytes, file_name: str, mime_type: str, *, caption: str | None = None, reply_to_message_id: int | None = None) -> dict:
        doc = self._s._register_document(data, file_name, mime_type)
        fields: dict[str, Any] = {"document": doc}
        if caption:
            fields["caption"] = caption
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_location(self, latitude: float, longitude: float, *, reply_to_message_id: int | None = None) -> dict:
        fields = {"location": {"latitude": float(latitude), "longitude": float(longitude)}}
        return self._s._user_message(self, self.chat, fields, reply_to_message_id)

    def send_raw(self, **message_fields: Any) -> dict:
        reply_to = message_fields.pop("reply_to_message_id", None)
        return self._s._user_message(self, self.chat, message_fields, reply_to)

    def edit(self, message_id: int, text: str) -> dict:
        return self._s._user_edit(self, self.chat_id, message_id, text)

    def press(self, message: dict, button: str) -> dict:
        return self._s._press(self, message, button)

    def press_forged(self, message: dict, data: str) -> dict:
        """Send callback ``data`` as if pressed under ``message``, whether or not a button carries it."""
        return self._s._forged_press(self, message, data)

    def block_bot(self) -> None:
        self._s.block(self.id)

    def unblock_bot(self) -> None:
        self._s.unblock(self.id)


class SimGroup:
    """A group (negative id) the bot is a member of; every member message is delivered."""

    def __init__(self, standin: "StandIn", chat: dict):
        self._s = standin
        self.chat = chat
        self.id: int = chat["id"]
        self.chat_id: int = chat["id"]
        self.title: str = chat.get("title", "")

    def send_text(self, user: SimUser, text: str, *, reply_to_message_id: int | None = None) -> dict:
        fields: dict[str, Any] = {"text": text}
        ents = _auto_entities(text)
        if ents:
            fields["entities"] = ents
        return self._s._user_message(user, self.chat, fields, reply_to_message_id)

    @property
    def bot_is_member(self) -> bool:
        return self.id not in self._s._left_groups

    def add_bot(self, by: SimUser) -> dict:
        """``by`` adds the bot to this group (again): a my_chat_member update, left -> member."""
        self._s._left_groups.discard(self.id)
        return self._s._group_member_update(self, by.user, "left", "member")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class StandIn:
    def __init__(
        self,
        token: str = "123456:SANDBOX",
        *,
        bot_id: int | None = None,
        bot_username: str = "reunite_sandbox_bot",
        bot_first_name: str = "Reunite (sandbox)",
        flood_control: bool = True,
        flood_scale: float = 1.0,
        first_update_id: int = 1,
    ):
        """``first_update_id``: Telegram's update ids keep rising across restarts, and the bot drops
        an update whose id it has stored before; a stand-in restarted over a kept database must start
        above the ids of its earlier runs (``reunite sandbox`` does)."""
        self.token = token
        if bot_id is None:
            prefix = token.split(":", 1)[0]
            bot_id = int(prefix) if prefix.isdigit() else 123456
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_user = {"id": bot_id, "is_bot": True, "first_name": bot_first_name, "username": bot_username}
        self._flood_control = bool(flood_control)
        self._flood_scale = float(flood_scale)
        self.preset_users: list[dict] = []

        self.stats: dict[str, Any] = {
            "calls": Counter(), "sent_messages": 0, "flood_429": 0, "injected": 0, "updates": 0,
            "errors": Counter(), "webhook_deliveries": 0,
        }
        self.recent_errors: deque[dict] = deque(maxlen=50)
        self.callback_answers: dict[str, dict] = {}
        self.commands: dict[str, list[dict]] = {}
        self.settings: dict[str, Any] = {}

        self._users: dict[int, SimUser] = {}
        self._labels: dict[int, str] = {}
        self._groups: dict[int, SimGroup] = {}
        self._chats: dict[int, dict] = {}
        self._blocked: set[int] = set()
        self._left_groups: set[int] = set()  # groups the bot left (leaveChat): nothing more arrives from them
        self._next_mid: dict[int, int] = {}
        self._log: dict[int, list[dict]] = {}  # chat -> all messages (both directions) in order
        self._sent: dict[int, list[dict]] = {}  # chat -> messages the bot sent
        self._by_id: dict[int, dict[int, dict]] = {}  # chat -> message_id -> entry
        self._rev: dict[int, int] = {}
        self._chat_waiters: dict[int, list[asyncio.Future]] = {}
        self._any_waiters: list[asyncio.Future] = []
        self._updates: deque[dict] = deque()
        self._next_update_id = first_update_id
        self._poll_waiters: list[asyncio.Future] = []
        self._allowed_updates: set[str] | None = None
        self._files: dict[str, dict] = {}
        self._paths: dict[str, str] = {}
        self._file_counter = itertools.count(1)
        self._group_ids = itertools.count(1)
        self._cq_ids = itertools.count(1)
        self._auto_user_ids = itertools.count(100001)
        self._callbacks: dict[str, dict] = {}
        self._faults: list[dict] = []
        self._buckets: dict[int | None, _Bucket] = {}
        self._webhook: dict[str, Any] = {"url": ""}
        self._webhook_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self.url = ""
        self.api_url = ""

        self._methods: dict[str, tuple[str, Callable]] = {}
        for name in (
            "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo", "logOut", "close",
            "setMyCommands", "getMyCommands", "deleteMyCommands", "setMyDescription", "getMyDescription",
            "setMyShortDescription", "getMyShortDescription", "setMyName", "getMyName", "setChatMenuButton",
            "getChatMenuButton", "setMyDefaultAdministratorRights", "sendChatAction", "getFile",
            "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendLocation", "editMessageText",
            "editMessageCaption", "editMessageReplyMarkup", "deleteMessage", "deleteMessages",
            "answerCallbackQuery", "getChat", "leaveChat",
        ):
            self._methods[name.lower()] = (name, getattr(self, "_m_" + name))

        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        r = self.app.router
        r.add_route("*", "/bot{token}/{method}", self._handle_api)
        r.add_get("/file/bot{token}/{path:.+}", self._handle_file_download)
        r.add_get("/", self._page)
        r.add_static("/sandbox/static/", STATIC_DIR, append_version=False)
        r.add_get("/sandbox/api/users", self._api_users)
        r.add_post("/sandbox/api/users", self._api_create_users)
        r.add_post("/sandbox/api/send", self._api_send)
        r.add_post("/sandbox/api/press", self._api_press)
        r.add_post("/sandbox/api/block", self._api_block)
        r.add_post("/sandbox/api/edit", self._api_edit)
        r.add_get("/sandbox/api/chats/{chat_id}/messages", self._api_messages)
        r.add_get("/sandbox/files/{file_id}", self._api_file)
        r.add_get("/sandbox/api/stats", self._api_stats)
        r.add_get("/sandbox/api/timeline", self._api_timeline)
        r.add_get("/sandbox/api/config", self._api_config)
        r.add_post("/sandbox/api/config", self._api_config)

    # ---------------------------------------------------------------- configuration
    @property
    def flood_control(self) -> bool:
        return self._flood_control

    @flood_control.setter
    def flood_control(self, value: bool) -> None:
        self._flood_control = bool(value)
        self._buckets.clear()

    @property
    def flood_scale(self) -> float:
        return self._flood_scale

    @flood_scale.setter
    def flood_scale(self, value: float) -> None:
        if value <= 0:
            raise ValueError("flood_scale must be > 0")
        self._flood_scale = float(value)
        self._buckets.clear()

    # ---------------------------------------------------------------- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        for spec in self.preset_users:
            spec = dict(spec)
            label = spec.pop("label", None) or spec.pop("role", None)
            uid = spec.pop("id", None) or spec.pop("user_id", None) or self._free_user_id()
            u = self.user(int(uid), **spec)
            if label:
                self._labels[u.id] = str(label)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)
        await site.start()
        bound = self._runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        self.url = self.api_url = f"http://{shown}:{bound}"
        self.port = bound

    async def stop(self) -> None:
        self._stopping = True
        self._wake_pollers()
        for chat_id in list(self._chat_waiters):
            self._notify(chat_id)
        self._notify_any()
        for t in list(self._tasks) + ([self._webhook_task] if self._webhook_task else []):
            t.cancel()
        for t in list(self._tasks) + ([self._webhook_task] if self._webhook_task else []):
            try:
                await t
            except BaseException:  # noqa: BLE001 - cancelled or failed background work
                pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "StandIn":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---------------------------------------------------------------- actors
    def _free_user_id(self) -> int:
        while True:
            uid = next(self._auto_user_ids)
            if uid not in self._chats:
                return uid

    def user(self, user_id: int, first_name: str = "User", *, last_name: str | None = None, username: str | None = None,
             language_code: str | None = "en", label: str | None = None) -> SimUser:
        """The simulated user `user_id` (created on first call); its private chat id == user_id."""
        existing = self._users.get(user_id)
        if existing is not None:
            if label:
                self._labels[user_id] = label
            return existing
        if user_id <= 0:
            raise ValueError("user ids are positive")
        frm: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        chat: dict[str, Any] = {"id": user_id, "type": "private", "first_name": first_name}
        if last_name:
            frm["last_name"] = chat["last_name"] = last_name
        if username:
            frm["username"] = chat["username"] = username
        if language_code:
            frm["language_code"] = language_code
        u = SimUser(self, frm, chat)
        self._users[user_id] = u
        self._chats[user_id] = chat
        if label:
            self._labels[user_id] = label
        self._notify_any()
        return u

    def group(self, chat_id: int, title: str) -> SimGroup:
        """A group chat with the bot in it: `chat_id` must be negative (<= -10**12 makes a supergroup)."""
        existing = self._groups.get(chat_id)
        if existing is not None:
            return existing
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        chat = {"id": chat_id, "type": "supergroup" if chat_id <= -1_000_000_000_000 else "group", "title": title}
        g = SimGroup(self, chat)
        self._groups[chat_id] = g
        self._chats[chat_id] = chat
        return g

    def channel_post(self, chat_id: int, text: str) -> dict:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = {"id": chat_id, "type": "channel", "title": f"Channel {chat_id}"}
            self._chats[chat_id] = chat
        msg: dict[str, Any] = {"message_id": self._mid(chat_id), "sender_chat": chat, "chat": chat, "date": int(time.time()), "text": text}
        ents = _auto_entities(text)
        if ents:
            msg["entities"] = ents
        self._record(chat_id, dict(msg, _dir="in"))
        self._enqueue("channel_post", msg)
        return msg

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: sends get 403 and a my_chat_member (kicked) update is enqueued."""
        u = self._users.get(chat_id)
        if u is None:
            raise KeyError(f"no simulated user {chat_id}")
        if chat_id in self._blocked:
            return
        self._blocked.add(chat_id)
        self._member_update(u, "member", "kicked")

    def unblock(self, chat_id: int) -> None:
        u = self._users.get(chat_id)
        if u is None or chat_id not in self._blocked:
            return
        self._blocked.discard(chat_id)
        self._member_update(u, "kicked", "member")

    def _group_member_update(self, group: SimGroup, by: dict, old: str, new: str) -> dict:
        update = self._enqueue("my_chat_member", {
            "chat": group.chat, "from": by, "date": int(time.time()),
            "old_chat_member": {"status": old, "user": self.bot_user},
            "new_chat_member": {"status": new, "user": self.bot_user},
        })
        self._notify_any()
        return update

    def _member_update(self, u: SimUser, old: str, new: str) -> None:
        def member(status: str) -> dict:
            d: dict[str, Any] = {"status": status, "user": self.bot_user}
            if status == "kicked":
                d["until_date"] = 0
            return d

        self._enqueue("my_chat_member", {
            "chat": u.chat, "from": u.user, "date": int(time.time()),
            "old_chat_member": member(old), "new_chat_member": member(new),
        })
        self._notify_any()

    # ---------------------------------------------------------------- observation
    def sent_to(self, chat_id: int) -> list[dict]:
        """Messages the bot sent to `chat_id`, in order (live dicts: edits applied, `_deleted` flagged)."""
        return list(self._sent.get(chat_id, ()))

    def messages(self, chat_id: int) -> list[dict]:
        """Every message of the chat, both directions (`_dir` "in"/"out"), in order."""
        return list(self._log.get(chat_id, ()))

    def file_bytes(self, file_id: str) -> bytes:
        rec = self._files.get(file_id)
        if rec is None:
            raise KeyError(f"unknown file_id {file_id!r}")
        return rec["data"]

    def pending_updates(self) -> list[dict]:
        return list(self._updates)

    async def wait_for(self, chat_id: int, count: int = 1, timeout: float = 10.0, predicate: Callable[[dict], bool] | None = None) -> list[dict]:
        """Wait until the bot sent >= `count` messages (matching `predicate`) to `chat_id`; return them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            sent = self._sent.get(chat_id, ())
            found = [m for m in sent if predicate is None or predicate(m)]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0 or self._stopping:
                raise TimeoutError(self._wait_report(chat_id, count, timeout, len(found), predicate))
            fut = loop.create_future()
            self._chat_waiters.setdefault(chat_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                pass

    def _wait_report(self, chat_id: int, count: int, timeout: float, got: int, predicate: Any) -> str:
        sent = self._sent.get(chat_id, [])
        desc = []
        for m in sent[-8:]:
            body = m.get("text") or m.get("caption") or ("<photo>" if "photo" in m else "<document>" if "document" in m else "<location>" if "location" in m else "")
            desc.append(f"#{m['message_id']} {m['_method']}{' (deleted)' if m.get('_deleted') else ''}: {body[:80]!r}")
        errs = [e for e in self.recent_errors if e.get("chat_id") in (chat_id, None)][-5:]
        return (
            f"wait_for(chat_id={chat_id}): {got} of {count} expected message(s)"
            f"{' matching the predicate' if predicate else ''} within {timeout}s; "
            f"the bot sent {len(sent)} message(s) to this chat{': ' + '; '.join(desc) if desc else ''}. "
            f"Pending updates not yet fetched by the bot: {len(self._updates)}. "
            f"Recent API errors: {errs or 'none'}. Calls: {dict(self.stats['calls'])}"
        )

    # ---------------------------------------------------------------- faults
    def fail_next(self, method: str | None = None, *, status: int = 500, chat_id: int | None = None, retry_after: int | None = None,
                  times: int = 1, description: str | None = None) -> None:
        """The next `times` matching calls answer with an error (method None: any method but polling/getMe)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        if description is None:
            description = f"Too Many Requests: retry after {retry_after}" if status == 429 else _default_description(status)
        self._faults.append({"kind": "fail", "method": method, "chat_id": chat_id, "status": status, "retry_after": retry_after,
                             "times": times, "description": description})

    def slow_next(self, method: str | None = None, *, delay: float, chat_id: int | None = None, times: int = 1) -> None:
        """The next `times` matching calls are answered after `delay` s; the call still takes effect."""
        self._faults.append({"kind": "slow", "method": method, "chat_id": chat_id, "delay": delay, "times": times})

    def clear_faults(self) -> None:
        self._faults.clear()

    def _take_fault(self, method: str, params: dict) -> dict | None:
        chat = params.get("chat_id")
        if chat is None and method == "answerCallbackQuery":
            cb = self._callbacks.get(str(params.get("callback_query_id")))
            chat = cb["chat_id"] if cb else None
        for f in self._faults:
            fm = f["method"]
            if fm is None:
                if method in _INFRA_METHODS:
                    continue
            elif fm.lower() != method.lower():
                continue
            if f["chat_id"] is not None:
                try:
                    if chat is None or int(chat) != f["chat_id"]:
                        continue
                except (TypeError, ValueError):
                    continue
            f["times"] -= 1
            if f["times"] <= 0:
                self._faults.remove(f)
            return f
        return None

    # ---------------------------------------------------------------- internals: chats and messages
    def _mid(self, chat_id: int) -> int:
        mid = self._next_mid.get(chat_id, 0) + 1
        self._next_mid[chat_id] = mid
        return mid

    def _record(self, chat_id: int, entry: dict) -> None:
        entry.setdefault("_at", time.time())  # stand-in clock, for /sandbox/api/timeline (benchmarks)
        self._log.setdefault(chat_id, []).append(entry)
        self._by_id.setdefault(chat_id, {})[entry["message_id"]] = entry
        self._touch(chat_id, entry)

    def _touch(self, chat_id: int, entry: dict) -> None:
        rev = self._rev.get(chat_id, 0) + 1
        self._rev[chat_id] = rev
        entry["_rev"] = rev
        self._notify(chat_id)

    def _notify(self, chat_id: int) -> None:
        waiters = self._chat_waiters.pop(chat_id, None)
        if waiters:
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def _notify_any(self) -> None:
        waiters, self._any_waiters = self._any_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def _enqueue(self, kind: str, obj: dict) -> dict:
        update = {"update_id": self._next_update_id, kind: obj}
        self._next_update_id += 1
        self._updates.append(update)
        self.stats["updates"] += 1
        self._wake_pollers()
        return update

    def _wake_pollers(self) -> None:
        if self._poll_waiters:
            waiters, self._poll_waiters = self._poll_waiters, []
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    def _user_message(self, user: SimUser, chat: dict, fields: dict, reply_to_message_id: int | None) -> dict:
        chat_id = chat["id"]
        if chat_id in self._blocked and chat_id == user.id:
            self.unblock(chat_id)  # writing to a bot you blocked means restarting it
        msg: dict[str, Any] = {"message_id": self._mid(chat_id), "from": user.user, "chat": chat, "date": int(time.time())}
        if reply_to_message_id is not None:
            target = self._by_id.get(chat_id, {}).get(int(reply_to_message_id))
            if target is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
            msg["reply_to_message"] = _quoted(target)
        msg.update(fields)
        self._record(chat_id, dict(msg, _dir="in"))
        if chat_id not in self._left_groups:  # a bot that left a group hears nothing more from it
            self._enqueue("message", msg)
        return msg

    def _user_edit(self, user: SimUser, chat_id: int, message_id: int, text: str) -> dict:
        entry = self._by_id.get(chat_id, {}).get(message_id)
        if entry is None or entry["_dir"] != "in" or entry.get("from", {}).get("id") != user.id:
            raise ValueError(f"user {user.id} has no message {message_id} in chat {chat_id}")
        entry["edit_date"] = int(time.time())
        if "text" in entry:
            entry["text"] = text
            ents = _auto_entities(text)
            if ents:
                entry["entities"] = ents
            else:
                entry.pop("entities", None)
        else:
            entry["caption"] = text
        self._touch(chat_id, entry)
        msg = _clean(entry)
        self._enqueue("edited_message", msg)
        return msg

    def _forged_press(self, user: SimUser, message: dict, data: str) -> dict:
        """A callback query with data no button carried: what a modified client can send."""
        cq_id = str(6_000_000_000_000_000 + next(self._cq_ids) * 7919)
        cq = {"id": cq_id, "from": user.user, "message": _clean(message),
              "chat_instance": str(abs(message["chat"]["id"])), "data": data}
        self._callbacks[cq_id] = {"chat_id": message["chat"]["id"], "message_id": message["message_id"],
                                  "answered": False, "user_id": user.id}
        self._enqueue("callback_query", cq)
        return cq

    def _press(self, user: SimUser, message: dict, button: str) -> dict:
        chat_id = message["chat"]["id"]
        entry = self._by_id.get(chat_id, {}).get(message["message_id"])
        if entry is None or entry["_dir"] != "out":
            raise ValueError(f"no bot message {message['message_id']} in chat {chat_id}")
        if entry.get("_deleted"):
            raise ValueError(f"message {message['message_id']} in chat {chat_id} was deleted")
        rows = (entry.get("reply_markup") or {}).get("inline_keyboard") or []
        found = None
        for row in rows:
            for b in row:
                if b.get("text") == button or b.get("callback_data") == button:
                    found = b
                    break
            if found:
                break
        if found is None:
            labels = [b.get("text") for row in rows for b in row]
            raise ValueError(f"no inline button {button!r} on message {entry['message_id']}; buttons: {labels}")
        if "callback_data" not in found:
            raise ValueError(f"button {found.get('text')!r} has no callback_data (it is a {', '.join(k for k in found if k != 'text')} button)")
        cq_id = str(5_000_000_000_000_000 + next(self._cq_ids) * 7919)
        cq = {
            "id": cq_id, "from": user.user, "message": _clean(entry),
            "chat_instance": str((abs(chat_id) * 1_000_003 + self.bot_id) % 10**18), "data": found["callback_data"],
        }
        self._callbacks[cq_id] = {"chat_id": chat_id, "message_id": entry["message_id"], "answered": False, "user_id": user.id}
        self._enqueue("callback_query", cq)
        return cq

    # ---------------------------------------------------------------- internals: files
    def _new_file_id(self, prefix: str) -> tuple[str, int]:
        n = next(self._file_counter)
        return f"{prefix}{n:07d}{secrets.token_hex(8)}", n

    def _add_file(self, data: bytes, kind: str, ext: str, prefix: str, **extra: Any) -> dict:
        file_id, n = self._new_file_id(prefix)
        unique = "AQAD" + hashlib.sha1(data).hexdigest()[:16]
        path = f"{'photos' if kind == 'photo' else 'documents'}/file_{n}{ext}"
        rec = {"file_id": file_id, "file_unique_id": unique, "file_size": len(data), "file_path": path, "data": data, "kind": kind, **extra}
        self._files[file_id] = rec
        self._paths[path] = file_id
        return rec

    def _register_photo(self, encoded: list[tuple[bytes, int, int]]) -> list[dict]:
        sizes: list[dict] = []
        for data, w, h in encoded:
            rec = self._add_file(data, "photo", ".jpg", "AgAC", mime_type="image/jpeg", width=w, height=h)
            sizes.append({"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"], "file_size": rec["file_size"], "width": w, "height": h})
        for s in sizes:
            self._files[s["file_id"]]["sizes"] = sizes
        return sizes

    def _register_document(self, data: bytes, file_name: str | None, mime_type: str | None) -> dict:
        ext = Path(file_name or "").suffix[:10] if file_name else ""
        if not mime_type or mime_type == "application/octet-stream":
            mime_type = (mimetypes.guess_type(file_name or "")[0] if file_name else None) or mime_type or "application/octet-stream"
        rec = self._add_file(data, "document", ext, "BQAC", mime_type=mime_type, file_name=file_name)
        doc: dict[str, Any] = {"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"], "file_size": rec["file_size"], "mime_type": mime_type}
        if file_name:
            doc["file_name"] = file_name
        rec["document"] = doc
        return doc

    # ---------------------------------------------------------------- HTTP: Bot API
    async def _read_params(self, request: web.Request) -> tuple[dict, dict]:
        params: dict[str, Any] = dict(request.query) if request.query_string else {}
        files: dict[str, tuple[bytes, str | None, str | None]] = {}
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if isinstance(body, dict):
                    params.update(body)
            elif ctype == "multipart/form-data":
                reader = await request.multipart()
                async for part in reader:
                    if part.name is None:
                        continue
                    if part.filename is not None:
                        files[part.name] = (bytes(await part.read()), part.filename, part.headers.get("Content-Type"))
                    else:
                        params[part.name] = await part.text()
            else:
                form = await request.post()
                for k, v in form.items():
                    params[k] = v if isinstance(v, str) else v.file.read()
        for key in _JSON_KEYS.intersection(params):
            v = params[key]
            if isinstance(v, str):
                try:
                    params[key] = json.loads(v)
                except ValueError:
                    raise _bad(f"can't parse {key} JSON object") from None
        return params, files

    async def _handle_api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        found = self._methods.get(request.match_info["method"].lower())
        if found is None:
            self.stats["calls"][request.match_info["method"]] += 1
            return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        name, func = found
        self.stats["calls"][name] += 1
        params: dict | None = None
        try:
            params, files = await self._read_params(request)
            fault = self._take_fault(name, params) if self._faults else None
            if fault is not None:
                if fault["kind"] == "fail":
                    self.stats["injected"] += 1
                    raise ApiError(fault["status"], fault["description"], fault["retry_after"])
                self.stats["injected"] += 1
                task = asyncio.ensure_future(self._delayed(fault["delay"], name, func, params, files))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return await asyncio.shield(task)
            result = func(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            return self._api_error(name, err, request, params)
        except Exception:
            log.exception("stand-in failed on %s", name)
            return self._api_error(name, ApiError(500, "Internal Server Error"), request, None)
        return _json_response({"ok": True, "result": result})

    def _api_error(self, method: str, err: ApiError, request: Any, params: dict | None) -> web.Response:
        self.stats["errors"][err.code] += 1
        chat = (params or {}).get("chat_id")
        try:
            chat = int(chat) if chat is not None else None
        except (TypeError, ValueError):
            pass
        self.recent_errors.append({"method": method, "chat_id": chat, "code": err.code, "description": err.description})
        return _error_response(err)

    async def _delayed(self, delay: float, name: str, func: Callable, params: dict, files: dict) -> web.Response:
        await asyncio.sleep(delay)
        try:
            result = func(params, files)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as err:
            return self._api_error(name, err, None, params)
        return _json_response({"ok": True, "result": result})

    async def _handle_file_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        file_id = self._paths.get(request.match_info["path"])
        if file_id is None:
            return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        rec = self._files[file_id]
        self.stats["calls"]["<file download>"] += 1
        return web.Response(body=rec["data"], content_type=rec.get("mime_type") or "application/octet-stream")

    # ---------------------------------------------------------------- helpers for methods
    def _chat_id(self, params: dict) -> int:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for cid, chat in self._chats.items():
                if chat.get("username", "").lower() == raw[1:].lower():
                    return cid
            raise _bad("chat not found")
        return _to_int(raw, "chat_id")

    def _chat_for_send(self, chat_id: int) -> dict:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        if chat_id in self._blocked:
            raise ApiError(403, _BLOCKED)
        if chat_id in self._left_groups:
            raise ApiError(403, _NOT_A_MEMBER)
        return chat

    def _flood(self, chat_id: int | None, n: int = 1) -> None:
        if not self._flood_control:
            return
        now = time.monotonic()
        scale = self._flood_scale
        b = self._buckets.get(None)
        if b is None:
            b = self._buckets[None] = _Bucket(30.0 * scale, 30.0 * scale, now)
        wait = b.wait_time(n, now)
        cb = None
        if chat_id is not None:
            cb = self._buckets.get(chat_id)
            if cb is None:
                if chat_id > 0:  # private chat: ~1/s with a short burst
                    cb = _Bucket(1.0 * scale, 3.0 * scale, now)
                else:  # group, supergroup, channel: 20 per minute
                    cb = _Bucket(20.0 / 60.0 * scale, 20.0 * scale, now)
                self._buckets[chat_id] = cb
            wait = max(wait, cb.wait_time(n, now))
        if wait > 0:
            self.stats["flood_429"] += 1
            retry = max(1, math.ceil(wait))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", retry)
        b.tokens -= n
        if cb is not None:
            cb.tokens -= n

    def _text_fields(self, params: dict, text_key: str, ents_key: str, limit: int, required: bool) -> dict:
        raw = params.get(text_key)
        if raw is None or raw == "":
            if required:
                raise _bad("message text is empty")
            return {}
        raw = str(raw)
        ents = params.get(ents_key)
        if ents:
            text, entities = raw, ents
        else:
            text, entities = _format(raw, params.get("parse_mode"))
        if required and not text.strip():
            raise _bad("message text is empty")
        if _u16(text) > limit:
            raise _bad("message is too long" if text_key == "text" else "message caption is too long")
        out: dict[str, Any] = {text_key: text}
        if entities:
            out[ents_key] = entities
        return out

    def _markup(self, params: dict) -> tuple[dict | None, dict | None]:
        """-> (inline markup kept on the message, other keyboard kept privately for the page)."""
        markup = params.get("reply_markup")
        if not markup:
            return None, None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list):
                raise _bad("can't parse inline keyboard button: field \"inline_keyboard\" must be an Array")
            for row in rows:
                if not isinstance(row, list):
                    raise _bad("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
                for btn in row:
                    if not isinstance(btn, dict) or not btn.get("text"):
                        raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
                    if "callback_data" in btn:
                        data = btn["callback_data"]
                        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
                    elif "url" in btn:
                        if not re.match(r"(https?|tg)://\S+$", str(btn["url"])):
                            raise _bad(f"inline keyboard button URL '{btn['url']}' is invalid: Wrong HTTP URL")
                    elif not any(k in btn for k in ("switch_inline_query", "switch_inline_query_current_chat", "login_url", "web_app", "pay", "callback_game", "copy_text", "switch_inline_query_chosen_chat")):
                        raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
            return markup, None
        if "keyboard" in markup or "remove_keyboard" in markup or "force_reply" in markup:
            return None, markup
        raise _bad("can't parse reply keyboard markup JSON object")

    def _reply_to(self, params: dict, chat_id: int) -> dict | None:
        rp = params.get("reply_parameters")
        mid: Any = None
        allow = _to_bool(params.get("allow_sending_without_reply", False))
        if isinstance(rp, dict):
            mid = rp.get("message_id")
            allow = allow or _to_bool(rp.get("allow_sending_without_reply", False))
        elif params.get("reply_to_message_id") not in (None, ""):
            mid = params["reply_to_message_id"]
        if mid is None:
            return None
        target = self._by_id.get(chat_id, {}).get(_to_int(mid, "reply message identifier"))
        if target is None or target.get("_deleted"):
            if allow:
                return None
            raise _bad("message to be replied not found")
        return _quoted(target)

    def _out_message(self, chat: dict, method: str, fields: dict, files: dict | None, params: dict, keyboard: dict | None, reply: dict | None) -> dict:
        chat_id = chat["id"]
        entry: dict[str, Any] = {"message_id": self._mid(chat_id), "from": self.bot_user, "chat": chat, "date": int(time.time())}
        if reply is not None:
            entry["reply_to_message"] = reply
        entry.update(fields)
        entry["_dir"] = "out"
        entry["_method"] = method
        entry["_files"] = files or {}
        entry["_deleted"] = False
        if keyboard is not None:
            entry["_reply_keyboard"] = keyboard
        self._record(chat_id, entry)
        self._sent.setdefault(chat_id, []).append(entry)
        self.stats["sent_messages"] += 1
        return entry

    def _bot_entry(self, params: dict, not_found: str) -> tuple[int, dict]:
        if params.get("inline_message_id"):
            raise _bad("inline messages are not supported by the stand-in")
        chat_id = self._chat_id(params)
        mid = _to_int(params.get("message_id"), "message_id")
        entry = self._by_id.get(chat_id, {}).get(mid)
        if entry is None or entry.get("_deleted"):
            raise _bad(not_found)
        return chat_id, entry

    def _input_file(self, value: Any, files: dict, field: str, kind: str) -> tuple[dict | None, tuple[bytes, str | None, str | None] | None]:
        """-> (existing file record, or None; upload (bytes, filename, content type), or None)."""
        if isinstance(value, str) and value.startswith("attach://"):
            up = files.get(value[len("attach://"):])
            if up is None:
                raise _bad(f"file {value} not found in the request")
            return None, up
        if value is None or value == "":
            up = files.get(field)
            if up is None:
                raise _bad(f"there is no {kind} in the request")
            return None, up
        if isinstance(value, (bytes, bytearray)):
            return None, (bytes(value), None, None)
        value = str(value)
        rec = self._files.get(value)
        if rec is None:
            if value.startswith(("http://", "https://")):
                raise _bad("failed to get HTTP URL content")
            raise _bad("wrong file identifier/HTTP URL specified")
        if rec["kind"] != kind:
            raise _bad(f"type of file mismatch")
        return rec, None

    async def _photo_sizes(self, value: Any, files: dict, field: str) -> tuple[list[dict], dict]:
        rec, up = self._input_file(value, files, field, "photo")
        if rec is not None:
            return rec["sizes"], {}
        assert up is not None
        data = up[0]
        if len(data) > _MAX_PHOTO_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        encoded = await asyncio.to_thread(_encode_photo, data, _USER_PHOTO_MAX_SIDE, keep_if_small_jpeg=True, strict=True)
        return self._register_photo(encoded), {field if value in (None, "") else str(value)[len("attach://"):]: data}

    def _document(self, value: Any, files: dict, field: str) -> tuple[dict, dict]:
        rec, up = self._input_file(value, files, field, "document")
        if rec is not None:
            return rec["document"], {}
        assert up is not None
        data, filename, ctype = up
        if len(data) > _MAX_DOC_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        if filename in (None, "", "application.octet-stream"):
            filename = filename or "file"
        return self._register_document(data, filename, ctype), {field if value in (None, "") else str(value)[len("attach://"):]: data}

    # ---------------------------------------------------------------- Bot API methods
    def _m_getMe(self, p: dict, f: dict) -> dict:
        return dict(self.bot_user, can_join_groups=True, can_read_all_group_messages=False, supports_inline_queries=False,
                    can_connect_to_business=False, has_main_web_app=False)

    async def _m_getUpdates(self, p: dict, f: dict) -> list[dict]:
        if self._webhook["url"]:
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
        offset = _to_int(p.get("offset") or 0, "offset")
        limit = max(1, min(100, _to_int(p.get("limit") or 100, "limit")))
        timeout = max(0.0, _to_float(p.get("timeout") or 0, "timeout"))
        if "allowed_updates" in p:
            allowed = p["allowed_updates"]
            self._allowed_updates = set(allowed) if allowed else None
        q = self._updates
        if offset > 0:
            while q and q[0]["update_id"] < offset:
                q.popleft()
        elif offset < 0:
            while len(q) > -offset:
                q.popleft()
        result = self._pending(limit)
        if result or timeout <= 0 or self._stopping:
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not result and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fut = loop.create_future()
            self._poll_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                break
            result = self._pending(limit)
        return result

    def _pending(self, limit: int) -> list[dict]:
        allowed = self._allowed_updates
        if allowed is None:
            return list(itertools.islice(self._updates, limit))
        out = []
        for u in self._updates:
            if not allowed.isdisjoint(u):
                out.append(u)
                if len(out) >= limit:
                    break
        return out

    def _m_deleteWebhook(self, p: dict, f: dict) -> bool:
        self._webhook = {"url": ""}
        if _to_bool(p.get("drop_pending_updates", False)):
            self._updates.clear()
        return True

    def _m_setWebhook(self, p: dict, f: dict) -> bool:
        url = str(p.get("url") or "")
        if url and not re.match(r"https?://", url):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if _to_bool(p.get("drop_pending_updates", False)):
            self._updates.clear()
        if "allowed_updates" in p:
            self._allowed_updates = set(p["allowed_updates"]) if p["allowed_updates"] else None
        self._webhook = {
            "url": url, "secret_token": p.get("secret_token") or None,
            "max_connections": max(1, min(100, _to_int(p.get("max_connections") or 40, "max_connections"))),
            "ip_address": p.get("ip_address"),
        }
        if url and (self._webhook_task is None or self._webhook_task.done()):
            self._webhook_task = asyncio.ensure_future(self._webhook_loop())
        self._wake_pollers()
        return True

    def _m_getWebhookInfo(self, p: dict, f: dict) -> dict:
        info: dict[str, Any] = {"url": self._webhook["url"], "has_custom_certificate": False, "pending_update_count": len(self._updates)}
        if self._webhook["url"]:
            info["max_connections"] = self._webhook.get("max_connections", 40)
            for k in ("last_error_date", "last_error_message"):
                if self._webhook.get(k):
                    info[k] = self._webhook[k]
            if self._allowed_updates:
                info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    async def _webhook_loop(self) -> None:
        backoff = 0.0
        async with ClientSession(timeout=ClientTimeout(total=60)) as session:
            while self._webhook["url"] and not self._stopping:
                if not self._updates:
                    fut = asyncio.get_running_loop().create_future()
                    self._poll_waiters.append(fut)
                    try:
                        await asyncio.wait_for(fut, 1.0)
                    except TimeoutError:
                        pass
                    continue
                hook = self._webhook
                batch = list(itertools.islice(self._updates, hook.get("max_connections", 40)))
                if self._allowed_updates is not None:
                    skip = {u["update_id"] for u in batch if self._allowed_updates.isdisjoint(u)}
                else:
                    skip = set()
                results = await asyncio.gather(*(self._deliver(session, hook, u) for u in batch if u["update_id"] not in skip))
                done = skip | {u["update_id"] for u, ok in zip((u for u in batch if u["update_id"] not in skip), results) if ok}
                if len(done) == len(batch) and all(self._updates and self._updates[0] is u for u in batch[:1]):
                    for _ in range(len(batch)):
                        self._updates.popleft()
                else:
                    self._updates = deque(u for u in self._updates if u["update_id"] not in done)
                if len(done) < len(batch):
                    backoff = min(5.0, backoff * 2 or 0.2)
                    await asyncio.sleep(backoff)
                else:
                    backoff = 0.0

    async def _deliver(self, session: ClientSession, hook: dict, update: dict) -> bool:
        headers = {"Content-Type": "application/json"}
        if hook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
        try:
            async with session.post(hook["url"], data=_DUMPS(update).encode(), headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    self.stats["webhook_deliveries"] += 1
                    return True
                error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
        except Exception as exc:  # noqa: BLE001 - the webhook is the bot's problem; report it like Telegram
            error = f"Connection failed: {exc!r}"
        hook["last_error_date"] = int(time.time())
        hook["last_error_message"] = error
        return False

    def _m_logOut(self, p: dict, f: dict) -> bool:
        return True

    def _m_close(self, p: dict, f: dict) -> bool:
        return True

    def _scope_key(self, p: dict) -> str:
        scope = p.get("scope") or {"type": "default"}
        return _DUMPS([scope, p.get("language_code") or ""])

    def _m_setMyCommands(self, p: dict, f: dict) -> bool:
        cmds = p.get("commands")
        if not isinstance(cmds, list) or len(cmds) > 100:
            raise _bad("commands must be an array of at most 100 BotCommand")
        for c in cmds:
            if not isinstance(c, dict) or not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[self._scope_key(p)] = cmds
        return True

    def _m_getMyCommands(self, p: dict, f: dict) -> list[dict]:
        return self.commands.get(self._scope_key(p), [])

    def _m_deleteMyCommands(self, p: dict, f: dict) -> bool:
        self.commands.pop(self._scope_key(p), None)
        return True

    def _setting(self, key: str, p: dict, field: str) -> bool:
        self.settings[f"{key}:{p.get('language_code') or ''}"] = p.get(field) or ""
        return True

    def _m_setMyDescription(self, p: dict, f: dict) -> bool:
        return self._setting("description", p, "description")

    def _m_getMyDescription(self, p: dict, f: dict) -> dict:
        return {"description": self.settings.get(f"description:{p.get('language_code') or ''}", "")}

    def _m_setMyShortDescription(self, p: dict, f: dict) -> bool:
        return self._setting("short_description", p, "short_description")

    def _m_getMyShortDescription(self, p: dict, f: dict) -> dict:
        return {"short_description": self.settings.get(f"short_description:{p.get('language_code') or ''}", "")}

    def _m_setMyName(self, p: dict, f: dict) -> bool:
        return self._setting("name", p, "name")

    def _m_getMyName(self, p: dict, f: dict) -> dict:
        return {"name": self.settings.get(f"name:{p.get('language_code') or ''}") or self.bot_user["first_name"]}

    def _m_setChatMenuButton(self, p: dict, f: dict) -> bool:
        self.settings[f"menu_button:{p.get('chat_id') or ''}"] = p.get("menu_button") or {"type": "default"}
        return True

    def _m_getChatMenuButton(self, p: dict, f: dict) -> dict:
        return self.settings.get(f"menu_button:{p.get('chat_id') or ''}", {"type": "commands"})

    def _m_setMyDefaultAdministratorRights(self, p: dict, f: dict) -> bool:
        return True

    def _m_sendChatAction(self, p: dict, f: dict) -> bool:
        self._chat_for_send(self._chat_id(p))
        return True

    def _m_getFile(self, p: dict, f: dict) -> dict:
        rec = self._files.get(str(p.get("file_id") or ""))
        if rec is None:
            raise _bad("invalid file_id")
        if rec["file_size"] > _MAX_DOWNLOAD:
            raise _bad("file is too big")
        return {"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"], "file_size": rec["file_size"], "file_path": rec["file_path"]}

    def _m_sendMessage(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        fields = self._text_fields(p, "text", "entities", _MAX_TEXT, True)
        if isinstance(p.get("link_preview_options"), dict):
            fields["link_preview_options"] = p["link_preview_options"]
        inline, keyboard = self._markup(p)
        if inline:
            fields["reply_markup"] = inline
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id)
        return _clean(self._out_message(chat, "sendMessage", fields, None, p, keyboard, reply))

    async def _m_sendPhoto(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        fields = self._text_fields(p, "caption", "caption_entities", _MAX_CAPTION, False)
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._input_file(p.get("photo"), f, "photo", "photo")  # validate before taking flood tokens
        self._flood(chat_id)
        sizes, uploads = await self._photo_sizes(p.get("photo"), f, "photo")
        fields = {"photo": sizes, **fields}
        if _to_bool(p.get("has_spoiler", False)):
            fields["has_media_spoiler"] = True
        if inline:
            fields["reply_markup"] = inline
        chat = self._chat_for_send(chat_id)
        return _clean(self._out_message(chat, "sendPhoto", fields, uploads, p, keyboard, reply))

    def _m_sendDocument(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        caption = self._text_fields(p, "caption", "caption_entities", _MAX_CAPTION, False)
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._input_file(p.get("document"), f, "document", "document")
        self._flood(chat_id)
        doc, uploads = self._document(p.get("document"), f, "document")
        fields: dict[str, Any] = {"document": doc, **caption}
        if inline:
            fields["reply_markup"] = inline
        return _clean(self._out_message(chat, "sendDocument", fields, uploads, p, keyboard, reply))

    async def _m_sendMediaGroup(self, p: dict, f: dict) -> list[dict]:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad("wrong number of media specified: an album has 2 to 10 items" if isinstance(media, list) else "can't parse media JSON object")
        types = set()
        for item in media:
            if not isinstance(item, dict) or item.get("type") not in ("photo", "document", "video", "audio"):
                raise _bad("can't parse InputMedia: media type is not supported")
            types.add(item["type"])
        if len(types) > 1 and ("document" in types or "audio" in types):
            raise _bad("document and audio can't be mixed with other media types")
        if types - {"photo", "document"}:
            raise _bad("only photo and document albums are supported by the stand-in")
        captions = [self._text_fields(item, "caption", "caption_entities", _MAX_CAPTION, False) for item in media]
        for item in media:
            self._input_file(item.get("media"), f, "media", item["type"])
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id, len(media))
        group_id = str(13_000_000_000_000_000 + next(self._group_ids))
        built = []
        for item, cap in zip(media, captions):
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
            out.append(_clean(self._out_message(chat, "sendMediaGroup", fields, uploads, p, None, reply)))
        return out

    def _m_sendLocation(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chat_for_send(chat_id)
        lat = _to_float(p.get("latitude"), "latitude")
        lon = _to_float(p.get("longitude"), "longitude")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad("wrong location specified")
        inline, keyboard = self._markup(p)
        reply = self._reply_to(p, chat_id)
        self._flood(chat_id)
        fields: dict[str, Any] = {"location": {"latitude": lat, "longitude": lon}}
        if inline:
            fields["reply_markup"] = inline
        return _clean(self._out_message(chat, "sendLocation", fields, None, p, keyboard, reply))

    def _edit_common(self, p: dict, entry: dict, chat_id: int, new: dict, markup: dict | None) -> dict:
        if entry["_dir"] != "out":
            raise _bad("message can't be edited")
        same = all(entry.get(k) == v for k, v in new.items()) and entry.get("reply_markup") == markup
        if same:
            raise _bad("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
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
        self._touch(chat_id, entry)
        return _clean(entry)

    def _m_editMessageText(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        if "text" not in entry:
            raise _bad("there is no text in the message to edit")
        fields = self._text_fields(p, "text", "entities", _MAX_TEXT, True)
        inline, _ = self._markup(p)
        new = {"text": fields["text"], "entities": fields.get("entities")}
        if isinstance(p.get("link_preview_options"), dict):
            new["link_preview_options"] = p["link_preview_options"]
        return self._edit_common(p, entry, chat_id, new, inline)

    def _m_editMessageCaption(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        if not any(k in entry for k in ("photo", "document", "video", "audio", "animation")):
            raise _bad("there is no caption in the message to edit")
        fields = self._text_fields(p, "caption", "caption_entities", _MAX_CAPTION, False)
        inline, _ = self._markup(p)
        new = {"caption": fields.get("caption"), "caption_entities": fields.get("caption_entities")}
        return self._edit_common(p, entry, chat_id, new, inline)

    def _m_editMessageReplyMarkup(self, p: dict, f: dict) -> dict:
        chat_id, entry = self._bot_entry(p, "message to edit not found")
        inline, _ = self._markup(p)
        return self._edit_common(p, entry, chat_id, {}, inline)

    def _delete(self, chat_id: int, mid: int) -> bool:
        entry = self._by_id.get(chat_id, {}).get(mid)
        if entry is None or entry.get("_deleted"):
            return False
        chat = self._chats.get(chat_id, {})
        if entry["_dir"] == "in" and chat.get("type") not in ("private", "group", "supergroup"):
            return False
        entry["_deleted"] = True
        self._touch(chat_id, entry)
        return True

    def _m_deleteMessage(self, p: dict, f: dict) -> bool:
        chat_id = self._chat_id(p)
        if chat_id not in self._chats:
            raise _bad("chat not found")
        if not self._delete(chat_id, _to_int(p.get("message_id"), "message_id")):
            raise _bad("message to delete not found")
        return True

    def _m_deleteMessages(self, p: dict, f: dict) -> bool:
        chat_id = self._chat_id(p)
        if chat_id not in self._chats:
            raise _bad("chat not found")
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must be an array of 1-100 message identifiers")
        for mid in ids:
            self._delete(chat_id, _to_int(mid, "message_ids"))
        return True

    def _m_answerCallbackQuery(self, p: dict, f: dict) -> bool:
        cq_id = str(p.get("callback_query_id") or "")
        cb = self._callbacks.get(cq_id)
        if cb is None or cb["answered"]:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        cb["answered"] = True
        answer = {"callback_query_id": cq_id, "text": text, "show_alert": _to_bool(p.get("show_alert", False)), "url": p.get("url")}
        self.callback_answers[cq_id] = answer
        entry = self._by_id.get(cb["chat_id"], {}).get(cb["message_id"])
        if entry is not None and text:
            entry["_callback_answer"] = dict(answer, at=time.time())
            self._touch(cb["chat_id"], entry)
        return True

    def _m_leaveChat(self, p: dict, f: dict) -> bool:
        """The bot leaves a group; Telegram then sends a my_chat_member update (member -> left)."""
        chat_id = self._chat_id(p)
        group = self._groups.get(chat_id)
        if group is None:
            raise _bad("chat not found")
        if chat_id in self._left_groups:
            raise ApiError(403, _NOT_A_MEMBER)
        self._left_groups.add(chat_id)
        self._group_member_update(group, self.bot_user, "member", "left")
        return True

    def _m_getChat(self, p: dict, f: dict) -> dict:
        chat_id = self._chat_id(p)
        chat = self._chats.get(chat_id)
        if chat is None:
            raise _bad("chat not found")
        return dict(chat, accent_color_id=0, max_reaction_count=11,
                    accepted_gift_types={"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                         "premium_subscription": False, "gifts_from_channels": False})

    # ---------------------------------------------------------------- HTTP: sandbox page + JSON API
    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    def _user_info(self, u: SimUser) -> dict:
        info = {k: u.user.get(k) for k in ("id", "first_name", "last_name", "username", "language_code")}
        info["label"] = self._labels.get(u.id)
        info["blocked"] = u.id in self._blocked
        info["received"] = len(self._sent.get(u.id, ()))
        info["rev"] = self._rev.get(u.id, 0)
        return info

    async def _api_users(self, request: web.Request) -> web.Response:
        return _json_response([self._user_info(u) for u in self._users.values()])

    async def _api_create_users(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json_response({"error": "JSON body expected"}, 400)
        specs = body if isinstance(body, list) else [body]
        out = []
        for spec in specs:
            if not isinstance(spec, dict):
                return _json_response({"error": "each user is an object"}, 400)
            try:
                uid = int(spec.get("id") or spec.get("user_id") or self._free_user_id())
                name = str(spec.get("first_name") or spec.get("name") or "User").strip()[:64] or "User"
                u = self.user(uid, name, last_name=spec.get("last_name") or None, username=spec.get("username") or None,
                              language_code=spec.get("language_code") or "en", label=spec.get("label") or None)
            except (TypeError, ValueError) as exc:
                return _json_response({"error": str(exc)}, 400)
            out.append(self._user_info(u))
        return _json_response(out if isinstance(body, list) else out[0])

    def _sim(self, user_id: Any) -> SimUser:
        try:
            u = self._users.get(int(user_id))
        except (TypeError, ValueError):
            u = None
        if u is None:
            raise web.HTTPNotFound(text=_DUMPS({"error": f"unknown user {user_id}"}), content_type="application/json")
        return u

    async def _api_send(self, request: web.Request) -> web.Response:
        try:
            if request.content_type == "multipart/form-data":
                return await self._api_send_multipart(request)
            body = await request.json()
            u = self._sim(body.get("user_id"))
            reply_to = body.get("reply_to_message_id") or None
            target_chat = body.get("chat_id")
            if target_chat is not None and int(target_chat) != u.id:
                g = self._groups.get(int(target_chat))
                if g is None:
                    return _json_response({"error": f"unknown group {target_chat}"}, 404)
                return _json_response(g.send_text(u, str(body.get("text") or ""), reply_to_message_id=reply_to))
            if "location" in body:
                loc = body["location"]
                return _json_response(u.send_location(float(loc["latitude"]), float(loc["longitude"]), reply_to_message_id=reply_to))
            if "contact" in body:
                return _json_response(u.send_raw(contact=body["contact"], reply_to_message_id=reply_to))
            if "raw" in body and isinstance(body["raw"], dict):
                return _json_response(u.send_raw(**body["raw"]))
            text = body.get("text")
            if not isinstance(text, str) or not text:
                return _json_response({"error": "text, location, contact or raw expected"}, 400)
            return _json_response(u.send_text(text, reply_to_message_id=int(reply_to) if reply_to else None))
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"error": str(exc)}, 400)
        except ApiError as exc:
            return _json_response({"error": exc.description}, 400)

    async def _api_send_multipart(self, request: web.Request) -> web.Response:
        fields: dict[str, str] = {}
        uploads: list[tuple[bytes, str, str]] = []
        reader = await request.multipart()
        async for part in reader:
            if part.filename is not None:
                uploads.append((bytes(await part.read()), part.filename, part.headers.get("Content-Type") or "application/octet-stream"))
            elif part.name:
                fields[part.name] = await part.text()
        u = self._sim(fields.get("user_id"))
        kind = fields.get("kind") or "photo"
        caption = fields.get("caption") or None
        reply_to = int(fields["reply_to_message_id"]) if fields.get("reply_to_message_id") else None
        if not uploads:
            return _json_response({"error": "no file in the request"}, 400)
        if kind == "document":
            out = []
            for i, (data, name, ctype) in enumerate(uploads):
                if ctype == "application/octet-stream":
                    ctype = mimetypes.guess_type(name)[0] or ctype
                out.append(u.send_document(data, name, ctype, caption=caption if i == 0 else None, reply_to_message_id=reply_to if i == 0 else None))
            return _json_response(out[0] if len(out) == 1 else out)
        if kind not in ("photo", "album"):
            return _json_response({"error": "kind is photo, album or document"}, 400)
        if len(uploads) > 10:
            return _json_response({"error": "an album has at most 10 photos"}, 400)
        encoded = await asyncio.gather(*(asyncio.to_thread(_user_photo, data) for data, _, _ in uploads))
        sets = [self._register_photo(e) for e in encoded]
        if len(sets) == 1:
            return _json_response(u._photo_message(sets[0], caption, None, reply_to))
        return _json_response(u._album(sets, caption))

    async def _api_press(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        chat_id = int(body.get("chat_id") or u.id)
        entry = self._by_id.get(chat_id, {}).get(int(body.get("message_id") or 0))
        if entry is None:
            return _json_response({"error": "message not found"}, 404)
        try:
            return _json_response(u.press(entry, str(body.get("callback_data") or body.get("button") or "")))
        except ValueError as exc:
            return _json_response({"error": str(exc)}, 400)

    async def _api_block(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        if body.get("blocked", True):
            self.block(u.id)
        else:
            self.unblock(u.id)
        return _json_response(self._user_info(u))

    async def _api_edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        u = self._sim(body.get("user_id"))
        try:
            return _json_response(u.edit(int(body["message_id"]), str(body["text"])))
        except (KeyError, ValueError) as exc:
            return _json_response({"error": str(exc)}, 400)

    def _view(self, e: dict) -> dict:
        v: dict[str, Any] = {
            "message_id": e["message_id"], "rev": e["_rev"], "direction": e["_dir"], "date": e["date"],
            "deleted": bool(e.get("_deleted")), "edited": "edit_date" in e,
        }
        for k in ("text", "entities", "caption", "caption_entities", "media_group_id", "location", "contact", "reply_markup"):
            if k in e:
                v[k] = e[k]
        if e["_dir"] == "out":
            v["method"] = e.get("_method")
        if "from" in e and e["chat"]["type"] != "private":
            v["from_name"] = e["from"].get("first_name")
        if "photo" in e and e["photo"]:
            big = e["photo"][-1]
            v["photo"] = {"url": f"/sandbox/files/{big['file_id']}", "width": big.get("width"), "height": big.get("height"), "file_id": big["file_id"]}
        if "document" in e:
            d = e["document"]
            v["document"] = {"url": f"/sandbox/files/{d['file_id']}", "file_name": d.get("file_name") or "file", "mime_type": d.get("mime_type"),
                             "file_size": d.get("file_size"), "file_id": d["file_id"]}
        for k in ("sticker", "voice", "video", "animation", "audio", "video_note", "poll", "dice", "venue"):
            if k in e:
                v["kind"] = k
                break
        if "_reply_keyboard" in e:
            v["reply_keyboard"] = e["_reply_keyboard"]
        if "reply_to_message" in e:
            r = e["reply_to_message"]
            v["reply_to"] = {"message_id": r["message_id"], "text": (r.get("text") or r.get("caption") or ("photo" if "photo" in r else "message"))[:120],
                             "direction": "out" if r.get("from", {}).get("is_bot") else "in"}
        if "_callback_answer" in e:
            a = e["_callback_answer"]
            v["callback_answer"] = {"text": a.get("text"), "show_alert": a.get("show_alert"), "id": a.get("callback_query_id")}
        return v

    async def _api_messages(self, request: web.Request) -> web.Response:
        try:
            chat_id = int(request.match_info["chat_id"])
            after = int(request.query.get("after") or 0)
            wait = min(60.0, float(request.query.get("wait") or 0))
        except ValueError:
            return _json_response({"error": "bad chat_id, after or wait"}, 400)
        if wait > 0 and self._rev.get(chat_id, 0) <= after and not self._stopping:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._chat_waiters.setdefault(chat_id, []).append(fut)
            try:
                await asyncio.wait_for(fut, wait)
            except TimeoutError:
                pass
        log_ = self._log.get(chat_id, ())
        return _json_response([self._view(e) for e in log_ if e["_rev"] > after])

    async def _api_file(self, request: web.Request) -> web.StreamResponse:
        rec = self._files.get(request.match_info["file_id"])
        if rec is None:
            return _json_response({"error": "unknown file"}, 404)
        headers = {"Cache-Control": "private, max-age=3600"}
        if rec["kind"] == "document" and not request.query.get("inline"):
            name = rec.get("file_name") or "file"
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
        return web.Response(body=rec["data"], content_type=rec.get("mime_type") or "application/octet-stream", headers=headers)

    async def _api_stats(self, request: web.Request) -> web.Response:
        s = dict(self.stats)
        s["pending_updates"] = len(self._updates)
        s["users"] = len(self._users)
        s["flood_control"] = self._flood_control
        s["flood_scale"] = self._flood_scale
        return _json_response(s)

    async def _api_timeline(self, request: web.Request) -> web.Response:
        """For benchmarks (read-only): every recorded message with ``_at`` (time.time() when the
        stand-in recorded it) after ``?since=``, as rows [chat_id, "in"|"out", at, method, text[:120]]."""
        try:
            since = float(request.query.get("since") or 0)
        except ValueError:
            return _json_response({"error": "bad since"}, 400)
        rows = [[chat_id, e["_dir"], e["_at"], e.get("_method"), (e.get("text") or e.get("caption") or "")[:120]]
                for chat_id, log_ in self._log.items() for e in log_ if e.get("_at", 0.0) > since]
        return _json_response({"now": time.time(), "rows": rows})

    async def _api_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                body = await request.json()
                if "flood_control" in body:
                    self.flood_control = _to_bool(body["flood_control"])
                if "flood_scale" in body:
                    self.flood_scale = float(body["flood_scale"])
            except (ValueError, TypeError, AttributeError) as exc:
                return _json_response({"error": str(exc)}, 400)
        return _json_response({"flood_control": self._flood_control, "flood_scale": self._flood_scale,
                               "bot": self.bot_user, "token_hint": self.token.split(":", 1)[0]})


# --------------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------------

DEMO_USERS = [
    {"id": 1001, "first_name": "Coordinator", "username": "coord_amy", "language_code": "en", "label": "coordinator"},
    {"id": 2001, "first_name": "Li", "last_name": "Wei", "language_code": "zh", "label": "public"},
    {"id": 2002, "first_name": "Sam", "language_code": "en", "label": "public"},
]


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.sandbox.standin", description="Local Telegram Bot API stand-in + browser chat")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--token", default="123456:SANDBOX")
    ap.add_argument("--no-flood", action="store_true", help="switch flood limits off (capacity benchmarks)")
    ap.add_argument("--flood-scale", type=float, default=1.0, help="multiply Telegram's limits (10 = 10x looser)")
    ap.add_argument("--no-demo-users", action="store_true", help="start without the preset demo users")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = StandIn(args.token, flood_control=not args.no_flood, flood_scale=args.flood_scale)
    if not args.no_demo_users:
        s.preset_users = [dict(u) for u in DEMO_USERS]
    await s.start(args.host, args.port)
    print(f"stand-in ready: {s.url}  TELEGRAM_API_URL={s.api_url}  TELEGRAM_BOT_TOKEN={s.token}  "
          f"flood_control={'on' if s.flood_control else 'off'} scale={s.flood_scale}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - Windows
            pass
    await stop.wait()
    await s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main(sys.argv[1:])))
