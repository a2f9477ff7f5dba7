"""Retro-matching (DESIGN.md flow 2): when a case gets a new photo or becomes active, its reference
faces are compared with every stored tip face, scored as tips are (normalised per reference face,
the case's photos fused, the same floor: :mod:`bot.services.case_scores`), and the best old tips
become candidates of it. The face worker drives this (``_follow_reference_changes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Face, MatchCandidate, Tip, TipMedia
from bot.faces.normalisation import normalised_score
from bot.services import case_scores, matching
from bot.services.face_search import FaceSearch
from bot.services.matching import FaceCrop, MatchAlert, ReferenceFace

# Old tips that become candidates of one case at once (a case activated, or a photo added): the best.
MAX_RETRO_TIPS = 20


@dataclass(frozen=True)
class RetroMatch:
    """An old tip's face that looks like a case's reference face."""

    tip: Tip
    tip_face: Face
    image_sha256: str
    reference: ReferenceFace
    similarity: float

    def alert(self) -> MatchAlert:
        """Its match alert, before it is stored (candidate id 0)."""
        return MatchAlert(self.tip.reference, self.tip.alias, self.tip.created_at, retro=True,
                          candidates=[matching.alert_candidate(self.reference, self.similarity,
                                                               FaceCrop.of(self.tip_face, self.image_sha256))])


async def plan_retro_matches(session: AsyncSession, search: FaceSearch, faces_by_case: dict[int, list[int] | None],
                             floor: float) -> list[RetroMatch]:
    """Compare reference faces (per case: the ones listed, or all of them) with every stored tip face
    in one pass; for each active case, the best old tips (at most MAX_RETRO_TIPS, best first) whose
    case score reaches ``floor`` and that are not candidates of it yet."""
    whole_cases = [case_id for case_id, face_ids in faces_by_case.items() if face_ids is None]
    listed = [face_id for face_ids in faces_by_case.values() if face_ids is not None for face_id in face_ids]
    face_ids = await session.scalars(select(Face.id).where(
        Face.model_id == search.model_id, Face.cohort_std.is_not(None),
        Face.case_id.in_(whole_cases) | Face.id.in_(listed)))
    references = list((await matching.references_by_id(session, list(face_ids))).values())  # active cases only
    if not references:
        return []
    probes = np.stack([reference.face.embedding for reference in references])
    # only faces with statistics were chosen above
    means = np.array([reference.face.cohort_mean for reference in references], dtype=np.float32)
    stds = np.array([reference.face.cohort_std for reference in references], dtype=np.float32)
    # for one reference face the normalised score grows with the cosine: the floor is a cosine per face
    min_cosines = means + floor * stds
    best: dict[tuple[int, int], tuple[float, int]] = {}  # (case, tip) -> best score, tip face
    for match in await search.similar_tip_faces(session, probes, min_cosines, per_probe=2 * MAX_RETRO_TIPS):
        key = (references[match.probe_index].case.id, match.tip_id)
        score = float(normalised_score(match.similarity, means[match.probe_index], stds[match.probe_index]))
        if key not in best or score > best[key][0]:
            best[key] = (score, match.tip_face_id)
    already = set((await session.execute(select(MatchCandidate.case_id, MatchCandidate.tip_id).where(
        MatchCandidate.case_id.in_({case_id for case_id, _ in best})))).all())
    per_case: dict[int, list[int]] = {}  # case -> its old tips' faces, best first
    for (case_id, tip_id), (_, tip_face_id) in sorted(best.items(), key=lambda item: item[1][0], reverse=True):
        chosen = per_case.setdefault(case_id, [])
        if (case_id, tip_id) not in already and len(chosen) < MAX_RETRO_TIPS:
            chosen.append(tip_face_id)
    rows = await session.execute(
        select(Face, TipMedia.sha256, Tip).join(TipMedia, TipMedia.id == Face.tip_media_id)
        .join(Tip, Tip.id == TipMedia.tip_id)
        .where(Face.id.in_([face_id for face_ids in per_case.values() for face_id in face_ids])))
    tip_faces = {face.id: (tip, face, sha256) for face, sha256, tip in rows}
    per_case = {case_id: [face_id for face_id in face_ids if face_id in tip_faces]
                for case_id, face_ids in per_case.items()}
    # the case score fuses all the case's photos, not only those compared here
    scored = await case_scores.fused_scores(session, search.model_id, {
        case_id: np.stack([tip_faces[face_id][1].embedding for face_id in face_ids])
        for case_id, face_ids in per_case.items() if face_ids})
    best_faces = await matching.references_by_id(
        session, [score.face_id for scores in scored.values() for score in scores])
    return sorted((RetroMatch(*tip_faces[face_id], best_faces[score.face_id], score.score)
                   for case_id, scores in scored.items()
                   for face_id, score in zip(per_case[case_id], scores, strict=False)
                   if score.score >= floor and score.face_id in best_faces),
                  key=lambda match: match.similarity, reverse=True)


async def record_retro_match(session: AsyncSession, match: RetroMatch, now: datetime) -> int | None:
    """Store a retro match as a candidate; its id, None if another worker got there first."""
    return await matching.insert_candidate(session, match.tip.id, match.tip_face.id, match.reference,
                                           match.similarity, 1, now)
