"""Face analysis in worker processes: :class:`FacePool` runs the :class:`~bot.faces.engine.FaceEngine`
(decode, detect, align, embed, crops) in a ``ProcessPoolExecutor`` of its own.

Why processes, not the threads it ran in before:

* **The GIL.** Analysing a photo is ~60 ms of CPU, much of it many small NumPy and OpenCV calls
  that each need the GIL back; the bot's event loop needs it for ~40-55 ms per photo too. In one
  process the two took turns on one lock: the bot never got much more than one core (0.9-1.1
  measured, 6-7 photos/s on two cores, bench/RESULTS.md), and both were slowed by hand-offs.
* **The second core.** A worker process has its own interpreter: inference runs on the other core
  while the event loop keeps its own, each without waiting for the other's lock.
* **Memory, one copy of the models.** The models (onnxruntime sessions, with insightface and
  scikit-image around them) live outside the bot's process, which keeps the face index and never
  loads a model. Workers are forked from multiprocessing's fork server, a clean interpreter the bot
  starts once, which loads the models first (:mod:`bot.faces.preloaded_engine`); each worker shares
  those pages instead of loading its own copy. Measured: a worker started on its own took ~140 MB
  of PSS, a forked one ~55 MB (bench/RESULTS.md, session 7), so there is one worker per core within
  the memory budget. What is forked never ran the bot's threads or event loop: it only imported the
  face libraries and loaded two models. Where there is no fork server, or a pool wants models other
  than those loaded there, each worker loads its own.

Each worker runs at a lower priority than the bot (nice +10: text tips are answered first). Work goes
by file *path*, never pixels: a worker reads the file itself, and only the results (embeddings, boxes,
small JPEG crops) travel back.

A worker that dies (killed, e.g. by the kernel's OOM killer on some monstrous image) breaks a
``ProcessPoolExecutor`` for good. The pool is then replaced; the image the dead worker was analysing
fails with :class:`FaceWorkerDied` (the caller treats it as unreadable,
:func:`bot.services.matching.analysed`), and calls that were only queued behind it run again in
the new pool. Which call a worker is running is kept in a little shared memory, so this is known,
not guessed. Workers leave with the bot: when its process dies they exit too.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from bot.child_process import exit_with_parent, run_in_background
from bot.faces.engine import DetectedFace, FaceEngine, FaceReport
from bot.faces.images import ImageSource
from bot.faces.models import MODEL_DIR_ENV, default_thread_count

log = logging.getLogger(__name__)

#: Environment variable: number of face worker processes (default: one per core).
WORKERS_ENV = "REUNITE_FACE_WORKERS"
#: The module the fork server imports before it forks any worker: it loads the models.
PRELOADED_ENGINE = "bot.faces.preloaded_engine"
#: Times a call is submitted again after the pool broke while it only waited in the queue.
MAX_RESUBMITS = 3


class FaceWorkerDied(RuntimeError):
    """The worker process died while it analysed this image (or kept dying): treat it as unreadable."""


def default_worker_count() -> int:
    """``REUNITE_FACE_WORKERS``, else one per core. The event loop needs no core of its own: workers
    run at a lower priority, so it gets the CPU first (measured on two cores: bench/RESULTS.md)."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    return max(1, int(configured) if configured else os.cpu_count() or 1)


# -- inside a worker process ----------------------------------------------------------------------

_engine: FaceEngine | None = None
_load_error: BaseException | None = None
_running: Any = None  # shared array: the call id each worker slot is running, 0 when idle
_slot = -1


def _start_worker(running, pids, next_slot, engine_for: tuple[str | None, int]) -> None:
    """Pool initializer: priority, signals, a slot in the shared arrays, then the models: those the
    fork server loaded if they are the ones ``engine_for`` (model folder, threads) asks for."""
    global _engine, _load_error, _running, _slot
    # Ctrl+C in a terminal reaches the whole process group: the bot decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    run_in_background()
    with next_slot.get_lock():
        _slot, next_slot.value = next_slot.value, next_slot.value + 1
    if _slot < len(running):
        _running, pids[_slot] = running, os.getpid()
    exit_with_parent()
    preloaded = sys.modules.get(PRELOADED_ENGINE)
    if preloaded is not None and preloaded.engine is not None and preloaded.loaded_for == engine_for:
        _engine = preloaded.engine
        return
    try:
        _engine = FaceEngine.load(engine_for[0], threads=engine_for[1])  # loads and warms up the models
    except Exception as error:  # every call reports it (e.g. ModelPackError) to the bot
        _load_error = error


def _terminated(signum, frame) -> None:
    """SIGTERM (the pool ends its other workers when one died, or the service stops): whatever this
    worker was analysing was not the cause, so its slot is cleared before it goes."""
    if _running is not None:
        _running[_slot] = 0
    os._exit(128 + signum)


