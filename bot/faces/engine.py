"""The face pipeline around the plain models: what the product does with a photo.

Two entry points, one per kind of photo:

* :meth:`FaceEngine.analyse_case_photo` - a family's reference photo. Often an
  old, small, scanned childhood photo or a tight crop of a face, so nothing is
  skipped: when the detector finds nothing, the photo is padded onto a larger
  canvas and tried again. An empty list means "no usable face" (the caller asks
  the sender for another photo).
* :meth:`FaceEngine.analyse_tip_image` - a member of the public's photo. Faces
  too small or too blurred to compare are skipped and counted, so the report can
  say so; at most :attr:`FacePolicy.max_faces` faces are embedded.

Both return faces largest first, with boxes in the EXIF-rotated original image's
pixels, a 512-d L2-normalised float32 embedding, a JPEG crop for coordinators'
composite images, and the model id (stored with the embedding, so a model change
can re-embed). A case photo's embedding is the mean of the aligned crop's and its
mirror image's embeddings, renormalised; a tip face's is the crop's alone (half
the embedding time on the busiest path, for about half the mirror's small gain:
bench/FACES.md).

All of this is CPU-bound (about 60 ms of CPU per 1280 px tip photo) and synchronous, in the
insightface model_zoo style: the engine knows nothing about threads or processes. The bot runs it
in worker processes (:class:`bot.faces.worker_pool.FacePool`, which says why); one-shot commands
(``reunite faces embed``) call it directly. Never on an event loop.

:func:`run_in_face_executor` is the thread that runs the face work left in the bot's process: index
searches (NumPy and onnxruntime, which release the GIL), never an analysis.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cv2
import numpy as np

from bot.faces.images import DecodedImage, ImageSource, decode_image
from bot.faces.models import FaceDetector, FaceEmbedder, ModelPack, l2_normalise, load_model_pack

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Image shapes (height, width) the detector is warmed up with: each needs a session of its own.
WARM_UP_SHAPES = ((256, 256), (192, 256), (256, 192))


@dataclass(frozen=True)
class FacePolicy:
    """The product's rules around the models (values measured in bench/FACES.md)."""

    #: Faces embedded per image, largest first; the rest are counted as ignored.
    max_faces: int = 20
    #: Tip faces whose box is narrower than this (working-image pixels) are too
    #: small: about 8 px between the eyes, where even the same photo's
    #: similarity falls to ~0.7 and a cross-age comparison is noise.
    min_face_side_px: float = 20.0
    #: Tip faces whose aligned 112 px crop has a variance of Laplacian below
    #: this are too blurred (a Gaussian blur of sigma ~4 px at 40 px between the
    #: eyes ends up here; sharp faces measured 33-430).
    min_sharpness: float = 10.0
    #: Case photos: average the embeddings of the crop and its mirror image (test-time augmentation).
    flip_augmentation: bool = True
    #: The same for tip faces: off, as measured in bench/FACES.md (the review floor still holds).
    tip_flip_augmentation: bool = False
    #: Case photos with no face found: pad onto a canvas this many times larger, in turn.
    case_padding_factors: tuple[float, ...] = (2.0, 3.0)
    #: Face crops for coordinators: a square around the box, its longest side grown by this fraction
    #: (half on each side: hair, chin, a bit of background), black where it runs off the photo, this
    #: many px a side. They are the match alert's tiles (bot.services.match_alerts), so a fresh tip's
    #: tile needs no decode of the whole photo and still looks as one cut from the stored photo does.
    crop_expand: float = 0.60
    crop_side_px: int = 224
    crop_jpeg_quality: int = 90


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One embedded face. Coordinates are in the EXIF-rotated original image."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float  # detector confidence
    embedding: np.ndarray  # float32 (512,), unit length
    crop_jpeg: bytes  # a square around the face with some context (FacePolicy.crop_side_px)
    model_id: str
    landmarks: np.ndarray = field(repr=False)  # (5, 2): eyes, nose, mouth corners
    sharpness: float = 0.0  # variance of Laplacian of the aligned crop

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


