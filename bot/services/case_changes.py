"""A family's change to a public case waits for a coordinator (privacy rule 3: nothing is published
before a coordinator checked it; a changed phone number or a stranger's photo on a verified appeal is
a way to hunt someone who fled).

What the public sees of an active case, and so what waits: every particular printed on the poster or
the card (flyers/templates: name, other names, sex, birth, missing since, last seen, height, build,
hair, eyes, marks, clothing, what happened, the agency's name, phone and reference, the flyer's
language, the family's contact once printed), the map pin (it decides who receives a broadcast), and
photos (flyers, and face matching). Only what publishes nothing is saved at once: the family's own
contact while it stays off the flyer (or removed from it), and taking it off the flyer.

A coordinator's own edits, and any change to a case still waiting for review (nothing of it is public
yet), are saved at once. The chat handlers and the coordinators' console call the same functions:
:func:`needs_review`, :func:`propose`, :func:`pending`, :func:`approve`, :func:`reject`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.dml import rows_affected
from bot.db.models import (
    CHANGE_APPROVED,
    CHANGE_PENDING,
    CHANGE_REJECTED,
    CHANGE_WITHDRAWN,
    PRIORITY_ALERT,
    Case,
    CaseChange,
    CasePhoto,
    TipMedia,
    User,
)
from bot.i18n import t
from bot.services import audit, case_fields, cases, outbox, users
from bot.services.media import media_path

PHOTOS = "photos"  # the field of a change that adds photos
FAMILY_CONTACT = case_fields.FAMILY_CONTACT.key
FAMILY_CONTACT_PUBLIC = case_fields.FAMILY_CONTACT_PUBLIC.key


def publishes_nothing(case: Case, columns: dict) -> bool:
    """The change shows the public nothing new: the family's own contact while it is not printed (or
    its removal), or taking it off the flyer."""
    if set(columns) == {FAMILY_CONTACT}:
        return not case.family_contact_public or columns[FAMILY_CONTACT] is None
    if set(columns) == {FAMILY_CONTACT_PUBLIC}:
        return columns[FAMILY_CONTACT_PUBLIC] is False
    return False


def needs_review(user: User, case: Case, columns: dict | None = None) -> bool:
    """Whether ``user``'s change to ``case`` (the particular's ``columns``, or None for photos) waits
    for a coordinator: a family's change to an active case that shows the public something new."""
    if users.is_coordinator(user) or case.status != cases.STATUS_ACTIVE:
        return False
    return columns is None or not publishes_nothing(case, columns)


async def propose(session: AsyncSession, case: Case, field: str, proposed: dict | list[cases.NewPhoto],
                  requested_by: int, now: datetime) -> CaseChange:
    """Hold a change for review: a particular's new values (JSON-ready, as case_fields gives them) or
    new photos (already in the media store; they reach the case, its flyers and face matching only
    once approved)."""
    content = [asdict(photo) for photo in proposed] if field == PHOTOS else proposed
    change = CaseChange(case_id=case.id, requested_by=requested_by, field=field,
                        proposed=json.dumps(content, ensure_ascii=False), status=CHANGE_PENDING, created_at=now)
    session.add(change)
    await session.flush()
    audit.record(session, requested_by, "case.change.ask", case.code)
    return change


def proposed_photos(change: CaseChange) -> list[cases.NewPhoto]:
    return [cases.NewPhoto(**photo) for photo in json.loads(change.proposed)] if change.field == PHOTOS else []


def old_and_new(change: CaseChange, case: Case, language: str, tz: tzinfo) -> tuple[str | None, str | None]:
    """How the particular reads on the case now, and as the family asks (None: empty)."""
    field = case_fields.BY_KEY[change.field]
    now = case_fields.case_columns(case)
    asked = {**now, **case_fields.to_columns(json.loads(change.proposed))}
    return case_fields.display(field, now, language, tz), case_fields.display(field, asked, language, tz)


def field_label(language: str, change: CaseChange) -> str:
    return t(language, "change_field_photos" if change.field == PHOTOS else f"field_{change.field}")


@dataclass(frozen=True)
class ChangePage:
    changes: list[tuple[CaseChange, Case]]  # oldest first
    total: int


async def pending(session: AsyncSession, *, offset: int = 0, limit: int = 10, case_id: int | None = None
                  ) -> ChangePage:
    """Changes waiting for review (of one case, or of all), oldest first (those of open cases: a closed
    one's are withdrawn)."""
    where = [CaseChange.status == CHANGE_PENDING, Case.status.in_(cases.OPEN_STATUSES)]
    if case_id is not None:
        where.append(CaseChange.case_id == case_id)
    total = await session.scalar(select(func.count()).select_from(CaseChange).join(Case).where(*where))
    rows = await session.execute(select(CaseChange, Case).join(Case).where(*where).order_by(CaseChange.id)
                                 .offset(offset).limit(limit))
    return ChangePage([(change, case) for change, case in rows.all()], total or 0)


async def waiting_count(session: AsyncSession, case_id: int) -> int:
    """How many of the case's changes wait for review."""
    return await session.scalar(select(func.count()).select_from(CaseChange).where(
        CaseChange.case_id == case_id, CaseChange.status == CHANGE_PENDING)) or 0


