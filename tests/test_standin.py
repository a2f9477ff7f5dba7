"""The Bot API stand-in, driven by the real python-telegram-bot over HTTP (no mocks)."""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import time

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, ReplyKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot.sandbox.standin import StandIn

USER = 4242

# PTB 22.2+ warns inside RetryAfter.__init__ itself unless PTB_TIMEDELTA is set; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")


# ------------------------------------------------------------------ helpers and fixtures
def jpeg(w: int = 640, h: int = 480, color=(200, 30, 30), *, exif: bool = False) -> bytes:
    img = Image.new("RGB", (w, h), color)
    buf = io.BytesIO()
    if exif:
        ex = Image.Exif()
        ex[0x010F] = "TestCam"  # Make
        ex[0x0132] = "2024:05:01 12:30:00"  # DateTime
        gps = ex.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", (34.0, 20.0, 30.0), "E", (108.0, 56.0, 20.0)
        img.save(buf, "JPEG", exif=ex)
    else:
        img.save(buf, "JPEG")
    return buf.getvalue()


def one_button(text: str, data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(text, callback_data=data)]])


def retry_seconds(exc: RetryAfter) -> float:
    value = getattr(exc, "_retry_after", None)  # PTB >= 22.2 keeps a timedelta here (no deprecation warning)
    if value is None:
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


@pytest.fixture
async def standin():
    s = StandIn(flood_scale=20)  # limits on, but loose enough for functional tests
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def strict():
    s = StandIn()  # Telegram's real limits
    await s.start()
    yield s
    await s.stop()


def make_bot(s: StandIn, token: str | None = None) -> Bot:
    return Bot(token or s.token, base_url=f"{s.api_url}/bot", base_file_url=f"{s.api_url}/file/bot")


@pytest.fixture
async def bot(standin):
    async with make_bot(standin) as b:
        yield b


# ------------------------------------------------------------------ basics
async def test_get_me(bot, standin):
    me = await bot.get_me()
    assert me.id == standin.bot_id == 123456
    assert me.is_bot and me.username == "reunite_sandbox_bot"
    assert standin.stats["calls"]["getMe"] >= 1


async def test_wrong_token_is_401(standin):
    with pytest.raises(InvalidToken):
        async with make_bot(standin, "999:WRONG") as b:
            await b.get_me()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{standin.api_url}/bot999:WRONG/getMe") as r:
            assert r.status == 401
            assert await r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_method_and_raw_bodies(standin):
    standin.user(USER, "Ann")
    base = f"{standin.api_url}/bot{standin.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/sendCarrierPigeon", data={"chat_id": USER}) as r:
            assert r.status == 404 and (await r.json())["description"] == "Not Found"
        async with http.get(f"{base}/getMe") as r:
            assert (await r.json())["result"]["username"] == "reunite_sandbox_bot"
        # JSON body, nested markup as an object
        body = {"chat_id": USER, "text": "json",
                "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}}
        async with http.post(f"{base}/sendMessage", json=body) as r:
            res = (await r.json())["result"]
            assert res["text"] == "json" and res["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "a"
        # query string on GET
        async with http.get(f"{base}/sendMessage", params={"chat_id": str(USER), "text": "q"}) as r:
            res = (await r.json())["result"]
            assert res["text"] == "q" and isinstance(res["date"], int) and res["from"]["is_bot"] is True
        # unknown chat
        async with http.post(f"{base}/sendMessage", data={"chat_id": "777", "text": "x"}) as r:
            assert r.status == 400 and (await r.json())["description"] == "Bad Request: chat not found"
    assert [m["text"] for m in standin.sent_to(USER)] == ["json", "q"]
    assert [m["message_id"] for m in standin.sent_to(USER)] == [1, 2]


# ------------------------------------------------------------------ updates
async def test_get_updates_long_poll_and_offset(bot, standin):
    ann = standin.user(USER, "Ann", username="ann", language_code="zh")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=3))
    await asyncio.sleep(0.2)
    assert not poll.done()  # blocks while empty
    ann.send_text("/start c_TOKEN123")
    updates = await asyncio.wait_for(poll, 2)
    assert loop.time() - t0 < 1.0  # woke up at once
    (u,) = updates
    assert u.update_id == 1
    msg = u.message
    assert msg.text == "/start c_TOKEN123" and msg.chat.type == "private" and msg.chat.id == USER
    assert msg.from_user.username == "ann" and msg.from_user.language_code == "zh" and not msg.from_user.is_bot
    assert msg.entities[0].type == "bot_command" and msg.entities[0].length == len("/start")
    assert abs(msg.date.timestamp() - time.time()) < 5  # seconds, not milliseconds

    ann.send_text("second")
    again = await bot.get_updates(timeout=0)
    assert [x.update_id for x in again] == [1, 2]  # not confirmed yet: still there
    after = await bot.get_updates(offset=2, timeout=0)
    assert [x.message.text for x in after] == ["second"]
    assert await bot.get_updates(offset=3, timeout=0) == ()
    t0 = loop.time()
    assert await bot.get_updates(offset=3, timeout=1) == ()
    assert loop.time() - t0 >= 0.9  # an empty long poll waits for the timeout


