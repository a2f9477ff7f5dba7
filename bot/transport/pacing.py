"""Telegram's flood limits as the sender keeps them: a token bucket per chat and one for the bot.

Limits (FIELD-NOTES): about 30 messages/s per bot overall (the bot paces at ``REUNITE_BROADCAST_RATE``,
25/s by default, a little under); about 1 message/s per person with short bursts, 20/minute per group.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bot.services.outbox import Outgoing

PRIVATE_CHAT_RATE = 1.0  # messages a second to one person
# Telegram allows "short bursts" (the stand-in models 3). One under it: the exact limit is not
# published, and a sender that has just started (a restart, another worker taking over) takes every
# chat's bucket for full while Telegram still counts what the last one sent.
PRIVATE_CHAT_BURST = 2
GROUP_CHAT_RATE = 20 / 60  # 20 a minute
# Enough for a photo tip's match alert to follow its tip alert in a group too; far under the 20 the
# stand-in's bucket holds. Telegram only says "20 a minute": counted as a sliding minute, a burst of B
# would let B - 1 more than that through, so B stays small (2 lets one more than a strict 3 s spacing).
GROUP_CHAT_BURST = 2
UNPACED_METHODS = {"answerCallbackQuery"}  # not messages: no flood limit


class ChatPace:
    """A chat's token bucket, as Telegram limits one chat: about one message a second with short
    bursts (20 a minute in a group). A strict interval instead would hold a photo tip's match alert a
    second behind its tip alert, and after an album of N, which Telegram counts as N messages, it
    would not wait long enough. Tokens are spent when a call ends: by then Telegram has counted it
    (a chat has one call in flight at a time)."""

    def __init__(self, chat_id: int):
        group = chat_id < 0
        self.rate = GROUP_CHAT_RATE if group else PRIVATE_CHAT_RATE
        self.burst = GROUP_CHAT_BURST if group else PRIVATE_CHAT_BURST
        self.tokens = float(self.burst)  # as of counted_at; below zero after an album bigger than the burst
        self.counted_at = time.monotonic()

    def spend(self, messages: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.counted_at) * self.rate) - messages
        self.counted_at = now

    def ready_at(self, messages: int = 1) -> float:
        """When the chat may take ``messages``: once the bucket holds that many, or is full for more,
        as the stand-in models Telegram (an album bigger than the burst then goes into debt). Else a
        /tip answer followed at once by the tip's photos as one album would be refused."""
        missing = min(messages, self.burst) - self.tokens
        return self.counted_at + max(0.0, missing) / self.rate

    def full_at(self) -> float:
        return self.ready_at(self.burst)


@dataclass
class ChatQueue:
    """One chat's rows waiting to be sent, best first, and its pace."""

    queue: list  # of (priority, id, Outgoing), kept sorted
    pace: ChatPace
    held_until: float = 0.0  # an album being gathered, an album waiting for its tokens, or a retry's backoff
    busy: bool = False
    version: int = 0

    @property
    def ready_at(self) -> float:
        return max(self.held_until, self.pace.ready_at())


def messages_in(batch: list[Outgoing]) -> int:
    """How many messages a call puts in its chat, as Telegram counts them against its limits."""
    if batch[0].method in UNPACED_METHODS:
        return 0
    return len(batch) if batch[0].method == "sendPhoto" else 1


class OverallPace:
    """The bot's own bucket: ``rate`` messages a second in all, with a fifth of a second of burst
    (which keeps it under Telegram's cap); a rate of 0 is unpaced (capacity benchmarks only)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = 1.0
        self._tokens_at = time.monotonic()

    def available(self) -> float:
        """Tokens there are now (refilled for the time since the last look)."""
        capacity = max(1.0, self.rate / 5)
        now = time.monotonic()
        self._tokens = min(capacity, self._tokens + (now - self._tokens_at) * self.rate)
        self._tokens_at = now
        return self._tokens

    def spend(self, cost: int) -> None:
        """Take ``cost`` tokens now (a broadcast send that was counted in :meth:`available`)."""
        if self.rate > 0:
            self._tokens -= cost

    async def take(self, cost: int) -> None:
        """Wait for a token, then take ``cost`` (an album costs as many messages as it has)."""
        if self.rate <= 0 or cost == 0:
            return
        while True:
            if self.available() >= 1.0:
                self._tokens -= cost
                return
            await asyncio.sleep((1.0 - self._tokens) / self.rate)