async def is_waiting_photo(session: AsyncSession, sha256: str) -> bool:
    """Whether ``sha256`` is a photo of a change still waiting for review (coordinators see it)."""
    found = await session.scalar(select(CaseChange.id).where(
        CaseChange.status == CHANGE_PENDING, CaseChange.field == PHOTOS,
        CaseChange.proposed.contains(json.dumps(sha256))).limit(1))
    return found is not None


@dataclass(frozen=True)
class Review:
    """What a coordinator's approval or rejection did: ``result`` is done | already (decided before:
    ``change.status`` says how) | closed (its case is closed) | gone (no such change)."""

    result: str
    change: CaseChange | None = None
    case: Case | None = None


@dataclass(frozen=True)
class _Claimed:
    """A change this call decided, with its case: the caller applies it."""

    change: CaseChange
    case: Case


async def _claim(session: AsyncSession, change_id: int, status: str, reviewer_id: int,
                 now: datetime) -> _Claimed | Review:
    """Decide a waiting change once: a conditional UPDATE, so two coordinators (or two workers) who
    press at the same moment cannot both apply it."""
    change = await session.get(CaseChange, change_id)
    if change is None:
        return Review("gone")
    case = await session.get_one(Case, change.case_id)
    if change.status == CHANGE_PENDING and case.status in cases.CLOSED_STATUSES:
        return Review("closed", change, case)
    claimed = await rows_affected(session, update(CaseChange)
                                  .where(CaseChange.id == change_id, CaseChange.status == CHANGE_PENDING)
                                  .values(status=status, reviewed_by=reviewer_id, reviewed_at=now))
    if claimed == 0:
        await session.refresh(change)  # decided by someone else meanwhile: say how
        return Review("already", change, case)
    return _Claimed(change, case)


async def approve(session: AsyncSession, change_id: int, reviewer_id: int, now: datetime) -> Review:
    """Apply the change as its family asked (the flyer re-renders with it; new photos go to face
    matching as any case photo does); the family is told. Decided once, whoever comes first."""
    claimed = await _claim(session, change_id, CHANGE_APPROVED, reviewer_id, now)
    if isinstance(claimed, Review):
        return claimed
    change, case = claimed.change, claimed.case
    if change.field == PHOTOS:
        await cases.add_photos(session, case, proposed_photos(change), change.requested_by, now)
        audit.record(session, change.requested_by, "case.photo.add", case.code)
    else:
        cases.update_particulars(session, case, case_fields.to_columns(json.loads(change.proposed)),
                                 change.requested_by, now)
    audit.record(session, reviewer_id, "case.change.approve", case.code)
    await _tell_family(session, case, change, "family_change_approved")
    return Review("done", change, case)


async def reject(session: AsyncSession, change_id: int, reviewer_id: int, now: datetime, media_dir: Path,
                 reason: str | None = None) -> Review:
    """Nothing changes on the case; the family is told (with ``reason`` if given); rejected photos
    leave the media store."""
    claimed = await _claim(session, change_id, CHANGE_REJECTED, reviewer_id, now)
    if isinstance(claimed, Review):
        return claimed
    change, case = claimed.change, claimed.case
    audit.record(session, reviewer_id, "case.change.reject", case.code)
    await _forget_photos(session, [change], media_dir)
    if reason:
        await _tell_family(session, case, change, "family_change_rejected_reason", reason=reason)
    else:
        await _tell_family(session, case, change, "family_change_rejected")
    return Review("done", change, case)


async def withdraw_pending(session: AsyncSession, case: Case, media_dir: Path) -> None:
    """The case is closed: its changes still waiting will never be reviewed; their photos go."""
    waiting = list(await session.scalars(select(CaseChange).where(CaseChange.case_id == case.id,
                                                                  CaseChange.status == CHANGE_PENDING)))
    if not waiting:
        return
    await session.execute(update(CaseChange).where(CaseChange.id.in_([change.id for change in waiting]))
                          .values(status=CHANGE_WITHDRAWN))
    await _forget_photos(session, waiting, media_dir)


async def _forget_photos(session: AsyncSession, changes: list[CaseChange], media_dir: Path) -> None:
    """Delete the files of these changes' photos that nothing else keeps (a case photo, a tip image,
    another change still waiting)."""
    hashes = {photo.sha256 for change in changes for photo in proposed_photos(change)}
    if not hashes:
        return
    kept = set(await session.scalars(select(CasePhoto.sha256).where(CasePhoto.sha256.in_(hashes))))
    kept |= set(await session.scalars(select(TipMedia.sha256).where(TipMedia.sha256.in_(hashes))))
    waiting = await session.scalars(select(CaseChange).where(
        CaseChange.status == CHANGE_PENDING, CaseChange.field == PHOTOS,
        CaseChange.id.not_in([change.id for change in changes])))
    kept |= {photo.sha256 for change in waiting for photo in proposed_photos(change)}
    for sha in hashes - kept:
        media_path(media_dir, sha).unlink(missing_ok=True)


async def _tell_family(session: AsyncSession, case: Case, change: CaseChange, key: str, **values: object) -> None:
    family = await session.get(User, change.requested_by)
    if family is None:
        return
    outbox.enqueue_text(session, family.id, t(family.language, key, code=case.code, name=case.name,
                                              field=field_label(family.language, change), **values),
                        priority=PRIORITY_ALERT)