async def test_application_polling_inline_keyboard_and_callback(standin):
    ann = standin.user(USER, "Ann")

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.message.reply_text(
            "Pick one", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="v:yes"),
                                                            InlineKeyboardButton("No", callback_data="v:no")]])
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        q = update.callback_query
        await q.answer("Noted")
        await q.edit_message_text(f"You said {q.data}")

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.message.reply_text(f"echo {update.message.text}", do_quote=True)

    app = (
        Application.builder().token(standin.token).base_url(f"{standin.api_url}/bot").base_file_url(f"{standin.api_url}/file/bot").build()
    )
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(pressed))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        try:
            ann.send_text("/start")
            (menu,) = await standin.wait_for(USER, 1, timeout=5)
            assert menu["text"] == "Pick one" and menu["_method"] == "sendMessage"
            cq = ann.press(menu, "Yes")
            assert cq["data"] == "v:yes" and cq["message"]["message_id"] == menu["message_id"]
            await standin.wait_for(USER, 1, timeout=5, predicate=lambda m: m["text"] == "You said v:yes")
            assert menu.get("edit_date") and "reply_markup" not in menu  # edited in place, keyboard removed
            assert standin.callback_answers[cq["id"]]["text"] == "Noted"
            ann.send_text("hello")
            await standin.wait_for(USER, 2, timeout=5)
            assert standin.sent_to(USER)[-1]["text"] == "echo hello"
            assert standin.sent_to(USER)[-1]["reply_to_message"]["text"] == "hello"
        finally:
            await app.updater.stop()
            await app.stop()
    assert standin.stats["calls"]["deleteWebhook"] == 1
    assert not standin.pending_updates() or all(u["update_id"] > 3 for u in standin.pending_updates())


async def test_press_unknown_button_is_a_clear_error(bot, standin):
    ann = standin.user(USER, "Ann")
    await bot.send_message(USER, "x", reply_markup=one_button("A", "a"))
    with pytest.raises(ValueError, match="buttons: \\['A'\\]"):
        ann.press(standin.sent_to(USER)[0], "B")


async def test_edited_message_channel_post_and_group(bot, standin):
    ann = standin.user(USER, "Ann")
    grp = standin.group(-100200, "Volunteers")
    m = ann.send_text("first version")
    ann.edit(m["message_id"], "second version")
    grp.send_text(ann, "chatter")
    standin.channel_post(-1001234567890, "news")
    ann.send_raw(sticker={"file_id": "x", "file_unique_id": "y", "type": "regular", "width": 512, "height": 512,
                          "is_animated": False, "is_video": False})
    ups = await bot.get_updates(timeout=0)
    assert ups[0].message.text == "first version"
    assert ups[1].edited_message.text == "second version" and ups[1].edited_message.edit_date
    assert ups[2].message.chat.type == "group" and ups[2].message.chat.title == "Volunteers"
    assert ups[3].channel_post.text == "news" and ups[3].channel_post.chat.type == "channel"
    assert ups[4].message.sticker.width == 512
    # groups: the bot can send there; 20/minute (scaled) is per group
    sent = await bot.send_message(-100200, "hello group")
    assert sent.chat.title == "Volunteers"


