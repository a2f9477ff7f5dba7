"""Retention (privacy rule 4, flow 8): how long what the bot keeps about people stays, and how it goes.

- A tip (its words, places, photos with the camera's time and GPS, the team's replies, its faces and
  face-match leads, the composite images of its match alerts) is deleted whole once its last message
  and the team's last reply are older than ``REUNITE_TIP_RETENTION_DAYS``; a photo or message older
  than that goes on its own, even from a tip still going on. Nothing of it is kept: the audit rows
  keep the reference (ids only, as always). A member of the public with nothing left (no tip, no
  subscription, no case) after that long is forgotten too: their user row (Telegram id, language).
- A message the bot sent keeps no words, captions or files once sent or given up
  (:func:`bot.services.outbox.apply_results`): only its chat and message id, so a Telegram reply to
  an acknowledgement still joins its tip. The row itself goes after the retention period.
- A raw update (it names its sender) is emptied as it is handled (:mod:`bot.services.inbox`), and its
  row (the update id that refuses a re-delivery) deleted :data:`PROCESSED_UPDATE_KEEP` later; an update
  set aside (it could not be handled) is kept whole for an operator for :data:`SET_ASIDE_UPDATE_KEEP`.
- A closed case loses its faces and leads (biometrics), its photos, its flyers and its match
  alerts' composite images at once (:func:`purge_closed_case`); the case record stays as a tombstone.

Files in the media store go once no row needs them: :func:`release_files` deletes them after the
transaction that dropped their last row commits. :func:`sweep_media` is the backstop for a file
whose row never came (a crash between storing a file and committing its row).

:func:`run` does the periodic part; :func:`run_daily` (a task of the running bot) runs it at start
and once a day. It is idempotent, and several workers may run it. Anything else that keeps a copy
of a tip's data (a table of sampled tip faces, say) must go with it: a foreign key to ``faces.id``
or ``tips.id`` with ``ON DELETE CASCADE`` is enough, as tip faces and tips are deleted here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, event, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.db.dml import rows_affected
from bot.db.models import (
    BROADCAST_SENDING,
    OUT_PENDING,
    ROLE_PUBLIC,
    Broadcast,
    Case,
    CasePhoto,
    ConversationState,
    Face,
    FlyerFile,
    InboxUpdate,
    MatchCandidate,
    MediaQuota,
    OutboxMessage,
    Subscriber,
    Tip,
    TipEntry,
    TipMedia,
    User,
)
from bot.services.cases import CLOSED_STATUSES, STATUS_ACTIVE
from bot.services.inbox import MAX_ATTEMPTS
from bot.services.media import media_path

log = logging.getLogger(__name__)

# Telegram keeps an update it could not deliver for at most 24 hours: after that no re-delivery
# can come that the stored update id would have to refuse.
PROCESSED_UPDATE_KEEP = timedelta(days=2)
# An update that could not be handled is kept whole (its payload names its sender) this long, for an
# operator to see what went wrong (the logs say which update id), then deleted.
SET_ASIDE_UPDATE_KEEP = timedelta(days=7)
# A file this new may belong to a row not committed yet (a photo is stored before its tip is).
FILE_GRACE = timedelta(hours=1)
RUN_INTERVAL = timedelta(days=1)
BATCH = 500

_SHA256 = re.compile(r"[0-9a-f]{64}")
# session.info key: (path, when it was found unneeded) of files to delete once the session commits
_RELEASED = "reunite_released_files"


# -- files ----------------------------------------------------------------------------------------


async def files_of_pending_work(session: AsyncSession) -> set[str]:
    """Files named by messages still to be sent, broadcasts still sending and conversations not
    finished (a family's photos before the report is filed)."""
    texts = list(await session.scalars(select(OutboxMessage.payload).where(OutboxMessage.status == OUT_PENDING)))
    texts += await session.scalars(select(Broadcast.cards).where(Broadcast.status == BROADCAST_SENDING,
                                                                 Broadcast.cards.is_not(None)))
    texts += await session.scalars(select(ConversationState.data))
    return {sha for text in texts for sha in _SHA256.findall(text)}


async def held_files(session: AsyncSession, shas: Iterable[str], pending: set[str] | None = None) -> set[str]:
    """Those of ``shas`` that a row still needs: a tip image, a case photo, a flyer, or pending work
    (``pending``: :func:`files_of_pending_work`, read here if not given)."""
    shas = set(shas)
    held = shas & (pending if pending is not None else await files_of_pending_work(session))
    rest = sorted(shas - held)
    for first in range(0, len(rest), BATCH):
        chunk = rest[first:first + BATCH]
        for column in (TipMedia.sha256, CasePhoto.sha256, FlyerFile.sha256):
            held.update(await session.scalars(select(column).where(column.in_(chunk)).distinct()))
    return held


async def release_files(session: AsyncSession, media_dir: Path, shas: Iterable[str]) -> None:
    """Files whose rows this transaction deleted or replaced: those no row needs any more are deleted
    once it commits (nothing is deleted if it rolls back)."""
    shas = set(shas)
    if not shas:
        return
    checked_at = time.time()
    unneeded = shas - await held_files(session, shas)
    session.info.setdefault(_RELEASED, []).extend((media_path(media_dir, sha), checked_at) for sha in unneeded)


def _unlink_unless_stored_since(path: Path, since: float) -> bool:
    """Delete ``path`` unless it was stored again after ``since`` (storing an existing file renews
    its time, :func:`bot.services.media.store_own_jpeg`): then a new row needs it."""
    try:
        if path.stat().st_mtime > since:
            return False
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError:  # after a commit that went through: never fail it; the daily sweep tries again
        log.exception("could not delete %s", path.name)
        return False


@event.listens_for(Session, "after_commit")
def _delete_released_files(session: Session) -> None:
    for path, checked_at in session.info.pop(_RELEASED, ()):
        _unlink_unless_stored_since(path, checked_at)


@event.listens_for(Session, "after_rollback")
def _keep_released_files(session: Session) -> None:
    session.info.pop(_RELEASED, None)


def _files_older_than(media_dir: Path, before: float) -> dict[str, Path]:
    """Files in the media store (by name: their SHA-256) last stored before ``before``."""
    found: dict[str, Path] = {}
    if not media_dir.is_dir():
        return found
    for folder in os.scandir(media_dir):
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder.path):
            if entry.is_file() and entry.stat().st_mtime < before:
                found[entry.name.split(".", 1)[0] or entry.name] = Path(entry.path)
    return found