def _call(call_id: int, what: str, *args, **kwargs) -> Any:
    """Run ``what`` (an engine method, or "ready") as call ``call_id``."""
    if _engine is None:  # the initializer could not load the models: every call says why
        raise _load_error or RuntimeError("the face worker has no engine")
    if what == "ready":
        return os.getpid(), _engine.model_id
    if _running is not None:
        _running[_slot] = call_id
    try:
        return getattr(_engine, what)(*args, **kwargs)
    finally:
        if _running is not None:
            _running[_slot] = 0


# -- in the bot -----------------------------------------------------------------------------------


def _worker_context():
    """The fork server, told to load the models before it forks anything; "spawn" where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([PRELOADED_ENGINE])  # takes effect when the server (re)starts
    return context


@dataclass
class _Generation:
    """One ProcessPoolExecutor and its shared arrays; replaced as a whole when a worker dies."""

    executor: ProcessPoolExecutor
    running: Any  # call id per worker slot, 0 when idle
    pids: Any  # process id per worker slot
    _shutdown_lock: threading.Lock = field(default_factory=threading.Lock)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Shut the executor down, one caller at a time; a later call returns once it is done.

        ``ProcessPoolExecutor.shutdown`` is not safe to run twice at once, and every call a broken
        pool fails asks for it (:meth:`FacePool._discard`): two at once each close the pool's result
        pipe, and the second closes a descriptor already closed (``OSError: [Errno 9] Bad file
        descriptor``) or, worse, one the process was given again meanwhile.
        """
        with self._shutdown_lock:
            self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)


_call_ids = itertools.count(1)


class FacePool:
    """Worker processes that analyse images with the face engine.

    ``await pool.start()`` starts them and returns the model id; then
    ``await pool.analyse_tip_image(path)`` and ``await pool.analyse_case_photo(path)`` (the engine's
    methods, in a worker); ``pool.shutdown()`` at the end. Usable from any event loop; thread-safe.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_worker_count()
        self.model_id: str | None = None
        # what the workers load, as this process's environment says now (the fork server's may be older)
        self._engine_for = (os.environ.get(MODEL_DIR_ENV) or None, default_thread_count())
        self._lock = threading.Lock()
        self._generation: _Generation | None = None

    # -- public -----------------------------------------------------------------------------------

    async def start(self) -> str:
        """Start the workers and wait until each has loaded and warmed up the models; the model id
        (stored with every embedding). Raises what loading raised (e.g. ModelPackError)."""
        ready = await asyncio.gather(*(self._run("ready") for _ in range(self.workers)))
        self.model_id = ready[0][1]
        log.info("face workers ready: %d process(es), model %s", self.workers, self.model_id)
        return self.model_id

    async def analyse_tip_image(self, image: ImageSource) -> FaceReport:
        """:meth:`FaceEngine.analyse_tip_image` in a worker; ``image`` is best a path (the worker reads it)."""
        return await self._run("analyse_tip_image", image)

    async def analyse_case_photo(self, image: ImageSource, *, with_crops: bool = True) -> list[DetectedFace]:
        """:meth:`FaceEngine.analyse_case_photo` in a worker; ``image`` is best a path."""
        return await self._run("analyse_case_photo", image, with_crops=with_crops)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (those started so far)."""
        with self._lock:
            generation = self._generation
        return [pid for pid in generation.pids[:] if pid] if generation else []

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers (calls still queued are cancelled); a later call starts new ones."""
        with self._lock:
            generation, self._generation = self._generation, None
        if generation is not None:
            generation.shutdown(wait=wait, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------------

    def _current(self) -> _Generation:
        with self._lock:
            if self._generation is None:
                context = _worker_context()
                running = context.Array("q", self.workers, lock=False)
                pids = context.Array("q", self.workers, lock=False)
                executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                               initializer=_start_worker,
                                               initargs=(running, pids, context.Value("i", 0), self._engine_for))
                self._generation = _Generation(executor, running, pids)
            return self._generation

    async def _run(self, what: str, *args, **kwargs) -> Any:
        loop = asyncio.get_running_loop()
        call_id = next(_call_ids)
        for _ in range(1 + MAX_RESUBMITS):
            generation = self._current()
            try:
                return await loop.run_in_executor(
                    generation.executor, functools.partial(_call, call_id, what, *args, **kwargs))
            except BrokenProcessPool:
                running = await self._discard(generation)
            if call_id in running:
                raise FaceWorkerDied("the face worker process died while analysing this image "
                                     "(killed, perhaps out of memory)")
            log.info("face call %d was not what the dead worker analysed: submitted again", call_id)
        raise FaceWorkerDied("face worker processes keep dying")

    async def _discard(self, broken: _Generation) -> set[int]:
        """Replace a broken pool; the calls its workers were running when it broke. The executor has
        ended its other workers (their SIGTERM handler clears their slots): wait for that first."""
        with self._lock:
            if self._generation is broken:
                self._generation = None
                log.error("a face worker process died (killed, or out of memory?): starting a new pool")
        await asyncio.to_thread(broken.shutdown)
        return {call_id for call_id in broken.running[:] if call_id}