# ------------------------------------------------------------------ files
async def test_send_photo_upload_then_resend_by_file_id(bot, standin):
    standin.user(USER, "Ann")
    original = jpeg(2000, 1500)
    first = await bot.send_photo(USER, original, caption="<b>Card</b>", parse_mode=ParseMode.HTML)
    assert first.caption == "Card" and first.caption_entities[0].type == "bold"
    sizes = first.photo
    assert len(sizes) >= 2 and (sizes[-1].width, sizes[-1].height) == (1280, 960)
    assert sizes[0].width < sizes[-1].width
    rec1 = standin.sent_to(USER)[-1]
    assert rec1["_files"] == {"photo": original}

    file_id = sizes[-1].file_id
    second = await bot.send_photo(USER, file_id)
    rec2 = standin.sent_to(USER)[-1]
    assert rec2["_files"] == {}  # no upload the second time
    assert second.photo[-1].file_unique_id == sizes[-1].file_unique_id
    stored = Image.open(io.BytesIO(standin.file_bytes(file_id)))
    assert stored.size == (1280, 960)

    # a file_id that is not a photo, and an unknown one
    with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
        await bot.send_photo(USER, "AgACnope")


async def test_user_photo_is_reencoded_without_exif(bot, standin):
    ann = standin.user(USER, "Ann")
    raw = jpeg(3000, 2000, exif=True)
    assert Image.open(io.BytesIO(raw)).getexif()  # the original has EXIF
    ann.send_photo(raw, caption="saw him here")
    (u,) = await bot.get_updates(timeout=0)
    photo = u.message.photo
    assert 2 <= len(photo) <= 3 and u.message.caption == "saw him here"
    assert max(photo[-1].width, photo[-1].height) == 1280
    assert photo[0].width < photo[-1].width
    f = await bot.get_file(photo[-1].file_id)
    assert f.file_size == photo[-1].file_size
    assert standin.files.get(photo[-1].file_id)["file_path"].startswith("photos/")  # relative on the wire
    data = bytes(await f.download_as_bytearray())
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG" and img.size == (1280, 853)
    assert not img.getexif() and "exif" not in img.info


async def test_user_document_keeps_exact_bytes(bot, standin):
    ann = standin.user(USER, "Ann")
    raw = jpeg(800, 600, exif=True)
    ann.send_document(raw, "IMG_0001.JPG", "image/jpeg", caption="original")
    (u,) = await bot.get_updates(timeout=0)
    doc = u.message.document
    assert (doc.file_name, doc.mime_type, doc.file_size) == ("IMG_0001.JPG", "image/jpeg", len(raw))
    data = bytes(await (await bot.get_file(doc.file_id)).download_as_bytearray())
    assert data == raw
    gps = Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
    assert gps[1] == "N"


async def test_album_and_send_media_group(bot, standin):
    ann = standin.user(USER, "Ann")
    ann.send_album([jpeg(color=(10, 10, 10)), jpeg(color=(20, 20, 20)), jpeg(color=(30, 30, 30))], caption="three")
    ups = await bot.get_updates(timeout=0)
    assert len(ups) == 3 and len({u.message.media_group_id for u in ups}) == 1
    assert ups[0].message.caption == "three" and ups[1].message.caption is None

    reuse = ups[0].message.photo[-1].file_id
    msgs = await bot.send_media_group(USER, [InputMediaPhoto(jpeg(color=(1, 2, 3)), caption="album"),
                                             InputMediaPhoto(reuse)])
    assert len(msgs) == 2 and msgs[0].media_group_id == msgs[1].media_group_id
    assert msgs[0].caption == "album"
    recs = standin.sent_to(USER)
    assert [r["_method"] for r in recs] == ["sendMediaGroup", "sendMediaGroup"]
    assert len(recs[0]["_files"]) == 1 and recs[1]["_files"] == {}
    with pytest.raises(BadRequest):
        await bot.send_media_group(USER, [InputMediaPhoto(reuse)])  # albums have 2-10 items


