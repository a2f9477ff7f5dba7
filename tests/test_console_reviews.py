"""What coordinators decide in the console and in the chat alike (one domain, two front ends): a
case's shortlist on the leads page (issue 13 item 3) and a family's changes waiting on the case page.
A decision taken on one side shows as taken on the other, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from bot.db.models import MATCH_CONFIRMED, AuditEvent, Case, CaseChange, MatchCandidate
from bot.services.media import media_path
from tests.conftest import COORDINATOR_ID, packaged_image, settle
from tests.helpers import press, seed_case, send_photo
from tests.test_case_changes import NEW_PHONE, OLD_PHONE, alert_about, change_number, edit_field, photo_of_change
from tests.test_console import CSRF, browser, free_port, logged_in  # noqa: F401 (fixtures)
from tests.test_matching import faces_done, rows
from tests.test_shortlist import (
    callback_answers,
    entry_lines,
    open_shortlist,
    send_tip,
    tip_faces,
    total_of,
    yao_ming_case,
)
from tests.test_shortlist import press as press_under

ENTRY = re.compile(r'id="entry-(\d+)".*?<img src="/console/faces/(\d+)\.jpg" alt="(T-[\w-]+)".*?'
                   r'class="entry-strength">([^<]*)</strong>', re.DOTALL)

@pytest.fixture
def settings(settings):
    """The console on, served by the bot on a free port; a fixed review floor: these tests are about
    the shortlist, not about how the floor follows the open reference faces (with one open case that
    floor is low, and most tip faces pass it)."""
    port = free_port()
    return settings.with_overrides(console_url=f"http://127.0.0.1:{port}", port=port, match_threshold=4.0)



def shortlist_entries(page: str) -> list[tuple[int, int, str, str]]:
    """(number, tip face id, tip reference, strength words) of each entry of the shortlist shown."""
    shown = page.split('id="shortlist"', 1)[1]
    return [(int(number), int(face), reference, words) for number, face, reference, words in ENTRY.findall(shown)]


def has_buttons(page: str, code: str, face_id: int) -> bool:
    return f"/console/shortlist/{code}/{face_id}/review" in page


async def decide_in_console(client, page: str, code: str, face_id: int, decision: str) -> str:
    """Press Confirm lead / Reject under the face's entry; the page the console comes back to."""
    response, after = await client.post(f"/console/shortlist/{code}/{face_id}/review",
                                         {"csrf": CSRF.search(page).group(1), "decision": decision,
                                          "back": f"/console/leads?case={code}"})
    assert response.status == 200
    return after


