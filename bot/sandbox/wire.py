"""The Bot API on the wire as the stand-in speaks it: limits, errors, parameter coercion, flood buckets."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.web_request import FileField

# Parameters that arrive as JSON strings inside form bodies.
JSON_KEYS = frozenset(
    {
        "reply_markup", "entities", "caption_entities", "media", "allowed_updates", "reply_parameters",
        "link_preview_options", "commands", "scope", "menu_button", "rights", "message_ids",
        "results", "reaction",
    }
)
# Methods that put a message in a chat (or change one) and so count against flood limits.
FLOOD_METHODS = frozenset(
    {
        "sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup", "sendLocation",
        "editMessageText", "editMessageCaption", "editMessageReplyMarkup",
    }
)
# `fail_next(method=None)` / `slow_next(method=None)` never hit these (they would break polling).
INFRA_METHODS = frozenset({"getUpdates", "getMe", "deleteWebhook", "setWebhook", "getWebhookInfo", "logOut", "close"})

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_PHOTO_UPLOAD = 10 * 1024 * 1024
MAX_DOC_UPLOAD = 50 * 1024 * 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
USER_PHOTO_MAX_SIDE = 1280
BLOCKED_DESCRIPTION = "Forbidden: bot was blocked by the user"
NOT_A_MEMBER = "Forbidden: bot is not a member of the group chat"

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class ApiError(Exception):
    """An error answer of the Bot API."""

    def __init__(self, code: int, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


def bad_request(description: str) -> ApiError:
    return ApiError(400, "Bad Request: " + description)


def utf16_len(s: str) -> int:
    """Length in UTF-16 code units (Telegram's unit for entity offsets)."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def as_returned(entry: dict) -> dict:
    """A stored message without the stand-in's private `_` keys: what Telegram would return."""
    return {k: v for k, v in entry.items() if k[0] != "_"}


def as_quoted(entry: dict) -> dict:
    """A message as it appears inside `reply_to_message` (no nested reply)."""
    return {k: v for k, v in entry.items() if k[0] != "_" and k != "reply_to_message"}


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(payload).encode(), status=status, content_type="application/json")


def error_response(err: ApiError) -> web.Response:
    payload: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
    if err.retry_after is not None:
        payload["parameters"] = {"retry_after": err.retry_after}
    return json_response(payload, err.code)


def to_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None


def to_float(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad_request(f"invalid {name} specified") from None


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def default_description(status: int) -> str:
    if status == 400:
        return "Bad Request: injected error"
    if status == 403:
        return BLOCKED_DESCRIPTION
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





class FloodBucket:
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


async def read_params(request: web.Request) -> tuple[dict, dict]:
    """A Bot API call's parameters (query, JSON, form or multipart; JSON-valued fields decoded) and
    its uploaded files (field name -> bytes, file name, content type)."""
    params: dict[str, Any] = dict(request.query) if request.query_string else {}
    files: dict[str, tuple[bytes, str | None, str | None]] = {}
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if isinstance(body, dict):
                params.update(body)
        elif ctype == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = (bytes(await part.read()), part.filename, part.headers.get("Content-Type"))
                else:
                    params[part.name] = await part.text()
        else:
            form = await request.post()
            for k, v in form.items():
                params[k] = v.file.read() if isinstance(v, FileField) else v
    for key in JSON_KEYS.intersection(params):
        v = params[key]
        if isinstance(v, str):
            try:
                params[key] = json.loads(v)
            except ValueError:
                raise bad_request(f"can't parse {key} JSON object") from None
    return params, files
