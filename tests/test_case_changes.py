"""A family's change to a public case waits for a coordinator, through the stand-in: /edit and
/addphoto on an active case reach neither the card, the flyer nor face matching until approved (the
alert shows old beside new, the new photo itself); approval applies it, rejection tells the family.
Coordinators' own changes, and any change to a case not yet public, apply at once."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from bot.db.models import AuditEvent, Case, CaseChange, CasePhoto
from bot.services.media import media_path
from tests.conftest import COORDINATOR_ID, packaged_image, settle
from tests.helpers import press, seed_case, send_photo
from tests.test_flyer_delivery import flyer_messages
from tests.test_flyers import pdf_text, squash

OLD_PHONE, NEW_PHONE = "+86 10 6509 1234", "+86 999 0000 1111"


async def case_now(reunite, case_id: int) -> Case:
    async with reunite.sessionmaker() as session:
        return await session.get(Case, case_id)


async def case_photos(reunite, case_id: int) -> list[CasePhoto]:
    async with reunite.sessionmaker() as session:
        return list(await session.scalars(select(CasePhoto).where(CasePhoto.case_id == case_id)
                                          .order_by(CasePhoto.id)))


async def flyer_text(person, stand_in, code: str) -> str:
    """What the printable flyer ``person`` gets with /flyer says, without spaces."""
    _, document = await flyer_messages(person, f"/flyer {code}")
    return squash(pdf_text(stand_in.file_bytes(document["document"]["file_id"])))


async def alert_about(person, pattern: str, nth: int = 1) -> dict:
    """The ``nth`` message ``person`` got (or gets) whose text matches ``pattern``."""
    wanted = re.compile(pattern, re.DOTALL)
    return (await person.wait(nth, predicate=lambda m: bool(wanted.search(m.get("text") or ""))))[nth - 1]


def change_number(alert: dict) -> int:
    return int(re.search(r"Change (\d+)", alert["text"]).group(1))


async def edit_field(person, code: str, label: str) -> str:
    """``person`` picks ``label`` under /edit ``code`` (on that very menu, whatever came after it);
    the question the bot then asks."""
    await person.say(f"/edit {code}")
    menu = person.received()[person.cursor - 1]
    person.cursor = len(person.received())
    person.user.press(menu, label)
    return await person.next_text()


async def photo_of_change(coordinator, number: int) -> dict:
    """The new photo of change ``number``, as shown to ``coordinator`` after its alert."""
    return (await coordinator.wait(1, predicate=lambda m: bool(m.get("photo"))
                                   and f"Change {number} " in (m.get("caption") or "")))[-1]


async def test_a_familys_change_to_a_public_case_waits_for_a_coordinator(
        reunite, people, coordinator, stand_in, quick_chats):
    family, stranger = people(1401, "Ann"), people(1402, "Eve")
    case = await seed_case(reunite, family_id=family.id)
    assert squash(OLD_PHONE) in await flyer_text(family, stand_in, case.code)

    # a new agency phone: the family is told it waits, the case and its flyer do not change
    await edit_field(family, case.code, "Agency phone")
    assert "once our team has checked it" in await family.say(NEW_PHONE)
    assert (await case_now(reunite, case.id)).agency_phone == OLD_PHONE
    flyer = await flyer_text(family, stand_in, case.code)
    assert squash(OLD_PHONE) in flyer and squash(NEW_PHONE) not in flyer
    alert = await alert_about(coordinator, rf"{case.code}.*Agency phone")
    assert f"Now: {OLD_PHONE}" in alert["text"] and f"Asked: {NEW_PHONE}" in alert["text"]
    phone_change = change_number(alert)
    assert "changes waiting for your review: 1" in await coordinator.say(f"/case {case.code}")

    # nobody but a coordinator may decide it
    assert "for coordinators" in await stranger.say(f"/approve_change {phone_change}")
    assert "for coordinators" in await family.say(f"/approve_change {phone_change}")
    coordinator.user.press(alert, "Approve ✓")
    await alert_about(coordinator, rf"Change {phone_change} to {case.code} is approved")
    assert "Agency phone" in (await alert_about(family, "on the appeal now"))["text"]
    assert (await case_now(reunite, case.id)).agency_phone == NEW_PHONE
    assert squash(NEW_PHONE) in await flyer_text(family, stand_in, case.code)  # the flyer re-rendered
    coordinator.user.press(alert, "Reject ✗")  # a second press changes nothing
    await alert_about(coordinator, rf"Change {phone_change} to {case.code} was decided already: approved")

    # new photos: shown to coordinators, kept off the case (and face matching) until approved
    await family.say(f"/addphoto {case.code}")
    await send_photo(family, packaged_image("t1.jpg").read_bytes(), "9")
    assert "once our team has checked them" in await press(family, "Done ✓")
    assert len(await case_photos(reunite, case.id)) == 1
    photo_alert = await alert_about(coordinator, rf"^📷 Change \d+ to {case.code}")
    assert "age 9" in (await photo_of_change(coordinator, change_number(photo_alert)))["caption"]
    listing = await coordinator.say("/changes")
    assert f"Change {change_number(photo_alert)}" in listing and f"Change {phone_change}" not in listing
    coordinator.user.press(photo_alert, "Approve ✓")
    await alert_about(family, "on the appeal now", nth=2)
    photos = await case_photos(reunite, case.id)
    assert [p.age_years for p in photos] == [14.0, 9.0] and photos[1].added_by == family.id
    for _ in range(100):  # the new photo goes through face matching, as any case photo
        if (await case_photos(reunite, case.id))[1].face_status != "pending":
            break
        await asyncio.sleep(0.1)
    assert (await case_photos(reunite, case.id))[1].face_status == "done"

    # a rejected photo: the family reads why, the case keeps its photos, the file is gone
    await family.say(f"/addphoto {case.code}")
    await send_photo(family, packaged_image("gdp.jpg").read_bytes(), "10")
    await press(family, "Done ✓")
    rejected_alert = await alert_about(coordinator, rf"^📷 Change \d+ to {case.code}", nth=2)
    rejected = change_number(rejected_alert)
    await photo_of_change(coordinator, rejected)
    async with reunite.sessionmaker() as session:
        change = await session.get(CaseChange, rejected)
    sha = re.search(r'"sha256": "(\w+)"', change.proposed).group(1)
    assert media_path(reunite.settings.media_dir, sha).exists()
    assert f"Change {rejected}" in await coordinator.say(f"/reject_change {rejected} It is not Li Wei.")
    assert "It is not Li Wei." in (await alert_about(family, r"did not make your change"))["text"]
    assert len(await case_photos(reunite, case.id)) == 2
    assert not media_path(reunite.settings.media_dir, sha).exists()
    assert "No changes" in await coordinator.say("/changes")

    async with reunite.sessionmaker() as session:
        events = [(e.actor_id, e.action) for e in await session.scalars(
            select(AuditEvent).where(AuditEvent.object_ref == case.code).order_by(AuditEvent.id))]
    assert events.count((family.id, "case.change.ask")) == 3
    assert events.count((COORDINATOR_ID, "case.change.approve")) == 2
    assert (COORDINATOR_ID, "case.change.reject") in events


async def test_changes_that_publish_nothing_new_apply_at_once(reunite, people, coordinator, quick_chats):
    family = people(1403, "Bo")
    pending = await seed_case(reunite, status="pending_review", family_id=family.id)
    public = await seed_case(reunite, family_id=family.id, name="Zhang Min", family_contact="+86 138 0000 0000")

    # a case still waiting for review: nothing of it is public yet
    await edit_field(family, pending.code, "Name")
    assert "is updated" in await family.say("Li Wei Jr")
    await family.say(f"/addphoto {pending.code}")
    await send_photo(family, packaged_image("t1.jpg").read_bytes(), "9")
    assert "added" in await press(family, "Done ✓")
    assert (await case_now(reunite, pending.id)).name == "Li Wei Jr"
    assert len(await case_photos(reunite, pending.id)) == 2

    # the family's own contact, which the flyer does not print
    await edit_field(family, public.code, "Family contact")
    assert "is updated" in await family.say("+86 139 1111 2222")
    assert (await case_now(reunite, public.id)).family_contact == "+86 139 1111 2222"
    await alert_about(coordinator, rf"The family changed {public.code}")  # still shown to coordinators

    # a coordinator's edit of a public case
    await edit_field(coordinator, public.code, "Name")
    assert "is updated" in await coordinator.say("Zhang Min (Mimi)")
    assert (await case_now(reunite, public.id)).name == "Zhang Min (Mimi)"
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        assert list(await session.scalars(select(CaseChange))) == []


async def test_closing_a_case_withdraws_its_waiting_changes(reunite, people, coordinator, quick_chats):
    family = people(1404, "Cy")
    case = await seed_case(reunite, family_id=family.id)
    await family.say(f"/addphoto {case.code}")
    await send_photo(family, packaged_image("t1.jpg").read_bytes(), "9")
    await press(family, "Done ✓")
    alert = await alert_about(coordinator, rf"^📷 Change \d+ to {case.code}")
    await photo_of_change(coordinator, change_number(alert))
    async with reunite.sessionmaker() as session:
        change = await session.get(CaseChange, change_number(alert))
    sha = re.search(r'"sha256": "(\w+)"', change.proposed).group(1)
    assert "closed" in await coordinator.say(f"/close {case.code} found")
    assert "case was closed" in await coordinator.say(f"/approve_change {change.id}")
    assert not media_path(reunite.settings.media_dir, sha).exists()
    assert "No changes" in await coordinator.say("/changes")
    assert await case_photos(reunite, case.id) == []  # a closed case's photos go too (retention)
