"""DESIGN.md's bad-input list through the stand-in: each gets a short answer in the user's language,
or a logged retry; nothing is lost and the bot keeps serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import time

from PIL import Image
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bot.db.models import Base, InboxUpdate, Tip, TipEntry, User
from bot.db.session import create_engine
from bot.i18n import t
from tests.conftest import NOTHING_MORE_WAIT, settle
from tests.helpers import jpeg_bytes, reference_in

UNSUPPORTED = {
    "sticker": {"sticker": {"file_id": "CAACstk1", "file_unique_id": "stk1", "width": 512, "height": 512,
                            "is_animated": False, "is_video": False, "type": "regular"}},
    "voice": {"voice": {"file_id": "AwACvoice1", "file_unique_id": "v1", "duration": 3}},
    "video": {"video": {"file_id": "BAACvideo1", "file_unique_id": "vd1", "width": 640, "height": 480,
                        "duration": 5}},
    "animation": {"animation": {"file_id": "CgACgif1", "file_unique_id": "g1", "width": 320, "height": 240,
                                "duration": 2},
                  "document": {"file_id": "CgACgif1", "file_unique_id": "g1", "mime_type": "video/mp4"}},
    "contact": {"contact": {"phone_number": "+441234567890", "first_name": "Someone"}},
    "poll": {"poll": {"id": "p1", "question": "Where?",
                      "options": [{"text": "a", "voter_count": 0, "persistent_id": "o1"},
                                  {"text": "b", "voter_count": 0, "persistent_id": "o2"}],
                      "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
                      "allows_multiple_answers": False, "allows_revoting": True, "members_only": False}},
}


async def count(reunite, query) -> int:
    async with reunite.sessionmaker() as session:
        return await session.scalar(query)


async def test_media_we_cannot_read_gets_a_plain_answer_in_the_users_language(reunite, people):
    english, chinese = people(701, "Ann"), people(702, "王", language_code="zh-hans")
    for kind, fields in UNSUPPORTED.items():
        english.cursor = len(english.received())
        english.user.send_raw(**fields)
        assert "only take text, photos and locations" in await english.next_text(), kind
    chinese.user.send_raw(**UNSUPPORTED["voice"])
    assert "只能接收文字、照片和位置" in await chinese.next_text()
    assert await count(reunite, select(func.count()).select_from(Tip)) == 0


async def test_an_update_the_library_cannot_read_is_set_aside_and_the_bot_goes_on(reunite, people):
    person = people(712, "Kai")
    # an older shape of poll that PTB 22 refuses to parse
    person.user.send_raw(poll={"id": "p2", "question": "?", "options": [{"text": "a", "voter_count": 0}],
                               "total_voter_count": 0, "is_closed": False, "is_anonymous": True,
                               "type": "regular", "allows_multiple_answers": False})
    assert reference_in(await person.say("A tip after a strange update"))
    async with reunite.sessionmaker() as session:
        set_aside = await session.scalar(select(InboxUpdate).where(InboxUpdate.error.like("unreadable%")))
    assert set_aside is not None and set_aside.processed_at is not None
    assert '"question": "?"' in set_aside.payload  # kept for an operator to look at


async def test_files_that_are_not_good_images_are_refused_clearly(reunite, people):
    person = people(703, "Ben")
    person.user.send_document(b"%PDF-1.4 not a photo", "report.pdf", "application/pdf")
    assert "only read photos" in await person.next_text()
    truncated = jpeg_bytes(800, 600)[:600]
    person.user.send_document(truncated, "broken.jpg", "image/jpeg")
    assert "could not open that image" in await person.next_text()
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, format="PNG")  # 144 megapixels in a few kilobytes
    assert len(bomb.getvalue()) < 100_000
    person.user.send_document(bomb.getvalue(), "bomb.png", "image/png")
    assert "too large" in await person.next_text()
    # and the bot still takes a real tip from them
    assert reference_in(await person.say("Still here: I saw him at the bakery"))


async def test_a_ten_thousand_character_tip_is_kept_whole(reunite, people, coordinator):
    person = people(704, "Cleo")
    long_text = ("He wore a green jacket and walked towards the old mill. " * 200)[:10_000]
    # Telegram itself caps a message at 4,096 characters; the stand-in lets us try anyway
    person.user.send_raw(text=long_text)
    reference = reference_in(await person.next_text())
    async with reunite.sessionmaker() as session:
        entry = await session.scalar(select(TipEntry))
    assert entry.text == long_text
    alert = (await coordinator.wait(1))[0]["text"]
    assert reference in alert and len(alert) <= 4096


async def test_edited_messages_join_the_tip_and_others_are_ignored_quietly(reunite, people, stand_in):
    person = people(705, "Dan")
    first = person.user.send_text("The car was blue")
    reference = reference_in(await person.next_text())
    person.user.edit(first["message_id"], "The car was dark green")
    assert reference_in(await person.next_text()) == reference
    group = stand_in.group(-200, "Neighbourhood")
    group.send_text(person.user, "anyone seen my cat?")
    stand_in.channel_post(-1009, "channel news")
    await settle(reunite)
    # a group other than the coordinators' reads one line, then the bot leaves (tests/test_chats.py)
    said = stand_in.sent_to(-200)
    assert len(said) == 1 and "private chats only" in said[0]["text"] and not group.bot_is_member
    assert stand_in.sent_to(-1009) == []
    async with reunite.sessionmaker() as session:
        texts = list(await session.scalars(select(TipEntry.text).order_by(TipEntry.id)))
        unprocessed = await session.scalar(select(func.count()).select_from(InboxUpdate)
                                           .where(InboxUpdate.processed_at.is_(None)))
    assert texts == ["The car was blue", "The car was dark green"]
    assert unprocessed == 0


async def test_unknown_commands_and_forged_or_double_pressed_buttons(reunite, people):
    person = people(706, "Eve")
    assert "don't know that command" in await person.say("/teleport now")
    await person.say("/language")
    keyboard = person.received()[-1]
    person.user.press_forged(keyboard, "lang|zh|0123456789")  # signature does not match
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 706)).language == "en"
    person.user.press(keyboard, "简体中文")
    person.user.press(keyboard, "简体中文")
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 706)).language == "zh"
    assert sum("简体中文" in text for text in person.texts()) == 2


async def test_a_flooding_user_is_slowed_down_but_nothing_they_send_is_lost(reunite, people, stand_in, unpaced_chats):
    flooder = people(707, "Fay")
    bystander = people(708, "Gus")
    for number in range(30):
        flooder.user.send_text(f"message {number}")
    answer = await bystander.say("A calm tip from someone else")
    assert reference_in(answer)
    await settle(reunite, timeout=60)
    async with reunite.sessionmaker() as session:
        kept = await session.scalar(select(func.count()).select_from(TipEntry)
                                    .join(Tip).where(Tip.tipster_id == 707))
    assert kept == 30
    texts = flooder.texts()
    assert sum("many messages" in text for text in texts) == 1
    assert len(texts) <= 22  # 20 answers within the limit, one notice


async def test_button_presses_answer_questions_and_are_not_taken_for_flooding(reunite, people, unpaced_chats):
    """A family tapping through a long conversation quickly is never told to slow down."""
    person = people(710, "Ivy")
    await person.say("/language")
    keyboard = person.received()[-1]
    for number in range(30):
        person.user.press(keyboard, "简体中文" if number % 2 else "English")
    await settle(reunite, timeout=60)
    warnings = {t("en", "slow_down"), t("zh", "slow_down")}
    assert not warnings & set(person.texts())
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 710)).language == "zh"


async def test_telegram_errors_are_retried_and_blocked_users_are_marked(reunite, people, coordinator, stand_in):
    person = people(709, "Hal")
    stand_in.fail_next("sendMessage", status=500, chat_id=709)
    started = time.monotonic()
    assert reference_in(await person.say("Seen by the harbour", timeout=20))
    stand_in.fail_next("sendMessage", status=429, retry_after=2, chat_id=709)
    started = time.monotonic()
    assert "Added" in await person.say("He had a dog", timeout=20)
    assert time.monotonic() - started >= 2.0  # waited as Telegram asked
    stand_in.fail_next("getUpdates", status=500)
    assert "Added" in await person.say("A small brown dog", timeout=20)

    person.user.block_bot()
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 709)).blocked_bot
    # a coordinator's reply to a blocked tipster fails quietly; the bot goes on
    tip_reference = reference_in(person.texts()[0])
    assert "Sent to the tipster" in await coordinator.say(f"/reply {tip_reference} thanks")
    other = people(710, "Ivy")
    assert reference_in(await other.say("Still working?"))


@contextlib.asynccontextmanager
async def writes_locked_out(settings):
    """Another process holds the database's write lock until the block ends: SQLite's one writer
    lock, or on PostgreSQL every table of the bot locked against writes (as a migration or a bulk
    maintenance job would)."""
    if settings.database_url.startswith("sqlite"):
        # wait in a thread for the bot's own writes to finish rather than fail the lock: the bot
        # cannot commit a write it has begun while the event loop is blocked
        locker = sqlite3.connect(settings.database_url.split("///", 1)[1], isolation_level=None, timeout=30,
                                 check_same_thread=False)
        await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("COMMIT")
            locker.close()
        return
    engine = create_engine(settings.database_url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    try:
        async with engine.connect() as locker:
            # the tables are locked one by one, so a bot transaction that already wrote to a later
            # one and wants an earlier one deadlocks with us; a maintenance job would try again
            for attempt in range(10):
                try:
                    await locker.execute(text(f"LOCK TABLE {tables} IN EXCLUSIVE MODE"))  # reads go on, writes wait
                    break
                except DBAPIError as error:
                    await locker.rollback()
                    if "deadlock" not in str(error) or attempt == 9:
                        raise
                    await asyncio.sleep(0.1)
            yield
            await locker.commit()
    finally:
        await engine.dispose()


async def test_a_briefly_locked_database_delays_but_loses_nothing(reunite, people, settings):
    person = people(711, "Jan")
    async with writes_locked_out(settings):
        person.user.send_text("Tip during a lock")
        await asyncio.sleep(NOTHING_MORE_WAIT)
        assert person.received() == []  # nothing acknowledged while nothing could be committed
    reference = reference_in(await person.next_text(timeout=30))
    async with reunite.sessionmaker() as session:
        assert await session.scalar(select(Tip.id).where(Tip.reference == reference))
