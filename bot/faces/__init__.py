"""Faces: detection and embedding (insightface model_zoo on onnxruntime) and face search.

Importing this package loads no model. :class:`FaceEngine` is the plain, synchronous pipeline
(``FaceEngine.load()`` or :func:`get_face_engine` load the models, once per process); the bot runs
it in worker processes (:class:`FacePool`), so that its own process never loads a model:

    pool = FacePool()
    model_id = await pool.start()  # the workers load the models
    report = await pool.analyse_tip_image(path)
    for face in report.faces:
        hits = await run_in_face_executor(index.best_per_owner, face.embedding, 5)
    pool.shutdown()
"""

from bot.faces.engine import (
    DetectedFace,
    FaceEngine,
    FacePolicy,
    FaceReport,
    face_executor,
    get_face_engine,
    run_in_face_executor,
    shutdown_face_executor,
)
from bot.faces.images import DecodedImage, ImageTooLarge, UnreadableImage, decode_image
from bot.faces.index import FaceIndex, InProcessIndex, OwnerMatch, SearchHit
from bot.faces.models import FaceDetector, FaceEmbedder, ModelPackError, load_model_pack
from bot.faces.thresholds import (
    POSSIBLE_MATCH_THRESHOLD,
    STRONG_MATCH_THRESHOLD,
    match_strength,
)
from bot.faces.worker_pool import FacePool, FaceWorkerDied

__all__ = [
    "POSSIBLE_MATCH_THRESHOLD",
    "STRONG_MATCH_THRESHOLD",
    "DecodedImage",
    "DetectedFace",
    "FaceDetector",
    "FaceEmbedder",
    "FaceEngine",
    "FaceIndex",
    "FacePolicy",
    "FacePool",
    "FaceReport",
    "FaceWorkerDied",
    "ImageTooLarge",
    "InProcessIndex",
    "ModelPackError",
    "OwnerMatch",
    "SearchHit",
    "UnreadableImage",
    "decode_image",
    "face_executor",
    "get_face_engine",
    "load_model_pack",
    "match_strength",
    "run_in_face_executor",
    "shutdown_face_executor",
]
