"""Flow 3 through the stand-in: a family reports a missing person with /report (Skip, Back, /cancel,
bad answers, photos with ages, a restart and a day away), sees /mycases, and can /edit, /addphoto and
/found their case; nobody else can."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import select, update

from bot.db.models import AuditEvent, Case, CasePhoto, ConversationState
from bot.services.case_fields import FieldError, parse_age
from tests.conftest import packaged_image, settle, start_worker
from tests.helpers import code_in, jpeg_bytes, press, seed_case, send_photo

STICKER = {"sticker": {"file_id": "CAACstk1", "file_unique_id": "stk1", "width": 512, "height": 512,
                       "is_animated": False, "is_video": False, "type": "regular"}}


async def case_by_code(reunite, code: str) -> Case:
    async with reunite.sessionmaker() as session:
        return await session.scalar(select(Case).where(Case.code == code))


async def photos_of(reunite, case: Case) -> list[CasePhoto]:
    async with reunite.sessionmaker() as session:
        return list(await session.scalars(select(CasePhoto).where(CasePhoto.case_id == case.id)
                                          .order_by(CasePhoto.id)))


async def answer(person, send) -> str:
    """``send()`` something other than text (a location, a file...); the bot's next answer."""
    person.cursor = len(person.received())
    send()
    return await person.next_text()


async def test_a_family_reports_a_case_step_by_step(reunite, people, coordinator, quick_chats):
    mother = people(801, "Mei")
    assert "full name" in await mother.say("/report")
    assert "Li Wei" in await mother.say("Li Wei")  # other names of Li Wei?
    assert "male or female" in await press(mother, "Skip ›")
    assert "born" in await press(mother, "Male")
    assert "last seen" in await mother.say("2009-05-02")
    assert "Where was Li Wei last seen" in await mother.say("2024-03-14 15:30")
    assert "location" in await mother.say("Chaoyang Park south gate, Beijing")
    assert "How tall" in await answer(mother, lambda: mother.user.send_location(39.9337, 116.4755))
    assert "build" in await mother.say("1.62 m")
    went_back = await press(mother, "‹ Back")
    assert "How tall" in went_back and "Now: 162 cm" in went_back
    assert "build" in await mother.say("158")
    assert "hair" in await mother.say("Slim")
    assert "eyes" in await mother.say("Short, black")
    assert "recognise" in await press(mother, "Skip ›")
    assert "wearing" in await mother.say("Scar above left eyebrow")
    assert "What happened" in await mother.say("Blue school uniform, red backpack")
    assert "police" in await mother.say("Left school at 15:00 and did not arrive home.")
    assert "phone number" in await mother.say("Chaoyang Police")
    assert "report number" in await mother.say("+86 10 6509 1234")
    assert "reach you" in await press(mother, "Skip ›")
    assert "print your contact" in await mother.say("+86 138 0013 8000")
    assert "language" in await press(mother, "No, keep it private")
    assert "photos of Li Wei" in await press(mother, "简体中文")
    assert "Photos saved: 1" in await send_photo(mother, packaged_image("yaoming.jpg").read_bytes(), "14")
    assert "photo 2" in await send_photo(mother, packaged_image("t1.jpg").read_bytes())
    assert "Photos saved: 2" in await mother.say("7岁")
    filed = await press(mother, "Done ✓")
    code = code_in(filed)
    assert "Li Wei" in filed and "/flyer" in filed

    case = await case_by_code(reunite, code)
    assert case.status == "pending_review" and case.reported_by == mother.id
    assert (case.name, case.other_names, case.sex, case.birth_year) == ("Li Wei", None, "male", 2009)
    assert case.date_of_birth.isoformat() == "2009-05-02"
    assert case.missing_since == datetime(2024, 3, 14, 15, 30, tzinfo=UTC) and case.missing_since_has_time
    assert (round(case.last_seen_lat, 4), round(case.last_seen_lon, 4)) == (39.9337, 116.4755)
    assert (case.height_cm, case.hair, case.eyes) == (158, "Short, black", None)
    assert (case.agency_phone, case.agency_reference) == ("+86 10 6509 1234", None)
    assert case.family_contact == "+86 138 0013 8000" and case.family_contact_public is False
    assert case.language == "zh"
    photos = await photos_of(reunite, case)
    assert [(p.age_years, p.is_primary, p.face_status, p.added_by) for p in photos] == [
        (14.0, True, "pending", mother.id), (7.0, False, "pending", mother.id)]
    async with reunite.sessionmaker() as session:
        assert await session.get(ConversationState, mother.id) is None

    alert = (await coordinator.wait(1, predicate=lambda m: code in (m.get("text") or "")))[-1]["text"]
    assert "review" in alert and "Li Wei" in alert and f"/verify {code}" in alert
    mine = await mother.say("/mycases")
    assert code in mine and "waiting for review" in mine


