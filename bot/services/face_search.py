"""Where face searches run: one interface, one backend per database.

* SQLite: :class:`InProcessSearch` keeps the reference faces of active cases in an
  :class:`~bot.faces.index.InProcessIndex` (float16 rows behind the int8 screen: exact ranking,
  about 150 MB per 100,000 faces), loaded at start and kept current by :meth:`apply` (what the
  :class:`~bot.services.matching.ReferenceWatcher` saw change, whoever wrote it) and
  :meth:`reconcile` (a checksum of the rows it should hold, for deletions by other processes).
  Stored tip faces are searched by streaming them from the database: retro-matching is rare, and
  years of tip faces need not live in memory.
* PostgreSQL: :class:`PgvectorSearch`, HNSW in the database (:mod:`bot.faces.pgvector_index`);
  nothing to load or keep current.

Searches of reference faces return normalised scores (:mod:`bot.faces.normalisation`) of the
current model's embeddings only: faces of another model are not comparable (they are re-embedded,
see :func:`bot.services.matching.requeue_other_models`), and a reference face is searched once it
has its cohort statistics (:mod:`bot.services.cohort`). Searches of tip faces return cosines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import LargeBinary, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Case, Face, TipMedia
from bot.db.session import is_sqlite
from bot.faces.engine import run_in_face_executor
from bot.faces.index import InProcessIndex, OwnerMatch
from bot.faces.models import EMBEDDING_SIZE
from bot.faces.pgvector_index import PgvectorIndex
from bot.services.cases import STATUS_ACTIVE

log = logging.getLogger(__name__)

# Rows read per query when loading reference faces or streaming tip faces.
_CHUNK_ROWS = 5000
# Case faces compared in one pass over the stored tip faces (bounds the scores held at once).
_PROBES_PER_PASS = 512


@dataclass(frozen=True)
class TipFaceMatch:
    """A stored tip face similar to one of a case's faces (``similarity``: their cosine)."""

    tip_face_id: int
    tip_id: int
    similarity: float
    probe_index: int  # which of the case's faces


@dataclass(frozen=True)
class ReferenceChanges:
    """What changed among the reference faces since the last look (see ReferenceWatcher)."""

    activated: frozenset[int] = frozenset()  # cases that became active
    deactivated: frozenset[int] = frozenset()  # cases no longer active (closed, or back in review)
    new_faces: tuple[tuple[int, int], ...] = ()  # (face id, case id): new faces of cases already active

    def __bool__(self) -> bool:
        return bool(self.activated or self.deactivated or self.new_faces)


class FaceSearch(Protocol):
    model_id: str  # embeddings of this model only

    async def load(self, session: AsyncSession) -> None:
        """Build whatever the backend keeps in memory (at start)."""

    async def apply(self, session: AsyncSession, changes: ReferenceChanges) -> None:
        """Follow changes among the reference faces."""

    async def reconcile(self, session: AsyncSession) -> bool:
        """Catch changes :meth:`apply` cannot see (deletions elsewhere); True if it had to."""

    def reference_count(self) -> int:
        """Searchable reference faces of active cases (as of the last load, apply or reconcile)."""

    async def best_cases(self, session: AsyncSession, probes: np.ndarray, k: int,
                         min_score: float) -> list[OwnerMatch]:
        """Active cases by their best reference face's normalised score against any probe, best first
        (owner = case)."""

    async def similar_tip_faces(self, session: AsyncSession, probes: np.ndarray, min_scores: np.ndarray,
                                per_probe: int) -> list[TipFaceMatch]:
        """For each probe (a case's face), its ``per_probe`` most similar stored tip faces whose cosine
        is at least the probe's ``min_scores`` entry."""


def _active_reference_faces(model_id: str, *columns):
    """``columns`` of the current model's reference faces of active cases."""
    return (select(*columns).select_from(Face).join(Case, Case.id == Face.case_id)
            .where(Face.case_id.is_not(None), Face.model_id == model_id, Case.status == STATUS_ACTIVE,
                   Face.cohort_std.is_not(None)))


