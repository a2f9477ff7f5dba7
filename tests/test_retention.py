"""Retention (privacy rule 4, flow 8): nothing of a tipster outlives REUNITE_TIP_RETENTION_DAYS, a sent
message keeps no content, and a closed case leaves no flyer, photo or match composite on disk.
Through the stand-in, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image
from sqlalchemy import select, update

from bot.db.models import (
    OUT_PENDING,
    Base,
    Case,
    CasePhoto,
    FlyerFile,
    InboxUpdate,
    OutboxMessage,
    Tip,
    TipEntry,
    TipMedia,
)
from bot.services import cases, retention, users
from tests.conftest import ADMIN_ID, COORDINATOR_ID, packaged_image, settle, start_worker
from tests.helpers import exif_with_gps_and_time, reference_in, seed_case
from tests.test_matching import add_case, faces_done, image_bytes, jpeg, match_alert, until

WORDS = "a boy in a red raincoat by the Kowloon ferry pier"
TEAM_QUESTION = "Which pier exactly, and when?"
ANSWER = "The north one, near the clock tower, at dusk"
PIN = (22.29391, 114.16937)
CAMERA_PLACE = (22.28527, 114.15819)
CAMERA_TIME = "2026:11:30 14:15:16"
# an older shape of poll that PTB 22 refuses to parse: its update is set aside
UNREADABLE_POLL = {"id": "p9", "question": "?", "options": [{"text": "a", "voter_count": 0}],
                   "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
                   "allows_multiple_answers": False}


def players_with_exif() -> bytes:
    """players.jpg as a phone would keep it: with the camera's time and GPS (sent as a file, it keeps them)."""
    image = Image.open(packaged_image("players.jpg")).convert("RGB")
    exif = exif_with_gps_and_time(*CAMERA_PLACE, CAMERA_TIME)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def media_files(media_dir: Path) -> set[str]:
    """The names (SHA-256) of every file in the media store."""
    return {path.stem for path in media_dir.rglob("*") if path.is_file()}


async def every_stored_value(reunite) -> list[tuple[str, str, object]]:
    """(table, column, value) of every non-null value of every table, embeddings aside."""
    found = []
    async with reunite.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).mappings():
                for column, value in row.items():
                    if value is not None and column != "embedding":
                        found.append((table.name, column, value))
    return found


def traces(values, needles: list[str], places: list[tuple[float, float]]) -> list[tuple[str, str, object]]:
    """The values that contain a needle (as text) or are a coordinate of one of ``places``."""
    coordinates = [c for place in places for c in place]
    hits = []
    for table, column, value in values:
        if isinstance(value, float):
            if any(abs(value - c) < 1e-3 for c in coordinates):
                hits.append((table, column, value))
        elif any(needle.lower() in str(value).lower() for needle in needles):
            hits.append((table, column, value))
    return hits


async def test_nothing_of_a_tipster_outlives_the_retention_period(reunite, people, coordinator):
    case = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    await faces_done(reunite)
    tipster = people(7301, "Tessa", last_name="Quillfeather", username="tessa_q")
    reference = reference_in(await tipster.say(WORDS))
    tipster.user.send_location(*PIN)
    assert reference in await tipster.next_text()
    tipster.user.send_document(players_with_exif(), "pier.jpg", "image/jpeg")
    assert reference in await tipster.next_text()
    await match_alert(coordinator)
    await coordinator.say(f"/reply {reference} {TEAM_QUESTION}")
    assert TEAM_QUESTION in await tipster.next_text()
    assert reference in await tipster.say(ANSWER)
    # an update the bot cannot read is set aside with its raw payload (the sender's name and username)
    tipster.user.send_raw(poll=UNREADABLE_POLL)
    recent = people(7302, "Rolf")
    recent_reference = reference_in(await recent.say("A green van outside the school"))
    await faces_done(reunite)
    async with reunite.sessionmaker() as session:
        image = await session.scalar(select(TipMedia.sha256))
        case_photos = set(await session.scalars(select(CasePhoto.sha256)))
        # Rolf's tip came later: a month on, it is still within the period
        later = datetime.now(UTC) + timedelta(days=31)
        recent_tip = await session.scalar(select(Tip.id).where(Tip.reference == recent_reference))
        await session.execute(update(Tip).where(Tip.id == recent_tip).values(created_at=later, last_message_at=later))
        await session.execute(update(TipEntry).where(TipEntry.tip_id == recent_tip).values(created_at=later))
        await session.commit()
    needles = ["Kowloon ferry", "Which pier exactly", "clock tower", "Tessa", "Quillfeather", "tessa_q",
               CAMERA_TIME, "2026-11-30 14:15", image]
    places = [PIN, CAMERA_PLACE]
    stored = await every_stored_value(reunite)
    # the search finds them while they are kept (words, places, camera facts, the name in the set-aside update)
    found = {(table, column) for table, column, _ in traces(stored, needles, places)}
    assert {("tip_entries", "text"), ("tip_entries", "latitude"), ("tip_media", "gps_lat"),
            ("tip_media", "taken_at"), ("inbox", "payload")} <= found
    # a message sent keeps no content, only what the sender needs (its id, for replies to it)
    assert not [hit for hit in traces(stored, needles, places) if hit[0] == "outbox"]
    assert len(media_files(reunite.settings.media_dir)) > len(case_photos)  # the tip's image, a composite

    month_later = datetime.now(UTC) + timedelta(days=31)
    await retention.run(reunite.sessionmaker, reunite.settings.with_overrides(tip_retention_days=30), month_later)

    stored = await every_stored_value(reunite)
    assert traces(stored, needles, places) == []
    # not even the tipster's Telegram id: with their tips gone, they are not a user of ours any more
    assert [(table, column) for table, column, value in stored if isinstance(value, int) and value == tipster.id] == []
    assert media_files(reunite.settings.media_dir) == case_photos
    # the case and what came later stay
    async with reunite.sessionmaker() as session:
        assert (await session.get(Case, case.id)).status == cases.STATUS_ACTIVE
    assert "No tip" in await coordinator.say(f"/tip {reference}")
    assert "green van" in await coordinator.say(f"/tip {recent_reference}")
    # run again: nothing more to do, nothing breaks
    await retention.run(reunite.sessionmaker, reunite.settings.with_overrides(tip_retention_days=30), month_later)
    assert "green van" in await coordinator.say(f"/tip {recent_reference}")