async def test_bad_answers_are_explained_and_nothing_is_lost(reunite, people, quick_chats):
    family = people(802, "Dana")
    await family.say("/report")
    assert "500 characters at most" in await family.say("x" * 501)
    # right-to-left text and emoji, 500 characters
    name = ("محمد بن سلمان 😀👨‍👩‍👧 Ali " * 20)[:499] + "!"
    assert "other names" in await family.say(name)
    sex_question = await family.say("/skip")
    assert "male or female" in sex_question
    question_message = family.received()[-1]
    assert "tap one of the buttons" in await family.say("maybe")
    assert "born" in await family.say("女")  # a button's label, typed, in either language
    assert "earlier question" in await press_on(family, question_message, "Male")
    assert "couldn't read that date" in await family.say("next tuesday")
    assert "in the future" in await family.say("2099-01-01")
    assert "last seen" in await family.say("2009")
    assert "We need this one" in await family.say("/skip")
    assert "Done comes after the photos" in await family.say("/done")
    assert "Where was" in await family.say("14.3.2024")
    assert "can't use that here" in await answer(family, lambda: family.user.send_raw(**STICKER))
    assert "location" in await family.say("שוק הכרמל 🏪 Tel Aviv")
    assert "coordinates" in await family.say("somewhere near the market")
    assert "How tall" in await family.say("32.0684, 34.7700")
    for _ in range(11):  # height ... family contact: all optional
        reply = await press(family, "Skip ›")
    assert "language" in reply
    assert "photos of" in await press(family, "English")
    assert "send a photo" in await family.say("here it comes")
    assert "at least one photo" in await family.say("/done")
    assert "not a photo" in await answer(family, lambda: family.user.send_document(b"%PDF-1.4", "a.pdf",
                                                                                 "application/pdf"))
    assert "too small" in await send_photo(family, jpeg_bytes(60, 60))
    assert "too large" in await answer(family, lambda: family.user.send_document(bomb_png(), "big.png", "image/png"))
    truncated = packaged_image("t1.jpg").read_bytes()[:5000]
    unreadable = await answer(family, lambda: family.user.send_document(truncated, "t.jpg", "image/jpeg"))
    assert "could not open" in unreadable
    assert "what you saw" not in unreadable  # the tip line's wording, not a family's
    assert "photo 1" in await send_photo(family, packaged_image("yaoming.jpg").read_bytes(), "her at school")
    assert "age in years" in await family.say("200")
    assert "Photos saved: 1" in await press(family, "Skip ›")
    code = code_in(await press(family, "Done ✓"))

    case = await case_by_code(reunite, code)
    assert case.name == name and case.sex == "female" and case.birth_year == 2009 and case.date_of_birth is None
    assert case.last_seen_place == "שוק הכרמל 🏪 Tel Aviv" and case.missing_since_has_time is False
    assert [p.age_years for p in await photos_of(reunite, case)] == [None]


async def press_on(person, message: dict, label: str) -> str:
    person.cursor = len(person.received())
    person.user.press(message, label)
    return await person.next_text()


