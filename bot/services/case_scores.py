"""A case's score for a tip face: the normalised scores of all its photos fused,
``0.7 x best photo + 0.3 x mean over its photos`` (:func:`bot.faces.normalisation.case_score`; a
photo scores as its best face), and the best cases for a tip's faces ranked by it.

The search backends rank cases by their best face (``best_cases``); a fused score is never above
the best face's, so :func:`best_cases` asks the backend for more cases until no case left out can
still reach the top: exact in process, within HNSW's recall on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Face
from bot.faces.normalisation import case_score, normalised_score
from bot.services.cohort import as_matrix
from bot.services.face_search import FaceSearch

# float16 rows in process: a normalised score there may differ from the stored float32 one by this much
_ROUNDING = 0.02


@dataclass(frozen=True)
class CaseScore:
    """A case's fused score for one tip face, and the case's face that scored best for it."""

    case_id: int
    score: float
    face_id: int
    probe_index: int  # which tip face


@dataclass
class _CaseFaces:
    face_ids: np.ndarray
    photo_ids: np.ndarray
    vectors: np.ndarray
    means: np.ndarray
    stds: np.ndarray

    def scores(self, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fused score of the case for each probe, and which of its faces scored best for it."""
        z = normalised_score(self.vectors @ probes.T, self.means[:, None], self.stds[:, None])  # (faces, probes)
        photos = np.unique(self.photo_ids)
        per_photo = np.stack([z[self.photo_ids == photo].max(axis=0) for photo in photos])  # (photos, probes)
        fused = np.array([case_score(per_photo[:, column]) for column in range(len(probes))])
        return fused, self.face_ids[z.argmax(axis=0)]


async def _faces_of(session: AsyncSession, model_id: str, case_ids) -> dict[int, _CaseFaces]:
    """The searchable reference faces (with statistics) of ``case_ids``, by case."""
    rows = (await session.execute(
        select(Face.case_id, Face.id, Face.case_photo_id, Face.embedding,
               Face.cohort_mean, Face.cohort_std)
        .where(Face.case_id.in_(list(case_ids)), Face.model_id == model_id, Face.cohort_std.is_not(None))
        .order_by(Face.id))).all()
    grouped: dict[int, list] = {}
    for row in rows:
        grouped.setdefault(row.case_id, []).append(row)
    return {case_id: _CaseFaces(np.array([r[1] for r in group]), np.array([r[2] for r in group]),
                                as_matrix([r[3] for r in group]),
                                np.array([r[4] for r in group], dtype=np.float32),
                                np.array([r[5] for r in group], dtype=np.float32))
            for case_id, group in grouped.items()}


async def fused_scores(session: AsyncSession, model_id: str, probes_by_case: dict[int, np.ndarray]
                       ) -> dict[int, list[CaseScore]]:
    """For each case, its fused score for each of its probes (tip faces; a (n, 512) array), in order."""
    faces = await _faces_of(session, model_id, probes_by_case)
    scored = {}
    for case_id, probes in probes_by_case.items():
        if case_id not in faces:
            continue
        fused, best_faces = faces[case_id].scores(np.atleast_2d(probes))
        scored[case_id] = [CaseScore(case_id, float(score), int(face_id), index)
                           for index, (score, face_id) in enumerate(zip(fused, best_faces, strict=False))]
    return scored


async def best_cases(session: AsyncSession, search: FaceSearch, probes: np.ndarray, k: int, floor: float,
                     exclude: set[int] | frozenset[int] = frozenset()) -> list[CaseScore]:
    """The ``k`` active cases (not in ``exclude``) with the highest fused score for any of ``probes``
    (a tip's faces) at ``floor`` or above, best first; each with the tip face it scored for."""
    probes = np.atleast_2d(np.asarray(probes, dtype=np.float32))
    asked = 4 * (k + len(exclude))
    while True:
        by_best_face = await search.best_cases(session, probes, asked, floor)
        candidates = [match.owner_id for match in by_best_face if match.owner_id not in exclude]
        scored = await fused_scores(session, search.model_id, dict.fromkeys(candidates, probes))
        ranked = sorted((max(scores, key=lambda s: s.score) for scores in scored.values()),
                        key=lambda s: s.score, reverse=True)
        ranked = [score for score in ranked if score.score >= floor]
        # a case not asked for has a best face, so a fused score, at most the last one's best face
        if len(by_best_face) < asked or (len(ranked) >= k and ranked[k - 1].score > by_best_face[-1].score + _ROUNDING):
            return ranked[:k]
        asked *= 4
