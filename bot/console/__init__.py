"""The coordinators' console: server-rendered pages on the bot's own aiohttp server, under /console.

Every page and action calls the services the chat handlers call (one domain, two front ends); each
request is one database transaction, committed by :mod:`bot.console.auth`'s middleware, whose
queued messages then go to the sender like a handled update's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings


@dataclass(frozen=True)
class ConsoleBackend:
    """What the console needs of the running bot."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    bot_username: str  # for the flyers' QR codes
    # hands the committed session's queued outbox rows to the sender (as the update processor does)
    on_committed: Callable[[AsyncSession], None]
    # the review floor now (the face worker's: it rises with the open reference faces)
    review_floor: Callable[[], float]


class ConsoleSite:
    """The console's aiohttp application, mounted at /console on the bot's web server or, in the
    sandbox, on the stand-in's (before either starts); the bot attaches its backend once running."""

    PREFIX = "/console"

    def __init__(self) -> None:
        from bot.console import routes  # here: the routes' modules import this package


        self.backend: ConsoleBackend | None = None
        self.app = routes.build_app(self)

    def attach(self, backend: ConsoleBackend) -> None:
        self.backend = backend

    def mount_on(self, app: web.Application) -> None:
        app.add_subapp(self.PREFIX, self.app)
        app.router.add_get(self.PREFIX, _to_console_home)


async def _to_console_home(_request: web.Request) -> web.Response:
    raise web.HTTPFound(ConsoleSite.PREFIX + "/tips")
