"""What every worker process of the bot (flyer rendering, face analysis) does when it starts."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading


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