def _with_vectors(model_id: str):
    return _active_reference_faces(model_id, Face.id, Face.case_id, type_coerce(Face.embedding, LargeBinary),
                                   Face.cohort_mean, Face.cohort_std)


def _unpack(blobs: list[bytes]) -> np.ndarray:
    """float32 BLOBs (as SQLite stores embeddings) -> (n, 512) array, without a Python loop per value."""
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(-1, EMBEDDING_SIZE)


class InProcessSearch:
    """Exact search in this process over the reference faces of active cases (SQLite deployments)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.index = InProcessIndex(dtype=np.float16)

    async def _load_faces(self, session: AsyncSession, query) -> None:
        after = 0
        while True:
            rows = (await session.execute(query.where(Face.id > after).order_by(Face.id).limit(_CHUNK_ROWS))).all()
            if not rows:
                return
            ids = np.array([row[0] for row in rows], dtype=np.int64)
            owners = np.array([row[1] for row in rows], dtype=np.int64)
            vectors = _unpack([row[2] for row in rows])
            means = np.array([row[3] for row in rows], dtype=np.float32)
            stds = np.array([row[4] for row in rows], dtype=np.float32)
            await run_in_face_executor(self.index.add, ids, owners, vectors, means, stds)
            after = int(ids[-1])

    async def load(self, session: AsyncSession) -> None:
        count = await session.scalar(_active_reference_faces(self.model_id, func.count()))
        self.index = InProcessIndex(dtype=np.float16, initial_capacity=max(1024, count or 0))
        await self._load_faces(session, _with_vectors(self.model_id))
        log.info("face index: %d reference faces of active cases loaded", len(self.index))

    async def apply(self, session: AsyncSession, changes: ReferenceChanges) -> None:
        for case_id in changes.deactivated:
            self.index.remove_owner(case_id)
        query = _with_vectors(self.model_id)
        if changes.activated:
            await self._load_faces(session, query.where(Face.case_id.in_(changes.activated)))
        if changes.new_faces:
            await self._load_faces(session, query.where(Face.id.in_([face_id for face_id, _ in changes.new_faces])))

    async def reconcile(self, session: AsyncSession) -> bool:
        """Reload if the index no longer holds exactly the active reference faces (count and id sum)."""
        count, id_sum = (await session.execute(
            _active_reference_faces(self.model_id, func.count(), func.coalesce(func.sum(Face.id), 0)))).one()
        if count == len(self.index) and int(id_sum) == int(self.index.face_ids().sum()):
            return False
        log.info("face index: reloading (%d faces held, %d in the database)", len(self.index), count)
        await self.load(session)
        return True

    def reference_count(self) -> int:
        return len(self.index)

    async def best_cases(self, session: AsyncSession, probes: np.ndarray, k: int,
                         min_score: float) -> list[OwnerMatch]:
        return await run_in_face_executor(self.index.best_per_owner, probes, k, min_score)

    async def similar_tip_faces(self, session: AsyncSession, probes: np.ndarray, min_scores: np.ndarray,
                                per_probe: int) -> list[TipFaceMatch]:
        """One pass over the stored tip faces per block of probes, keeping each probe's best ones."""
        probes = np.asarray(probes, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        min_scores = np.broadcast_to(np.asarray(min_scores, dtype=np.float32), len(probes))
        matches: list[TipFaceMatch] = []
        for first in range(0, len(probes), _PROBES_PER_PASS):
            block = slice(first, first + _PROBES_PER_PASS)
            matches += await self._tip_face_pass(session, probes[block], first, min_scores[block], per_probe)
        return matches

    async def _tip_face_pass(self, session: AsyncSession, probes: np.ndarray, first_probe: int,
                             min_scores: np.ndarray, per_probe: int) -> list[TipFaceMatch]:
        query = (select(Face.id, TipMedia.tip_id, type_coerce(Face.embedding, LargeBinary))
                 .join(TipMedia, TipMedia.id == Face.tip_media_id)
                 .where(Face.tip_media_id.is_not(None), Face.model_id == self.model_id))
        keys: list[tuple[int, int]] = []  # (face id, tip id) of every tip face read, in order
        best = np.empty((0, len(probes)), dtype=np.float32)  # each probe's best scores so far
        best_rows = np.empty((0, len(probes)), dtype=np.int64)  # ... and which of ``keys`` they are
        after = 0
        while True:
            rows = (await session.execute(query.where(Face.id > after).order_by(Face.id).limit(_CHUNK_ROWS))).all()
            if not rows:
                break
            vectors = _unpack([row[2] for row in rows])
            best, best_rows = await run_in_face_executor(_keep_best, best, best_rows, vectors, probes, len(keys),
                                                         per_probe)
            keys += [(face_id, tip_id) for face_id, tip_id, _ in rows]
            after = rows[-1][0]
        return [TipFaceMatch(face_id, tip_id, float(best[rank, probe]), first_probe + probe)
                for rank, probe in zip(*np.nonzero(best >= min_scores[None, :]), strict=True)
                for face_id, tip_id in [keys[best_rows[rank, probe]]]]


def _keep_best(best: np.ndarray, best_rows: np.ndarray, vectors: np.ndarray, probes: np.ndarray, first_row: int,
               per_probe: int) -> tuple[np.ndarray, np.ndarray]:
    """Each probe's (column's) ``per_probe`` best scores among those kept and a new chunk of rows."""
    scores = np.concatenate([best, vectors @ probes.T])
    chunk_rows = np.arange(first_row, first_row + len(vectors), dtype=np.int64)
    rows = np.concatenate([best_rows, np.broadcast_to(chunk_rows[:, None], (len(vectors), len(probes)))])
    if len(scores) <= per_probe:
        return scores, rows
    keep = np.argpartition(-scores, per_probe - 1, axis=0)[:per_probe]
    return np.take_along_axis(scores, keep, axis=0), np.take_along_axis(rows, keep, axis=0)


class PgvectorSearch:
    """HNSW search in PostgreSQL (pgvector); the database is the index."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.index = PgvectorIndex(model_id)
        self._count = 0

    async def _recount(self, session: AsyncSession) -> None:
        self._count = await session.scalar(_active_reference_faces(self.model_id, func.count())) or 0

    async def load(self, session: AsyncSession) -> None:
        await self._recount(session)

    async def apply(self, session: AsyncSession, changes: ReferenceChanges) -> None:
        await self._recount(session)

    async def reconcile(self, session: AsyncSession) -> bool:
        await self._recount(session)  # the index itself is the database: nothing to catch up
        return False

    def reference_count(self) -> int:
        return self._count

    async def best_cases(self, session: AsyncSession, probes: np.ndarray, k: int,
                         min_score: float) -> list[OwnerMatch]:
        return await self.index.best_per_owner(session, probes, k, min_score)

    async def similar_tip_faces(self, session: AsyncSession, probes: np.ndarray, min_scores: np.ndarray,
                                per_probe: int) -> list[TipFaceMatch]:
        probes = np.asarray(probes, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        min_scores = np.broadcast_to(np.asarray(min_scores, dtype=np.float32), len(probes))
        matches = []
        for probe_index, (probe, min_score) in enumerate(zip(probes, min_scores.tolist(), strict=False)):
            for hit in await self.index.tip_faces(session, probe, per_probe):
                if hit.score < min_score:
                    break  # best first
                matches.append(TipFaceMatch(hit.face_id, hit.owner_id, hit.score, probe_index))
        return matches


def face_search_for(database_url: str, model_id: str) -> FaceSearch:
    return InProcessSearch(model_id) if is_sqlite(database_url) else PgvectorSearch(model_id)
