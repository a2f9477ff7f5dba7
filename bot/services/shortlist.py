"""A case's shortlist (DESIGN.md "Face leads across ages"): the stored tip faces most like the case,
best first, whatever the review floor, for coordinators to confirm or reject one by one.

Computed when asked, from the faces table: every tip face ever received (and still stored) is
compared, so a tip that arrived a second ago, or a photo just added to the case, is in the next
look; there is nothing to keep current. Each of the case's reference faces brings its most similar
tip faces (:meth:`~bot.services.face_search.FaceSearch.similar_tip_faces`: exact on SQLite, HNSW on
PostgreSQL); those are then scored exactly against every reference face of the case.

Scores: every per-reference score goes through :func:`reference_score` and the fusion of a case's
reference faces through :func:`case_score`, the one place to change how a case scores.

A decision is a :class:`~bot.db.models.MatchCandidate` row, the same as a match alert's: Confirm
makes the (tip face, case) a confirmed lead (/matches shows it), Reject a rejected one. A rejected
face never comes back in the shortlist, nor as a new candidate of that case (a candidate is unique
per tip face and case). So decisions are purged as candidates are: with the case's biometrics when
it closes (flow 8), with the tip face when its retention ends (the foreign key cascades).

Nothing here is ever shown to a tipster, a family or the public (privacy rule 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    MATCH_CONFIRMED,
    MATCH_REJECTED,
    PRIORITY_ACK,
    Case,
    CasePhoto,
    Face,
    MatchCandidate,
    OutboxMessage,
    Tip,
    TipMedia,
)
from bot.db.statements import dialect_of
from bot.faces.normalisation import case_score as fused_case_score
from bot.faces.normalisation import normalised_score
from bot.faces.thresholds import match_strength
from bot.i18n import t
from bot.services import audit, leads, outbox
from bot.services.cases import STATUS_ACTIVE
from bot.services.face_search import face_search_for
from bot.services.leads import ReviewOutcome
from bot.services.match_alerts import CompositeRow, store_rows
from bot.services.matching import FaceCrop

#: How far down a shortlist goes: a list for people to read, not an export.
SHORTLIST_LENGTH = 50
#: ``rank`` of a candidate that a coordinator decided from a shortlist rather than from a match alert.
SHORTLIST_RANK = 0


@dataclass(frozen=True)
class CaseFace:
    """One reference face of the case, as scoring and the composite need it."""

    face_id: int
    embedding: np.ndarray
    crop: FaceCrop
    photo_id: int
    photo_age: float | None
    cohort_mean: float  # its cosine scores' robust mean and spread against the cohort
    cohort_std: float


# -- scores ---------------------------------------------------------------------------------------


def reference_score(raw_cosine: np.ndarray, reference: CaseFace) -> np.ndarray:
    """Tip faces' normalised scores against one reference face, from their cosine similarities to it
    (as match alerts score them). It rises with the cosine: the tip faces nearest by cosine to a
    reference face are its best-scoring ones."""
    return normalised_score(raw_cosine, reference.cohort_mean, reference.cohort_std)


def case_score(scores: np.ndarray, references: list[CaseFace]) -> np.ndarray:
    """Tip faces' scores against the case, from their scores against each of its reference faces
    (``scores``: one row per tip face, one column per reference face, in ``references``' order):
    each photo's best face, fused over the photos as match alerts fuse them
    (:func:`bot.faces.normalisation.case_score`)."""
    photo_ids = np.array([reference.photo_id for reference in references])
    per_photo = np.stack([scores[:, photo_ids == photo].max(axis=1) for photo in np.unique(photo_ids)], axis=1)
    return np.array([fused_case_score(row) for row in per_photo])


def _scored(tip_vectors: np.ndarray, references: list[CaseFace]) -> tuple[np.ndarray, np.ndarray]:
    """Each tip face's case score, and which reference face scored best for it."""
    raw = tip_vectors @ np.stack([reference.embedding for reference in references]).T
    per_reference = np.stack([reference_score(raw[:, column], reference)
                              for column, reference in enumerate(references)], axis=1)
    return case_score(per_reference, references), per_reference.argmax(axis=1)


# -- the list -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A tip face on a case's shortlist."""

    number: int  # its place on the list, from 1
    tip_face_id: int
    tip_reference: str
    tip_alias: str
    score: float
    tip_face: FaceCrop
    case_face: CaseFace
    status: str | None  # its candidate's status (pending or confirmed), None if it never was one


@dataclass(frozen=True)
class ShortlistPage:
    case: Case
    entries: list[Entry]
    total: int  # entries on the whole list
    offset: int
    has_faces: bool  # whether the case has a reference face to compare at all


async def _case_faces(session: AsyncSession, case_id: int) -> tuple[str | None, list[CaseFace]]:
    """The case's reference faces of its newest model (faces of an older one are being re-embedded),
    and that model's id."""
    model_id = await session.scalar(select(Face.model_id).where(Face.case_id == case_id)
                                    .order_by(Face.id.desc()).limit(1))
    rows = await session.execute(
        select(Face, CasePhoto.sha256, CasePhoto.age_years).join(CasePhoto, CasePhoto.id == Face.case_photo_id)
        .where(Face.case_id == case_id, Face.model_id == model_id).order_by(Face.id))
    # a face whose cohort statistics are not computed yet (the cohort is being seeded) cannot be scored
    return model_id, [CaseFace(face.id, np.asarray(face.embedding, dtype=np.float32), FaceCrop.of(face, sha256),
                               face.case_photo_id, age, face.cohort_mean, face.cohort_std)
                      for face, sha256, age in rows
                      if face.case_photo_id is not None and face.cohort_mean is not None and face.cohort_std]


async def _decisions(session: AsyncSession, case_id: int) -> dict[int, str]:
    """Candidate statuses of the case by tip face."""
    rows = await session.execute(select(MatchCandidate.tip_face_id, MatchCandidate.status)
                                 .where(MatchCandidate.case_id == case_id))
    return dict(rows.all())


async def _tip_faces(session: AsyncSession, face_ids: set[int]):
    """(face, its image's sha256, its tip) of stored tip faces, by face id."""
    rows = await session.execute(
        select(Face, TipMedia.sha256, Tip).join(TipMedia, TipMedia.id == Face.tip_media_id)
        .join(Tip, Tip.id == TipMedia.tip_id).where(Face.id.in_(face_ids)))
    return {face.id: (face, sha256, tip) for face, sha256, tip in rows}


async def ranked(session: AsyncSession, database_url: str, case: Case) -> tuple[list[Entry], bool]:
    """The case's whole shortlist (at most SHORTLIST_LENGTH entries, best first, rejected faces left
    out), and whether the case has any reference face to compare."""
    model_id, references = await _case_faces(session, case.id)
    if model_id is None or not references:
        return [], False
    decisions = await _decisions(session, case.id)
    rejected = {face_id for face_id, status in decisions.items() if status == MATCH_REJECTED}
    probes = np.stack([reference.embedding for reference in references])
    nearest = await face_search_for(database_url, model_id).similar_tip_faces(
        session, probes, np.full(len(probes), -1.0, dtype=np.float32), per_probe=SHORTLIST_LENGTH + len(rejected))
    tip_faces = await _tip_faces(session, {match.tip_face_id for match in nearest} - rejected)
    if not tip_faces:
        return [], True
    ids = list(tip_faces)
    scores, best = _scored(np.stack([np.asarray(tip_faces[i][0].embedding, dtype=np.float32) for i in ids]),
                           references)
    order = np.argsort(-scores, kind="stable")[:SHORTLIST_LENGTH]
    entries = []
    for number, row in enumerate(order.tolist(), start=1):
        face, sha256, tip = tip_faces[ids[row]]
        entries.append(Entry(number, face.id, tip.reference, tip.alias, float(scores[row]), FaceCrop.of(face, sha256),
                             references[int(best[row])], decisions.get(face.id)))
    return entries, True


async def case_by_id(session: AsyncSession, case_id: int) -> Case | None:
    """The case a shortlist button names (by id: it is short, and signed)."""
    return await session.get(Case, case_id)


async def page(session: AsyncSession, database_url: str, case: Case, offset: int, limit: int) -> ShortlistPage:
    """``limit`` entries of the case's shortlist from ``offset``."""
    entries, has_faces = await ranked(session, database_url, case)
    return ShortlistPage(case, entries[offset:offset + limit], len(entries), offset, has_faces)


# -- what a coordinator sees -----------------------------------------------------------------------


def store_composite(media_dir: Path, shortlist: ShortlistPage) -> str:
    """The page's composite image (a row per entry: tip face | case face) in the media store; its
    SHA-256. CPU-bound: run it in a thread."""
    return store_rows(media_dir, [CompositeRow(entry.number, entry.tip_face, entry.tip_reference,
                                               entry.case_face.crop, shortlist.case.code)
                                  for entry in shortlist.entries])


def entry_words(language: str, entry: Entry, floor: float) -> str:
    """How an entry stands: its strength in words, or below the review floor; confirmed if it is."""
    strength = match_strength(entry.score, threshold=floor)
    words = t(language, f"match_strength_{strength}") if strength else t(language, "shortlist_below_floor")
    if entry.status == MATCH_CONFIRMED:
        words += " · " + t(language, "lead_confirmed_lead")
    return words


def caption(language: str, shortlist: ShortlistPage, floor: float) -> str:
    """The page's entries in the composite's order: tip reference, alias, strength, the photo's age."""
    case = shortlist.case
    lines = [t(language, "shortlist_header", code=case.code, name=outbox.clip(case.name, 60),
               first=shortlist.offset + 1, last=shortlist.offset + len(shortlist.entries), total=shortlist.total)]
    for entry in shortlist.entries:
        age = entry.case_face.photo_age
        photo = t(language, "shortlist_photo_age", age=f"{age:g}") if age is not None else ""
        lines.append(t(language, "shortlist_line", number=entry.number, reference=entry.tip_reference,
                       alias=entry.tip_alias, strength=entry_words(language, entry, floor), photo=photo).rstrip())
    lines.append(t(language, "shortlist_footer"))
    return outbox.clip("\n".join(lines), outbox.CAPTION_LIMIT)


def enqueue_page(session: AsyncSession, chat_id: int, composite_sha: str, text: str,
                 markup: dict | None) -> OutboxMessage:
    """Queue a shortlist page. Its composite image is needed only until it is sent (the sent message
    keeps no payload): retention's daily sweep of files no row needs takes it then."""
    return outbox.enqueue(session, chat_id, "sendPhoto", {"photo_sha256": composite_sha, "caption": text,
                                                          "reply_markup": markup}, priority=PRIORITY_ACK)


# -- decisions ------------------------------------------------------------------------------------


async def decide(session: AsyncSession, actor_id: int, case_id: int, tip_face_id: int, decision: str,
                 now: datetime) -> ReviewOutcome:
    """Confirm or reject a tip face of a case's shortlist, once (a second press, or a second
    coordinator, changes nothing): the face's candidate of the case is decided, or created decided
    if it never passed the review floor. Audited with the references only, as a match alert's."""
    if decision not in leads.REVIEW_DECISIONS:
        raise ValueError(decision)
    case = await session.get(Case, case_id)
    tip = await session.scalar(select(Tip).join(TipMedia, TipMedia.tip_id == Tip.id)
                               .join(Face, Face.tip_media_id == TipMedia.id).where(Face.id == tip_face_id))
    if case is None or case.status != STATUS_ACTIVE or tip is None:
        return ReviewOutcome("gone")  # closed (its biometrics purged), or the tip's images expired
    candidate_id = await _candidate_of(session, tip_face_id, case_id)
    if candidate_id is None:
        _, references = await _case_faces(session, case_id)
        if not references:
            return ReviewOutcome("gone")
        face = await session.get(Face, tip_face_id)
        if face is None:  # purged between the two reads
            return ReviewOutcome("gone")
        scores, best = _scored(np.asarray(face.embedding, dtype=np.float32)[None], references)
        insert = postgresql.insert if dialect_of(session) == "postgresql" else sqlite.insert
        inserted = await session.scalar(insert(MatchCandidate).values(
            tip_id=tip.id, tip_face_id=tip_face_id, case_id=case_id, case_face_id=references[int(best[0])].face_id,
            similarity=float(scores[0]), rank=SHORTLIST_RANK, status=decision, reviewer_id=actor_id,
            reviewed_at=now, created_at=now,
        ).on_conflict_do_nothing(index_elements=["tip_face_id", "case_id"]).returning(MatchCandidate.id))
        if inserted is not None:
            action = "match.confirm" if decision == MATCH_CONFIRMED else "match.reject"
            audit.record(session, actor_id, action, f"{tip.reference} {case.code}")
            return ReviewOutcome("changed", decision, tip.reference, case.code)
        candidate_id = await _candidate_of(session, tip_face_id, case_id)  # another press got there first
        if candidate_id is None:  # and was purged since
            return ReviewOutcome("gone")
    return await leads.review(session, actor_id, candidate_id, decision, now)


async def _candidate_of(session: AsyncSession, tip_face_id: int, case_id: int) -> int | None:
    return await session.scalar(select(MatchCandidate.id).where(MatchCandidate.tip_face_id == tip_face_id,
                                                                MatchCandidate.case_id == case_id))


async def confirmed_leads(session: AsyncSession, case_id: int) -> list[str]:
    """References of the tips confirmed as leads of the case, newest decision first."""
    rows = await session.scalars(
        select(Tip.reference).join(MatchCandidate, MatchCandidate.tip_id == Tip.id)
        .where(MatchCandidate.case_id == case_id, MatchCandidate.status == MATCH_CONFIRMED)
        .order_by(MatchCandidate.reviewed_at.desc(), MatchCandidate.id.desc()))
    return list(dict.fromkeys(rows))