@dataclass(frozen=True)
class FaceReport:
    """What a tip image yielded: the comparable faces, and how many were left out and why."""

    faces: list[DetectedFace]
    detected: int  # every face the detector found
    too_small: int  # skipped: too small to compare
    too_blurry: int  # skipped: too blurred to compare
    over_cap: int  # comparable, but beyond max_faces: not embedded
    image_size: tuple[int, int]  # (width, height) of the EXIF-rotated original

    @property
    def skipped(self) -> int:
        """Faces found but not compared, for whatever reason."""
        return self.too_small + self.too_blurry + self.over_cap


@dataclass
class _Candidate:
    """A detection in working-image coordinates, before embedding."""

    box: np.ndarray  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # (5, 2)

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def short_side(self) -> float:
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class _Aligned:
    """A detection aligned for the embedder, with how sharp the aligned face is."""

    candidate: _Candidate
    crop: np.ndarray  # aligned 112x112
    sharpness: float


class FaceEngine:
    """Detector + embedder + policy. Create once (or use :func:`get_face_engine`) and share.

    Thread-safe: onnxruntime sessions may be run from several threads and the
    engine keeps no per-call state.
    """

    def __init__(
        self,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        model_id: str,
        policy: FacePolicy | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.model_id = model_id
        self.policy = policy or FacePolicy()

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike | None = None,
        *,
        threads: int | None = None,
        policy: FacePolicy | None = None,
    ) -> FaceEngine:
        """Load the models (``REUNITE_FACE_MODEL_DIR`` or buffalo_s) and warm them up."""
        pack: ModelPack = load_model_pack(model_dir, threads=threads)
        engine = cls(pack.detector, pack.embedder, pack.model_id, policy)
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Run each model once so the first real photo does not pay for session set-up (the detector
        in the shapes of most photos: square, and 4:3 both ways, as Telegram's 1280x960)."""
        blank = np.full((256, 256, 3), 127, dtype=np.uint8)
        for height, width in WARM_UP_SHAPES:
            self.detector.detect(np.full((height, width, 3), 127, dtype=np.uint8))
        self.embedder.embed([blank[:112, :112]] * 2)

    # -- public pipelines -------------------------------------------------

    def analyse_case_photo(self, image: ImageSource, *, with_crops: bool = True) -> list[DetectedFace]:
        """Every face in a case photo, largest first (at most ``max_faces``); [] if none.

        Small faces are padded rather than skipped. Raises
        :class:`~bot.faces.images.UnreadableImage` for input that is not an image.
        """
        decoded = decode_image(image)
        candidates = self._detect(decoded.bgr)
        if not candidates:
            candidates = self._detect_padded(decoded.bgr)
        candidates.sort(key=lambda c: c.area, reverse=True)
        if len(candidates) > self.policy.max_faces:
            log.info(
                "case photo has %d faces; embedding the %d largest",
                len(candidates),
                self.policy.max_faces,
            )
            candidates = candidates[: self.policy.max_faces]
        aligned = [self._align(decoded.bgr, candidate) for candidate in candidates]
        return self._embed(decoded, aligned, with_crops=with_crops, mirror=self.policy.flip_augmentation)

    def analyse_tip_image(self, image: ImageSource) -> FaceReport:
        """The comparable faces of a tip image, largest first, and counts of those left out.

        Raises :class:`~bot.faces.images.UnreadableImage` for input that is not an image.
        """
        decoded = decode_image(image)
        candidates = sorted(self._detect(decoded.bgr), key=lambda c: c.area, reverse=True)
        accepted: list[_Aligned] = []
        too_small = too_blurry = over_cap = 0
        for candidate in candidates:
            if candidate.short_side < self.policy.min_face_side_px:
                too_small += 1
                continue
            aligned = self._align(decoded.bgr, candidate)
            if aligned.sharpness < self.policy.min_sharpness:
                too_blurry += 1
                continue
            if len(accepted) >= self.policy.max_faces:
                over_cap += 1
                continue
            accepted.append(aligned)
        return FaceReport(
            faces=self._embed(decoded, accepted, with_crops=True, mirror=self.policy.tip_flip_augmentation),
            detected=len(candidates),
            too_small=too_small,
            too_blurry=too_blurry,
            over_cap=over_cap,
            image_size=decoded.original_size,
        )

    def embed_crops(self, crops: list[np.ndarray], *, mirror: bool | None = None) -> np.ndarray:
        """Embed aligned 112x112 crops, with their mirror images if ``mirror`` (default: as case
        photos are); (N, 512) unit rows."""
        if mirror is None:
            mirror = self.policy.flip_augmentation
        if not crops or not mirror:
            return self.embedder.embed(crops)
        # Crops and mirror images go through get_feat together, in as few runs as the batch cap allows.
        mirrored = [np.ascontiguousarray(crop[:, ::-1]) for crop in crops]
        rows = self.embedder.embed(list(crops) + mirrored)
        count = len(crops)
        return l2_normalise(rows[:count] + rows[count:])

    # -- steps ----------------------------------------------------------------

    def _detect(self, bgr: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> list[_Candidate]:
        boxes, landmarks = self.detector.detect(bgr)
        shift = np.array(offset, dtype=np.float32)
        return [
            _Candidate(
                box=boxes[i, :4] - np.tile(shift, 2),
                score=float(boxes[i, 4]),
                landmarks=landmarks[i] - shift,
            )
            for i in range(len(boxes))
        ]

    def _detect_padded(self, bgr: np.ndarray) -> list[_Candidate]:
        """Retry detection on larger canvases: a face that fills the frame is missed otherwise.

        Upscaling a small scan needs no step of its own: the detector resizes
        every image to its input sizes (128 and 640 px). What it cannot do is
        see a face that fills the whole frame (anchors are sized for faces
        smaller than the input), so the face is made smaller relative to the
        canvas instead.
        """
        height, width = bgr.shape[:2]
        # The photo's mean colour as the border: a black or mirrored border
        # invents edges (mirroring even invents half-faces).
        fill = [int(v) for v in bgr.reshape(-1, 3).mean(axis=0)]
        for factor in self.policy.case_padding_factors:
            side = int(round(max(height, width) * factor))
            top, left = (side - height) // 2, (side - width) // 2
            canvas = cv2.copyMakeBorder(
                bgr, top, side - height - top, left, side - width - left,
                cv2.BORDER_CONSTANT, value=fill,
            )
            candidates = self._detect(canvas, offset=(left, top))
            if candidates:
                log.debug("case photo: face found after padding x%.1f", factor)
                return candidates
        return []

    def _align(self, bgr: np.ndarray, candidate: _Candidate) -> _Aligned:
        # Aligned on the unpadded photo: outside it norm_crop fills black, which
        # measured slightly better than the padded canvas's flat colour.
        crop = self.embedder.align(bgr, candidate.landmarks)
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        return _Aligned(candidate, crop, float(cv2.Laplacian(grey, cv2.CV_64F).var()))

    def _embed(
        self, decoded: DecodedImage, faces_found: list[_Aligned], *, with_crops: bool, mirror: bool
    ) -> list[DetectedFace]:
        if not faces_found:
            return []
        embeddings = self.embed_crops([found.crop for found in faces_found], mirror=mirror)
        width, height = decoded.original_size
        faces = []
        for found, embedding in zip(faces_found, embeddings, strict=True):
            candidate = found.candidate
            box = candidate.box / decoded.scale
            bbox = (
                float(np.clip(box[0], 0, width)),
                float(np.clip(box[1], 0, height)),
                float(np.clip(box[2], 0, width)),
                float(np.clip(box[3], 0, height)),
            )
            faces.append(
                DetectedFace(
                    bbox=bbox,
                    score=candidate.score,
                    embedding=np.ascontiguousarray(embedding, dtype=np.float32),
                    crop_jpeg=self._crop_jpeg(decoded.bgr, candidate.box) if with_crops else b"",
                    model_id=self.model_id,
                    landmarks=(candidate.landmarks / decoded.scale).astype(np.float32),
                    sharpness=found.sharpness,
                )
            )
        return faces

    def _crop_jpeg(self, bgr: np.ndarray, box: np.ndarray) -> bytes:
        """A square crop around the face with some context, for coordinators' composite images."""
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1]) * (1 + self.policy.crop_expand) / 2
        left, top = round(centre_x - half), round(centre_y - half)
        right, bottom = round(centre_x + half), round(centre_y + half)
        height, width = bgr.shape[:2]
        x1, y1, x2, y2 = max(0, left), max(0, top), min(width, right), min(height, bottom)
        if x2 <= x1 or y2 <= y1:
            return b""
        crop = cv2.copyMakeBorder(bgr[y1:y2, x1:x2], y1 - top, bottom - y2, x1 - left, right - x2,
                                  cv2.BORDER_CONSTANT, value=(0, 0, 0))
        factor = self.policy.crop_side_px / max(crop.shape[:2])
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        crop = cv2.resize(crop, (self.policy.crop_side_px, self.policy.crop_side_px), interpolation=interpolation)
        ok, encoded = cv2.imencode(
            ".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, self.policy.crop_jpeg_quality]
        )
        return encoded.tobytes() if ok else b""


