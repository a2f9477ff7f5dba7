"""What Telegram's answer to a failed call means for the sender: one reading for answers, alerts and
broadcast sends alike.

PTB maps Telegram's refusals to its exceptions (FIELD-NOTES): 429 -> ``RetryAfter``, 403 ->
``Forbidden`` (blocked, deactivated, kicked), 400 -> ``BadRequest``; anything else, a timeout or a
broken connection, may have reached Telegram, so the message may have arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

#: What the sender catches around a call: Telegram's refusals and the network's failures.
CALL_ERRORS = (TelegramError, OSError)


class Refused(Enum):
    WAIT = "wait"  # 429: pause everything for ``wait_seconds``, then send it again
    BLOCKED = "blocked"  # 403: the person blocked the bot; nothing more goes to them
    BAD_REQUEST = "bad_request"  # 400: this message can never go; the others can
    MAYBE_SENT = "maybe_sent"  # a timeout, a 5xx, a broken connection: it may have arrived


@dataclass(frozen=True)
class Refusal:
    kind: Refused
    error: str  # for the row's error column and the log: Telegram's words or the error's type
    wait_seconds: float = 0.0


def retry_after_seconds(error: RetryAfter) -> float:
    # PTB 22.2+ gives a timedelta when PTB_TIMEDELTA is set, an int otherwise
    value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def classify(error: BaseException) -> Refusal:
    """How the sender should take ``error`` (one of :data:`CALL_ERRORS`)."""
    if isinstance(error, RetryAfter):
        return Refusal(Refused.WAIT, "retry after", retry_after_seconds(error))
    if isinstance(error, Forbidden):
        return Refusal(Refused.BLOCKED, f"forbidden: {error.message}"[:200])
    if isinstance(error, BadRequest):
        return Refusal(Refused.BAD_REQUEST, f"bad request: {error.message}"[:200])
    return Refusal(Refused.MAYBE_SENT, type(error).__name__)
