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


def forged_grant(update_id: int, admin_id: int, target_id: int) -> dict:
    """What an attacker who knows an admin's id (ids are not secret) posts to the webhook URL."""
    return {"update_id": update_id,
            "message": {"message_id": 1, "date": 1, "text": f"/grant {target_id} admin",
                        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                        "chat": {"id": admin_id, "type": "private"},
                        "from": {"id": admin_id, "is_bot": False, "first_name": "Admin"}}}


async def test_a_webhook_without_a_secret_setting_is_still_closed_to_forged_updates(stand_in, settings, people):
    """WEBHOOK_SECRET unset: the bot makes one and hands it to setWebhook, so a forged /grant from an
    admin's id does nothing, while Telegram's own calls (which carry it) are served."""
    from bot.app import Reunite
    from bot.db.models import User
    from tests.conftest import ADMIN_ID, shared_face_pool

    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/webhook"
    running = await Reunite.start(settings.with_overrides(
        telegram_bot_token=stand_in.token, telegram_api_url=stand_in.api_url,
        webhook_url=url, webhook_secret=None, port=port), face_pool=shared_face_pool())
    attacker = 6666
    try:
        async with aiohttp.ClientSession() as client:
            for number, headers in enumerate([{}, {"X-Telegram-Bot-Api-Secret-Token": ""},
                                               {"X-Telegram-Bot-Api-Secret-Token": "guess"},
                                               {"X-Telegram-Bot-Api-Secret-Token": "sécret-ü"}]):
                async with client.post(url, json=forged_grant(900_000 + number, ADMIN_ID, attacker),
                                       headers=headers) as response:
                    assert response.status == 403, headers
        person = people(1202, "Web")
        assert reference_in(await person.say("Seen via webhook, no secret configured"))
        async with running.sessionmaker() as session:
            assert await session.get(User, attacker) is None
            assert list(await session.scalars(select(InboxUpdate).where(InboxUpdate.update_id >= 900_000))) == []
    finally:
        await running.stop()


def test_a_webhook_secret_telegram_would_refuse_stops_the_start():
    import pytest

    from bot.config import SettingsError, load_settings

    assert load_settings({"WEBHOOK_SECRET": "Ab_-9" * 51 + "X"}).webhook_secret  # 256 characters
    for refused in ("sécret", "with space", "x" * 257):
        with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
            load_settings({"WEBHOOK_SECRET": refused})