async def sweep_media(session: AsyncSession, media_dir: Path, now: datetime) -> int:
    """Delete the files of the media store that no row needs and that are older than
    :data:`FILE_GRACE` (half-written files of a crash too); returns how many."""
    before = (now - FILE_GRACE).timestamp()
    files = await asyncio.to_thread(_files_older_than, media_dir, before)
    pending = await files_of_pending_work(session)
    names = sorted(files)
    deleted = 0
    for first in range(0, len(names), BATCH):
        chunk = names[first:first + BATCH]
        held = await held_files(session, chunk, pending)
        deleted += sum(_unlink_unless_stored_since(files[name], before) for name in chunk if name not in held)
    await session.rollback()
    return deleted


# -- match alerts' composite images -------------------------------------------------------------


async def track_composite(session: AsyncSession, candidate_ids: list[int], sha256: str) -> None:
    """The candidates shown in the composite image ``sha256``: it is deleted once its alerts are
    sent (:func:`release_sent_composites`), or with them (a case closed, a tip purged)."""
    await session.execute(update(MatchCandidate).where(MatchCandidate.id.in_(candidate_ids))
                          .values(composite_sha256=sha256))


async def release_sent_composites(session: AsyncSession, media_dir: Path) -> int:
    """Delete the composite images whose alerts are all sent (or given up); commits. Returns how many."""
    found = await session.scalars(select(MatchCandidate.composite_sha256)
                                  .where(MatchCandidate.composite_sha256.is_not(None)).distinct())
    shas = {sha for sha in found if sha is not None}  # never None: filtered above; the check is for the type
    done = shas - await files_of_pending_work(session) if shas else set()
    if done:
        await session.execute(update(MatchCandidate).where(MatchCandidate.composite_sha256.in_(done))
                              .values(composite_sha256=None))
        await release_files(session, media_dir, done)
        await session.commit()
    else:
        await session.rollback()
    return len(done)


async def _composites_of(session: AsyncSession, *where) -> set[str]:
    return set(await session.scalars(select(MatchCandidate.composite_sha256).where(
        MatchCandidate.composite_sha256.is_not(None), *where).distinct()))


