"""Flows 5, 6 and 8 through the stand-in, with Telegram's real flood limits: subscribing, who a
broadcast reaches (radius and region), the family's request and a coordinator's approval, pacing
with no 429s, blocked and failing chats, cancel, and closing a case mid-broadcast."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.config import Region
from bot.db.models import Broadcast, Delivery, Subscriber, User
from bot.services.media import media_path
from tests.conftest import NOTHING_MORE_WAIT, on_databases, settle, start_worker
from tests.helpers import press, seed_case

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
                                   created_at=datetime.now(UTC)))
        await session.commit()


def cards_to(stand_in, chat_id: int) -> list[dict]:
    return [m for m in stand_in.sent_to(chat_id) if m["_method"] == "sendPhoto"]


async def broadcast_now(coordinator, case) -> str:
    """The coordinator broadcasts ``case`` and presses Send; the size message's text."""
    size = await coordinator.say(f"/broadcast {case.code}")
    await press(coordinator, next(b["text"] for b in coordinator.received()[-1]["reply_markup"]["inline_keyboard"][0]
                                  if b["text"].startswith("Send")))
    return size


async def family_asks(family, case, button: str = "Ask the team") -> str:
    """``family`` asks for a broadcast of ``case`` and presses ``button`` (in their language); the
    request's reference."""
    await family.say(f"/broadcast {case.code}")
    return re.search(r"B-[0-9A-HJKMNP-TV-Z]{6}", await press(family, button)).group(0)


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

    await person.say("/report")  # a report under way is not lost to /subscribe
    assert "finish it, or send /cancel" in await person.say("/subscribe")
    assert "Share my location" not in person.texts()[-1]


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
    await seed_subscribers(reunite, stand_in, [{"chat_id": 4009, "region": "Beijing"}], language="zh")
    async with reunite.sessionmaker() as session:
        await session.execute(update(User).where(User.id == 4008).values(blocked_bot=True))
        await session.commit()
    expected = {4001, 4003, 4004, 4006, 4009}
    size = await broadcast_now(coordinator, case)
    assert "5 subscriber" in size and case.code in size
    broadcast = await wait_until_finished(reunite)
    assert broadcast.status == "done" and broadcast.audience == 5
    assert {chat for chat in range(4001, 4010) if cards_to(stand_in, chat)} == expected
    assert all(len(cards_to(stand_in, chat)) == 1 for chat in expected)
    card = cards_to(stand_in, 4006)[0]
    assert case.name in card["caption"]
    assert card["reply_markup"]["inline_keyboard"][0][0]["text"] == "I have information"
    chinese = cards_to(stand_in, 4009)[0]  # the card in their language, with the button in it too
    assert "请帮忙寻找" in chinese["caption"] and chinese["reply_markup"]["inline_keyboard"][0][0]["text"] == "我有线索"
    assert chinese["_files"] and chinese["photo"][-1]["file_id"] != card["photo"][-1]["file_id"]


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


