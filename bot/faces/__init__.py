"""Faces: detection and embedding (insightface model_zoo on onnxruntime) and face search.

Importing this package loads no model; :func:`get_face_engine` (or
``FaceEngine.load()``) does, once per process.

    engine = await run_in_face_executor(get_face_engine)
    report = await engine.analyse_tip_image_async(jpeg_bytes)
    for face in report.faces:
        hits = index.best_per_owner(face.embedding, k_owners=5)
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
    DEFAULT_MATCH_THRESHOLD,
    POSSIBLE_MATCH_THRESHOLD,
    STRONG_MATCH_THRESHOLD,
    match_strength,
)

__all__ = [
    "DEFAULT_MATCH_THRESHOLD",
    "POSSIBLE_MATCH_THRESHOLD",
    "STRONG_MATCH_THRESHOLD",
    "DecodedImage",
    "DetectedFace",
    "FaceDetector",
    "FaceEmbedder",
    "FaceEngine",
    "FaceIndex",
    "FacePolicy",
    "FaceReport",
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
