"""Flow 1 through the stand-in: a person writes, the tip is kept, they get a reference, coordinators
are alerted; joining rules, albums, images as files, locations, deep links."""

from __future__ import annotations

import io
from datetime import timedelta

from PIL import Image
from sqlalchemy import select

from bot.db.models import Tip, TipEntry, TipMedia
from bot.services import cases
from bot.services.media import media_path
from tests.conftest import settle
from tests.helpers import age_tips, exif_with_gps_and_time, jpeg_bytes, reference_in


async def tip_by_reference(reunite, reference: str) -> Tip:
    async with reunite.sessionmaker() as session:
        from bot.services import tips

        return await tips.by_reference(session, reference)


async def test_text_tip_is_kept_and_acknowledged_with_reference(reunite, people, coordinator):
    alice = people(501, "Alice")
    answer = await alice.say("I saw a boy in a red coat at Central Station, 5pm")
    reference = reference_in(answer)
    assert "saved" in answer and "danger" in answer
    tip = await tip_by_reference(reunite, reference)
    assert tip.entries[0].text == "I saw a boy in a red coat at Central Station, 5pm"
    assert tip.tipster_id == alice.id and tip.status == "new"
    alert = (await coordinator.wait(1))[0]["text"]
    assert reference in alert and tip.alias in alert and "red coat" in alert


async def test_chinese_speaker_is_answered_in_chinese_and_can_switch(reunite, people, stand_in):
    ming = people(502, "小明", language_code="zh-hans")
    answer = await ming.say("我在火车站看到一个穿红衣服的男孩")
    assert "线索" in answer and reference_in(answer)
    await ming.say("/language")
    keyboard_message = ming.received()[-1]
    ming.user.press(keyboard_message, "English")
    done = await ming.next_text()
    assert "English" in done
    assert "Added to your tip" in await ming.say("also he had a blue bag")


async def test_messages_join_the_latest_tip_within_ten_minutes(reunite, people, coordinator):
    bob = people(503, "Bob")
    first = reference_in(await bob.say("A girl crying near the bus stop"))
    second = await bob.say("She was with a tall man")
    assert "Added" in second and reference_in(second) == first
    # eleven minutes later a message starts a new tip
    await age_tips(reunite, timedelta(minutes=11))
    third = await bob.say("Another thing entirely")
    assert reference_in(third) != first and "saved" in third


async def test_telegram_reply_to_an_acknowledgement_joins_that_tip(reunite, people):
    carol = people(504, "Carol")
    first = reference_in(await carol.say("Seen at the market"))
    ack_message = carol.received()[-1]
    await settle(reunite)
    await age_tips(reunite, timedelta(hours=3))
    joined = await carol.say("Forgot: it was on Tuesday", reply_to_message_id=ack_message["message_id"])
    assert reference_in(joined) == first


async def test_album_is_one_tip_with_one_acknowledgement(reunite, people, coordinator):
    dave = people(505, "Dave")
    dave.user.send_album([jpeg_bytes(colour=(200, 0, 0)), jpeg_bytes(colour=(0, 200, 0)),
                          jpeg_bytes(colour=(0, 0, 200))], caption="At the park gate")
    await dave.wait(1)
    await settle(reunite)
    assert len(dave.received()) == 1
    reference = reference_in(dave.received()[0]["text"])
    tip = await tip_by_reference(reunite, reference)
    assert len(tip.media) == 3
    # coordinators get the three stripped photos as one album, not forwards
    photos = [m for m in coordinator.received() if m.get("photo")]
    assert len(photos) == 3
    assert all(m["_method"] == "sendMediaGroup" for m in photos)
    assert all("forward_origin" not in m and "forward_from" not in m for m in photos)
    assert reference in photos[0]["caption"]