async def test_a_family_asks_a_coordinator_approves_or_rejects(reunite, people, coordinator, stand_in, quick_chats):
    family = people(4201, "Mei")
    case = await seed_case(reunite, family_id=family.id, last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
    await seed_subscribers(reunite, stand_in, [{"chat_id": 4202, "region": "Beijing"},
                                               {"chat_id": 4203, "point": north_of_beijing(2), "radius_km": 5}])
    size = await family.say(f"/broadcast {case.code}")
    assert "2 subscriber" in size and "checks every broadcast" in size
    assert "with our team" in await press(family, "Ask the team")
    request = await coordinator.wait(1, predicate=lambda m: "asks to broadcast" in (m.get("text") or ""))
    reference = request[0]["text"].split("/approve ")[1].split()[0]
    assert not cards_to(stand_in, 4202)  # nothing before a coordinator's approval

    stranger = people(4204, "Eve")
    assert "coordinators" in await stranger.say(f"/approve {reference}")
    assert "No broadcast" in await stranger.say(f"/cancel_broadcast {reference}")  # not theirs
    coordinator.cursor = len(coordinator.received())
    assert "going to 2" in await coordinator.say(f"/approve {reference}")
    assert "not waiting" in await coordinator.say(f"/approve {reference}")  # double approval does nothing
    assert (await wait_until_finished(reunite, reference)).status == "done"
    summary = await family.wait(1, predicate=lambda m: "is finished" in (m.get("text") or ""))
    assert "sent to 2 of 2" in summary[0]["text"]
    assert len(cards_to(stand_in, 4202)) == len(cards_to(stand_in, 4203)) == 1

    second = await family_asks(family, case)
    assert "Usage" in await coordinator.say(f"/reject {second}")
    assert "rejected" in await coordinator.say(f"/reject {second} Please send a clearer photo first")
    told = await family.wait(1, predicate=lambda m: "did not send" in (m.get("text") or ""))
    assert "clearer photo" in told[0]["text"]
    await settle(reunite)
    assert len(cards_to(stand_in, 4202)) == 1
    listing = await family.say("/broadcasts")
    assert reference in listing and second in listing and "rejected" in listing


async def test_a_family_hears_when_their_request_is_cancelled_or_its_appeal_closes(reunite, people, coordinator,
                                                                                 stand_in, quick_chats):
    family = people(4301, "Mei", language_code="zh")
    case = await seed_case(reunite, family_id=family.id, last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
    await seed_subscribers(reunite, stand_in, [{"chat_id": 4302, "region": "Beijing"}])

    first = await family_asks(family, case, "请团队发送")
    await settle(reunite)  # the coordinator's copy of the request arrives before the answer to what they do
    assert "cancelled" in await coordinator.say(f"/cancel_broadcast {first}")
    told = await family.next_text()  # in their language, and kindly
    assert first in told and "取消" in told and "没有发出" in told and "写信给我们" in told

    mine = await family_asks(family, case, "请团队发送")  # cancelling their own request: answered once
    assert "已取消" in await family.say(f"/cancel_broadcast {mine}")

    last = await family_asks(family, case, "请团队发送")
    await settle(reunite)
    assert "is closed" in await coordinator.say(f"/close {case.code} withdrawn")
    await settle(reunite)
    closed = family.texts()[family.cursor:]
    assert len(closed) == 2 and "寻人启事已结束并撤下" in closed[0]  # the appeal, then the request
    assert last in closed[1] and "不会发出" in closed[1]
    assert sum(mine in text for text in family.texts()) == 3  # its size, "asked", "cancelled": nothing more
    assert not cards_to(stand_in, 4302)  # none of it was ever sent
    assert "stopped (appeal closed)" in await coordinator.say("/broadcasts")


async def test_pacing_answers_first_no_429_one_upload_and_progress(reunite, people, coordinator, stand_in):
    """Telegram's real limits: 60 subscribers at the default 25/s, while a tipster is answered at
    once; the card is uploaded once and re-sent by file_id; the progress message is edited."""
    case = await seed_case(reunite, last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
    subscribers = list(range(5000, 5060))
    await seed_subscribers(reunite, stand_in, [{"chat_id": chat, "point": north_of_beijing(chat % 20),
                                                "radius_km": 25} for chat in subscribers])
    await broadcast_now(coordinator, case)
    started = time.monotonic()
    await stand_in.wait_for(subscribers[5], timeout=30)
    tipster = people(5100, "Quick")
    asked = time.monotonic()
    assert "T-" in await tipster.say("I saw someone at the station")
    assert time.monotonic() - asked < 2.0  # an answer does not wait behind the broadcast
    broadcast = await wait_until_finished(reunite, timeout=60)
    elapsed = time.monotonic() - started
    assert broadcast.status == "done"
    cards = [cards_to(stand_in, chat) for chat in subscribers]
    assert all(len(received) == 1 for received in cards)
    assert stand_in.stats["flood_429"] == 0
    assert elapsed >= (len(subscribers) - 10) / 25  # paced near 25/s, not faster
    assert sum(bool(received[0]["_files"]) for received in cards) == 1  # uploaded once, then by file_id
    summary = await coordinator.wait(1, predicate=lambda m: "is finished" in (m.get("text") or ""))
    assert "sent to 60 of 60" in summary[0]["text"]
    progress = next(m for m in coordinator.received() if (m.get("text") or "").startswith("📣 " + broadcast.reference))
    assert "edit_date" in progress and "Sent 60 of 60" in progress["text"]


async def test_blocked_and_failing_chats(reunite, people, coordinator, stand_in):
    case = await seed_case(reunite, last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
    chats = [6001, 6002, 6003, 6004, 6005]
    await seed_subscribers(reunite, stand_in, [{"chat_id": chat, "region": "Beijing"} for chat in chats])
    stand_in.fail_next("sendPhoto", status=403, chat_id=6002, description="Forbidden: bot was blocked by the user")
    stand_in.fail_next("sendPhoto", status=400, chat_id=6003, description="Bad Request: chat not found")
    stand_in.fail_next("sendPhoto", status=502, chat_id=6004)
    stand_in.fail_next("sendPhoto", status=429, chat_id=6001, retry_after=1)  # all wait, then 6001 gets it once
    stand_in.user(6005).block_bot()  # the bot hears of it (my_chat_member) before it broadcasts
    await settle(reunite)
    assert "4 subscriber" in await broadcast_now(coordinator, case)
    await wait_until_finished(reunite)
    rows = await deliveries_by_chat(reunite)
    assert {chat: rows[chat].status for chat in rows} == {6001: "sent", 6002: "blocked", 6003: "failed",
                                                          6004: "unknown"}
    assert [len(cards_to(stand_in, chat)) for chat in chats] == [1, 0, 0, 0, 0]
    assert stand_in.stats["injected"] == 4  # every fault was met
    summary = await coordinator.wait(1, predicate=lambda m: "is finished" in (m.get("text") or ""))
    assert "1 failed, 1 had blocked the bot, 1 uncertain" in summary[0]["text"]
    async with reunite.sessionmaker() as session:
        assert (await session.get(User, 6002)).blocked_bot
    # a blocked chat is left out of the next broadcast (6002), until its person writes again (6005)
    people(6005, "Back").user.send_text("/subscriptions")
    await settle(reunite)
    assert "4 subscriber" in await coordinator.say(f"/broadcast {case.code}")


async def a_broadcast_under_way(reunite, coordinator, stand_in, chats: range):
    """A case broadcast to ``chats`` (subscribed to its region), once the eleventh has its card."""
    case = await seed_case(reunite, last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
    subscribers = list(chats)
    await seed_subscribers(reunite, stand_in, [{"chat_id": chat, "region": "Beijing"} for chat in subscribers])
    await broadcast_now(coordinator, case)
    await stand_in.wait_for(subscribers[10], timeout=30)
    return case, subscribers


async def test_cancel_stops_a_broadcast(reunite, coordinator, stand_in):
    _, subscribers = await a_broadcast_under_way(reunite, coordinator, stand_in, range(7000, 7100))
    async with reunite.sessionmaker() as session:
        reference = await session.scalar(select(Broadcast.reference))
    assert "cancelled" in await coordinator.say(f"/cancel_broadcast {reference}")
    assert (await wait_until_finished(reunite)).status == "cancelled"
    await settle(reunite)  # the sends in flight at the cancel have ended
    sent = sum(bool(cards_to(stand_in, chat)) for chat in subscribers)
    assert 10 <= sent < 60
    await asyncio.sleep(NOTHING_MORE_WAIT)
    assert sum(bool(cards_to(stand_in, chat)) for chat in subscribers) == sent
    assert "already cancelled" in await coordinator.say(f"/cancel_broadcast {reference}")


async def test_closing_a_case_stops_its_broadcast_and_takes_its_messages_down(reunite, people, coordinator,
                                                                              stand_in):
    case, subscribers = await a_broadcast_under_way(reunite, coordinator, stand_in, range(8000, 8080))
    # one message older than Telegram lets a bot delete: it stays, and its button says the appeal is closed
    async with reunite.sessionmaker() as session:
        await session.execute(update(Delivery).where(Delivery.chat_id == subscribers[0])
                              .values(sent_at=datetime.now(UTC) - timedelta(hours=49)))
        await session.commit()
    assert "is closed" in await coordinator.say(f"/close {case.code} found")
    assert (await wait_until_finished(reunite)).status == "withdrawn"
    # the card's file goes with the case's flyers
    async with reunite.sessionmaker() as session:
        cards = json.loads(await session.scalar(select(Broadcast.cards).where(Broadcast.case_id == case.id)))
    assert cards and not any(media_path(reunite.settings.media_dir, card["photo_sha256"]).exists()
                             for card in cards.values())
    deadline = time.monotonic() + 30
    while True:
        received = [m for chat in subscribers[1:] for m in cards_to(stand_in, chat)]
        if all(m["_deleted"] for m in received):
            break
        assert time.monotonic() < deadline, "broadcast messages were not deleted"
        await asyncio.sleep(0.2)
    assert 10 <= len(received) < 70  # it stopped part-way
    await settle(reunite)
    await asyncio.sleep(NOTHING_MORE_WAIT)
    assert len([m for chat in subscribers[1:] for m in cards_to(stand_in, chat)]) == len(received)
    oldest = people(subscribers[0], "Early")
    card = cards_to(stand_in, subscribers[0])[0]
    assert not card["_deleted"]
    oldest.cursor = len(oldest.received())
    oldest.user.press(card, "I have information")
    assert "appeal is closed" in await oldest.next_text()
    summary = await coordinator.wait(1, predicate=lambda m: "appeal was closed" in (m.get("text") or ""))
    assert case.name in summary[0]["text"]


@on_databases("postgresql")  # the one-sender lock is PostgreSQL's: one worker serves a SQLite database
async def test_two_workers_send_each_card_once_and_one_takes_over_when_the_other_stops(settings, people, admin,
                                                                                        stand_in):
    """DESIGN: exactly one worker sends at a time, because Telegram's limit is per bot token. Two
    workers on one database, both handling updates: nobody gets the card (or an answer) twice,
    nothing is refused with a 429, and when the sending worker stops the other finishes."""
    workers = [await start_worker(stand_in, settings) for _ in range(2)]
    running = list(workers)
    try:
        case = await seed_case(workers[0], last_seen_lat=BEIJING[0], last_seen_lon=BEIJING[1])
        subscribers = list(range(9100, 9250))
        await seed_subscribers(workers[0], stand_in, [{"chat_id": chat, "region": "Beijing"}
                                                      for chat in subscribers])
        await broadcast_now(admin, case)
        tipsters = [people(9300 + n, f"Seen{n}") for n in range(8)]
        for number, tipster in enumerate(tipsters):  # answers while it broadcasts, handled by either worker
            tipster.user.send_text(f"I think I saw him near gate {number}")
        await stand_in.wait_for(subscribers[50], timeout=30)
        sending = max(workers, key=lambda worker: worker.sender.sent_count)
        assert min(worker.sender.sent_count for worker in workers) == 0  # only one worker sends
        await sending.stop()
        running.remove(sending)
        other = running[0]
        broadcast = await wait_until_finished(other, timeout=60)
        await settle(other)

        assert broadcast.status == "done"
        assert [len(cards_to(stand_in, chat)) for chat in subscribers] == [1] * len(subscribers)
        # a stop leaves none unknown
        assert {row.status for row in (await deliveries_by_chat(other)).values()} == {"sent"}
        assert stand_in.stats["flood_429"] == 0
        assert other.sender.sent_count > 0  # it took over
        progress = [m for m in admin.received() if (m.get("text") or "").startswith("📣 " + broadcast.reference)]
        summaries = [m for m in admin.received() if "is finished" in (m.get("text") or "")]
        assert len(progress) == len(summaries) == 1 and "sent to 150 of 150" in summaries[0]["text"]
        for tipster in tipsters:
            assert len(await tipster.wait(1)) == 1
        await asyncio.sleep(NOTHING_MORE_WAIT)
        assert [len(tipster.received()) for tipster in tipsters] == [1] * len(tipsters)
        assert sum(bool(cards_to(stand_in, chat)[0]["_files"]) for chat in subscribers) == 1  # uploaded once
    finally:
        for worker in running:
            await worker.stop()


def test_regions_file_and_broadcast_rate_settings(tmp_path):
    from bot.config import SettingsError, load_settings

    regions = tmp_path / "regions.json"
    regions.write_text('[{"name": "Beijing", "aliases": ["北京"], "lat": 39.9, "lon": 116.4, "radius_km": 60}]',
                       encoding="utf-8")
    settings = load_settings({"REUNITE_REGIONS_FILE": str(regions), "REUNITE_SEND_RATE": "10",
                              "REUNITE_BROADCAST_RATE": "20"})
    assert settings.regions == (Region("Beijing", ("北京",), 39.9, 116.4, 60.0),)
    assert settings.send_rate == 20.0  # the design's name wins over the older one
    assert load_settings({"REUNITE_SEND_RATE": "10"}).send_rate == 10.0
    regions.write_text('[{"name": "Nowhere", "lat": 95, "lon": 0, "radius_km": 5}]', encoding="utf-8")
    with pytest.raises(SettingsError, match="REUNITE_REGIONS_FILE"):
        load_settings({"REUNITE_REGIONS_FILE": str(regions)})
