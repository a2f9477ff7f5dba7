"""Flow 7's tip commands through the stand-in: alerts, /tips, /tip, /mark, /reply, roles. And the
privacy rule that matters most here: coordinators never learn who a tipster is."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.db.models import AuditEvent, User
from tests.conftest import ADMIN_ID, COORDINATOR_ID, settle, start_worker
from tests.helpers import jpeg_bytes, reference_in


async def test_reply_reaches_tipster_from_the_team_and_their_answer_reaches_coordinators(
        reunite, people, coordinator):
    tipster = people(601, "Tess")
    reference = reference_in(await tipster.say("I saw her at the ferry terminal"))
    await coordinator.wait(1)
    confirmation = await coordinator.say(f"/reply {reference} Thank you! What was she wearing?")
    assert reference in confirmation
    message = await tipster.next_text()
    assert "Reunite team" in message and "What was she wearing?" in message
    # hours later, the answer still joins the tip (24 hours after a team reply)
    from datetime import timedelta

    from tests.helpers import age_tips

    await age_tips(reunite, timedelta(hours=5))
    assert reference_in(await tipster.say("A yellow raincoat")) == reference
    answered = await coordinator.next_text()
    assert "answered" in answered and reference in answered and "yellow raincoat" in answered


async def test_tips_lists_recent_tips_paged_and_tip_shows_one_in_full(reunite, people, coordinator):
    references = []
    for number in range(12):
        person = people(610 + number, f"Person{number}")
        references.append(reference_in(await person.say(f"Sighting number {number}")))
    await settle(reunite)
    before = len(coordinator.received())
    listing = await coordinator.say("/tips")
    assert "1–10 of 12" in listing and references[-1] in listing and references[0] not in listing
    page_message = coordinator.received()[before]
    coordinator.user.press(page_message, "Older ›")
    older = await coordinator.next_text()
    assert "11–12 of 12" in older and references[0] in older

    # typed the way people do: lower case, no hyphens
    full = await coordinator.say(f"/tip {references[3].lower().replace('-', '')}")
    assert references[3] in full and "Sighting number 3" in full


async def test_tip_shows_photos_as_stripped_reuploads(reunite, people, coordinator, stand_in):
    tipster = people(630, "Pat")
    tipster.user.send_photo(jpeg_bytes(1000, 800), caption="Boy at the kiosk")
    reference = reference_in((await tipster.wait(1))[0]["text"])
    await settle(reunite)
    before = len(coordinator.received())
    coordinator.user.send_text(f"/tip {reference}")
    messages = await coordinator.wait(before + 2)
    photo = [m for m in messages[before:] if m.get("photo")][0]
    assert "forward_origin" not in photo
    # the second view re-sends our own upload by file_id: no new upload of the image
    assert photo["photo"][-1]["file_id"] == [m for m in messages[:before] if m.get("photo")][0]["photo"][-1]["file_id"]


async def test_mark_and_audit_trail_has_ids_not_content(reunite, people, coordinator):
    tipster = people(640, "Quinn")
    reference = reference_in(await tipster.say("Secret detail about the car plate AB-123"))
    await coordinator.wait(1)
    assert "marked useful" in await coordinator.say(f"/mark {reference} useful")
    assert "Usage" in await coordinator.say(f"/mark {reference} maybe")
    async with reunite.sessionmaker() as session:
        events = list(await session.scalars(select(AuditEvent)))
    assert any(e.action == "tip.mark.useful" and e.object_ref == reference and e.actor_id == COORDINATOR_ID
               for e in events)
    assert not any("AB-123" in (e.object_ref or "") + e.action for e in events)


async def test_roles_are_checked_on_every_command_and_button(reunite, people, admin, stand_in):
    outsider = people(650, "Olly")
    assert "for coordinators" in await outsider.say("/tips")
    assert "for coordinators" in await outsider.say("/reply T-0000-0000 hi")
    assert "for admins" in await outsider.say("/grant 650 admin")
    whoami = await outsider.say("/whoami")
    assert "650" in whoami and "member of the public" in whoami
    # a forged "older tips" button does nothing for an outsider either
    outsider.user.press_forged(outsider.received()[-1], "tips|10||0000000000")
    assert "for coordinators" in await outsider.next_text()

    assert "is now coordinator" in await admin.say("/grant 650 coordinator")
    assert "coordinator" in await outsider.next_text()  # told they were granted
    assert "No tips yet" in await outsider.say("/tips") or "of" in outsider.texts()[-1]
    assert "no longer" in await admin.say("/revoke 650")
    assert "for coordinators" in await outsider.say("/tips")
    assert "admin by the server" in await admin.say(f"/revoke {ADMIN_ID}")
    assert "Usage" in await admin.say("/grant someone")
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 650)).role == "public"


async def test_coordinator_group_gets_the_alerts(stand_in, settings, people):
    group = stand_in.group(-100123, "Search team")
    running = await start_worker(stand_in, settings, coordinator_chat_id=-100123)
    try:
        tipster = people(660, "Gwen")
        reference = reference_in(await tipster.say("Seen near the river"))
        alert = (await stand_in.wait_for(-100123, 1))[0]["text"]
        assert reference in alert and "river" in alert
        # a coordinator can work from the group
        coordinator_user = stand_in.user(9000, "Admin")
        group.send_text(coordinator_user, f"/mark {reference} dismissed")
        done = (await stand_in.wait_for(-100123, 2))[1]["text"]
        assert "dismissed" in done
    finally:
        await running.stop()


async def test_coordinators_never_see_tipster_identity(reunite, people, coordinator, stand_in, unpaced_chats):
    """Tips from people with distinctive names; every coordinator-visible message is searched."""
    distinctive = [
        people(777001, "Zebulon", last_name="Quackenbush", username="zeb_quack_77"),
        people(777002, "Philomena", last_name="Featherstonehaugh", username="philo_fh"),
        people(777003, "Xiadani", username="xiadani_sees_all", language_code="zh"),
    ]
    for person in distinctive:
        reference = reference_in(await person.say("I saw the missing boy near the pier"))
        person.user.send_photo(jpeg_bytes(), caption="photo of him")
        await person.next_text()
        await coordinator.say(f"/reply {reference} Thanks, when exactly?")
        await person.next_text()
        await person.say("Around noon")
        await coordinator.say(f"/tip {reference}")
    await coordinator.say("/tips")
    await settle(reunite)
    visible = json.dumps(stand_in.sent_to(COORDINATOR_ID) + stand_in.sent_to(ADMIN_ID), ensure_ascii=False,
                         default=lambda _bytes: "")
    assert "pier" in visible  # the content does arrive
    for person in distinctive:
        identity = person.user.user
        for secret in filter(None, [identity["first_name"], identity.get("last_name"), identity.get("username"),
                                    str(identity["id"])]):
            assert secret not in visible, f"{secret!r} leaked to coordinators"
