"""Webhook on the built-in aiohttp server: the update is committed to the inbox before we answer
200, so Telegram re-delivers anything we did not store. The secret header is checked first.

A webhook never runs without a secret: anyone who learns the URL could otherwise post updates "from"
any user id (an admin's included: ids are not secret) and, say, /grant themselves admin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import inbox

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_path(webhook_url: str) -> str:
    return urlsplit(webhook_url).path or "/"


def secret_from_token(bot_token: str) -> str:
    """The webhook secret when WEBHOOK_SECRET is not set: derived from the bot token (itself secret),
    so every worker behind a load balancer, and the same worker after a restart, hands Telegram the
    same one (a random secret per start would lock out the workers that did not call setWebhook
    last). 43 characters of A-Z a-z 0-9 _ -, as Telegram requires."""
    digest = hmac.new(bot_token.encode(), b"reunite-webhook-secret", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def carries_secret(request: web.Request, secret: str) -> bool:
    """The request has Telegram's secret header with ``secret``; a missing or non-ASCII one has not
    (compare_digest refuses non-ASCII text with an exception, which would have been a 500)."""
    given = request.headers.get(SECRET_HEADER, "")
    return given.isascii() and hmac.compare_digest(given.encode(), secret.encode())


def add_webhook_route(app: web.Application, path: str, secret: str,
                      sessionmaker: async_sessionmaker[AsyncSession], submit) -> None:
    if not secret:
        raise ValueError("a webhook needs a secret")

    async def receive(request: web.Request) -> web.Response:
        if not carries_secret(request, secret):
            return web.Response(status=403)
        try:
            payload = await request.json()
            int(payload["update_id"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400)
        try:
            async with sessionmaker() as session:
                new = await inbox.store(session, [payload])
        except Exception:
            # not stored: a non-200 makes Telegram try again later
            log.warning("could not store update %s", payload.get("update_id"), exc_info=True)
            return web.Response(status=503)
        submit(new)
        return web.Response(status=200)

    app.router.add_post(path, receive)
