"""What the console shows of face-match leads: the tip's face, the case's photos with the age the
person was in each, the strength, the status. Deciding a lead is :func:`bot.services.leads.review`,
the same call the chat's buttons make."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Case, CasePhoto, Face, MatchCandidate, Tip, TipMedia
from bot.services.matching import FaceCrop


@dataclass(frozen=True)
class CasePhotoView:
    id: int
    sha256: str
    age_years: float | None
    kind: str
    is_primary: bool


@dataclass(frozen=True)
class LeadView:
    candidate_id: int
    status: str
    similarity: float
    tip_reference: str
    tip_face_id: int
    case_code: str
    case_name: str
    case_face_id: int | None
    case_photos: list[CasePhotoView]


async def leads(session: AsyncSession, *, tip_id: int | None = None, candidate_ids: list[int] | None = None
                ) -> list[LeadView]:
    """The leads of one tip (any status, strongest first), or the candidates named."""
    query = (select(MatchCandidate, Tip.reference, Case.code, Case.name)
             .join(Tip, Tip.id == MatchCandidate.tip_id).join(Case, Case.id == MatchCandidate.case_id)
             .order_by(MatchCandidate.similarity.desc(), MatchCandidate.id))
    if tip_id is not None:
        query = query.where(MatchCandidate.tip_id == tip_id)
    if candidate_ids is not None:
        query = query.where(MatchCandidate.id.in_(candidate_ids))
    rows = (await session.execute(query)).all()
    case_ids = {candidate.case_id for candidate, *_ in rows}
    photos: dict[int, list[CasePhotoView]] = {}
    if case_ids:
        for photo in await session.scalars(select(CasePhoto).where(CasePhoto.case_id.in_(case_ids))
                                           .order_by(CasePhoto.is_primary.desc(), CasePhoto.id)):
            photos.setdefault(photo.case_id, []).append(
                CasePhotoView(photo.id, photo.sha256, photo.age_years, photo.kind, photo.is_primary))
    return [LeadView(candidate.id, candidate.status, candidate.similarity, reference, candidate.tip_face_id, code,
                     name, candidate.case_face_id, photos.get(candidate.case_id, []))
            for candidate, reference, code, name in rows]


async def face_crop(session: AsyncSession, face_id: int) -> FaceCrop | None:
    """Where a stored face is (its image and box), for a tile; None if it is gone."""
    row = (await session.execute(
        select(Face, TipMedia.sha256, CasePhoto.sha256)
        .outerjoin(TipMedia, TipMedia.id == Face.tip_media_id).outerjoin(CasePhoto, CasePhoto.id == Face.case_photo_id)
        .where(Face.id == face_id))).first()
    if row is None:
        return None
    face, tip_sha, case_sha = row
    return FaceCrop.of(face, tip_sha or case_sha)


async def is_shown_image(session: AsyncSession, sha256: str) -> bool:
    """Whether ``sha256`` is a tip image or a case photo (the console serves nothing else of the store)."""
    for column in (TipMedia.sha256, CasePhoto.sha256):
        if await session.scalar(select(column).where(column == sha256).limit(1)) is not None:
            return True
    return False