async def test_the_shortlist_on_the_leads_page_pages_and_decides_as_the_chat_does(
        reunite, people, coordinator, stand_in, browser):  # noqa: F811 (the fixture)
    case = await yao_ming_case(reunite)
    await faces_done(reunite)
    players = await send_tip(people(7201, "Pat", username="pat_secret"), "players.jpg")
    await send_tip(people(7202, "Quinn"), "t1.jpg")
    await faces_done(reunite)
    stored = await tip_faces(reunite)
    await logged_in(browser, coordinator)

    # the same list as /shortlist: his face in players.jpg first, beside the case photo at age 24
    _, page = await browser.get(f"/console/leads?case={case.code}")
    entries = shortlist_entries(page)
    assert f"1–10 of {stored}" in page and [number for number, *_ in entries] == list(range(1, 11))
    assert entries[0][2] == players and "strong lead" in entries[0][3] and "Age 24 in this photo" in page
    chat_page = await open_shortlist(coordinator, case.code)
    assert [line.split(" (")[0] for line in entry_lines(chat_page["caption"])] == \
        [f"{number}. {reference}" for number, _, reference, _ in entries[:5]]
    assert "pat_secret" not in page and "Pat" not in page
    response, _ = await browser.get(f"/console/faces/{entries[0][1]}.jpg")
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    # paging: faces that never passed the review floor are on the list all the same
    _, second = await browser.get(f"/console/leads?case={case.code}&page=2")
    assert f"11–{min(20, stored)} of {stored}" in second and "below the review floor" in second
    assert shortlist_entries(second)[0][0] == 11

    # confirmed in the console: confirmed in /shortlist and /matches, no buttons left on either side
    page = await decide_in_console(browser, page, case.code, entries[0][1], "confirm")
    assert "confirmed as a lead" in shortlist_entries(page)[0][3] and not has_buttons(page, case.code, entries[0][1])
    again = await open_shortlist(coordinator, case.code)
    assert "confirmed as a lead" in entry_lines(again["caption"])[0] and "✅ Confirm lead 1" not in str(again)
    assert f"Confirmed leads of {case.code}:" in await coordinator.say(f"/matches {case.code}")
    coordinator.user.press(chat_page, "✅ Confirm lead 1")
    await settle(reunite)
    assert "Already confirmed as a lead" in callback_answers(stand_in, COORDINATOR_ID)[-1]

    # rejected in the chat: gone from the console's list; rejected in the console: gone from the chat's
    assert "Rejected" in await press_under(coordinator, again, "✖ Reject 2")
    _, page = await browser.get(f"/console/leads?case={case.code}")
    assert f"of {stored - 1}" in page and f"/console/faces/{entries[1][1]}.jpg" not in page
    page = await decide_in_console(browser, page, case.code, entries[2][1], "reject")
    assert f"of {stored - 2}" in page and f"/console/faces/{entries[2][1]}.jpg" not in page
    assert total_of((await open_shortlist(coordinator, case.code))["caption"]) == stored - 2
    coordinator.user.press(chat_page, "✅ Confirm lead 3")  # the old page's button: decided already
    await settle(reunite)
    assert "Already rejected" in callback_answers(stand_in, COORDINATOR_ID)[-1]

    decided = await rows(reunite, select(MatchCandidate).where(MatchCandidate.case_id == case.id))
    assert sorted((lead.status, lead.reviewer_id) for lead in decided) == \
        [(MATCH_CONFIRMED, COORDINATOR_ID), ("rejected", COORDINATOR_ID), ("rejected", COORDINATOR_ID)]
    audited = await rows(reunite, select(AuditEvent.action).where(AuditEvent.actor_id == COORDINATOR_ID))
    assert audited.count("match.confirm") == 1 and audited.count("match.reject") == 2
    assert "shortlist.view" in audited

    # a case not public yet has no shortlist on the page
    async with reunite.sessionmaker() as session:
        (await session.get(Case, case.id)).status = "pending_review"
        await session.commit()
    _, page = await browser.get(f"/console/leads?case={case.code}")
    assert 'id="shortlist"' not in page
    response, _ = await browser.post(f"/console/shortlist/{case.code}/{entries[3][1]}/review",
                                     {"csrf": CSRF.search(page).group(1), "decision": "confirm"})
    assert response.status == 200
    assert len(await rows(reunite, select(MatchCandidate).where(MatchCandidate.case_id == case.id))) == 3


def change_on_page(page: str, number: int) -> str:
    """The change's part of the case page ("" if it is not shown)."""
    found = re.search(rf'<article class="change" id="change-{number}">(.*?)</article>', page, re.DOTALL)
    return found.group(1) if found else ""


async def add_photo_change(family, coordinator, code: str, image: str, age: str, nth: int) -> int:
    """The family asks to add ``image`` to the case; the change's number, once coordinators have it."""
    await family.say(f"/addphoto {code}")
    await send_photo(family, packaged_image(image).read_bytes(), age)
    assert "once our team has checked them" in await press(family, "Done ✓")
    number = change_number(await alert_about(coordinator, rf"^📷 Change \d+ to {code}", nth=nth))
    await photo_of_change(coordinator, number)
    return number


