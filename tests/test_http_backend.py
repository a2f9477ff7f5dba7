"""The bot's aiohttp backend for PTB (bot/transport/http.py) over HTTP against the stand-in: what the
rest of the suite does not already show (timeouts, non-ASCII multipart, errors the sender relies on)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.sandbox.standin import StandIn
from bot.transport.http import AiohttpRequest
from tests.helpers import jpeg_bytes

USER = 4242


@pytest.fixture
async def standin():
    s = StandIn(flood_scale=20)
    await s.start()
    yield s
    await s.stop()


def make_bot(api_url: str, token: str, **request) -> Bot:
    return Bot(token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot",
               request=AiohttpRequest(**request), get_updates_request=AiohttpRequest(connection_pool_size=1))


@pytest.fixture
async def bot(standin):
    async with make_bot(standin.api_url, standin.token, connection_pool_size=4) as b:
        yield b


async def test_a_slow_answer_times_out_but_the_message_still_arrives(bot, standin):
    standin.user(USER, "Ann")
    standin.slow_next("sendMessage", delay=0.6)
    with pytest.raises(TimedOut):
        await bot.send_message(USER, "maybe", read_timeout=0.2)
    (message,) = await standin.wait_for(USER, 1, timeout=3)
    assert message["text"] == "maybe"  # Telegram got it: this is why the sender records `unknown`
    assert (await bot.send_message(USER, "next")).text == "next"  # the pool is still usable


async def test_a_non_ascii_upload_arrives_intact_and_downloads_byte_for_byte(bot, standin):
    standin.user(USER, "Ann")
    pdf = b"%PDF-1.4 \xe5\xaf\xbb\xe4\xba\xba flyer"
    caption = "寻人启事: 王小明, 8 Jahre — bitte melden \"sofort\""
    sent = await bot.send_document(USER, pdf, filename="寻人启事 \"C-7K2M9Q\".pdf", caption=caption)
    assert sent.caption == caption
    assert sent.document.file_name == "寻人启事 %22C-7K2M9Q%22.pdf"  # as httpx writes a quote in a filename
    assert standin.sent_to(USER)[-1]["_files"] == {"document": pdf}
    photo = jpeg_bytes(640, 480)
    shown = await bot.send_photo(USER, photo, caption="照片 ✓")
    assert shown.caption == "照片 ✓"
    downloaded = await (await bot.get_file(sent.document.file_id)).download_as_bytearray()  # a GET
    assert bytes(downloaded) == pdf


async def test_refusals_become_the_errors_the_sender_handles(bot, standin):
    standin.user(USER, "Ann")
    standin.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.send_message(USER, "a")
    standin.fail_next("sendMessage", status=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(Forbidden):
        await bot.send_message(USER, "b")
    standin.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    with pytest.raises(BadRequest):
        await bot.send_message(USER, "c")
    standin.fail_next("sendMessage", status=502)
    with pytest.raises(NetworkError):
        await bot.send_message(USER, "d")
    assert [m["text"] for m in standin.sent_to(USER)] == []
    assert (await bot.send_message(USER, "e")).text == "e"


async def test_a_prepared_form_is_sent_as_bot_would_and_refused_the_same_way(bot, standin):
    """post_form, the broadcast's card re-send: the same message a Bot call makes, the same errors."""
    standin.user(USER, "Ann")
    photo = (await bot.send_photo(USER, jpeg_bytes(320, 240))).photo[-1].file_id
    markup = {"inline_keyboard": [[{"text": "我有线索", "url": "https://t.me/reunite_bot?start=c_x"}]]}
    fields = {"chat_id": str(USER), "photo": photo, "caption": "寻人启事 C-7K2M9Q",
              "reply_markup": json.dumps(markup, ensure_ascii=False)}
    sent = await bot.request.post_form(f"{bot.base_url}/sendPhoto", fields)
    assert sent["caption"] == "寻人启事 C-7K2M9Q"
    assert standin.sent_to(USER)[-1]["reply_markup"] == markup
    standin.fail_next("sendPhoto", status=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(Forbidden):
        await bot.request.post_form(f"{bot.base_url}/sendPhoto", fields)
    standin.fail_next("sendPhoto", status=429, retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.request.post_form(f"{bot.base_url}/sendPhoto", fields)
    assert len(standin.sent_to(USER)) == 2


async def test_no_server_is_a_network_error_not_a_crash():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    request = AiohttpRequest(connect_timeout=2.0)
    await request.initialize()
    try:
        with pytest.raises(NetworkError) as error:
            await request.post(f"http://127.0.0.1:{port}/bot123:abc/getMe")
        assert not isinstance(error.value, TimedOut)
    finally:
        await request.shutdown()


async def test_a_full_pool_makes_callers_wait_then_time_out(standin):
    standin.user(USER, "Ann")
    async with make_bot(standin.api_url, standin.token, connection_pool_size=1, pool_timeout=0.2) as bot:
        standin.slow_next("sendMessage", delay=1.0)
        first = asyncio.ensure_future(bot.send_message(USER, "slow"))
        await asyncio.sleep(0.1)
        with pytest.raises(TimedOut):  # never sent: the one connection is busy
            await bot.send_message(USER, "waits too long")
        assert (await first).text == "slow"
        assert [m["text"] for m in standin.sent_to(USER)] == ["slow"]
