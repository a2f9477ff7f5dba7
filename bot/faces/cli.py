"""``reunite faces embed --json PATH...``: the case-photo pipeline on files, as JSON lines.

One line per file, in the order given::

    {"file": PATH as given,
     "faces": [{"bbox": [x1, y1, x2, y2], "score": 0.87, "embedding": [512 floats]}],
     "error": null}

Faces are largest first, boxes in the EXIF-rotated image's pixels, embeddings
L2-normalised (the product's own pipeline: every face found, small faces padded
rather than skipped, same face cap, flip averaging). A file that cannot be read
gets ``"faces": []`` and an ``"error"`` string, and the batch goes on. stdout
carries nothing but these lines: anything else (logs, native libraries'
prints) goes to stderr.

Exit status: 0 if at least one file was read, 1 if none could be (or the models
could not be loaded), 2 if no file was given.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np

from bot.faces.engine import DetectedFace, FaceEngine
from bot.faces.images import UnreadableImage
from bot.faces.models import stdout_to_stderr

log = logging.getLogger(__name__)


def embed_command(paths: list[str], *, engine: FaceEngine | None = None) -> int:
    """Embed the faces of each file in ``paths`` and write one JSON line per file to stdout."""
    if not paths:
        log.error("faces embed: no files given")
        return 2
    read = 0
    with _data_stream() as data_stream, stdout_to_stderr():
        try:
            engine = engine or FaceEngine.load()
        except Exception as exc:  # reported, not a traceback on stdout
            log.error("faces embed: cannot load the face models: %s", exc)
            return 1
        for path in paths:
            record, ok = embed_file(engine, path)
            read += ok
            _write_line(data_stream, record)
    return 0 if read else 1


@contextlib.contextmanager
def _data_stream() -> Iterator[TextIO]:
    """A stream to the real stdout that survives fd 1 being pointed at stderr."""
    sys.stdout.flush()
    try:
        fd = os.dup(sys.stdout.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation):
        yield sys.stdout  # stdout is not a file (embedded use): write to it as it is
        return
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        yield stream


def embed_file(engine: FaceEngine, path: str) -> tuple[dict[str, Any], bool]:
    """The JSON record for one file, and whether it could be read."""
    try:
        faces = engine.analyse_case_photo(path, with_crops=False)
    except UnreadableImage as exc:
        log.warning("faces embed: %s: %s", path, exc)
        return {"file": path, "faces": [], "error": str(exc)}, False
    except Exception as exc:  # one bad file must not stop the batch
        log.exception("faces embed: %s: unexpected failure", path)
        return {"file": path, "faces": [], "error": f"{type(exc).__name__}: {exc}"}, False
    return {"file": path, "faces": [_face_record(face) for face in faces], "error": None}, True


def _face_record(face: DetectedFace) -> dict[str, Any]:
    return {
        "bbox": _compact_floats(np.asarray(face.bbox, dtype=np.float32)),
        "score": _compact_floats(np.asarray([face.score], dtype=np.float32))[0],
        "embedding": _compact_floats(face.embedding),
    }


def _compact_floats(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32.

    Halves the output compared with printing them as doubles, losing nothing.
    """
    return [float(str(value)) for value in values.astype(np.float32)]


def _write_line(stream: TextIO, record: dict[str, Any]) -> None:
    stream.write(json.dumps(record, separators=(",", ":")) + "\n")
    stream.flush()  # a consumer reading line by line sees each file as it is done
