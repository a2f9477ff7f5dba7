"""The ``reunite`` command (same as ``python -m bot``)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys

import uvloop

from bot.config import SettingsError, load_settings

log = logging.getLogger("reunite")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request at INFO: far too loud for a bot that sends hundreds a second
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # a line per layout step of every flyer (`reunite flyer render` renders in this process)
    logging.getLogger("weasyprint").setLevel(logging.WARNING)


async def _serve_until_signal(start) -> None:
    """Start the bot, then run until SIGINT/SIGTERM or until it fails."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reunite = await start()
    # Everything built at start (PTB's handlers, SQLAlchemy's mappers and compiled statements, the
    # face index's bookkeeping) lives as long as the process: left to the collector, each full
    # collection walked all of it, a pause that set the text tips' slowest answers (p99 at 300 tips/s
    # 171-238 -> 108-122 ms in interleaved runs, bench/RESULTS.md). Start-up garbage is collected
    # first, then the survivors are frozen: later collections only look at what was made since.
    gc.collect()
    gc.freeze()
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
    from flyers import fonts

    settings = load_settings()
    if not settings.telegram_bot_token:
        print("TELEGRAM_BOT_TOKEN is not set. Get a token from @BotFather, or try `reunite sandbox`.",
              file=sys.stderr)
        return 2
    fonts.warn_if_missing(log)
    uvloop.run(_serve_until_signal(lambda: Reunite.start(settings)))
    return 0


def cmd_db_upgrade(args) -> int:
    from bot.db.migrate import upgrade_to_head

    settings = load_settings()
    upgrade_to_head(settings.database_url)
    print("database is up to date", file=sys.stderr)
    return 0


def cmd_sandbox(args) -> int:
    from bot.sandbox.run import run_sandbox
    from flyers import fonts

    fonts.warn_if_missing(log)  # the sandbox starts anyway: Chinese flyers are then slow or boxed
    uvloop.run(run_sandbox(args.port))
    return 0


def cmd_faces_embed(args) -> int:
    from bot.faces.cli import embed_command

    return embed_command(args.paths)


def cmd_cases_import(args) -> int:
    from pathlib import Path

    from bot.services.case_import import import_cases

    return asyncio.run(import_cases(Path(args.file), load_settings(), skip_faces=args.skip_faces,
                                    photo_folders=[Path(folder) for folder in args.photos_from]))


def cmd_flyer_render(args) -> int:
    from pathlib import Path

    from bot.services.flyer_service import NotPrintable, flyer_for_print

    try:
        files = asyncio.run(flyer_for_print(load_settings(), args.code, args.lang))
    except NotPrintable as reason:
        print(reason, file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("poster.pdf", files.poster_pdf), ("poster.jpg", files.poster_jpg),
                       ("card.jpg", files.card_jpg)):
        (out / name).write_bytes(data)
        print(out / name)
    return 0


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
    cases = commands.add_parser("cases", help="case tools").add_subparsers(dest="cases_command", required=True)
    importing = cases.add_parser("import", help="create active cases from JSON Lines or CSV (see the README)")
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--skip-faces", action="store_true",
                           help="store the photos only; the running bot's face worker embeds their faces")
    importing.add_argument("--photos-from", action="append", default=[], metavar="DIR",
                           help="also take photos from this folder (repeatable); by default only from FILE's folder")
    importing.set_defaults(func=cmd_cases_import)
    flyer = commands.add_parser("flyer", help="flyer tools").add_subparsers(dest="flyer_command", required=True)
    render = flyer.add_parser("render", help="write poster.pdf, poster.jpg and card.jpg of an active case")
    render.add_argument("code", metavar="C-XXXXXX")
    render.add_argument("--out", required=True, metavar="DIR")
    render.add_argument("--lang", choices=("en", "zh", "bi"), help="default: the case's language")
    render.set_defaults(func=cmd_flyer_render)
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
