"""Flows 5, 6 and 8 through the stand-in, with Telegram's real flood limits: subscribing, who a
broadcast reaches (radius and region), the family's request and a coordinator's approval, pacing
with no 429s, blocked and failing chats, cancel, and closing a case mid-broadcast."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from bot.config import Region
from bot.db.models import Broadcast, Delivery, Subscriber, User
from tests.conftest import COORDINATOR_ID, settle
from tests.helpers import press, quick_chats, seed_case  # noqa: F401 (a fixture)

BEIJING = (39.9042, 116.4074)
KM_PER_DEGREE = 111.2
REGIONS = (Region("Beijing", ("北京", "Peking"), 39.9042, 116.4074, 60.0),
           Region("Shanghai", ("上海",), 31.2304, 121.4737, 60.0))


@pytest.fixture
def settings(settings):
    return settings.with_overrides(regions=REGIONS)


def north_of_beijing(km: float) -> tuple[float, float]:
    return BEIJING[0] + km / KM_PER_DEGREE, BEIJING[1]


async def seed_subscribers(reunite, stand_in, areas: list[dict], language: str = "en") -> None:
    """Users of the stand-in with these areas, written straight to the database; each area is
    {"chat_id", and "point" + "radius_km" or "region", optional "children_only"}."""
    from bot.services import users

    async with reunite.sessionmaker() as session:
        for chat_id in sorted({area["chat_id"] for area in areas}):
            stand_in.user(chat_id, f"Sub{chat_id}", language_code=language)
            await users.get_or_create(session, chat_id, language, frozenset())
        await session.flush()
        for area in areas:
            point = area.get("point", (None, None))
            session.add(Subscriber(chat_id=area["chat_id"], latitude=point[0], longitude=point[1],
                                   radius_km=area.get("radius_km"), region=area.get("region"),
                                   children_only=area.get("children_only", False),
                                   created_at=datetime.now(timezone.utc)))
        await session.commit()


def cards_to(stand_in, chat_id: int) -> list[dict]:
    return [m for m in stand_in.sent_to(chat_id) if m["_method"] == "sendPhoto"]


async def broadcast_now(coordinator, case) -> str:
    """The coordinator broadcasts ``case`` and presses Send; the size message's text."""
    size = await coordinator.say(f"/broadcast {case.code}")
    await press(coordinator, next(b["text"] for b in coordinator.received()[-1]["reply_markup"]["inline_keyboard"][0]
                                  if b["text"].startswith("Send")))
    return size


async def wait_until_finished(reunite, reference: str | None = None, timeout: float = 60.0) -> Broadcast:
    deadline = time.monotonic() + timeout
    while True:
        async with reunite.sessionmaker() as session:
            query = select(Broadcast).order_by(Broadcast.id.desc())
            if reference:
                query = query.where(Broadcast.reference == reference)
            broadcast = await session.scalar(query.limit(1))
        if broadcast is not None and broadcast.status not in ("draft", "awaiting_approval", "sending"):
            return broadcast
        assert time.monotonic() < deadline, f"broadcast still {broadcast and broadcast.status}"
        await asyncio.sleep(0.1)


async def deliveries_by_chat(reunite) -> dict[int, Delivery]:
    async with reunite.sessionmaker() as session:
        return {d.chat_id: d for d in await session.scalars(select(Delivery))}


async def test_subscribe_by_location_or_region_list_and_unsubscribe(reunite, people, quick_chats):
    person = people(3001, "Ann")
    assert "Share my location" in await person.say("/subscribe")
    assert "Beijing" in person.received()[-1]["text"]  # the regions one may type
    person.cursor = len(person.received())
    person.user.send_location(*north_of_beijing(3))
    assert "How far" in await person.next_text()
    assert "Which appeals" in await press(person, "25 km")
    assert "within 25 km" in await press(person, "Everyone")

    await person.say("/subscribe")
    assert "don't know" in await person.say("Atlantis")
    assert "Which appeals" in await person.say("peking")  # an alias, in any case
    assert "in Beijing" in await press(person, "Children only")

    listing = await person.say("/subscriptions")
    assert "1. within 25 km" in listing and "everyone" in listing
    assert "2. in Beijing · children only" in listing
    assert "still have 1" in await person.say("/unsubscribe 2")
    assert "Which area" in await person.say("/unsubscribe")
    assert "not get appeals any more" in await press(person, "All of them")
    assert "no alert areas" in await person.say("/subscriptions")


async def test_the_audience_is_whoever_covers_the_last_seen_place_once(reunite, people, coordinator, stand_in):
    lat, lon = BEIJING
    case = await seed_case(reunite, last_seen_lat=lat, last_seen_lon=lon, birth_year=1990)
    await seed_subscribers(reunite, stand_in, [
        {"chat_id": 4001, "point": north_of_beijing(10), "radius_km": 25},  # in
        {"chat_id": 4002, "point": north_of_beijing(30), "radius_km": 25},  # 30 km away, 25 km radius: out
        {"chat_id": 4003, "point": north_of_beijing(30), "radius_km": 100},  # in
        {"chat_id": 4004, "region": "Beijing"},  # in
        {"chat_id": 4005, "region": "Shanghai"},  # out
        {"chat_id": 4006, "point": north_of_beijing(1), "radius_km": 5},  # two areas: in, once
        {"chat_id": 4006, "region": "Beijing"},
        {"chat_id": 4007, "point": north_of_beijing(1), "radius_km": 5, "children_only": True},  # an adult: out
        {"chat_id": 4008, "point": north_of_beijing(1), "radius_km": 100},  # blocked the bot: out
    ])
    async with reunite.sessionmaker() as session:
        await session.execute(update(User).where(User.id == 4008).values(blocked_bot=True))
        await session.commit()
    expected = {4001, 4003, 4004, 4006}
    size = await broadcast_now(coordinator, case)
    assert "4 subscriber" in size and case.code in size
    broadcast = await wait_until_finished(reunite)
    assert broadcast.status == "done" and broadcast.audience == 4
    assert {chat for chat in range(4001, 4009) if cards_to(stand_in, chat)} == expected
    assert all(len(cards_to(stand_in, chat)) == 1 for chat in expected)
    card = cards_to(stand_in, 4006)[0]
    assert case.name in card["caption"] and card["reply_markup"]["inline_keyboard"][0][0]["text"] == "I have information"


async def test_a_case_without_a_point_goes_to_the_regions_its_place_names(reunite, coordinator, stand_in):
    case = await seed_case(reunite, last_seen_place="Xidan, 北京")
    await seed_subscribers(reunite, stand_in, [
        {"chat_id": 4101, "point": BEIJING, "radius_km": 100},  # a point cannot be compared with no point
        {"chat_id": 4102, "region": "Beijing"},
        {"chat_id": 4103, "region": "Shanghai"},
    ])
    assert "1 subscriber" in await broadcast_now(coordinator, case)
    await wait_until_finished(reunite)
    assert [bool(cards_to(stand_in, chat)) for chat in (4101, 4102, 4103)] == [False, True, False]