def bomb_png() -> bytes:
    """A small file that decodes to 100 megapixels."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_a_report_survives_a_restart_and_a_day_away(stand_in, settings, people, quick_chats):
    family = people(803, "Sam")
    first = await start_worker(stand_in, settings)
    try:
        await family.say("/report")
        assert "other names" in await family.say("Tom Lee")
        await settle(first)
    finally:
        await first.stop()
    second = await start_worker(stand_in, settings)
    try:
        assert "male or female" in await family.say("Tommy")
        async with second.sessionmaker() as session:
            await session.execute(update(ConversationState).values(
                updated_at=datetime.now(UTC) - timedelta(days=1)))
            await session.commit()
        # a day later the first message is not taken as an answer: it shows where they were
        welcome = await family.say("I saw a boy at the station")
        assert "Welcome back" in welcome and "male or female" in welcome
        assert "born" in await press(family, "Male")
        resumed = await family.say("/report")
        assert "in progress" in resumed and "born" in resumed
        assert "cancelled" in await family.say("/cancel")
        # and outside the report, a message is a tip again
        assert "T-" in await family.say("I saw a boy at the station")
        async with second.sessionmaker() as session:
            assert list(await session.scalars(select(Case))) == []
    finally:
        await second.stop()


async def test_the_family_edits_adds_photos_and_says_found_and_nobody_else_can(
        reunite, people, coordinator, quick_chats):
    family, stranger = people(804, "Ann"), people(805, "Eve")
    # not public yet: changes apply at once (a public case's wait for review: tests/test_case_changes.py)
    case = await seed_case(reunite, status="pending_review", family_id=family.id)

    assert "What would you like to change" in await family.say(f"/edit {case.code.lower()}")
    height = await press(family, "Height")
    assert "How tall" in height and "Now:" not in height
    assert f"Height of {case.code} is updated" in await family.say("171 cm")
    assert "male or female" in (await _edit(family, case, "Sex"))
    assert "updated" in await press(family, "Female")
    other_names = await _edit(family, case, "Other names")
    assert "Now: 李伟" in other_names
    assert "updated" in await press(family, "Remove")
    edited = await case_by_code(reunite, case.code)
    assert (edited.height_cm, edited.sex, edited.other_names) == (171, "female", None)

    assert "photos of Li Wei" in await family.say(f"/addphoto {case.code}")
    assert "Photos saved: 1" in await send_photo(family, packaged_image("t1.jpg").read_bytes(), "9")
    assert "1 photo(s) added" in await press(family, "Done ✓")
    assert [p.age_years for p in await photos_of(reunite, case)] == [14.0, 9.0]

    assert "close the appeal" in await family.say(f"/found {case.code}")
    found = await coordinator.wait(1, predicate=lambda m: "found" in (m.get("text") or "")
                                   and case.code in (m.get("text") or ""))
    assert f"/close {case.code} found" in found[-1]["text"]

    # someone else gets the very answer a code that does not exist gets
    not_theirs = await stranger.say(f"/edit {case.code}")
    assert not_theirs == (await stranger.say("/edit C-000000")).replace("C-000000", case.code)
    for command in ("/addphoto", "/found", "/flyer"):
        assert "can't find case" in await stranger.say(f"{command} {case.code}")
    async with reunite.sessionmaker() as session:
        events = await session.scalars(select(AuditEvent).where(AuditEvent.object_ref == case.code))
        actions = {event.action for event in events}
    assert {"case.edit", "case.photo.add", "case.found_reported"} <= actions


async def _edit(person, case, label: str) -> str:
    await person.say(f"/edit {case.code}")
    return await press(person, label)


@pytest.mark.parametrize("caption, years", [("7", 7), ("age 11", 11), ("Aged 7 yo", 7), ("age: 4", 4), ("at 3", 3),
                                             ("7 years old", 7), ("18 months", 1.5), ("年龄7岁", 7), ("18个月", 1.5)])
def test_a_photos_age_is_read_as_families_write_it(caption, years):
    """The photo step says "you can write their age as the caption": "age 11" counts, not only "11"."""
    assert parse_age(caption) == years


@pytest.mark.parametrize("caption", ["age", "photo from 2010", "ages 3 and 5", "150"])
def test_a_caption_that_is_not_an_age_is_not_taken_for_one(caption):
    with pytest.raises(FieldError):
        parse_age(caption)

