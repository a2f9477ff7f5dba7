"""Invisible characters that change how text reads (bidirectional overrides, zero-width characters)
are stripped from everything people type, at one place, before any handler reads it; right-to-left
scripts are untouched; a phone number is digits, spaces and + ( ) - only (issue 14, item 10)."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db.models import Case, TipEntry
from bot.services.text_input import clean_text
from tests.helpers import all_rows, press, reference_in, seed_case
from tests.test_case_import import photo_folder, run_import

# "Call 555 0123": shown reversed on a flyer with the override, and a zero-width space in the name
REVERSED_PHONE = "+86 \u202e3210 555\u202c"
HIDDEN = "Li\u200b Wei\ufeff\u2066\u2069"
ARABIC_AND_HEBREW = "رأيته قرب المحطة — ראיתי אותו ליד התחנה"


def test_right_to_left_text_persian_joiners_and_emoji_sequences_are_kept():
    assert clean_text(ARABIC_AND_HEBREW) == ARABIC_AND_HEBREW
    persian = "می\u200cخواهم"  # the non-joiner belongs between those letters
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert clean_text(persian) == persian and clean_text(family) == family
    assert clean_text("a\u200d b \u200cc") == "a b c"


async def test_a_tip_reaches_coordinators_without_invisible_characters(reunite, people, coordinator):
    person = people(1410, "Ana")
    person.user.send_text(f"Saw {HIDDEN} at the market, call {REVERSED_PHONE}")
    reference = reference_in(await person.next_text())
    person.user.send_text(ARABIC_AND_HEBREW)
    assert reference in await person.next_text()
    assert [entry.text for entry in await all_rows(reunite, TipEntry)] == [
        "Saw Li Wei at the market, call +86 3210 555", ARABIC_AND_HEBREW]
    alerts = " ".join(message.get("text") or "" for message in await coordinator.wait(2))
    assert "Li Wei" in alerts and "+86 3210 555" in alerts and ARABIC_AND_HEBREW in alerts
    assert not any(char in alerts for char in "\u202e\u202c\u200b\ufeff\u2066\u2069")


async def test_case_particulars_are_cleaned_and_a_phone_must_look_like_one(reunite, people, quick_chats):
    """/edit (as /report: the same questions) of a case waiting for review."""
    family = people(1411, "Mei")
    case = await seed_case(reunite, status="pending_review", family_id=family.id)
    await family.say(f"/edit {case.code}")
    assert "phone number" in await press(family, "Agency phone")
    assert "use only digits, spaces and + ( ) -" in await family.say("call the police station")
    assert "updated" in await family.say(REVERSED_PHONE)
    await family.say(f"/edit {case.code}")
    await press(family, "Other names")
    assert "updated" in await family.say(f"{HIDDEN} / {ARABIC_AND_HEBREW}")
    await family.say(f"/edit {case.code}")
    await press(family, "Agency phone")
    assert "updated" in await family.say("＋８６ (10) ６５０９-１２３４")  # typed on a full-width keyboard
    async with reunite.sessionmaker() as session:
        edited = await session.scalar(select(Case).where(Case.code == case.code))
    assert edited.agency_phone == "+86 (10) 6509-1234"
    assert edited.other_names == f"Li Wei / {ARABIC_AND_HEBREW}"


async def test_the_import_cleans_text_and_refuses_a_phone_that_is_not_one(settings, tmp_path):
    photo_folder(tmp_path)
    line = {"name": HIDDEN, "missing_since": "2020-01-01", "last_seen_place": ARABIC_AND_HEBREW,
            "agency_phone": REVERSED_PHONE, "photos": [{"path": "photos/face.jpg"}]}
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(record, ensure_ascii=False) for record in
                              [line, {**line, "agency_phone": "110 or 120"}]) + "\n", encoding="utf-8")
    status, results, err = await run_import(settings, path, "--skip-faces")
    assert status == 0, err
    assert "code" in results[0]
    assert results[1] == {"line": 2, "error": "agency_phone is not a phone number (digits, spaces and + ( ) - only)"}
    from tests.test_case_import import imported_cases

    ((case, _),), _ = await imported_cases(settings)
    assert (case.name, case.last_seen_place, case.agency_phone) == ("Li Wei", ARABIC_AND_HEBREW, "+86 3210 555")
