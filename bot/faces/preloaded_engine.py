"""Imported by the face workers' fork server (:mod:`bot.faces.worker_pool`): it loads the models once,
and every worker forked from it shares their memory instead of loading its own copy.

Importing this module loads the models; nothing else should import it. What is loaded must be safe to
fork: a forked process has only the thread that forked, so no library may have started a thread pool
it will use later. onnxruntime starts none for one thread per inference (the default), so with more
(``REUNITE_FACE_THREADS``) nothing is preloaded; OpenCV's own pool is turned off first, as the face
workers analyse one photo each and gain nothing from it. A failure is kept, not raised:
multiprocessing's fork server would die of it, and each worker then loads the models itself and
reports what is wrong (a missing pack, say) as it always did. Like the workers, the fork server runs
at a lower priority than the bot: loading the models takes a second of CPU while the bot starts.
"""

from __future__ import annotations

import os

import cv2

from bot.child_process import run_in_background
from bot.faces.engine import FaceEngine
from bot.faces.models import MODEL_DIR_ENV, default_thread_count

run_in_background()

#: (model folder, onnxruntime threads) the engine was loaded for: the fork server's environment, as
#: it was when the bot started it. A pool that wants another engine loads its own.
loaded_for = (os.environ.get(MODEL_DIR_ENV) or None, default_thread_count())
engine: FaceEngine | None = None
if loaded_for[1] == 1:
    cv2.setNumThreads(1)
    try:
        engine = FaceEngine.load(loaded_for[0], threads=loaded_for[1])
    except Exception:  # noqa: BLE001 - the workers load again and report it
        engine = None
