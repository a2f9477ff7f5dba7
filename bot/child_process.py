"""What every worker process of the bot (flyer rendering, face analysis) does when it starts."""

from __future__ import annotations

import os
import threading
import time

PARENT_CHECK_INTERVAL = 1.0


def exit_with_parent() -> None:
    """Leave when the bot that started this process is gone.

    A bot stopped with SIGKILL (or the OOM killer) never shuts its pools down, and a
    ProcessPoolExecutor worker would then wait for work forever: its own copy of the task queue
    keeps the queue's pipe open, so it never sees the end of it. Each restart would leave one more
    worker, models and fonts loaded, behind.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
