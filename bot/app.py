"""Wiring: database, PTB Application, update processor, sender, face worker, retention, and polling or
webhook."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telegram.ext import Application, ContextTypes

from bot import handlers
from bot.config import Settings
from bot.console import ConsoleBackend, ConsoleSite
from bot.db.migrate import upgrade_to_head_async
from bot.db.session import create_engine, create_sessionmaker
from bot.faces.worker_pool import FacePool
from bot.handlers import matches
from bot.handlers.common import REVIEW_FLOOR, ReuniteContext
from bot.services import broadcasts, outbox, retention, users
from bot.services.face_worker import FaceWorker
from bot.transport.http import AiohttpRequest
from bot.transport.polling import POLL_TIMEOUT, poll_forever
from bot.transport.processor import UpdateProcessor, collect_handler_error
from bot.transport.sender import MAX_IN_FLIGHT, Sender
from bot.transport.webhook import add_webhook_route, secret_from_token, webhook_path
from bot.workers import Workers, tune_process

log = logging.getLogger(__name__)


def api_request() -> AiohttpRequest:
    """The connection pool for calls to the Bot API (not the long poll); the sender uses it directly
    for broadcast card re-sends."""
    return AiohttpRequest(
        # the sender's calls in flight, plus room for handlers' photo downloads so they never wait
        connection_pool_size=MAX_IN_FLIGHT + 4,
        pool_timeout=10.0,
        # generous: a send that times out may be repeated, and a repeat is worse than a wait
        read_timeout=15.0,
        write_timeout=20.0,
        media_write_timeout=60.0,
    )


def build_application(settings: Settings, request: AiohttpRequest | None = None) -> Application:
    """The real PTB Application, pointed at TELEGRAM_API_URL; we poll and send ourselves."""
    api = settings.telegram_api_url
    application = (
        Application.builder()
        .token(settings.bot_token)
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .updater(None)
        .context_types(ContextTypes(context=ReuniteContext))
        # PTB on aiohttp, not its default httpx: 0.4 ms of CPU per call, not 1.1-2.7 (bench/RESULTS.md)
        .request(request or api_request())
        # one long poll at a time, its default read timeout covering the poll
        .get_updates_request(AiohttpRequest(connection_pool_size=1, read_timeout=POLL_TIMEOUT + 10))
        .build()
    )
    handlers.register(application, settings.user_rate_limit)
    application.add_error_handler(collect_handler_error)
    return application


async def _healthy(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


@dataclass
class Reunite:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    application: Application
    processor: UpdateProcessor
    sender: Sender
    web_runner: web.AppRunner | None = None
    tasks: tuple[asyncio.Task, ...] = ()
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    face_worker: FaceWorker | None = None
    workers: Workers | None = None
    console: ConsoleSite | None = None

    @classmethod
    async def start(cls, settings: Settings, *, migrate: bool = True, face_pool: FacePool | None = None,
                    console: ConsoleSite | None = None, own_flyer_pool: bool = True) -> Reunite:
        """Migrate, connect, and start receiving and sending.

        ``face_pool``: the face worker processes to use; by default the bot starts its own
        (``REUNITE_FACE_WORKERS`` of them) and :meth:`stop` stops them. Tests share one among bots.
        ``console``: the coordinators' console mounted on another web server (the sandbox's); by
        default, when the console is on (see :attr:`Settings.console_origin`), the bot serves it on
        its own server on PORT, beside the webhook if there is one.

        ``own_flyer_pool``: by default the flyer worker process starts now and warms up in the
        background (so the first ``/flyer`` renders at warm speed), and :meth:`stop` stops it. False:
        it starts at the first flyer and whoever started the bot stops it (``flyers.shutdown_pool``);
        tests share one among bots, most of which render no flyer."""
        tune_process()
        settings.media_dir.mkdir(parents=True, exist_ok=True)
        if migrate:
            await upgrade_to_head_async(settings.database_url)
        engine = create_engine(settings.database_url)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session:
            await users.bootstrap_admins(session, settings.admins)
            await session.commit()
        request = api_request()
        application = build_application(settings, request)
        await application.initialize()
        await application.start()
        sender = Sender(application.bot, engine, sessionmaker, settings.media_dir, settings.send_rate,
                        request=request)
        workers = Workers(face_pool, own_flyer_pool=own_flyer_pool)
        face_worker = FaceWorker(settings, sessionmaker, functools.partial(matches.review_keyboard, settings),
                                 on_queued=sender.push, faces=workers.face_pool)
        application.bot_data[REVIEW_FLOOR] = face_worker.floor  # the shortlist labels by it
        try:
            await face_worker.start()  # starts the face worker processes (they load the models), loads the index
        except BaseException:
            await workers.stop()
            raise

        def on_committed(queued: list, with_files: bool, broadcasts_changed: bool) -> None:
            sender.push(queued, broadcasts_changed)
            if with_files:
                face_worker.wake()  # a photo tip may be waiting for its faces

        processor = UpdateProcessor(application, sessionmaker, settings, on_committed=on_committed)
        self = cls(settings, engine, sessionmaker, application, processor, sender, face_worker=face_worker,
                   workers=workers)
        if settings.console_origin is not None:
            self.console = console or ConsoleSite()
            self.console.attach(ConsoleBackend(settings, sessionmaker, application.bot.username,
                                               lambda session: on_committed(outbox.committed_rows(session), False,
                                                                            broadcasts.lane_may_change(session)),
                                               face_worker.floor))
        workers.start_flyer_process()
        # watched with the others: if it failed, polling would wait for it forever
        tasks = [processor.start()]
        recovered = await processor.recover()
        if recovered:
            log.info("resuming %d stored updates", recovered)
        tasks += [asyncio.create_task(sender.run(), name="sender"),
                  asyncio.create_task(face_worker.run(), name="faces"),
                  # what is past its time goes, now and daily (privacy rule 4)
                  asyncio.create_task(retention.run_daily(sessionmaker, settings), name="retention")]
        if settings.webhook_url or (self.console is not None and console is None):
            await self._start_web_server()
        if settings.webhook_url:
            await self._set_webhook()
        else:
            tasks.append(asyncio.create_task(poll_forever(application.bot, processor.deliver, self.stopping),
                                             name="polling"))
        self.tasks = tuple(tasks)
        log.info("Reunite is running as @%s", application.bot.username)
        return self

    async def _start_web_server(self) -> None:
        """The webhook and the console (whichever are on) on PORT."""
        settings = self.settings
        web_app = web.Application()
        if settings.webhook_url:
            add_webhook_route(web_app, webhook_path(settings.webhook_url), self._webhook_secret(),
                              self.sessionmaker, self.processor.submit)
        if self.console is not None:
            self.console.mount_on(web_app)
        web_app.router.add_get("/healthz", _healthy)
        self.web_runner = web.AppRunner(web_app)
        await self.web_runner.setup()
        await web.TCPSite(self.web_runner, "0.0.0.0", settings.port).start()

    def _webhook_secret(self) -> str:
        """WEBHOOK_SECRET, or one derived from the token: a webhook never runs without a secret."""
        return self.settings.webhook_secret or secret_from_token(self.settings.bot_token)

    async def _set_webhook(self) -> None:
        settings = self.settings
        await self.application.bot.set_webhook(settings.webhook_url, secret_token=self._webhook_secret(),
                                               allowed_updates=["message", "edited_message", "callback_query",
                                                                "my_chat_member", "channel_post"])

    async def wait(self) -> None:
        """Until a task fails (for example an invalid token), which is then raised."""
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    async def stop(self) -> None:
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.processor.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        await self.application.stop()
        await self.application.shutdown()
        await self.engine.dispose()