# -- closed cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeCounts:
    case_faces: int
    candidates: int
    tip_faces: int


async def purge_case_biometrics(session: AsyncSession, case_id: int) -> PurgeCounts:
    """A closed case (flow 8): delete its reference faces and its candidates, and the tip faces that
    were candidates of it, unless a tip face is still a candidate of another active case. The caller
    commits."""
    tip_face_ids = set(await session.scalars(
        select(MatchCandidate.tip_face_id).where(MatchCandidate.case_id == case_id)))
    candidates = await rows_affected(session, delete(MatchCandidate).where(MatchCandidate.case_id == case_id))
    still_needed = set(await session.scalars(
        select(MatchCandidate.tip_face_id).join(Case, Case.id == MatchCandidate.case_id)
        .where(MatchCandidate.tip_face_id.in_(tip_face_ids), Case.status == STATUS_ACTIVE)))
    tip_faces = await rows_affected(session, delete(Face).where(Face.id.in_(tip_face_ids - still_needed)))
    case_faces = await rows_affected(session, delete(Face).where(Face.case_id == case_id))
    return PurgeCounts(case_faces, candidates, tip_faces)


async def purge_closed_case(session: AsyncSession, case_id: int, media_dir: Path) -> None:
    """Everything a closed case had besides its record: biometrics and leads, the composite images
    of its match alerts, its photos and every flyer (their files once the caller commits). The
    photos go too: once the appeal is over nothing shows or compares them, and a found person's
    photos have no reason to stay with us."""
    composites = await _composites_of(session, MatchCandidate.case_id == case_id)
    await purge_case_biometrics(session, case_id)
    photos = set(await session.scalars(select(CasePhoto.sha256).where(CasePhoto.case_id == case_id)))
    flyers = set(await session.scalars(select(FlyerFile.sha256).where(FlyerFile.case_id == case_id)))
    await session.execute(delete(CasePhoto).where(CasePhoto.case_id == case_id))
    await session.execute(delete(FlyerFile).where(FlyerFile.case_id == case_id))
    await release_files(session, media_dir, composites | photos | flyers)


async def purge_closed_cases(session: AsyncSession, media_dir: Path) -> list[int]:
    """:func:`purge_closed_case` for every closed case that still has anything to purge (however it
    was closed: the console, another process, while this one was down); their ids. The caller commits."""
    closed = select(Case.id).where(Case.status.in_(CLOSED_STATUSES))
    case_ids: set[int] = set()
    for column in (Face.case_id, MatchCandidate.case_id, CasePhoto.case_id, FlyerFile.case_id):
        case_ids.update(await session.scalars(select(column).where(column.in_(closed)).distinct()))
    for case_id in sorted(case_ids):
        await purge_closed_case(session, case_id, media_dir)
    return sorted(case_ids)


# -- tips -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgedTips:
    tips: int
    images: int
    entries: int


async def _purge_tip_images(session: AsyncSession, media_dir: Path, image_ids: list[int]) -> None:
    """Tip images with their faces, leads and the composites that show them; files once committed."""
    faces = select(Face.id).where(Face.tip_media_id.in_(image_ids))
    composites = await _composites_of(session, MatchCandidate.tip_face_id.in_(faces))
    images = set(await session.scalars(select(TipMedia.sha256).where(TipMedia.id.in_(image_ids))))
    await session.execute(delete(MatchCandidate).where(MatchCandidate.tip_face_id.in_(faces)))
    await session.execute(delete(Face).where(Face.tip_media_id.in_(image_ids)))
    await session.execute(delete(TipMedia).where(TipMedia.id.in_(image_ids)))
    await release_files(session, media_dir, composites | images)


