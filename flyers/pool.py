"""The flyer worker process: renders off the caller's event loop, warm from the first call.

Rendering is CPU-bound and pypdfium2 is not thread-safe, so the bot renders in a long-lived worker
process started with "spawn" (a clean interpreter, safe whatever threads the bot runs). The caller
may hand :func:`configure_pool` a ``worker_setup`` function that each worker runs first (the bot
lowers the worker's priority and makes it exit with the bot).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from .model import FlyerCase, FlyerFiles, Lang
from .renderer import render_flyers

log = logging.getLogger(__name__)
T = TypeVar("T")


_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_pool_workers = 1
_worker_setup: Callable[[], None] | None = None


def _warm_worker(setup: Callable[[], None] | None) -> None:
    """Process initializer: the caller's ``setup`` first, then fonts, WeasyPrint and pdfium once,
    so the first real render is as fast as the later ones (the first CJK layout alone takes ~0.5 s)."""
    if setup is not None:
        setup()
    sample = FlyerCase(
        code="C-000000", name="Warm 预热", last_seen_place="—",
        missing_since=datetime(2020, 1, 1, tzinfo=UTC),
        deep_link_url="https://t.me/x?start=c_warm", as_of=date(2020, 1, 2))
    try:
        render_flyers(sample, "bi")
    except Exception:  # never let warming kill the worker; the real render will report
        log.exception("flyer worker warm-up failed")


def configure_pool(max_workers: int = 1, worker_setup: Callable[[], None] | None = None) -> None:
    """Set the number of render processes (default 1; 2 on a machine with cores to spare) and
    what each runs first (a module-level function: it is pickled by name). Takes effect for the
    next pool created."""
    global _pool_workers, _worker_setup
    _pool_workers = max(1, int(max_workers))
    _worker_setup = worker_setup


def _get_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # "spawn": a clean interpreter, safe whatever threads the bot runs; pypdfium2
            # is not thread-safe, so each worker renders one flyer at a time.
            _pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=_pool_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_worker,
                initargs=(_worker_setup,),
            )
        return _pool


def _discard_pool(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def shutdown_pool() -> None:
    """Stop the worker processes (call on application shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _ping() -> bool:
    return True


async def warm_up() -> None:
    """Start the worker process(es) and wait until they are warm. Optional: call at
    startup so the first ``/flyer`` is answered at warm speed."""
    pool = _get_pool()
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, _ping) for _ in range(_pool_workers)))


async def run_in_worker(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a warm flyer worker process (``fn`` must be picklable:
    a module-level function). If a worker died (killed, out of memory), the pool is
    recreated and the call retried once."""
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        pool = _get_pool()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except concurrent.futures.process.BrokenProcessPool:
            _discard_pool(pool)
            if attempt == 2:
                raise
            log.warning("flyer worker pool broke; restarting it")
    raise AssertionError("unreachable")


async def render_flyers_async(case: FlyerCase, lang: Lang | None = None) -> FlyerFiles:
    """:func:`render_flyers` in a warm worker process, off the event loop."""
    return await run_in_worker(render_flyers, case, lang)
