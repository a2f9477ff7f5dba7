"""Webhook mode on the built-in aiohttp server: Telegram's secret header is checked, and an update
is committed to the inbox before the 200 goes back."""

from __future__ import annotations

import socket

import aiohttp
from sqlalchemy import select

from bot.db.models import InboxUpdate
from tests.helpers import reference_in


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_webhook_checks_the_secret_and_serves_tips(stand_in, settings, people):
    from bot.app import Reunite

    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    running = await Reunite.start(settings.with_overrides(
        telegram_bot_token=stand_in.token, telegram_api_url=stand_in.api_url,
        webhook_url=url, webhook_secret="s3cret-Token_1", port=port))
    try:
        async with aiohttp.ClientSession() as client:
            forged = {"update_id": 999_999, "message": {"message_id": 1, "date": 1, "text": "forged",
                                                        "chat": {"id": 1, "type": "private"},
                                                        "from": {"id": 1, "is_bot": False, "first_name": "X"}}}
            async with client.post(url, json=forged) as response:
                assert response.status == 403
            async with client.post(url, json=forged,
                                   headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}) as response:
                assert response.status == 403
        async with running.sessionmaker() as session:
            assert await session.get(InboxUpdate, 999_999) is None

        person = people(1201, "Web")
        assert reference_in(await person.say("Seen via webhook"))
        async with running.sessionmaker() as session:
            stored = list(await session.scalars(select(InboxUpdate)))
        assert len(stored) == 1 and stored[0].processed_at is not None
    finally:
        await running.stop()