# -- process-wide engine and executor ------------------------------------------

_engine: FaceEngine | None = None
_engine_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def get_face_engine() -> FaceEngine:
    """The process's engine, loaded on first use (models are loaded once per process).

    First use takes a second or so. In the bot only the face worker processes load it
    (:mod:`bot.faces.worker_pool`); one-shot commands and tests may load it in their own process.
    """
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = FaceEngine.load()
    return _engine


def face_executor() -> ThreadPoolExecutor:
    """The thread that runs the bot's in-process face work off the event loop: index searches and
    index loading (:mod:`bot.services.face_search`). Image analysis runs in worker processes instead
    (:class:`bot.faces.worker_pool.FacePool`).

    One thread: the face worker searches one tip at a time, and the int8 screen's matrix product
    already uses up to four onnxruntime threads of its own (:mod:`bot.faces.screen`).
    """
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces",
                                               initializer=_yield_to_the_event_loop)
    return _executor


#: How long a thread may keep the GIL while another waits for it (Python's default: 5 ms). Set at the
#: bot's start (:func:`bot.workers.tune_process`). Inference has left the process, but a search is
#: still a dozen NumPy and onnxruntime calls, each taking the GIL back from a busy event loop:
#: measured over 100,000 faces with the main thread running Python throughout, a search took p50
#: 41-52 ms at 5 ms and 9.5-21 ms at 0.5 ms, the main thread's own work rate unchanged
#: (bench/search_gil_bench.py, bench/history/2026-11.md).
#: Other threads that hand results to a busy loop (aiosqlite's, the face pool's) are likely to gain
#: the same way; that was not measured separately.
GIL_SWITCH_INTERVAL = 0.0005

#: Scheduling priority (nice) of the face executor's thread: a retro-matching pass streams every
#: stored tip face through it and the index loads through it at start, seconds of CPU at times; the
#: event loop (a text tip's answer) must still get the CPU first.
FACE_THREAD_NICE = 10


def _yield_to_the_event_loop() -> None:
    """Lower this thread's priority (Linux schedules threads, so this is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FACE_THREAD_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        log.debug("face threads run at normal priority")


async def run_in_face_executor(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run in-process face work (index searches) in the face executor, without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(face_executor(), functools.partial(fn, *args, **kwargs))


def shutdown_face_executor(wait: bool = True) -> None:
    """Stop the thread (application shutdown); a later call creates a new one."""
    global _executor
    with _executor_lock:
        if _executor is not None:
            _executor.shutdown(wait=wait)
            _executor = None
