"""Webhook on the built-in aiohttp server: the update is committed to the inbox before we answer
200, so Telegram re-delivers anything we did not store. The secret header is checked first."""

from __future__ import annotations

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


def add_webhook_route(app: web.Application, path: str, secret: str | None,
                      sessionmaker: async_sessionmaker[AsyncSession], submit) -> None:
    async def receive(request: web.Request) -> web.Response:
        if secret is not None and not hmac.compare_digest(request.headers.get(SECRET_HEADER, ""), secret):
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
