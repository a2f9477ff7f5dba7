"""Telegram's real limits, enforced by the stand-in: about 1 message/s to a person with short bursts
(an album counted as one message per photo), 20/minute to a group, about 30/s overall. When tips
come faster than a coordinator chat may receive them, alerts are merged into digests: none dropped,
none waiting without bound, no 429s."""

from __future__ import annotations

import json
import time

from tests.conftest import COORDINATOR_ID, settle, start_worker
from tests.helpers import jpeg_bytes, reference_in


async def test_a_burst_of_tips_reaches_a_coordinator_as_digests_without_429s(reunite, people, coordinator, stand_in):
    tipsters = [people(800 + n, f"Burst{n}") for n in range(40)]
    started = time.monotonic()
    for number, person in enumerate(tipsters):
        person.user.send_text(f"Burst sighting {number}")
    await settle(reunite, timeout=60)
    elapsed = time.monotonic() - started
    references = [reference_in(person.texts()[0]) for person in tipsters]
    # everyone is acknowledged (a send that timed out may be repeated, with the same reference)
    assert all({reference_in(text) for text in person.texts()} == {reference}
               for person, reference in zip(tipsters, references, strict=True))
    coordinator_text = json.dumps([m.get("text") for m in stand_in.sent_to(COORDINATOR_ID)], ensure_ascii=False)
    assert all(reference in coordinator_text for reference in references)
    # far fewer messages than tips, and at most about one per second
    alerts = stand_in.sent_to(COORDINATOR_ID)
    assert len(alerts) < 15
    assert len(alerts) <= elapsed + 2
    assert stand_in.stats["flood_429"] == 0
    assert elapsed < 30


async def test_a_coordinator_group_gets_at_most_twenty_messages_a_minute(stand_in, settings, people):
    stand_in.group(-300, "Search team")
    running = await start_worker(stand_in, settings, coordinator_chat_id=-300)
    try:
        tipsters = [people(900 + n, f"G{n}") for n in range(30)]
        for number, person in enumerate(tipsters):
            person.user.send_text(f"Group burst {number}")
            if number % 10 == 9:
                await settle(running, timeout=30)
        await settle(running, timeout=60)
        alerts = stand_in.sent_to(-300)
        text = json.dumps([m.get("text") for m in alerts], ensure_ascii=False)
        assert all(reference_in(person.texts()[0]) in text for person in tipsters)
        assert len(alerts) <= 20
        assert stand_in.stats["flood_429"] == 0
    finally:
        await running.stop()


async def test_a_photo_tips_alert_and_the_next_alert_reach_a_coordinator_at_once(reunite, people, coordinator,
                                                                                stand_in):
    """A person may receive a short burst: a second alert right after a photo tip's (its face-match
    alert, or as here another tip's) is not held back a second (DESIGN: p50 <= 300 ms to the match alert)."""
    people(810, "Photo").user.send_photo(jpeg_bytes(colour=(30, 160, 90)), caption="At the bus stop")
    photo_alert = await coordinator.next_message()
    photo_alert_at = time.monotonic()
    assert "photo" in photo_alert
    texter = people(811, "Text")
    texter.user.send_text("Same boy, walking north")
    text_alert = await coordinator.next_message()
    assert time.monotonic() - photo_alert_at < 0.5
    assert reference_in((await texter.wait(1))[0]["text"]) in text_alert["text"]
    await settle(reunite)
    assert stand_in.stats["flood_429"] == 0


async def test_after_an_album_a_coordinators_next_messages_wait_until_telegram_takes_them(
        reunite, people, coordinator, stand_in):
    """Telegram counts an album of N as N messages: the chat's next message waits for them, and an album
    right after a message waits until the chat can take the album."""
    tipster = people(812, "Album")
    tipster.user.send_album([jpeg_bytes(colour=(40 * n, 90, 200 - 40 * n)) for n in range(4)], caption="The gate")
    album = await coordinator.wait(4)
    album_at = time.monotonic()
    assert [m["_method"] for m in album] == ["sendMediaGroup"] * 4
    reference = reference_in(tipster.texts()[0])
    # the coordinator looks at the tip at once: its text, then its four photos again as one album
    answer = await coordinator.say(f"/tip {reference}")
    assert reference in answer
    # the stand-in's burst holds 3 of the album's 4 messages: a second each for the rest and the answer
    assert time.monotonic() - album_at >= 2.0
    shown = await coordinator.wait(9)
    assert [m["_method"] for m in shown[5:]] == ["sendMediaGroup"] * 4
    assert stand_in.stats["flood_429"] == 0