async def test_a_familys_change_is_decided_on_the_case_page_or_in_the_chat_and_shows_so_on_both(
        reunite, people, coordinator, browser, quick_chats):  # noqa: F811 (the fixture)
    family = people(5301, "Ann")
    case = await seed_case(reunite, family_id=family.id)
    await edit_field(family, case.code, "Agency phone")
    assert "once our team has checked it" in await family.say(NEW_PHONE)
    phone_alert = await alert_about(coordinator, rf"{case.code}.*Agency phone")
    phone = change_number(phone_alert)
    photo = await add_photo_change(family, coordinator, case.code, "t1.jpg", "9", 1)
    await logged_in(browser, coordinator)

    # each waiting change: now beside asked, the new photo itself
    _, page = await browser.get(f"/console/cases/{case.code}")
    shown = change_on_page(page, phone)
    assert "Agency phone" in shown and shown.index(OLD_PHONE) < shown.index(NEW_PHONE)
    shown = change_on_page(page, photo)
    assert "Age 9 in this photo" in shown
    image = re.search(r'src="(/console/media/\w+\.jpg)"', shown).group(1)
    response, _ = await browser.get(image)
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"

    # approved in the console: on the case, the family told, decided for the chat too
    response, page = await browser.post(f"/console/changes/{phone}/approve", {"csrf": CSRF.search(page).group(1)})
    assert "Approved: the change is on the case" in page and not change_on_page(page, phone)
    assert NEW_PHONE in page  # the particulars read the new value
    assert "Agency phone" in (await alert_about(family, "on the appeal now"))["text"]
    assert "decided already: approved" in await coordinator.say(f"/approve_change {phone}")
    coordinator.user.press(phone_alert, "Reject ✗")
    await alert_about(coordinator, rf"Change {phone} to {case.code} was decided already: approved", nth=2)
    coordinator.cursor = len(coordinator.received())

    # approved in the chat: gone from the case page, and pressing the console's stale button changes nothing
    assert f"Change {photo}" in await coordinator.say(f"/approve_change {photo}")
    _, page = await browser.get(f"/console/cases/{case.code}")
    assert not change_on_page(page, photo) and 'id="changes"' not in page
    response, page = await browser.post(f"/console/changes/{photo}/reject", {"csrf": CSRF.search(page).group(1)})
    assert "that change was decided already" in page
    async with reunite.sessionmaker() as session:
        assert (await session.get(CaseChange, photo)).status == "approved"

    # rejected in the console with a reason: the family reads it, the photo leaves the store (once the
    # family has read that the last two were approved, so their next answer is /addphoto's)
    await settle(reunite)
    rejected = await add_photo_change(family, coordinator, case.code, "gdp.jpg", "10", 2)
    _, page = await browser.get(f"/console/cases/{case.code}")
    image = re.search(r'src="/console/media/(\w+)\.jpg"', change_on_page(page, rejected)).group(1)
    response, page = await browser.post(f"/console/changes/{rejected}/reject",
                                        {"csrf": CSRF.search(page).group(1), "reason": "It is not Li Wei."})
    assert "Rejected: the case is unchanged" in page
    assert "It is not Li Wei." in (await alert_about(family, r"did not make your change"))["text"]
    assert not media_path(reunite.settings.media_dir, image).exists()
    assert "decided already: rejected" in await coordinator.say(f"/approve_change {rejected}")
    response, _ = await browser.get(f"/console/media/{image}.jpg")
    assert response.status == 404

    # nothing without the CSRF token; audited as the commands are
    await edit_field(family, case.code, "Clothing")
    await family.say("A red coat and jeans")
    waiting = change_number(await alert_about(coordinator, rf"{case.code}.*Clothing"))
    response, _ = await browser.post(f"/console/changes/{waiting}/approve", {})
    assert response.status == 403
    async with reunite.sessionmaker() as session:
        assert (await session.get(CaseChange, waiting)).status == "pending"
        events = [(e.actor_id, e.action) for e in await session.scalars(
            select(AuditEvent).where(AuditEvent.object_ref == case.code).order_by(AuditEvent.id))]
    assert events.count((COORDINATOR_ID, "case.change.approve")) == 2
    assert events.count((COORDINATOR_ID, "case.change.reject")) == 1
