"""Where the bot speaks: private chats and the coordinator group (REUNITE_COORDINATOR_CHAT_ID) only.
A coordinator's command in any other group reveals nothing there, and the bot leaves any other group
it is added to, after one line saying it works in private chats."""

from __future__ import annotations

import json

from bot.handlers.common import sign_callback
from tests.conftest import COORDINATOR_ID, settle, start_worker
from tests.helpers import reference_in, seed_case

FAREWELL = "private chats"


def everything_in(stand_in, chat_id: int) -> str:
    return json.dumps(stand_in.sent_to(chat_id), ensure_ascii=False)


async def test_coordinator_commands_in_an_unrelated_group_reveal_nothing(reunite, people, coordinator, stand_in):
    tipster = people(1301, "Tia")
    reference = reference_in(await tipster.say("I saw the boy at the ferry pier, red cap"))
    case = await seed_case(reunite, status="pending_review")
    await settle(reunite)
    alerted = len(coordinator.received())
    group = stand_in.group(-5001, "Neighbourhood watch")
    command = group.send_text(coordinator.user, f"/tip {reference}")
    for text in ("/tips", f"/case {case.code}", "/cases", "/stats", "/matches", f"/mark {reference} useful"):
        group.send_text(coordinator.user, text)
    # a signed button of ours, pressed under a message of that group
    coordinator.user.press_forged(command, sign_callback(reunite.settings, "tips", "0", ""))
    await settle(reunite)

    said = stand_in.sent_to(-5001)
    assert len(said) == 1 and FAREWELL in said[0]["text"]
    leaked = everything_in(stand_in, -5001)
    for secret in (reference, "ferry", case.code, case.name, tipster.user.user["first_name"]):
        assert secret not in leaked
    assert not group.bot_is_member and stand_in.stats["calls"]["leaveChat"] == 1
    assert coordinator.received()[alerted:] == []  # nor to the coordinator privately instead
    # the same command in a private chat works as ever
    assert "ferry pier" in await coordinator.say(f"/tip {reference}")


async def test_the_bot_leaves_a_group_it_is_added_to_in_the_adders_language(reunite, people, stand_in):
    adder = people(1302, "Wen", language_code="zh")
    group = stand_in.group(-1_000_000_005_002, "同学群")
    group.add_bot(adder.user)
    await settle(reunite)
    said = stand_in.sent_to(group.id)
    assert len(said) == 1 and "私聊" in said[0]["text"]  # one line, in Chinese
    assert not group.bot_is_member
    # added again later, it says so again and leaves again
    group.add_bot(adder.user)
    await settle(reunite)
    assert len(stand_in.sent_to(group.id)) == 2 and not group.bot_is_member


async def test_the_coordinator_group_is_served_and_kept(stand_in, settings, people):
    group = stand_in.group(-5003, "Search team")
    running = await start_worker(stand_in, settings.with_overrides(coordinator_chat_id=-5003))
    try:
        async with running.sessionmaker() as session:
            from bot.services import users

            admin = await session.get(users.User, 9000)
            await users.set_role(session, admin, COORDINATOR_ID, "coordinator")
            await session.commit()
        coordinator, member = people(COORDINATOR_ID, "Coordinator"), people(1303, "Member")
        group.add_bot(coordinator.user)
        tipster = people(1304, "Tom")
        reference = reference_in(await tipster.say("A girl in a yellow coat at the station"))
        await settle(running)
        group.send_text(coordinator.user, f"/tip {reference}")
        group.send_text(member.user, "/tips")
        await settle(running)
        texts = [m.get("text") or "" for m in stand_in.sent_to(-5003)]
        assert group.bot_is_member and not any(FAREWELL in text for text in texts)
        assert any(text.startswith(reference) and "yellow coat" in text for text in texts[1:])  # /tip
        assert "for coordinators" in texts[-1]  # a member of the group who is no coordinator
    finally:
        await running.stop()
