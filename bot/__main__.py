"""The ``reunite`` command (same as ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from bot.config import SettingsError, load_settings

log = logging.getLogger("reunite")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: far too loud for a bot that sends hundreds a second
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def _serve_until_signal(start) -> None:
    """Start the bot, then run until SIGINT/SIGTERM or until it fails."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reunite = await start()
    stopped = asyncio.create_task(stop.wait())
    failed = asyncio.create_task(reunite.wait())
    try:
        await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            failed.result()
    finally:
        stopped.cancel()
        failed.cancel()
        await reunite.stop()


def cmd_run(args) -> int:
    from bot.app import Reunite

    settings = load_settings()
    if not settings.telegram_bot_token:
        print("TELEGRAM_BOT_TOKEN is not set. Get a token from @BotFather, or try `reunite sandbox`.",
              file=sys.stderr)
        return 2
    asyncio.run(_serve_until_signal(lambda: Reunite.start(settings)))
    return 0


def cmd_db_upgrade(args) -> int:
    from bot.db.migrate import upgrade_to_head

    settings = load_settings()
    upgrade_to_head(settings.database_url)
    print("database is up to date", file=sys.stderr)
    return 0


def cmd_sandbox(args) -> int:
    from bot.sandbox.run import run_sandbox

    asyncio.run(run_sandbox(args.port))
    return 0


def cmd_faces_embed(args) -> int:
    from bot.faces.cli import embed_command

    return embed_command(args.paths)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reunite", description="Reunite: tip line and flyers for missing people")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="migrate the database, then serve Telegram").set_defaults(func=cmd_run)
    sandbox = commands.add_parser("sandbox", help="local demo: no token, SQLite, browser chat")
    sandbox.add_argument("--port", type=int, default=8080)
    sandbox.set_defaults(func=cmd_sandbox)
    db = commands.add_parser("db", help="database tools").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="migrate to the newest schema").set_defaults(func=cmd_db_upgrade)
    faces = commands.add_parser("faces", help="face tools").add_subparsers(dest="faces_command", required=True)
    embed = faces.add_parser("embed", help="detect and embed every face of each file, as JSON lines")
    embed.add_argument("--json", action="store_true", required=True, help="JSON lines on stdout (the only format)")
    embed.add_argument("paths", nargs="+", metavar="PATH")
    embed.set_defaults(func=cmd_faces_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    # PTB 22.2+: RetryAfter.retry_after as a timedelta (we accept both), without a warning per 429
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        return args.func(args)
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