async def purge_expired_tips(session: AsyncSession, media_dir: Path, retention_days: int,
                             now: datetime) -> PurgedTips:
    """Tips whose last message and last team reply are older than the retention period, whole; then
    the images and messages older than that of tips still going on. Commits each batch."""
    cutoff = now - timedelta(days=retention_days)
    expired = select(Tip.id).where(Tip.last_message_at < cutoff, or_(Tip.last_team_reply_at.is_(None),
                                                                    Tip.last_team_reply_at < cutoff))
    tips = images = 0
    while tip_ids := list(await session.scalars(expired.limit(BATCH))):
        image_ids = list(await session.scalars(select(TipMedia.id).where(TipMedia.tip_id.in_(tip_ids))))
        await _purge_tip_images(session, media_dir, image_ids)
        await session.execute(delete(MatchCandidate).where(MatchCandidate.tip_id.in_(tip_ids)))
        await session.execute(update(OutboxMessage).where(OutboxMessage.tip_id.in_(tip_ids)).values(tip_id=None))
        await session.execute(delete(TipEntry).where(TipEntry.tip_id.in_(tip_ids)))
        await session.execute(delete(Tip).where(Tip.id.in_(tip_ids)))
        await session.commit()
        tips += len(tip_ids)
        images += len(image_ids)
    while image_ids := list(await session.scalars(select(TipMedia.id).where(TipMedia.created_at < cutoff)
                                                  .limit(BATCH))):
        await _purge_tip_images(session, media_dir, image_ids)
        await session.commit()
        images += len(image_ids)
    entries = await rows_affected(session, delete(TipEntry).where(TipEntry.created_at < cutoff))
    await session.commit()
    return PurgedTips(tips, images, entries)


# -- messages and updates -------------------------------------------------------------------------


async def purge_messages(session: AsyncSession, retention_days: int, now: datetime) -> tuple[int, int]:
    """Sent messages past the retention period, and raw updates past their keep; (messages, updates)
    deleted. Commits."""
    done = OutboxMessage.status != OUT_PENDING
    # sent before their content was dropped at sending
    await session.execute(update(OutboxMessage).where(done, OutboxMessage.payload != "{}")
                          .values(payload="{}", digest_line=None))
    messages = await rows_affected(session, delete(OutboxMessage).where(
        done, OutboxMessage.created_at < now - timedelta(days=retention_days)))
    handled = await rows_affected(session, delete(InboxUpdate).where(
        InboxUpdate.processed_at < now - PROCESSED_UPDATE_KEEP, InboxUpdate.attempts < MAX_ATTEMPTS))
    set_aside = await rows_affected(session, delete(InboxUpdate).where(
        InboxUpdate.processed_at < now - SET_ASIDE_UPDATE_KEEP))
    await session.commit()
    return messages, handled + set_aside


async def purge_idle_users(session: AsyncSession, retention_days: int, now: datetime) -> int:
    """Members of the public who first wrote longer ago than the retention period and have nothing
    left with us (no tip, subscription, case or conversation under way); how many. Commits."""
    owns = [exists().where(Tip.tipster_id == User.id), exists().where(Subscriber.chat_id == User.id),
            exists().where(Case.reported_by == User.id), exists().where(Case.verified_by == User.id),
            exists().where(ConversationState.user_id == User.id)]
    forgotten = await rows_affected(session, delete(User).where(
        User.role == ROLE_PUBLIC, User.created_at < now - timedelta(days=retention_days), *(~owned for owned in owns)))
    await session.commit()
    return forgotten


# -- the job --------------------------------------------------------------------------------------


async def run(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime) -> None:
    """Everything past its time goes: tips, sent messages, raw updates, idle users, what closed cases
    left, and files nobody needs."""
    media_dir = settings.media_dir
    async with sessionmaker() as session:
        tips = await purge_expired_tips(session, media_dir, settings.tip_retention_days, now)
        closed = await purge_closed_cases(session, media_dir)
        # a day's image quota counts only that day: older rows name a person for nothing
        await session.execute(delete(MediaQuota).where(MediaQuota.day < now.date()))
        await session.commit()
        messages, updates = await purge_messages(session, settings.tip_retention_days, now)
        users = await purge_idle_users(session, settings.tip_retention_days, now)
        composites = await release_sent_composites(session, media_dir)
        files = await sweep_media(session, media_dir, now)
    log.info("retention: %d tips, %d tip images, %d tip messages, %d closed cases, %d sent messages, "
             "%d updates, %d users, %d composites, %d stray files purged", tips.tips, tips.images, tips.entries,
             len(closed), messages, updates, users, composites, files)


async def run_daily(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """:func:`run` now and every :data:`RUN_INTERVAL`, for as long as the bot runs."""
    while True:
        try:
            await run(sessionmaker, settings, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except Exception:  # the database briefly down: the next run does it all
            log.exception("retention run failed")
        await asyncio.sleep(RUN_INTERVAL.total_seconds())