async def test_send_document_location_and_chat(bot, standin):
    standin.user(USER, "Ann", last_name="Lee")
    pdf = b"%PDF-1.4 fake flyer"
    m = await bot.send_document(USER, pdf, filename="flyer.pdf", caption="Poster")
    assert m.document.file_name == "flyer.pdf" and m.document.mime_type == "application/pdf"
    assert standin.sent_to(USER)[-1]["_files"] == {"document": pdf}
    again = await bot.send_document(USER, m.document.file_id)
    assert again.document.file_id == m.document.file_id and standin.sent_to(USER)[-1]["_files"] == {}
    loc = await bot.send_location(USER, 34.34, 108.94)
    assert loc.location.latitude == pytest.approx(34.34)
    chat = await bot.get_chat(USER)
    assert chat.first_name == "Ann" and chat.last_name == "Lee" and chat.type == "private"
    assert await bot.send_chat_action(USER, "typing")
    await bot.set_my_commands([("help", "Help"), ("report", "Report a missing person")])
    assert [c.command for c in await bot.get_my_commands()] == ["help", "report"]


# ------------------------------------------------------------------ edits, deletes, formatting
async def test_edit_message_text_and_delete(bot, standin):
    standin.user(USER, "Ann")
    m = await bot.send_message(USER, "Sending 0/10", reply_markup=one_button("Stop", "stop"))
    edited = await bot.edit_message_text("Sending 5/10", chat_id=USER, message_id=m.message_id)
    assert edited.text == "Sending 5/10" and edited.edit_date is not None
    (rec,) = standin.sent_to(USER)
    assert rec["text"] == "Sending 5/10" and "reply_markup" not in rec  # edited in place
    with pytest.raises(BadRequest, match="(?i)message is not modified"):
        await bot.edit_message_text("Sending 5/10", chat_id=USER, message_id=m.message_id)
    await bot.edit_message_reply_markup(USER, m.message_id, reply_markup=one_button("Again", "again"))
    assert rec["reply_markup"]["inline_keyboard"][0][0]["text"] == "Again"
    p = await bot.send_photo(USER, jpeg(), caption="old")
    await bot.edit_message_caption(USER, p.message_id, caption="new")
    assert standin.sent_to(USER)[-1]["caption"] == "new"
    assert await bot.delete_message(USER, m.message_id)
    assert rec["_deleted"] is True
    with pytest.raises(BadRequest, match="(?i)message to delete not found"):
        await bot.delete_message(USER, m.message_id)
    with pytest.raises(BadRequest, match="(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)


async def test_parse_modes_and_limits(bot, standin):
    standin.user(USER, "Ann")
    m = await bot.send_message(USER, "Case <b>C-7K2M9Q</b> &amp; <a href=\"https://t.me/x?start=c_1\">link</a>",
                               parse_mode=ParseMode.HTML)
    assert m.text == "Case C-7K2M9Q & link"
    assert [(e.type, e.offset, e.length) for e in m.entities] == [("bold", 5, 8), ("text_link", 16, 4)]
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await bot.send_message(USER, "<b>unclosed", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="(?i)Unsupported start tag"):
        await bot.send_message(USER, "a <br> b", parse_mode=ParseMode.HTML)
    m2 = await bot.send_message(USER, "*Tip* T\\-1234\\.", parse_mode=ParseMode.MARKDOWN_V2)
    assert m2.text == "Tip T-1234." and m2.entities[0].type == "bold"
    with pytest.raises(BadRequest, match="(?i)reserved"):
        await bot.send_message(USER, "T-1234.", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match="(?i)message is too long"):
        await bot.send_message(USER, "x" * 4097)
    with pytest.raises(BadRequest, match="(?i)BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "x", reply_markup=one_button("A", "x" * 65))
    # reply keyboards are not returned to the bot but kept for the browser page
    await bot.send_message(USER, "Where?", reply_markup=ReplyKeyboardMarkup([["Share"]], one_time_keyboard=True))
    rec = standin.sent_to(USER)[-1]
    assert "reply_markup" not in rec and rec["_reply_keyboard"]["keyboard"] == [[{"text": "Share"}]]


# ------------------------------------------------------------------ flood limits and faults
async def test_flood_private_chat(strict):
    strict.user(USER, "Ann")
    async with make_bot(strict) as b:
        with pytest.raises(RetryAfter) as info:
            for i in range(5):
                await b.send_message(USER, f"m{i}")
    assert retry_seconds(info.value) >= 1
    assert len(strict.sent_to(USER)) == 3  # burst of 3, then refused; a refused call sends nothing
    assert strict.stats["flood_429"] == 1


async def test_flood_group_and_scale(strict):
    strict.group(-5001, "Coordinators")
    async with make_bot(strict) as b:
        for i in range(20):
            await b.send_message(-5001, f"alert {i}")
        with pytest.raises(RetryAfter) as info:
            await b.send_message(-5001, "one too many")
        assert retry_seconds(info.value) >= 2  # 20/minute: next slot in ~3 s
        strict.flood_scale = 10  # looser at runtime (buckets reset)
        for i in range(25):
            await b.send_message(-5001, f"fast {i}")
        strict.flood_control = False
        for i in range(40):
            await b.send_message(-5001, f"unlimited {i}")
    assert strict.stats["sent_messages"] == 85


async def test_injected_faults(bot, standin):
    ann = standin.user(USER, "Ann")
    standin.fail_next("sendMessage", status=403)
    with pytest.raises(Forbidden, match="(?i)blocked"):
        await bot.send_message(USER, "x")
    standin.fail_next("sendMessage", status=500, chat_id=USER)
    with pytest.raises(NetworkError) as info:
        await bot.send_message(USER, "x")
    assert type(info.value) is NetworkError
    standin.fail_next(status=429, retry_after=7)  # any method but polling
    with pytest.raises(RetryAfter) as ra:
        await bot.send_photo(USER, jpeg())
    assert retry_seconds(ra.value) == 7
    standin.fail_next("sendMessage", status=400, description="Bad Request: chat not found", chat_id=999)
    ok = await bot.send_message(USER, "fine")  # a fault for another chat does not match
    assert ok.text == "fine"
    assert [m["text"] for m in standin.sent_to(USER)] == ["fine"]  # failed calls sent nothing
    assert standin.stats["injected"] == 3
    standin.clear_faults()
    assert ann.chat_id == USER


async def test_block_gives_403_and_my_chat_member(bot, standin):
    ann = standin.user(USER, "Ann")
    ann.block_bot()
    (u,) = await bot.get_updates(timeout=0)
    cm = u.my_chat_member
    assert cm.new_chat_member.status == "kicked" and cm.old_chat_member.status == "member"
    assert cm.chat.id == USER and cm.from_user.id == USER
    with pytest.raises(Forbidden, match="(?i)bot was blocked by the user"):
        await bot.send_message(USER, "still there?")
    standin.unblock(USER)
    assert (await bot.send_message(USER, "welcome back")).text == "welcome back"


async def test_wait_for_timeout_explains(standin):
    standin.user(USER, "Ann")
    with pytest.raises(TimeoutError, match=f"chat_id={USER}.*0 of 1"):
        await standin.wait_for(USER, 1, timeout=0.1)


# ------------------------------------------------------------------ webhook
async def test_webhook_delivery(bot, standin):
    got: list[tuple[dict, str | None]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.json(), request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/tg", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        ann = standin.user(USER, "Ann")
        await bot.set_webhook(f"http://127.0.0.1:{port}/tg", secret_token="s3cret")
        with pytest.raises(Conflict, match="webhook is active"):  # polling while a webhook is set
            await bot.get_updates(timeout=0)
        ann.send_text("via webhook")
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got and got[0][0]["message"]["text"] == "via webhook" and got[0][1] == "s3cret"
        info = await bot.get_webhook_info()
        assert info.url.endswith("/tg") and info.pending_update_count == 0
        await bot.delete_webhook()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ sandbox JSON API + page
async def test_sandbox_json_api(bot, standin):
    async with aiohttp.ClientSession(base_url=standin.url) as http:
        async with http.get("/") as r:
            assert r.status == 200 and "Reunite sandbox" in await r.text()
        async with http.get("/sandbox/static/app.js") as r:
            assert r.status == 200
        async with http.post("/sandbox/api/users", json={"first_name": "Mei", "language_code": "zh"}) as r:
            mei = await r.json()
        uid = mei["id"]
        async with http.get("/sandbox/api/users") as r:
            assert any(u["id"] == uid and u["language_code"] == "zh" for u in await r.json())
        async with http.post("/sandbox/api/send", json={"user_id": uid, "text": "hi bot"}) as r:
            sent = await r.json()
            assert sent["text"] == "hi bot"
        location = {"latitude": 1.5, "longitude": 2.5}
        async with http.post("/sandbox/api/send", json={"user_id": uid, "location": location}) as r:
            assert (await r.json())["location"]["latitude"] == 1.5
        form = aiohttp.FormData()
        form.add_field("user_id", str(uid))
        form.add_field("kind", "album")
        form.add_field("caption", "two")
        form.add_field("file", jpeg(), filename="a.jpg", content_type="image/jpeg")
        form.add_field("file", jpeg(color=(0, 0, 255)), filename="b.jpg", content_type="image/jpeg")
        async with http.post("/sandbox/api/send", data=form) as r:
            album = await r.json()
            assert len(album) == 2 and album[0]["media_group_id"] == album[1]["media_group_id"]
        form = aiohttp.FormData()
        form.add_field("user_id", str(uid))
        form.add_field("kind", "document")
        form.add_field("file", b"hello", filename="note.txt", content_type="text/plain")
        async with http.post("/sandbox/api/send", data=form) as r:
            doc = (await r.json())["document"]
            assert doc["file_name"] == "note.txt" and doc["file_size"] == 5

        ups = await bot.get_updates(timeout=0)
        assert len(ups) == 5
        reply = await bot.send_message(uid, "Tip received", reply_markup=one_button("Add more", "more"))

        async with http.get(f"/sandbox/api/chats/{uid}/messages") as r:
            msgs = await r.json()
        assert [m["direction"] for m in msgs] == ["in"] * 5 + ["out"]
        assert msgs[2]["photo"]["url"].startswith("/sandbox/files/")
        assert msgs[-1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "more"
        async with http.get(msgs[2]["photo"]["url"]) as r:
            assert r.content_type == "image/jpeg" and Image.open(io.BytesIO(await r.read())).format == "JPEG"
        async with http.get(msgs[4]["document"]["url"]) as r:
            assert await r.read() == b"hello" and "attachment" in r.headers["Content-Disposition"]

        cursor = max(m["rev"] for m in msgs)
        poll = asyncio.create_task(http.get(f"/sandbox/api/chats/{uid}/messages?after={cursor}&wait=5"))
        await asyncio.sleep(0.1)
        press = {"user_id": uid, "chat_id": uid, "message_id": reply.message_id, "callback_data": "more"}
        async with http.post("/sandbox/api/press", json=press) as r:
            cq = await r.json()
            assert cq["data"] == "more"
        (u,) = await bot.get_updates(offset=ups[-1].update_id + 1, timeout=0)
        await u.callback_query.answer("Send it now")
        async with await asyncio.wait_for(poll, 3) as r:
            changed = await r.json()
        assert changed[0]["message_id"] == reply.message_id and changed[0]["callback_answer"]["text"] == "Send it now"

        async with http.post("/sandbox/api/config", json={"flood_control": False, "flood_scale": 2}) as r:
            assert (await r.json())["flood_control"] is False
        async with http.get("/sandbox/api/stats") as r:
            stats = await r.json()
            assert stats["sent_messages"] == 1 and stats["calls"]["sendMessage"] == 1


async def test_stop_wakes_long_polls_and_bad_photo_is_rejected():
    s = StandIn()
    await s.start()
    ann = s.user(USER, "Ann")
    with pytest.raises(ValueError, match="send it as a document"):
        ann.send_photo(b"not an image")
    async with aiohttp.ClientSession(base_url=s.url) as http:
        poll = asyncio.create_task(http.post(f"/bot{s.token}/getUpdates", data={"timeout": "30"}))
        page = asyncio.create_task(http.get(f"/sandbox/api/chats/{USER}/messages?after=0&wait=30"))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        await s.stop()
        assert time.monotonic() - t0 < 1.5
        for task in (poll, page):
            try:
                r = await asyncio.wait_for(task, 1)
                assert r.status == 200
                r.release()
            except aiohttp.ClientError:
                pass  # connection closed by the shutdown: also fine
