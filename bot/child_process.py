"""What every worker process of the bot (flyer rendering, face analysis) does when it starts."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading

log = logging.getLogger(__name__)

#: How much lower than the bot's a worker process's scheduling priority is (nice increment): face
#: inference and flyer rendering wait a moment when the event loop (a text tip's answer) needs the CPU.
BACKGROUND_NICE = 10
#: A worker's oom_score_adj: should memory run out, the kernel kills a worker (replaced, one image or
#: flyer retried or lost) rather than the bot, whose process is the larger one.
BACKGROUND_OOM_SCORE_ADJ = 500


_in_background = False  # set once per process; a process forked from one that set it inherits it


def run_in_background() -> None:
    """Nice this worker process (call it first: threads it starts later inherit the priority) and
    offer it to the OOM killer before the bot. Once: a face worker forked from the fork server, which
    already runs in the background, is not lowered a second time."""
    global _in_background
    if _in_background:
        return
    _in_background = True
    try:
        os.nice(BACKGROUND_NICE)
    except OSError:
        log.debug("worker runs at the bot's priority")
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write(str(BACKGROUND_OOM_SCORE_ADJ))
    except OSError:  # not Linux
        pass


def exit_with_parent() -> None:
    """Leave the moment the bot that started this process is gone.

    A bot stopped with SIGKILL (or the OOM killer) never shuts its pools down, and a
    ProcessPoolExecutor worker would then wait for work forever: its own copy of the task queue
    keeps the queue's pipe open, so it never sees the end of it. Each restart would leave one more
    worker, models and fonts loaded, behind.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_flyer_process() -> None:
    """What a flyer worker runs first: a flyer can wait a moment on a busy machine, an answer to a
    tip should not (its warm-up, a sample flyer, is about a second of CPU at the bot's start)."""
    run_in_background()
    exit_with_parent()


async def start_flyer_worker() -> None:
    """Start the flyer render process at background priority and wait until it is warm."""
    import flyers  # here, not at the top: the face workers' fork server imports this module


    flyers.configure_pool(worker_setup=_start_flyer_process)
    await flyers.warm_up()