async def test_a_sent_message_keeps_no_words(reunite, people, coordinator):
    tipster = people(7303, "Uma")
    reference = reference_in(await tipster.say("The bakery on Elm street, a girl crying"))
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        rows = list(await session.scalars(select(OutboxMessage)))
    assert rows and [(row.chat_id, row.method, row.payload) for row in rows if row.status == OUT_PENDING] == []
    assert not [row for row in rows if "Elm street" in row.payload or reference in row.payload
                or (row.digest_line or "")]
    # a Telegram reply to the acknowledgement still joins the tip: the message id is kept
    ack = tipster.received()[0]
    tipster.user.send_text("She wore a yellow coat", reply_to_message_id=ack["message_id"])
    assert reference in await tipster.next_text()


async def test_an_update_set_aside_is_kept_a_week_for_an_operator_handled_ones_two_days(reunite, people):
    person = people(7307, "Kai", username="kai_k")
    person.user.send_raw(poll=UNREADABLE_POLL)
    reference_in(await person.say("A tip after a strange update"))
    await settle(reunite)
    now = datetime.now(UTC)

    async def inbox():
        async with reunite.sessionmaker() as session:
            return list(await session.scalars(select(InboxUpdate)))

    assert len(await inbox()) == 2
    await retention.run(reunite.sessionmaker, reunite.settings, now + timedelta(days=3))
    [kept] = await inbox()
    assert kept.error.startswith("unreadable") and "kai_k" in kept.payload
    await retention.run(reunite.sessionmaker, reunite.settings, now + timedelta(days=8))
    assert await inbox() == []


async def test_closing_a_case_leaves_none_of_its_files_even_after_a_restart(stand_in, settings, people):
    coordinator = people(COORDINATOR_ID, "Coordinator", language_code="en")
    bot = await start_worker(stand_in, settings)
    try:
        async with bot.sessionmaker() as session:
            await users.set_role(session, await session.get(users.User, ADMIN_ID), COORDINATOR_ID, "coordinator")
            await session.commit()
        case = await seed_case(bot, agency_phone="+86 10 1111 1111")
        await faces_done(bot)
        await coordinator.say(f"/flyer {case.code}")
        await settle(bot)
        async with bot.sessionmaker() as session:
            first_flyers = set(await session.scalars(select(FlyerFile.sha256)))
            await session.execute(update(Case).where(Case.id == case.id)
                                  .values(agency_phone="+86 10 2222 2222", updated_at=datetime.now(UTC)))
            await session.commit()
        await coordinator.say(f"/flyer {case.code}")
        await settle(bot)
        async with bot.sessionmaker() as session:
            second_flyers = set(await session.scalars(select(FlyerFile.sha256)))
        assert first_flyers and second_flyers and not first_flyers & second_flyers
        # the flyers with the old phone number are gone as soon as new ones replace them
        assert not first_flyers & media_files(settings.media_dir)

        tipster = people(7304, "Vic")
        tipster.user.send_photo(jpeg(Image.open(packaged_image("players.jpg"))))
        reference_in(await tipster.next_text())
        await match_alert(coordinator)
    finally:
        await bot.stop()  # a restart: what the old process knew only in memory is lost
    bot = await start_worker(stand_in, settings)
    try:
        async with bot.sessionmaker() as session:
            tip_image = await session.scalar(select(TipMedia.sha256))
        assert "closed: found" in await coordinator.say(f"/close {case.code} found")
        await faces_done(bot)

        async def only_the_tip_image_left():
            return media_files(settings.media_dir) == {tip_image}

        # the tip's photo stays for its retention period; the case's photos, flyers and composites are gone
        await until(only_the_tip_image_left, timeout=15, what="the case's files deleted")
    finally:
        await bot.stop()


async def test_privacy_says_how_long_a_tip_is_kept(reunite, people):
    assert "deleted 1825 days after its last message" in await people(7305, "Ana").say("/privacy")
    assert "1825 天后删除" in await people(7306, "李", language_code="zh").say("/privacy")
