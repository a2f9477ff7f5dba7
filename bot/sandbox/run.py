"""``reunite sandbox``: the Bot API stand-in, the bot on SQLite under ./data, and a browser chat.

No token and no network: the stand-in plays Telegram on 127.0.0.1, the page lets one person act as
a member of the public and as a coordinator side by side.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from bot.config import load_settings
from bot.console import ConsoleSite
from bot.sandbox.standin import StandIn

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "123456:SANDBOX"
COORDINATOR_ID = 1001
PRESET_USERS = [
    {"id": COORDINATOR_ID, "first_name": "Casey (coordinator)", "language_code": "en"},
    {"id": 2001, "first_name": "Alex (public)", "language_code": "en"},
    {"id": 2002, "first_name": "小明 (public)", "language_code": "zh-hans"},
]


async def run_sandbox(port: int) -> None:
    from bot.app import Reunite

    # TELEGRAM_* and DATABASE_URL are ignored: the sandbox never talks to the real Telegram
    base = load_settings({k: v for k, v in os.environ.items()
                          if not k.startswith("TELEGRAM_") and k not in ("DATABASE_URL", "WEBHOOK_URL")})
    # ./data outlives the sandbox: update ids from the clock (ms) stay above those of earlier runs,
    # which the bot has stored and would drop as already seen
    stand_in = StandIn(SANDBOX_TOKEN, bot_username=base.bot_username or "reunite_sandbox_bot",
                       first_update_id=int(time.time() * 1000))
    stand_in.preset_users = PRESET_USERS
    # the coordinators' console beside the chat page, at /console on the stand-in's server
    console = ConsoleSite()
    console.mount_on(stand_in.app)
    await stand_in.start("127.0.0.1", port)
    settings = base.with_overrides(telegram_bot_token=SANDBOX_TOKEN, telegram_api_url=stand_in.api_url,
                                   admins=base.admins | {COORDINATOR_ID}, webhook_url=None,
                                   console_url=stand_in.url, console_enabled=True)
    reunite = await Reunite.start(settings, console=console)
    print(f"\nReunite sandbox is ready: open {stand_in.url} in your browser (Ctrl+C stops it)\n", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await reunite.stop()
        await stand_in.stop()
