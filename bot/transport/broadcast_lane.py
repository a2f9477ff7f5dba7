"""The sender's window onto the deliveries table: a few hundred broadcast sends at a time, never
the whole audience, read by id from where the last read stopped.

The sender asks the lane for work only when no answer or alert is ready, so broadcasts take what
those leave of the pace (DESIGN's order). Sends are claimed in the database (``sending``, committed)
just before they go; withdrawals (deleting the sent messages of a closed case) need no claim: a
repeated delete does no harm.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services import deliveries, outbox
from bot.services.deliveries import Card, DeliveryResult, Job

# an empty lane looks in the database this often (and at once after a commit that wrote a broadcast or
# a case: see broadcasts.lane_may_change)
IDLE_LOOK_INTERVAL = 0.5
MIN_LOOK_INTERVAL = 0.1
WINDOW_MIN = 64
WINDOW_MAX = 2000
# how far into the window to look for a chat that may receive now, per message wanted
SCAN_PER_SEND = 8


class BroadcastLane:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], rate: float, file_ids: dict[str, str]):
        self.sessionmaker = sessionmaker
        # the sender's file_ids by sha256: a card uploaded before (by another worker, or before a
        # restart) joins them when its broadcast is read, so it is sent by file_id, not uploaded again
        self._file_ids = file_ids
        # about two seconds of sending, within bounds
        self.window = int(min(WINDOW_MAX, max(WINDOW_MIN, 2 * rate)))
        self._jobs: deque[Job] = deque()
        self._after_id = 0  # pending deliveries are read in id order from here
        self._withdrawals_known: set[int] = set()
        self._cards: dict[int, dict[str, Card]] = {}
        self._next_look = 0.0
        self._last_look = 0.0

    def __len__(self) -> int:
        return len(self._jobs)

    def look_soon(self) -> None:
        """Something was committed that may have started, cancelled or withdrawn a broadcast."""
        self._next_look = min(self._next_look, self._last_look + MIN_LOOK_INTERVAL)

    async def refill(self) -> None:
        now = time.monotonic()
        if len(self._jobs) > self.window // 2 or now < self._next_look:
            return
        self._last_look = now
        room = self.window - len(self._jobs)
        async with self.sessionmaker() as session:
            jobs = await deliveries.pending_after(session, self._after_id, room)
            withdrawals = await deliveries.to_withdraw(session, self._withdrawals_known, room,
                                                       datetime.now(UTC))
            new_cards = await deliveries.cards_of(session, {job.broadcast_id for job in jobs} - self._cards.keys())
            self._file_ids.update(await outbox.uploaded_file_ids(session, [
                card.photo_sha256 for cards in new_cards.values() for card in cards.values()
                if card.photo_sha256 not in self._file_ids]))
        self._cards.update(new_cards)
        if jobs:
            self._after_id = jobs[-1].delivery_id
        elif not self._jobs:
            # nothing new and nothing waiting: read from the start next time, for deliveries another
            # worker committed after ones with higher ids (ids are handed out before commits)
            self._after_id = 0
        self._withdrawals_known.update(job.delivery_id for job in withdrawals)
        # taking down a closed appeal goes before sending more
        self._jobs.extendleft(reversed(withdrawals))
        self._jobs.extend(jobs)
        self._next_look = now if len(jobs) == room else now + IDLE_LOOK_INTERVAL

    def card(self, job: Job) -> Card | None:
        return self._cards.get(job.broadcast_id, {}).get(job.language)

    def take(self, count: int, reserve: Callable[[Job], bool]) -> list[Job]:
        """Up to ``count`` jobs in order, each one ``reserve`` accepts (its chat may receive now);
        the rest stay for later."""
        taken, skipped = [], []
        for _ in range(min(len(self._jobs), count * SCAN_PER_SEND)):
            job = self._jobs.popleft()
            if reserve(job):
                taken.append(job)
                if len(taken) == count:
                    break
            else:
                skipped.append(job)
        self._jobs.extendleft(reversed(skipped))
        return taken

    async def claim(self, jobs: list[Job], results: list[DeliveryResult]) -> tuple[list[Job], list[Job]]:
        """(jobs to send now, jobs dropped because their broadcast stopped or they are no longer
        pending). Sends are marked ``sending``, and ``results`` of earlier ones recorded, in one
        commit before this returns."""
        to_claim = [job.delivery_id for job in jobs if not job.claimed and not job.is_withdrawal]
        async with self.sessionmaker() as session:
            claimed = await deliveries.claim(session, to_claim, results, datetime.now(UTC))

        def may_go(job: Job) -> bool:
            return job.claimed or job.is_withdrawal or job.delivery_id in claimed

        return [job for job in jobs if may_go(job)], [job for job in jobs if not may_go(job)]

    def put_back_unclaimed(self, jobs: list[Job]) -> None:
        """Jobs taken but not claimed (the database did not answer): first in line again."""
        self._jobs.extendleft(reversed(jobs))

    def put_back(self, job: Job) -> None:
        """A claimed send Telegram refused with a 429: first in line once the pause is over."""
        self._jobs.appendleft(replace(job, claimed=True) if not job.is_withdrawal else job)
