"""The bot's worker processes and threads, and the process-wide settings they need, in one place:
:meth:`Workers.start` when the bot starts, :meth:`Workers.stop` when it stops.

- the face worker processes (:class:`~bot.faces.worker_pool.FacePool`), which analyse images;
- the flyer render process (:mod:`flyers.pool`), at background priority, warmed up in the background;
- the face executor's thread (:func:`~bot.faces.engine.face_executor`), which runs index searches.

Tests share one face pool and one flyer process among the bots of a session: a bot then neither
starts nor stops them.
"""

from __future__ import annotations

import asyncio
import sys

import flyers
from bot.child_process import start_flyer_worker
from bot.faces.engine import GIL_SWITCH_INTERVAL, shutdown_face_executor
from bot.faces.models import return_freed_memory_promptly
from bot.faces.worker_pool import FacePool


def tune_process() -> None:
    """Process-wide settings, once at start: glibc gives freed large blocks (index chunks, decoded
    photos) back to the system, and a thread holding the GIL hands it over sooner, so the face
    executor's searches are not held up by a busy event loop (bench/history/2026-11.md)."""
    return_freed_memory_promptly()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


class Workers:
    def __init__(self, face_pool: FacePool | None = None, *, own_flyer_pool: bool = True) -> None:
        """``face_pool``: one to share (not stopped here); by default the bot starts its own.
        ``own_flyer_pool``: False when the flyer process is shared (it starts at the first flyer)."""
        self.owns_face_pool = face_pool is None
        self.face_pool = face_pool or FacePool()
        self.owns_flyer_pool = own_flyer_pool
        self._flyer_warm_up: asyncio.Task | None = None

    def start_flyer_process(self) -> None:
        """The flyer process starts in the background, so the first /flyer renders at warm speed."""
        if self.owns_flyer_pool:
            self._flyer_warm_up = asyncio.create_task(start_flyer_worker(), name="flyer warm-up")

    async def stop(self) -> None:
        """Stop what this bot started; each waits for its processes to exit."""
        if self._flyer_warm_up is not None:
            self._flyer_warm_up.cancel()
            await asyncio.gather(self._flyer_warm_up, return_exceptions=True)
        if self.owns_flyer_pool:
            await asyncio.to_thread(flyers.shutdown_pool)
        if self.owns_face_pool:
            await asyncio.to_thread(self.face_pool.shutdown)
        shutdown_face_executor(wait=True)
