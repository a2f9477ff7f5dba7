"""`reunite sandbox`: no token, SQLite under ./data, the stand-in, the bot, and the browser chat page.
Driven over the same HTTP API the page uses, as a person at the page would."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.helpers import jpeg_bytes, reference_in, running_sandbox

PUBLIC_ID, COORDINATOR_ID = 2001, 1001


async def messages(client, base, chat_id):
    async with client.get(f"{base}/sandbox/api/chats/{chat_id}/messages") as response:
        return await response.json()


async def wait_for_bot_messages(client, base, chat_id, count, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        bot_messages = [m for m in await messages(client, base, chat_id) if m["direction"] == "out"]
        if len(bot_messages) >= count:
            return bot_messages
        assert loop.time() < deadline, f"only {len(bot_messages)} bot messages in chat {chat_id}"
        await asyncio.sleep(0.2)


async def test_sandbox_runs_without_a_token_and_serves_the_chat_page(tmp_path):
    async with running_sandbox(tmp_path) as base, aiohttp.ClientSession() as client:
        async with client.get(base + "/") as response:
            page = await response.text()
            assert response.status == 200 and "<html" in page.lower()
        async with client.get(base + "/sandbox/api/users") as response:
            people = {u["id"] for u in await response.json()}
        assert {PUBLIC_ID, COORDINATOR_ID} <= people

        # a member of the public sends text, a photo and a location
        await client.post(base + "/sandbox/api/send", json={"user_id": PUBLIC_ID, "text": "Saw a girl at the pier"})
        reply = (await wait_for_bot_messages(client, base, PUBLIC_ID, 1))[0]["text"]
        reference = reference_in(reply)
        form = aiohttp.FormData()
        form.add_field("user_id", str(PUBLIC_ID))
        form.add_field("kind", "photo")
        form.add_field("file", jpeg_bytes(), filename="pier.jpg", content_type="image/jpeg")
        await client.post(base + "/sandbox/api/send", data=form)
        await client.post(base + "/sandbox/api/send",
                          json={"user_id": PUBLIC_ID, "location": {"latitude": 34.26, "longitude": 108.94}})
        await wait_for_bot_messages(client, base, PUBLIC_ID, 3)

        # the coordinator sees the alerts, with the photo, and answers from the same page
        alerts = await wait_for_bot_messages(client, base, COORDINATOR_ID, 2)
        assert any(reference in (m.get("text") or m.get("caption") or "") for m in alerts)
        photo = next(m for m in await wait_for_bot_messages(client, base, COORDINATOR_ID, 3) if m.get("photo"))
        async with client.get(base + photo["photo"]["url"]) as response:
            assert response.headers["Content-Type"].startswith("image/jpeg")
        await client.post(base + "/sandbox/api/send",
                          json={"user_id": COORDINATOR_ID, "text": f"/reply {reference} Thank you!"})
        answered = await wait_for_bot_messages(client, base, PUBLIC_ID, 4)
        assert "Reunite team" in answered[-1]["text"]
    assert (tmp_path / "data" / "reunite.db").exists()
