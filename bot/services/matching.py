"""Face matching (DESIGN.md flow 2): every face of every tip image against the reference faces of
active cases, and every new reference face (or newly active case) back against all stored tip faces.

What a match becomes: a ``MatchCandidate`` per (tip, case) pair, at most
:data:`MAX_CANDIDATES_PER_TIP` per match alert, best first, each a possible lead that a coordinator
confirms or rejects. Scores are normalised per reference face against a cohort of adult faces
(:mod:`bot.services.cohort`), a case's photos fused (:mod:`bot.services.case_scores`), and the floor
follows the coordinators' review load (``Cohort.floor``). Nobody outside the coordinators ever
learns of a match (privacy rule 1): nothing here answers a tipster.

What a closed case or an expired tip leaves is purged by :mod:`bot.services.retention`.

The face worker (:mod:`bot.services.face_worker`) drives this; searches go through a
:class:`~bot.services.face_search.FaceSearch` backend.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    MATCH_PENDING,
    Case,
    CasePhoto,
    Face,
    MatchCandidate,
    Tip,
    TipEntry,
    TipMedia,
    User,
)
from bot.db.statements import dialect_of, rows_changed
from bot.faces.engine import DetectedFace
from bot.faces.images import UnreadableImage
from bot.faces.worker_pool import FacePool, FaceWorkerDied
from bot.i18n import t
from bot.services import case_scores, outbox
from bot.services.alerts import ALBUM_GATHER_SECONDS
from bot.services.cases import STATUS_ACTIVE
from bot.services.cohort import new_cohort_key
from bot.services.face_search import FaceSearch, ReferenceChanges
from bot.services.media import media_path

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CANDIDATES_PER_TIP = 5
# How often the ReferenceWatcher reads every active case, not just the cases changed lately.
FULL_CHECK_INTERVAL = timedelta(minutes=1)
# Faces and cases written within this window before the last look are looked at again: on
# PostgreSQL a row with a lower id can commit after one with a higher id (transactions take
# milliseconds; an import commits each case on its own), and SQLite may reuse the id of the newest
# row once deleted. Every poll reads the rows of the window again, so it stays short: a bulk import
# costs a few seconds of re-reads.
WATCH_LOOKBACK = timedelta(seconds=10)
# A re-detected face is the same face as a stored one when their boxes overlap this much (IoU).
SAME_FACE_OVERLAP = 0.5

# face_status of tip images and case photos
FACES_PENDING = "pending"
FACES_DONE = "done"
FACES_NONE = "no_face"
FACES_FAILED = "failed"



@dataclass(frozen=True)
class FaceCrop:
    """Where a face is: an image in the media store and the face's box in it; for a tip's face just
    analysed, also the face worker's JPEG crop of it (a match alert's tile, as cut from the photo)."""

    sha256: str
    bbox: tuple[float, float, float, float]
    jpeg: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def of(cls, face: Face, sha256: str) -> FaceCrop:
        return cls(sha256, (face.x1, face.y1, face.x2, face.y2))


@dataclass(frozen=True)
class AlertCandidate:
    """One candidate as a match alert shows it."""

    candidate_id: int
    case_code: str
    case_name: str
    similarity: float
    tip_face: FaceCrop
    case_face: FaceCrop


@dataclass
class MatchAlert:
    """One match alert: a tip and its candidates, best first."""

    tip_reference: str
    tip_alias: str
    tip_created_at: datetime
    # True when the tip is an old one that a case (newly active, or with a new photo) was compared with
    retro: bool
    candidates: list[AlertCandidate] = field(default_factory=list)
    # faces in the tip's images that could not be compared (too small, too blurred, over the cap)
    skipped_faces: int = 0


@dataclass(frozen=True)
class ReferenceFace:
    """A reference face with what an alert needs of it."""

    face: Face
    photo_sha256: str
    case: Case


# -- pending work -------------------------------------------------------------------------------


async def next_pending_tip_images(session: AsyncSession, now: datetime, exclude: set[int] | frozenset[int] = frozenset()
                                  ) -> list[TipMedia]:
    """The pending images of the oldest tip that has any (but the tips in ``exclude``), locked on
    PostgreSQL (``SKIP LOCKED``: another worker takes the next tip); [] when there is nothing to do.

    An album arrives as separate messages: its tip waits until no photo of it came for
    ``ALBUM_GATHER_SECONDS``, so the whole album gets one match alert.
    """
    rows = (await session.execute(
        select(TipMedia.tip_id, TipMedia.created_at, TipEntry.media_group_id)
        .outerjoin(TipEntry, TipEntry.id == TipMedia.entry_id)
        .where(TipMedia.face_status == FACES_PENDING).order_by(TipMedia.id).limit(100)
    )).all()
    gathering_since = now - timedelta(seconds=ALBUM_GATHER_SECONDS)
    still_arriving = {tip_id for tip_id, created_at, group in rows if group and created_at > gathering_since}
    for tip_id in dict.fromkeys(tip_id for tip_id, _, _ in rows):
        if tip_id in still_arriving or tip_id in exclude:
            continue
        images = list(await session.scalars(
            select(TipMedia).where(TipMedia.tip_id == tip_id, TipMedia.face_status == FACES_PENDING)
            .order_by(TipMedia.id).with_for_update(skip_locked=True)
        ))
        if images:
            return images
    return []


async def next_pending_case_photo(session: AsyncSession) -> CasePhoto | None:
    """The oldest case photo waiting for its faces, locked on PostgreSQL (``SKIP LOCKED``)."""
    return await session.scalar(
        select(CasePhoto).where(CasePhoto.face_status == FACES_PENDING).order_by(CasePhoto.id).limit(1)
        .with_for_update(skip_locked=True)
    )


async def requeue_other_models(session: AsyncSession, model_id: str) -> tuple[int, int]:
    """Tip images and case photos with faces of another model go back to pending, to be embedded
    with ``model_id`` (embeddings of different models cannot be compared). Returns their counts."""
    stale_tips = select(Face.tip_media_id).where(Face.tip_media_id.is_not(None), Face.model_id != model_id)
    stale_photos = select(Face.case_photo_id).where(Face.case_photo_id.is_not(None), Face.model_id != model_id)
    tips = await rows_changed(session, update(TipMedia).where(TipMedia.id.in_(stale_tips))
                              .values(face_status=FACES_PENDING))
    photos = await rows_changed(session, update(CasePhoto).where(CasePhoto.id.in_(stale_photos))
                                .values(face_status=FACES_PENDING))
    return tips, photos


async def still_pending(session: AsyncSession, images: list[TipMedia]) -> bool:
    """Whether none of ``images`` was done meanwhile (by another process, on SQLite where nothing is
    locked); the first write of their transaction, so on SQLite it also takes the write lock."""
    touched = await rows_changed(session, (
        update(TipMedia).where(TipMedia.id.in_([image.id for image in images]), TipMedia.face_status == FACES_PENDING)
        .values(face_status=FACES_PENDING).execution_options(synchronize_session=False)))
    return touched == len(images)


# -- analysing images ---------------------------------------------------------------------------


async def analysed(what: str, analysis: Callable[..., Awaitable[T]], *args, **kwargs) -> T | None:
    """An analysis by the face worker processes (a :class:`~bot.faces.worker_pool.FacePool` method);
    None (logged) if the image cannot be analysed, so that one bad image never blocks the others. A
    worker that died analysing it (killed, out of memory) counts as such: the pool has been replaced
    and the next images are analysed."""
    try:
        return await analysis(*args, **kwargs)
    except UnreadableImage as error:
        log.warning("%s cannot be read: %s", what, error)
    except FaceWorkerDied as error:
        log.error("%s treated as unreadable: %s", what, error)
    except Exception:
        log.exception("%s failed in the face engine", what)
    return None


async def analyse_case_photo(faces: FacePool, media_dir: Path, sha256: str) -> list[DetectedFace] | None:
    """The faces of a stored case photo (the case-photo pipeline: small or frame-filling faces are
    padded rather than skipped), for :func:`record_case_faces`; None if it could not be analysed."""
    return await analysed(f"case photo {sha256[:12]}", faces.analyse_case_photo, media_path(media_dir, sha256),
                          with_crops=False)


# -- storing faces ------------------------------------------------------------------------------


def _face_row(face: DetectedFace, now: datetime, **owner) -> Face:
    x1, y1, x2, y2 = face.bbox
    return Face(x1=x1, y1=y1, x2=x2, y2=y2, det_score=face.score, embedding=face.embedding,
                model_id=face.model_id, created_at=now, **owner)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


async def record_tip_faces(session: AsyncSession, image: TipMedia, faces: list[DetectedFace],
                           now: datetime) -> list[Face]:
    """Store the comparable faces of a tip image (same order as ``faces``) and its face status.

    Re-embedding (another model) updates a stored face that the new detection overlaps in place,
    so the candidates a coordinator already reviewed stay with it.
    """
    stored = list(await session.scalars(select(Face).where(Face.tip_media_id == image.id)))
    rows = []
    for face in faces:
        same = max(stored, key=lambda row: _overlap((row.x1, row.y1, row.x2, row.y2), face.bbox), default=None)
        if same is not None and _overlap((same.x1, same.y1, same.x2, same.y2), face.bbox) >= SAME_FACE_OVERLAP:
            stored.remove(same)
            same.x1, same.y1, same.x2, same.y2 = face.bbox
            same.det_score, same.embedding, same.model_id = face.score, face.embedding, face.model_id
            rows.append(same)
        else:
            row = _face_row(face, now, tip_media_id=image.id, cohort_key=new_cohort_key())
            session.add(row)
            rows.append(row)
    for gone in stored:
        await session.delete(gone)
    image.face_status = FACES_DONE if faces else FACES_NONE
    await session.flush()
    return rows


async def record_case_faces(session: AsyncSession, photo: CasePhoto, faces: list[DetectedFace] | None,
                            now: datetime) -> None:
    """Store a case photo's faces (replacing any of an earlier model) and its face status; ``faces``
    is what :func:`analyse_case_photo` found (None: the photo could not be analysed).

    New rows, new ids: the ReferenceWatcher sees them as new reference faces, so they are indexed
    and retro-matched whoever wrote them (the bot's face worker, or ``reunite cases import``).
    """
    await session.execute(delete(Face).where(Face.case_photo_id == photo.id))
    session.add_all(_face_row(face, now, case_photo_id=photo.id, case_id=photo.case_id) for face in faces or [])
    photo.face_status = FACES_FAILED if faces is None else FACES_DONE if faces else FACES_NONE
    await session.flush()


def tell_about_unusable_photo(session: AsyncSession, person: User, case: Case, status: str) -> None:
    """Ask whoever added a case photo without a usable face (or that could not be read) for another."""
    key = "case_photo_no_face" if status == FACES_NONE else "case_photo_unreadable"
    outbox.enqueue_text(session, person.id, t(person.language, key, code=case.code, name=case.name))


async def photo_sender(session: AsyncSession, photo: CasePhoto, case: Case) -> User | None:
    """Who added ``photo``: its ``added_by``, else the family who reported the case (None for an import)."""
    user_id = photo.added_by or case.reported_by
    return await session.get(User, user_id) if user_id else None


# -- matching a tip ------------------------------------------------------------------------------


async def references_by_id(session: AsyncSession, face_ids: list[int]) -> dict[int, ReferenceFace]:
    """Reference faces by id, with their photo and their case (only faces of active cases)."""
    if not face_ids:
        return {}
    rows = await session.execute(
        select(Face, CasePhoto.sha256, Case)
        .join(CasePhoto, CasePhoto.id == Face.case_photo_id).join(Case, Case.id == Face.case_id)
        .where(Face.id.in_(face_ids), Case.status == STATUS_ACTIVE)
    )
    return {face.id: ReferenceFace(face, sha256, case) for face, sha256, case in rows}


async def _candidate_cases(session: AsyncSession, tip_id: int) -> set[int]:
    return set(await session.scalars(select(MatchCandidate.case_id).where(MatchCandidate.tip_id == tip_id)))


@dataclass(frozen=True)
class PlannedMatch:
    """A case a tip face looks like, before it is stored as a candidate."""

    reference: ReferenceFace
    similarity: float
    probe_index: int  # which tip face


async def plan_tip_matches(session: AsyncSession, search: FaceSearch, tip_id: int, probes: np.ndarray,
                           floor: float) -> list[PlannedMatch]:
    """The best active cases (at most MAX_CANDIDATES_PER_TIP, best first) that any of the tip's faces
    (``probes``) looks like with a case score at ``floor`` or above, leaving out cases already
    candidates of the tip."""
    if len(probes) == 0:
        return []
    known = await _candidate_cases(session, tip_id)
    ranked = await case_scores.best_cases(session, search, probes, MAX_CANDIDATES_PER_TIP, floor, known)
    references = await references_by_id(session, [match.face_id for match in ranked])
    return [PlannedMatch(references[match.face_id], match.score, match.probe_index)
            for match in ranked if match.face_id in references]


async def insert_candidate(session: AsyncSession, tip_id: int, tip_face_id: int, reference: ReferenceFace,
                            similarity: float, rank: int, now: datetime) -> int | None:
    """A new pending candidate's id; None if another worker stored the same (tip face, case) first."""
    insert = postgresql.insert if dialect_of(session) == "postgresql" else sqlite.insert
    statement = insert(MatchCandidate).values(
        tip_id=tip_id, tip_face_id=tip_face_id, case_id=reference.case.id, case_face_id=reference.face.id,
        similarity=similarity, rank=rank, status=MATCH_PENDING, created_at=now,
    ).on_conflict_do_nothing(index_elements=["tip_face_id", "case_id"])
    return await session.scalar(statement.returning(MatchCandidate.id))


def alert_candidate(reference: ReferenceFace, similarity: float, tip_face: FaceCrop) -> AlertCandidate:
    return AlertCandidate(0, reference.case.code, reference.case.name, similarity, tip_face,
                          FaceCrop.of(reference.face, reference.photo_sha256))


def tip_alert(tip: Tip, planned: list[PlannedMatch], tip_faces: list[FaceCrop], skipped_faces: int) -> MatchAlert:
    """The match alert for a tip's planned matches, before they are stored (candidate ids 0).

    ``tip_faces`` are the tip's faces in probe order. Drafted first so the composite image is drawn
    before anything is written (on SQLite a write holds the one write lock until the commit).
    """
    return MatchAlert(tip.reference, tip.alias, tip.created_at, retro=False, skipped_faces=skipped_faces,
                      candidates=[alert_candidate(match.reference, match.similarity, tip_faces[match.probe_index])
                                  for match in planned])


async def record_tip_matches(session: AsyncSession, tip: Tip, tip_faces: list[Face],
                             planned: list[PlannedMatch], now: datetime) -> list[int | None]:
    """Store the planned matches as candidates (``tip_faces``: the stored faces in probe order); the
    new candidates' ids, None where another worker got there first."""
    return [await insert_candidate(session, tip.id, tip_faces[match.probe_index].id, match.reference,
                                    match.similarity, rank, now)
            for rank, match in enumerate(planned, start=1)]


def with_candidate_ids(draft: MatchAlert, ids: list[int | None]) -> MatchAlert | None:
    """The drafted alert with the stored candidates' ids, without those not stored (None if none is)."""
    stored = [replace(candidate, candidate_id=candidate_id)
              for candidate, candidate_id in zip(draft.candidates, ids, strict=False) if candidate_id is not None]
    return replace(draft, candidates=stored) if stored else None


class ReferenceWatcher:
    """Notices, by polling, what changed among the reference faces whoever changed it (this bot,
    another worker, ``reunite cases import``): cases that became active or stopped being active,
    and new faces of active cases. Cheap enough to run every second: it reads the cases changed
    since just before its last look (status changes set ``updated_at``) and, every
    FULL_CHECK_INTERVAL, all active cases, in case something changed a status without touching
    ``updated_at``.

    :meth:`poll` only proposes; :meth:`confirm` (once the changes are handled) moves on, so changes
    whose handling failed are seen again by the next poll.
    """

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.active: set[int] = set()
        self._newest_id = 0
        self._recent: dict[int, datetime] = {}  # face id -> when first seen, kept for WATCH_LOOKBACK
        self._checked_all_at = datetime.min.replace(tzinfo=UTC)  # never: the first look checks all
        # the last look that was handled: the next reads from a window before it, however long ago
        # it was (the face worker looks between rounds, and a round can outlast the window)
        self._looked_at: datetime | None = None
        self._proposed: tuple | None = None

    async def prime(self, session: AsyncSession, now: datetime) -> None:
        """Start from the current state: what is there now is not new."""
        self.active = set(await session.scalars(select(Case.id).where(Case.status == STATUS_ACTIVE)))
        self._checked_all_at = self._looked_at = now
        self._newest_id = await session.scalar(select(func.max(Face.id))) or 0
        recent = await session.scalars(select(Face.id).where(Face.created_at >= now - WATCH_LOOKBACK))
        self._recent = dict.fromkeys(recent, now)

    async def _active_now(self, session: AsyncSession, now: datetime, since: datetime
                          ) -> tuple[set[int], datetime]:
        if now - self._checked_all_at >= FULL_CHECK_INTERVAL:
            return set(await session.scalars(select(Case.id).where(Case.status == STATUS_ACTIVE))), now
        changed = await session.execute(select(Case.id, Case.status).where(Case.updated_at >= since))
        active = set(self.active)
        for case_id, status in changed:
            if status == STATUS_ACTIVE:
                active.add(case_id)
            else:
                active.discard(case_id)
        return active, self._checked_all_at

    async def poll(self, session: AsyncSession, now: datetime) -> ReferenceChanges:
        since = min(self._looked_at or now, now) - WATCH_LOOKBACK
        active, checked_all_at = await self._active_now(session, now, since)
        rows = (await session.execute(
            select(Face.id, Face.case_id).where(
                Face.case_id.is_not(None), Face.model_id == self.model_id,
                (Face.id > self._newest_id) | (Face.created_at >= since))
        )).all()
        recent = {face_id: seen for face_id, seen in self._recent.items() if seen >= since}
        newest_id = self._newest_id
        activated = active - self.active
        new_faces = []
        for face_id, case_id in rows:
            newest_id = max(newest_id, face_id)
            if face_id in recent:
                continue
            recent[face_id] = now
            if case_id in active and case_id not in activated:
                new_faces.append((face_id, case_id))
        self._proposed = (active, checked_all_at, newest_id, recent, now)
        return ReferenceChanges(frozenset(activated), frozenset(self.active - active), tuple(new_faces))

    def confirm(self) -> None:
        """The changes of the last poll were handled."""
        if self._proposed is not None:
            self.active, self._checked_all_at, self._newest_id, self._recent, self._looked_at = self._proposed
            self._proposed = None