async def test_image_sent_as_file_keeps_time_and_gps_for_coordinators_but_not_in_the_file(
        reunite, people, coordinator, stand_in):
    erin = people(506, "Erin")
    exif = exif_with_gps_and_time(51.50135, -0.14189, "2026:11:20 17:45:03")
    erin.user.send_document(jpeg_bytes(1600, 1200, exif=exif), "IMG_2041.jpg", "image/jpeg")
    reference = reference_in((await erin.wait(1))[0]["text"])
    await settle(reunite)
    tip = await tip_by_reference(reunite, reference)
    media = tip.media[0]
    assert media.taken_at == "2026:11:20 17:45:03"
    assert abs(media.gps_lat - 51.50135) < 1e-4 and abs(media.gps_lon + 0.14189) < 1e-4
    stored = media_path(reunite.settings.media_dir, media.sha256).read_bytes()
    assert not Image.open(io.BytesIO(stored)).getexif()
    photo = [m for m in coordinator.received() if m.get("photo")][0]
    sent = stand_in.file_bytes(photo["photo"][-1]["file_id"])
    assert not Image.open(io.BytesIO(sent)).getexif()
    assert "2026:11:20 17:45:03" in photo["caption"] and "51.50135" in photo["caption"]


async def test_exif_orientation_is_applied_before_stripping(reunite, people):
    frank = people(507, "Frank")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    frank.user.send_document(jpeg_bytes(800, 400, exif=exif), "sideways.jpg", "image/jpeg")
    reference = reference_in((await frank.wait(1))[0]["text"])
    tip = await tip_by_reference(reunite, reference)
    assert (tip.media[0].width, tip.media[0].height) == (400, 800)


async def test_location_joins_the_tip_and_reaches_coordinators_as_a_map_link(reunite, people, coordinator):
    gina = people(508, "Gina")
    reference = reference_in(await gina.say("He is sitting on a bench here"))
    gina.user.send_location(48.85837, 2.29448)
    added = await gina.next_text()
    assert reference_in(added) == reference
    alerts = await coordinator.wait(2)
    assert "openstreetmap.org/?mlat=48.85837&mlon=2.29448" in alerts[-1]["text"]
    tip = await tip_by_reference(reunite, reference)
    assert [e.kind for e in tip.entries] == ["text", "location"]


async def test_flyer_deep_link_starts_a_tip_about_an_active_case(reunite, people, coordinator):
    async with reunite.sessionmaker() as session:
        active = await cases.create_case(session, name="Li Wei", status=cases.STATUS_ACTIVE)
        pending = await cases.create_case(session, name="Hidden Person")
        closed = await cases.create_case(session, name="Found Person", status=cases.STATUS_FOUND)
        await session.commit()
    hana = people(509, "Hana")
    hana_answer = await hana.say(f"/start c_{active.deep_link_token}")
    assert "Li Wei" in hana_answer and active.code in hana_answer
    reference = reference_in(await hana.say("I think I saw him in the park"))
    tip = await tip_by_reference(reunite, reference)
    assert tip.case_id == active.id
    alert = (await coordinator.wait(1))[0]["text"]
    assert active.code in alert and "Li Wei" in alert

    ivan = people(510, "Ivan")
    not_active = await ivan.say(f"/start c_{pending.deep_link_token}")
    assert "not an active appeal" in not_active and "Hidden Person" not in not_active
    assert "not an active appeal" in await ivan.say("/start c_doesnotexist123")
    assert "closed" in await ivan.say(f"/start c_{closed.deep_link_token}")
    # and then a general tip is taken
    general = reference_in(await ivan.say("Something else I saw"))
    assert (await tip_by_reference(reunite, general)).case_id is None


async def test_start_help_and_privacy_say_what_to_do_in_an_emergency(reunite, people):
    jo = people(511, "Jo")
    for command in ("/start", "/help", "/privacy"):
        assert "emergency" in await jo.say(command)
    zh = people(512, "李", language_code="zh")
    assert "紧急" in await zh.say("/start")


async def test_tip_is_committed_before_it_is_acknowledged(reunite, people, stand_in):
    kim = people(513, "Kim")
    answer = await kim.say("Committed first?")
    reference = reference_in(answer)
    # the acknowledgement's own outbox row was written in the tip's transaction
    async with reunite.sessionmaker() as session:
        from bot.db.models import OutboxMessage

        tip = await session.scalar(select(Tip).where(Tip.reference == reference))
        ack = await session.scalar(select(OutboxMessage).where(OutboxMessage.tip_id == tip.id))
        assert ack.created_at >= tip.created_at and ack.status in ("sent", "pending")
        entries = await session.scalars(select(TipEntry).where(TipEntry.tip_id == tip.id))
        assert [e.text for e in entries] == ["Committed first?"]
    assert (await all_media(reunite)) == []


async def all_media(reunite):
    async with reunite.sessionmaker() as session:
        return list(await session.scalars(select(TipMedia)))
