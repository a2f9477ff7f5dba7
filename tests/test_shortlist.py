"""A case's shortlist (/shortlist C-XXXXXX, issue 13 item 3) end to end, through the stand-in on SQLite
and PostgreSQL, with the real models and the sample photos of the installed wheels.

The case photo is yaoming.jpg; tips show players.jpg (Yao Ming is the tallest player, among 17 other
faces) and t1.jpg (six other people). Yao Ming's face in players.jpg passes the review floor (a match
alert); the others do not, and are on the shortlist all the same.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import pytest
from PIL import Image
from sqlalchemy import func, select, update

from bot.db.models import (
    MATCH_CONFIRMED,
    MATCH_REJECTED,
    OUT_PENDING,
    AuditEvent,
    Case,
    CasePhoto,
    Face,
    MatchCandidate,
    OutboxMessage,
    Tip,
    TipMedia,
)
from bot.services import cases, media, retention
from tests.conftest import COORDINATOR_ID, packaged_image, settle
from tests.helpers import reference_in
from tests.test_matching import (
    YAO_MING_SAME_PHOTO,
    buttons,
    composite_tile,
    faces_done,
    image_bytes,
    is_match_alert,
    jpeg,
    rows,
    scalar,
    similarity_to,
    until,
)

FAMILY_ID = 7180

@pytest.fixture
def settings(settings):
    """A fixed review floor: these tests are about the shortlist, not about how the floor follows the
    open reference faces (with one open case that floor is low, and most tip faces pass it)."""
    return settings.with_overrides(match_threshold=4.0)



async def yao_ming_case(reunite, age: float = 24.0) -> Case:
    """An active case whose one photo, at ``age``, is yaoming.jpg, reported by FAMILY_ID."""
    from bot.services import users

    image = media.store_image(image_bytes("yaoming.jpg"), reunite.settings.media_dir)
    async with reunite.sessionmaker() as session:
        await users.get_or_create(session, FAMILY_ID, "en", frozenset())
        case = await cases.create_case(session, name="Yao Ming", status=cases.STATUS_ACTIVE, reported_by=FAMILY_ID)
        await cases.add_photos(session, case, [cases.NewPhoto(image.sha256, image.width, image.height, age)],
                               FAMILY_ID, datetime.now(UTC))
        await session.commit()
    reunite.face_worker.wake()
    return case


async def send_tip(person, name: str) -> str:
    """``person`` sends a sample photo as a tip; its reference."""
    person.cursor = len(person.received())
    person.user.send_photo(image_bytes(name))
    return reference_in(await person.next_text())


def entry_lines(caption: str) -> list[str]:
    return [line for line in caption.splitlines() if re.match(r"\d+\. T-", line)]


def total_of(caption: str) -> int:
    return int(re.search(r"of (\d+), most alike first", caption).group(1))


async def tip_faces(reunite) -> int:
    return await scalar(reunite, select(func.count()).select_from(Face).where(Face.tip_media_id.is_not(None)))


async def open_shortlist(coordinator, code: str) -> dict:
    """``coordinator`` sends /shortlist ``code``; the page they get (a photo with its caption)."""
    await coordinator.say(f"/shortlist {code}")
    return coordinator.received()[coordinator.cursor - 1]


async def press(person, message: dict, label: str) -> str:
    person.cursor = len(person.received())
    person.user.press(message, label)
    return await person.next_text()


def callback_answers(stand_in, chat_id: int) -> list[str]:
    return [m["_callback_answer"].get("text") or "" for m in stand_in.messages(chat_id) if m.get("_callback_answer")]


async def test_a_coordinators_shortlist_ranks_every_tip_face_pages_and_confirms_leads(
        reunite, people, coordinator, stand_in):
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    players = await send_tip(people(7101, "Pat"), "players.jpg")
    await send_tip(people(7102, "Quinn"), "t1.jpg")
    await faces_done(reunite)
    stored = await tip_faces(reunite)

    first = await open_shortlist(coordinator, case.code.lower())
    caption = first["caption"]
    lines = entry_lines(caption)
    # every stored tip face is on the list, five a page, Yao Ming's face in players.jpg first
    assert f"1–5 of {stored}" in caption and len(lines) == 5
    assert lines[0].startswith(f"1. {players} (") and "strong lead" in lines[0]
    assert "case photo at age 24" in lines[0]
    assert similarity_to(composite_tile(stand_in, first, 0, 0), image_bytes("yaoming.jpg")) > YAO_MING_SAME_PHOTO
    assert similarity_to(composite_tile(stand_in, first, 0, 1), image_bytes("yaoming.jpg")) > 0.8
    assert "found" not in caption.lower()
    assert {"✅ Confirm lead 1", "✖ Reject 5", "More ›"} <= set(buttons(first))
    assert all(len(button["callback_data"].encode()) <= 64
               for row in first["reply_markup"]["inline_keyboard"] for button in row)

    # paging, to the end: the faces that never passed the review floor come last (with one open
    # reference face the floor is low, so most faces are weak leads: bench/FACES.md)
    second = await press(coordinator, first, "More ›")
    second_page = coordinator.received()[-1]
    assert f"6–10 of {stored}" in second
    assert {"✅ Confirm lead 6", "✖ Reject 10"} <= set(buttons(second_page))
    labels, page_shown = [line.split(": ", 1)[1] for line in entry_lines(caption) + entry_lines(second)], second_page
    while "More ›" in buttons(page_shown):
        labels += [line.split(": ", 1)[1] for line in entry_lines(await press(coordinator, page_shown, "More ›"))]
        page_shown = coordinator.received()[-1]
    below = [n for n, label in enumerate(labels) if label.startswith("below the review floor")]
    assert len(labels) == stored and below and below == list(range(below[0], stored))

    # Confirm: Yao Ming's face (a pending lead of a match alert) and one that never was a candidate
    confirmed = await press(coordinator, first, "✅ Confirm lead 1")
    assert "Confirmed as a lead" in confirmed and players in confirmed and case.code in confirmed
    never_candidate = await press(coordinator, second_page, "✅ Confirm lead 6")
    assert "Confirmed as a lead" in never_candidate
    # pressed again, or by another coordinator: nothing changes
    coordinator.user.press(first, "✅ Confirm lead 1")
    await settle(reunite)
    assert any("Already confirmed as a lead" in text for text in callback_answers(stand_in, COORDINATOR_ID))

    leads = await rows(reunite, select(MatchCandidate).where(MatchCandidate.case_id == case.id,
                                                             MatchCandidate.status == MATCH_CONFIRMED))
    assert len(leads) == 2 and all(lead.reviewer_id == COORDINATOR_ID for lead in leads)
    listing = await coordinator.say(f"/matches {case.code}")
    assert f"Confirmed leads of {case.code}:" in listing and players in listing

    # confirmed entries stay on the list, marked, without buttons
    again = await open_shortlist(coordinator, case.code)
    assert "confirmed as a lead" in entry_lines(again["caption"])[0]
    assert "✅ Confirm lead 1" not in buttons(again) and "✖ Reject 2" in buttons(again)

    audit = await rows(reunite, select(AuditEvent).where(AuditEvent.action == "match.confirm"))
    assert len(audit) == 2 and all(e.object_ref.startswith("T-") and case.code in e.object_ref for e in audit)
    assert {e.object_ref for e in await rows(reunite, select(AuditEvent).where(
        AuditEvent.action == "shortlist.view"))} == {case.code}


async def test_a_rejected_face_leaves_the_shortlist_for_good_and_never_becomes_a_candidate_again(
        reunite, people, coordinator, stand_in):
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    tipster = people(7111, "Rae")
    players = await send_tip(tipster, "players.jpg")
    await faces_done(reunite)
    first = await open_shortlist(coordinator, case.code)
    assert entry_lines(first["caption"])[0].startswith(f"1. {players} (")
    total = total_of(first["caption"])

    rejected = await press(coordinator, first, "✖ Reject 1")
    assert "Rejected" in rejected and players in rejected
    after = await open_shortlist(coordinator, case.code)
    assert total_of(after["caption"]) == total - 1
    assert similarity_to(composite_tile(stand_in, after, 0, 0), image_bytes("yaoming.jpg")) < 0.4

    # more tips arrive, and the case gets another photo: his face in that tip stays out
    await send_tip(people(7112, "Sam"), "t1.jpg")
    alerts_before = len([m for m in coordinator.received() if is_match_alert(m)])
    async with reunite.sessionmaker() as session:
        mirrored = jpeg(Image.open(packaged_image("yaoming.jpg")).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
        image = media.store_image(mirrored, reunite.settings.media_dir)
        await cases.add_photos(session, await session.get(Case, case.id),
                               [cases.NewPhoto(image.sha256, image.width, image.height)], COORDINATOR_ID,
                               datetime.now(UTC))
        await session.commit()
    reunite.face_worker.wake()
    await faces_done(reunite)
    later = await open_shortlist(coordinator, case.code)
    assert total_of(later["caption"]) == await tip_faces(reunite) - 1
    assert similarity_to(composite_tile(stand_in, later, 0, 0), image_bytes("yaoming.jpg")) < 0.4
    assert len([m for m in coordinator.received() if is_match_alert(m)]) == alerts_before
    # his tip's one candidate of the case is the rejected one (t1.jpg's faces may be weak candidates)
    decisions = await rows(reunite, select(MatchCandidate).join(Tip, Tip.id == MatchCandidate.tip_id)
                           .where(MatchCandidate.case_id == case.id, Tip.reference == players))
    assert [(c.status, c.reviewer_id) for c in decisions] == [(MATCH_REJECTED, COORDINATOR_ID)]

    # a new tip with his face is a new face: it is on the list again, under its own reference
    again = await send_tip(people(7113, "Tess"), "players.jpg")
    await faces_done(reunite)
    newest = await open_shortlist(coordinator, case.code)
    assert entry_lines(newest["caption"])[0].startswith(f"1. {again} (")
    # the tipsters were told nothing but their references
    assert len(tipster.received()) == 1

    # the first tip's images reach the end of their retention: its faces go, and the decision with them
    async with reunite.sessionmaker() as session:
        await session.execute(update(TipMedia).where(TipMedia.tip_id == select(Tip.id).where(
            Tip.reference == players).scalar_subquery()).values(created_at=datetime(2000, 1, 1, tzinfo=UTC)))
        await session.commit()
        purged = await retention.purge_expired_tips(session, reunite.settings.media_dir, 30,
                                                    datetime.now(UTC))
        assert purged.images == 1
    assert await rows(reunite, select(MatchCandidate).where(MatchCandidate.status == MATCH_REJECTED)) == []
    assert total_of((await open_shortlist(coordinator, case.code))["caption"]) == await tip_faces(reunite)


async def test_only_coordinators_see_a_shortlist_and_a_closed_case_has_none(
        reunite, people, coordinator, admin, stand_in):
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    tipster = people(7121, "Uli")
    await send_tip(tipster, "players.jpg")
    await faces_done(reunite)
    page = await open_shortlist(coordinator, case.code)
    confirm = page["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    family = people(FAMILY_ID, "Mei", language_code="en")
    stranger = people(7122, "Vic", language_code="en")
    former = people(7123, "Wen", language_code="en")
    assert "is now coordinator" in await admin.say(f"/grant {former.id} coordinator")
    await settle(reunite)
    assert "Shortlist of" in await former.say(f"/shortlist {case.code}")
    assert "no longer a coordinator" in await admin.say(f"/revoke {former.id}")
    refusal = "This command is for coordinators."
    for person in (family, stranger, former):
        assert await person.say(f"/shortlist {case.code}") == refusal
        person.cursor = len(person.received())
        person.user.press_forged(person.received()[-1], confirm)
        assert await person.next_text() == refusal
    await settle(reunite)
    assert await rows(reunite, select(MatchCandidate.status).where(MatchCandidate.status != "pending")) == []
    # nothing of it ever reaches a tipster
    assert len(tipster.received()) == 1 and "match" not in tipster.texts()[0].lower()

    # forged data does nothing
    coordinator.user.press_forged(page, f"sc|{case.id}|1|0000000000")
    await settle(reunite)
    assert "This button has expired." in callback_answers(stand_in, COORDINATOR_ID)

    # closed: its face data and decisions are purged, and the shortlist is answered as for an unknown case
    assert "Rejected" in await press(coordinator, page, "✖ Reject 2")
    assert "is closed" in await coordinator.say(f"/close {case.code} found")
    assert await coordinator.say(f"/shortlist {case.code}") == f"No case {case.code}."
    coordinator.user.press(page, "✅ Confirm lead 1")
    await settle(reunite)
    assert "This lead no longer exists" in callback_answers(stand_in, COORDINATOR_ID)[-1]
    assert await rows(reunite, select(MatchCandidate)) == []
    assert await coordinator.say("/shortlist") == "Send /shortlist C-XXXXXX to see the tip faces most like a case."
    assert await coordinator.say("/shortlist C-000000") == "No case C-000000."


async def test_the_shortlist_says_so_plainly_when_there_is_nothing_to_show(reunite, people, coordinator):
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    assert await coordinator.say(f"/shortlist {case.code}") == f"No tip faces to compare with {case.code} yet."
    async with reunite.sessionmaker() as session:
        pending = await cases.create_case(session, name="In review", status=cases.STATUS_PENDING)
        await session.commit()
    assert "not verified yet" in await coordinator.say(f"/shortlist {pending.code}")


async def test_composite_images_of_sent_shortlist_pages_go_with_the_daily_sweep(reunite, people, coordinator):
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    await send_tip(people(7131, "Xia"), "t1.jpg")
    await faces_done(reunite)
    await open_shortlist(coordinator, case.code)
    media_dir = reunite.settings.media_dir

    async def all_sent():
        return await scalar(reunite, select(func.count()).select_from(OutboxMessage)
                            .where(OutboxMessage.status == OUT_PENDING)) == 0

    await until(all_sent, what="the page sent")
    # the daily sweep takes files no row needs once they are older than its grace period
    for path in media_dir.rglob("*"):
        os.utime(path, (0, 0))
    async with reunite.sessionmaker() as session:
        assert await retention.sweep_media(session, media_dir, datetime.now(UTC)) == 1
    # left: the case photo and the tip's image (t1.jpg shows nobody of the case: no match alert)
    kept = {path.name for path in media_dir.rglob("*") if path.is_file()}
    photos = await rows(reunite, select(CasePhoto.sha256)) + await rows(reunite, select(TipMedia.sha256))
    assert kept == {media.media_path(media_dir, sha).name for sha in photos}
