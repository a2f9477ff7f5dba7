"""``python -m bot.sandbox.serve``: the Bot API stand-in on its own, for benchmarks and for running a
bot by hand against it (``reunite sandbox`` starts it together with the bot).

    python -m bot.sandbox.serve --port 8081 [--no-flood] [--flood-scale X] [--no-demo-users]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from bot.sandbox.standin import StandIn

DEMO_USERS = [
    {"id": 1001, "first_name": "Coordinator", "username": "coord_amy", "language_code": "en", "label": "coordinator"},
    {"id": 2001, "first_name": "Li", "last_name": "Wei", "language_code": "zh", "label": "public"},
    {"id": 2002, "first_name": "Sam", "language_code": "en", "label": "public"},
]


async def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.sandbox.serve",
                                 description="Local Telegram Bot API stand-in + browser chat")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--token", default="123456:SANDBOX")
    ap.add_argument("--no-flood", action="store_true", help="switch flood limits off (capacity benchmarks)")
    ap.add_argument("--flood-scale", type=float, default=1.0, help="multiply Telegram's limits (10 = 10x looser)")
    ap.add_argument("--no-demo-users", action="store_true", help="start without the preset demo users")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = StandIn(args.token, flood_control=not args.no_flood, flood_scale=args.flood_scale)
    if not args.no_demo_users:
        s.preset_users = [dict(u) for u in DEMO_USERS]
    await s.start(args.host, args.port)
    print(f"stand-in ready: {s.url}  TELEGRAM_API_URL={s.api_url}  TELEGRAM_BOT_TOKEN={s.token}  "
          f"flood_control={'on' if s.flood_control else 'off'} scale={s.flood_scale}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - Windows
            pass
    await stop.wait()
    await s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(uvloop.run(main(sys.argv[1:])))
