"""What a test's bot costs: CPU (this process, and its child processes once they exit) and wall time
of one start and stop as tests/conftest.py's ``start_worker`` does them, on SQLite.

    PYTHONPATH=$PWD python bench/bot_start_cost.py --starts 10 [--fresh]

The session's face worker processes are started first and not counted (tests share them). Each
start gets a copy of a database migrated once (as the ``database_url`` fixture makes them), or with
``--fresh`` an empty one that the start migrates. Run it against two checkouts, interleaved, to
compare them on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sqlite3
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> tuple[float, float]:
    """(this process, its exited children)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


async def measure(starts: int, fresh: bool) -> None:
    import flyers
    from bot.config import load_settings
    from bot.db.migrate import upgrade_to_head_async
    from bot.sandbox.standin import StandIn
    from tests import conftest

    folder = Path(tempfile.mkdtemp(prefix="bot-start-cost-"))
    template = folder / "template.db"
    await upgrade_to_head_async(f"sqlite+aiosqlite:///{template}")
    face_pool = conftest.shared_face_pool()
    stand_in = StandIn("123456:TEST", bot_username="reunite_test_bot", flood_control=True)
    await stand_in.start("127.0.0.1", 0)
    try:
        for number in range(starts + 1):  # the first one imports what a start needs: not counted
            if number == 1:
                (own_before, children_before), started = cpu_seconds(), time.monotonic()
            database = folder / f"reunite{number}.db"
            if not fresh:
                with contextlib.closing(sqlite3.connect(template)) as source, \
                        contextlib.closing(sqlite3.connect(database)) as copy:
                    source.backup(copy)
            settings = load_settings({"REUNITE_DATA_DIR": str(folder / f"data{number}"),
                                      "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                                      "REUNITE_ADMINS": str(conftest.ADMIN_ID)})
            running = await conftest.start_worker(stand_in, settings)
            await running.stop()
        own, children = cpu_seconds()
        print(f"{starts} starts ({'fresh' if fresh else 'template'} databases): per start and stop "
              f"{(own - own_before) / starts * 1000:.0f} ms CPU in the process, "
              f"{(children - children_before) / starts * 1000:.0f} ms in child processes, "
              f"{(time.monotonic() - started) / starts * 1000:.0f} ms wall")
    finally:
        await stand_in.stop()
        face_pool.shutdown()
        flyers.shutdown_pool()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--fresh", action="store_true", help="empty databases, migrated by each start")
    arguments = parser.parse_args()
    asyncio.run(measure(arguments.starts, arguments.fresh))


if __name__ == "__main__":  # the face worker processes are spawned: they import this module again
    main()
