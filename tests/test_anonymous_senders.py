"""A message in the coordinator group that no person we know sent: an anonymous admin's, which
Telegram shows as sent by its "GroupAnonymousBot". The coordinators' commands refuse it as they
refuse anyone who is no coordinator; the commands anyone may send leave it unanswered; none fails
(a failed update is retried for half a minute, holding up the updates after it)."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.db.models import InboxUpdate
from bot.sandbox.actors import SimUser
from tests.conftest import settle, start_worker

COORDINATOR_GROUP = -5004
ANONYMOUS_ADMIN = {"id": 1087968824, "is_bot": True, "first_name": "Group", "username": "GroupAnonymousBot"}


async def test_an_anonymous_admins_commands_in_the_coordinator_group_fail_nothing(stand_in, settings):
    group = stand_in.group(COORDINATOR_GROUP, "Search team")
    running = await start_worker(stand_in, settings.with_overrides(coordinator_chat_id=COORDINATOR_GROUP))
    try:
        anonymous = SimUser(stand_in, ANONYMOUS_ADMIN, group.chat)
        for command in ("/whoami", "/broadcasts", "/broadcast C-ABC234", "/cancel_broadcast B-ABC234",
                        "/flyer C-ABC234", "/tips"):
            group.send_text(anonymous, command)
        await settle(running)
        said = [message.get("text") or "" for message in stand_in.sent_to(COORDINATOR_GROUP)]
        assert len(said) == 1 and "for coordinators" in said[0]  # /tips
        async with running.sessionmaker() as session:
            failed = await session.scalar(select(func.count()).select_from(InboxUpdate)
                                          .where(InboxUpdate.attempts > 0))
        assert failed == 0
    finally:
        await running.stop()
