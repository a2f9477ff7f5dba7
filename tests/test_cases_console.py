"""Flow 7's case commands through the stand-in: /verify, /case, /cases, /stats, /close (flow 8), the
roles they need, their audit trail, and privacy rule 3: nothing about a pending case reaches anyone
but its family and coordinators."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.models import AuditEvent, Case, FlyerFile
from bot.services import cases
from bot.services.media import media_path
from tests.conftest import COORDINATOR_ID, settle
from tests.helpers import reference_in, seed_case


async def text_about(person, code: str, word: str) -> str:
    """The first message ``person`` got (or gets) that names ``code`` and says ``word``."""
    messages = await person.wait(1, predicate=lambda m: code in (m.get("text") or "")
                                 and word in (m.get("text") or ""))
    return messages[0]["text"]


async def audit_actions(reunite, code: str) -> list[tuple[int | None, str]]:
    async with reunite.sessionmaker() as session:
        return [(e.actor_id, e.action) for e in await session.scalars(
            select(AuditEvent).where(AuditEvent.object_ref == code).order_by(AuditEvent.id))]


async def test_verify_publishes_a_case_and_tells_the_family(reunite, people, coordinator, quick_chats):
    family, stranger = people(901, "Rosa"), people(902, "Nosy")
    case = await seed_case(reunite, status=cases.STATUS_PENDING, family_id=family.id, height_cm=150)
    await settle(reunite)
    coordinator.cursor = len(coordinator.received())

    # before verification: no flyer, no deep link, not even a confirmation that it exists
    assert "not an active appeal" in await stranger.say(f"/start c_{case.deep_link_token}")
    assert "coordinators" in await stranger.say(f"/verify {case.code}")
    assert "checked the case" in await family.say(f"/flyer {case.code}")

    shown = await coordinator.say(f"/case {case.code}")
    assert case.code in shown and "waiting for review" in shown and "tips: 0" in shown
    assert "Li Wei" in shown and "Height: 150 cm" in shown and f"/verify {case.code}" in shown
    photo = (await coordinator.wait(1, predicate=lambda m: bool(m.get("photo"))))[0]
    assert case.code in photo["caption"] and "age 14" in photo["caption"]

    assert "now public" in await coordinator.say(f"/verify {case.code}")
    assert "now public" in await text_about(family, case.code, "public")
    assert "not waiting for review" in await coordinator.say(f"/verify {case.code}")
    verified = await _case(reunite, case.code)
    assert verified.status == "active" and verified.verified_by == COORDINATOR_ID
    assert (COORDINATOR_ID, "case.verify") in await audit_actions(reunite, case.code)
    assert "No case C-000000" in await coordinator.say("/verify c-oooooo")  # read forgivingly


async def test_cases_are_listed_paged_and_counted(reunite, people, coordinator, quick_chats):
    pending = [await seed_case(reunite, status=cases.STATUS_PENDING, name=f"Pending {n}") for n in range(3)]
    active = [await seed_case(reunite, name=f"Active {n}") for n in range(9)]
    found = await seed_case(reunite, status=cases.STATUS_FOUND, name="Found One")
    tipster = people(903, "Tia")
    await tipster.say(f"/start c_{active[0].deep_link_token}")
    reference_in(await tipster.say("I saw Active 0 near the bridge"))
    await settle(reunite)
    coordinator.cursor = len(coordinator.received())

    listing = await coordinator.say("/cases")  # open cases: pending and active
    assert "1–10 of 12" in listing and found.code not in listing and "tips: 1" in listing
    coordinator.user.press(coordinator.received()[-1], "Older ›")
    older = await coordinator.next_text()
    assert "11–12 of 12" in older
    only_pending = await coordinator.say("/cases pending")
    assert "of 3" in only_pending and all(p.code in only_pending for p in pending)
    assert found.code in await coordinator.say("/cases closed")
    assert "Usage" in await coordinator.say("/cases lost")

    stats = await coordinator.say("/stats")
    assert "3 waiting for review · 9 public · 1 found · 0 withdrawn" in stats
    assert "Tips: 1 new · 0 useful · 0 dismissed" in stats and stats.rstrip().endswith("1  ▇")
    case_tips = await coordinator.say(f"/tips {active[0].code}")
    assert "1–1 of 1" in case_tips and active[0].code in case_tips


async def test_close_withdraws_the_appeal_everywhere(reunite, people, coordinator, quick_chats):
    family, passer_by = people(904, "Lena"), people(905, "Pat")
    case = await seed_case(reunite, family_id=family.id)
    card = await passer_by.say(f"/start c_{case.deep_link_token}")  # renders the case's card
    assert case.code in card
    await settle(reunite)
    async with reunite.sessionmaker() as session:
        flyer_files = list(await session.scalars(select(FlyerFile).where(FlyerFile.case_id == case.id)))
    assert len(flyer_files) == 3

    assert "Usage" in await coordinator.say(f"/close {case.code} maybe")
    assert "closed: found" in await coordinator.say(f"/close {case.code} found")
    assert "so glad" in await text_about(family, case.code, "found")
    assert "closed" in await passer_by.say(f"/start c_{case.deep_link_token}")
    assert "closed" in await family.say(f"/flyer {case.code}")
    assert "closed" in await coordinator.say(f"/close {case.code} withdrawn")
    closed = await _case(reunite, case.code)
    assert closed.status == "found" and closed.closed_at is not None
    async with reunite.sessionmaker() as session:
        assert list(await session.scalars(select(FlyerFile).where(FlyerFile.case_id == case.id))) == []
    assert not any(media_path(reunite.settings.media_dir, f.sha256).exists() for f in flyer_files)
    assert (COORDINATOR_ID, "case.close.found") in await audit_actions(reunite, case.code)


async def _case(reunite, code: str) -> Case:
    async with reunite.sessionmaker() as session:
        return await session.scalar(select(Case).where(Case.code == code))
