"""Long polling that stores updates before confirming them to Telegram.

PTB's own Updater moves the offset on as soon as updates are queued in memory, so a crash loses
them (FIELD-NOTES). Here the offset moves only after the updates are committed to the inbox, by the
update processor's round that handles them (or stores them to wait their turn).
"""

from __future__ import annotations

import asyncio
import logging
import warnings

from telegram import Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBUserWarning

from bot.transport.refusals import retry_after_seconds

log = logging.getLogger(__name__)

POLL_TIMEOUT = 25
POLL_LIMIT = 100

# We ask for raw JSON on purpose: an update PTB cannot parse (a newer Bot API field, say) must still
# be stored and confirmed, and be set aside by the processor, rather than stop the polling loop.
warnings.filterwarnings("ignore", message=r".*getUpdates.*", category=PTBUserWarning)


async def poll_forever(bot, deliver, stopping: asyncio.Event) -> None:
    """Poll until cancelled, or until ``stopping`` is set: a stop sets it as well as cancelling the
    task, because under heavy load a cancellation was seen to get lost inside the HTTP client's
    long poll (the task went on polling and the stop hung); the flag ends the loop regardless."""
    await bot.delete_webhook(drop_pending_updates=False)
    offset: int | None = None
    backoff = 1.0
    while not stopping.is_set():
        try:
            payloads = await bot.do_api_request(
                "getUpdates",
                api_kwargs={"offset": offset, "timeout": POLL_TIMEOUT, "limit": POLL_LIMIT,
                            "allowed_updates": Update.ALL_TYPES},
                read_timeout=POLL_TIMEOUT + 10,
            )
        except RetryAfter as error:
            await asyncio.sleep(retry_after_seconds(error))
            continue
        except InvalidToken:
            raise
        except Conflict:
            log.error("another process is polling this bot token; retrying in %.0fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        except (TimedOut, NetworkError) as error:
            log.warning("getUpdates failed (%s); retrying in %.0fs", type(error).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        if not payloads:
            continue
        # stored (and handled where they can be) in one commit, retried while the database is locked
        # or down: until then the offset stays and Telegram keeps them
        await deliver(payloads)
        # only now may Telegram forget them: the next call confirms everything below the offset
        offset = max(int(p["update_id"]) for p in payloads) + 1
