"""The face worker: a background task of the bot that does everything face-related off the event loop.

Each round it
1. embeds pending case photos (and asks the sender of one without a usable face for another);
   ``reunite cases import`` embeds its photos itself with the same service code, so they never wait here;
2. embeds the pending images of each tip, searches them against active cases and queues one match
   alert per tip to coordinators (nothing ever goes to the tipster: privacy rule 1);
3. every second or so, looks at what changed among the reference faces (a case became active or
   closed, a photo was added, here or by another process) and retro-matches against old tips;
4. now and then: checks the in-process index against the database, and deletes composite images of
   alerts already sent (tracked in the database, so a restart forgets none); a shortlist page's goes
   with retention's daily sweep of files no row needs.

What a closed case or an expired tip leaves is purged by :mod:`bot.services.retention`.

Rows are found in the database (``face_status = 'pending'``), so work written by other processes is
picked up within a second, and a restart resumes where it stopped. The update processor wakes the
worker after committing updates that carry files (photos, case photos), so a photo tip is usually
matched a few tens of milliseconds after it is stored; anything else (a case verified, another
process's writes) waits for the next look, within a second. Images are analysed in the face worker
processes (:class:`~bot.faces.worker_pool.FacePool`: the models live there, not in the bot's
process); index searches run in the face executor's thread,
composite images in a worker thread. On SQLite, nothing is written before the slow parts are done:
a write holds the database's one write lock until the commit, and text tips must not wait behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db.models import Case, CasePhoto, Tip, TipMedia
from bot.faces.models import EMBEDDING_SIZE
from bot.faces.worker_pool import FacePool
from bot.services import alerts, cohort, match_alerts, matching, outbox, retention, retro_matching
from bot.services.face_search import FaceSearch, face_search_for
from bot.services.match_alerts import MarkupBuilder
from bot.services.matching import FaceCrop, MatchAlert
from bot.services.media import media_path

log = logging.getLogger(__name__)

WATCH_INTERVAL = 1.0  # seconds between looks for changed reference faces
# The in-process index's checksum against the database: only for deletions the watcher cannot see
# (statuses and new faces it follows every second). On SQLite the count and sum read every reference
# face's row (the model id sits after the embedding): 140 ms over 100,000 faces, so not every 5 s.
RECONCILE_INTERVAL = 60.0
CLEANUP_INTERVAL = 10.0
# cases retro-matched in one pass over the stored tip faces (a big import comes in slices)
RETRO_CASES_PER_PLAN = 500
# tips claimed ahead: their images are analysed while the tip before them is stored
PIPELINE_DEPTH = 3
# at most this often a wake-up (every committed update wakes the worker) queries for pending work
MIN_SCAN_INTERVAL = 0.05
ERROR_PAUSE = 2.0


class FaceWorker:
    """Started and stopped with the bot (``Reunite.start``): :meth:`start` once, then :meth:`run`."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                 markup: MarkupBuilder, on_queued: Callable[[list[outbox.Outgoing]], None], faces: FacePool):
        self.settings = settings
        self.faces = faces  # the worker processes that analyse images
        self.sessionmaker = sessionmaker
        self.markup = markup  # Confirm/Reject buttons (signed by the handlers)
        self.on_queued = on_queued  # hands committed outbox rows (alerts, requests) to the sender
        self._search: FaceSearch | None = None
        self._cohort: cohort.Cohort | None = None
        self._watcher: matching.ReferenceWatcher | None = None
        self._wake = asyncio.Event()
        self._scanned_at = 0.0
        self._due = {"watch": 0.0, "reconcile": 0.0, "cleanup": 0.0}
        self.watched_at = 0.0  # when (monotonic) the last completed look at the reference faces began

    async def start(self) -> None:
        """Start the face worker processes (they load the models) and load the reference faces."""
        model_id = await self.faces.start()
        self._search = face_search_for(self.settings.database_url, model_id)
        self._watcher = matching.ReferenceWatcher(model_id)
        async with self.sessionmaker() as session:
            tips, photos = await matching.requeue_other_models(session, model_id)
            if tips or photos:
                log.info("re-embedding %d tip images and %d case photos with %s", tips, photos, model_id)
            await session.commit()
            await cohort.seed(session, self.faces, model_id, _now())  # the first start: the sample photos
            await session.commit()
            self._cohort = await cohort.Cohort.load(session, model_id)
            await self.cohort.give_statistics(session)  # reference faces stored while the bot was down
            await self.search.load(session)
            await self.watcher.prime(session, _now())
            await self._purge_closed_cases(session)
        now = time.monotonic()
        self._due = {"watch": now, "reconcile": now + RECONCILE_INTERVAL, "cleanup": now}

    @property
    def search(self) -> FaceSearch:
        """Where reference and tip faces are searched (set by :meth:`start`)."""
        if self._search is None:
            raise RuntimeError("the face worker is not started")
        return self._search

    @property
    def cohort(self) -> cohort.Cohort:
        """What scores are normalised against (set by :meth:`start`)."""
        if self._cohort is None:
            raise RuntimeError("the face worker is not started")
        return self._cohort

    @property
    def watcher(self) -> matching.ReferenceWatcher:
        """What notices reference faces written here or elsewhere (set by :meth:`start`)."""
        if self._watcher is None:
            raise RuntimeError("the face worker is not started")
        return self._watcher

    def wake(self) -> None:
        """Something was committed (a photo tip, perhaps): look for pending work now."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database briefly locked or down, a bug: keep serving, try again
                log.exception("face worker round failed")
                await asyncio.sleep(ERROR_PAUSE)
            await self._idle()

    async def _idle(self) -> None:
        timeout = max(0.0, self._due["watch"] - time.monotonic())
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()
        pause = self._scanned_at + MIN_SCAN_INTERVAL - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        self._wake.clear()

    def _is_due(self, task: str, interval: float) -> bool:
        now = time.monotonic()
        if now < self._due[task]:
            return False
        self._due[task] = now + interval
        return True

    async def _round(self) -> None:
        """One round: pending case photos, changed reference faces (when due), pending tips, then
        whatever periodic task is due."""
        self._scanned_at = time.monotonic()
        while await self._embed_next_case_photo():
            self._due["watch"] = 0.0  # index its faces before the tips of this round are matched
        if self._is_due("watch", WATCH_INTERVAL):
            began = time.monotonic()
            await self._follow_reference_changes()
            self.watched_at = began
        await self._match_pending_tips()
        if self._is_due("reconcile", RECONCILE_INTERVAL):
            await self.follow_the_cohort()
            async with self.sessionmaker() as session:
                await self.search.reconcile(session)
        if self._is_due("cleanup", CLEANUP_INTERVAL):
            await self._release_sent_composites()

    # -- case photos ------------------------------------------------------------------------------

    async def _embed_next_case_photo(self) -> bool:
        async with self.sessionmaker() as session:
            photo = await matching.next_pending_case_photo(session)
            if photo is None:
                return False
            photo_id, sha256 = photo.id, photo.sha256
            await session.rollback()  # no read transaction held (nor its snapshot kept) while it is analysed
            faces = await matching.analyse_case_photo(self.faces, self.settings.media_dir, sha256)
            photo = await session.get(CasePhoto, photo_id)
            if photo is None:  # deleted meanwhile: its case closed, or its change was rejected
                return True
            await matching.record_case_faces(session, photo, faces, _now())
            case = await session.get(Case, photo.case_id)
            if photo.face_status != matching.FACES_DONE and case is not None:
                person = await matching.photo_sender(session, photo, case)
                if person is not None:
                    matching.tell_about_unusable_photo(session, person, case, photo.face_status)
            await self._commit(session)
        return True

    # -- tips ---------------------------------------------------------------------------------------

    async def _match_pending_tips(self) -> None:
        """Every pending tip, oldest first, as a pipeline: a claimer keeps up to PIPELINE_DEPTH tips
        claimed ahead, their images' analysis queued in the face worker processes, while each tip in
        turn has its matches planned, drawn and stored; so the workers (the bottleneck) never wait for
        the database or a composite image."""
        claimed: asyncio.Queue[_ClaimedTip | None] = asyncio.Queue()
        slots = asyncio.Semaphore(PIPELINE_DEPTH)
        in_flight: set[int] = set()  # tips claimed and not stored yet

        async def claim_all() -> None:
            try:
                while True:
                    await slots.acquire()
                    tip = await self._claim_tip(in_flight)
                    if tip is None:
                        return
                    in_flight.add(tip.tip_id)
                    claimed.put_nowait(tip)
            finally:
                claimed.put_nowait(None)  # the end, however it came

        claimer = asyncio.create_task(claim_all())
        try:
            while (tip := await claimed.get()) is not None:
                try:
                    await self._store_matches(tip)
                finally:
                    await tip.session.close()
                    in_flight.discard(tip.tip_id)
                    slots.release()
            await claimer  # a claim that failed fails the round
        finally:
            claimer.cancel()
            await asyncio.gather(claimer, return_exceptions=True)
            while not claimed.empty():
                if (tip := claimed.get_nowait()) is not None:
                    tip.reports.cancel()
                    await tip.session.close()

    async def _claim_tip(self, busy: set[int]) -> _ClaimedTip | None:
        """The next tip with pending images (not one of ``busy``), its images' analysis started.

        Its session stays open until the tip is stored: on PostgreSQL it holds the images' row locks.
        """
        session = self.sessionmaker()
        images = await matching.next_pending_tip_images(session, _now(), exclude=busy)
        if not images:
            await session.close()
            return None
        reports = asyncio.gather(*(matching.analysed(f"tip image {image.id}", self.faces.analyse_tip_image,
                                                     media_path(self.settings.media_dir, image.sha256))
                                   for image in images))
        return _ClaimedTip(session, images[0].tip_id, images, reports)

    async def _store_matches(self, claimed: _ClaimedTip) -> None:
        """Search a claimed tip's faces, store them and its candidates, and queue its match alert."""
        session = claimed.session
        tip = await session.get(Tip, claimed.tip_id)
        reports = list(zip(claimed.images, await claimed.reports, strict=True))
        if tip is None:  # purged meanwhile (retention): nothing left to match
            await session.rollback()
            return
        readable = [(image, report) for image, report in reports if report is not None]
        crops = [FaceCrop(image.sha256, face.bbox, face.crop_jpeg)
                 for image, report in readable for face in report.faces]
        probes = np.array([face.embedding for _, report in readable for face in report.faces],
                          dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        planned = await matching.plan_tip_matches(session, self.search, tip.id, probes, self.floor())
        skipped = sum(report.skipped for _, report in readable)
        draft = matching.tip_alert(tip, planned, crops, skipped) if planned else None
        composite = await self._composite(draft) if draft else None
        recipients = await alerts.recipients(session, self.settings.coordinator_chat_id)
        # from here on, writes (and on SQLite the write lock) until the commit
        if not await matching.still_pending(session, claimed.images):
            await session.rollback()
            self._discard(composite)
            return
        now = _now()
        tip_faces = []
        for image, report in reports:
            if report is None:
                image.face_status = matching.FACES_FAILED
            else:
                tip_faces += await matching.record_tip_faces(session, image, report.faces, now)
        ids = await matching.record_tip_matches(session, tip, tip_faces, planned, now)
        alert = matching.with_candidate_ids(draft, ids) if draft else None
        if alert is not None and draft is not None and len(alert.candidates) < len(draft.candidates):
            self._discard(composite)
            composite = await self._composite(alert)  # rare: another worker stored some first
        await self._queue_alert(session, recipients, alert, composite)
        await self._commit(session)
        if alert is None:
            self._discard(composite)
        log.info("tip %s: %d images, %d faces compared, %d skipped, %d candidates", tip.reference,
                 len(reports), len(probes), skipped, len(alert.candidates) if alert else 0)

    def floor(self) -> float:
        """The review floor now: it rises with the open reference faces (bench/FACES.md)."""
        return self.cohort.floor(self.search.reference_count(), self.settings.wrong_leads_per_face,
                                 self.settings.match_threshold)

    async def follow_the_cohort(self) -> None:
        """Read the cohort again (tip faces purged leave it); once it has grown enough, every
        reference face's statistics are computed again and the index reloaded with them."""
        async with self.sessionmaker() as session:
            if await self.cohort.reload(session):
                refreshed = await self.cohort.give_statistics(session, only_missing=False)
                await self.search.load(session)
                log.info("cohort of %d faces: statistics of %d reference faces computed again", len(self.cohort),
                         refreshed)

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        self.on_queued(outbox.committed_rows(session))

    # -- alerts ---------------------------------------------------------------------------------

    async def _composite(self, alert: MatchAlert) -> str:
        return await asyncio.to_thread(match_alerts.store_composite, self.settings.media_dir, alert)

    async def _queue_alert(self, session: AsyncSession, recipients: list[alerts.Recipient], alert: MatchAlert | None,
                           composite: str | None) -> None:
        """Queue the alert (if any candidate of it was stored) with its composite image, which is
        tracked with its candidates until it is sent."""
        if alert is None or composite is None:
            return
        await retention.track_composite(session, [candidate.candidate_id for candidate in alert.candidates],
                                        composite)
        match_alerts.enqueue(session, recipients, composite, alert, self.markup, self.settings.tz)

    def _discard(self, composite: str | None) -> None:
        """A composite image no alert will show."""
        if composite is not None:
            media_path(self.settings.media_dir, composite).unlink(missing_ok=True)

    async def _release_sent_composites(self) -> None:
        """Composite images are needed until their alerts are sent, then deleted."""
        async with self.sessionmaker() as session:
            await retention.release_sent_composites(session, self.settings.media_dir)

    async def _purge_closed_cases(self, session: AsyncSession) -> None:
        """However a case was closed (the console, another process, while this one was down), what it
        leaves goes (flow 8); committed at once."""
        purged = await retention.purge_closed_cases(session, self.settings.media_dir)
        await session.commit()
        if purged:
            log.info("purged what %d closed cases left (faces, leads, photos, flyers)", len(purged))

    # -- reference faces ----------------------------------------------------------------------------

    async def _follow_reference_changes(self) -> None:
        """Index what changed among the reference faces, and retro-match new ones against old tips."""
        async with self.sessionmaker() as session:
            changes = await self.watcher.poll(session, _now())
            if not changes:
                self.watcher.confirm()
                return
            await self.cohort.give_statistics(session, case_ids=set(changes.activated),
                                              face_ids=[face_id for face_id, _ in changes.new_faces])
            await self.search.apply(session, changes)
            floor = self.floor()
            if changes.deactivated:
                await self._purge_closed_cases(session)
            faces_by_case: dict[int, list[int] | None] = dict.fromkeys(changes.activated)
            for face_id, case_id in changes.new_faces:
                faces = faces_by_case.setdefault(case_id, [])
                if faces is not None:  # None: the case was activated, all its faces are searched anyway
                    faces.append(face_id)
            plans = []
            batch = list(faces_by_case.items())
            for first in range(0, len(batch), RETRO_CASES_PER_PLAN):
                plans += await retro_matching.plan_retro_matches(
                    session, self.search, dict(batch[first:first + RETRO_CASES_PER_PLAN]), floor)
            drafts = [(plan, await self._composite(plan.alert())) for plan in plans]
            recipients = await alerts.recipients(session, self.settings.coordinator_chat_id)
            now = _now()
            unshown = []
            for plan, composite in drafts:
                candidate_id = await retro_matching.record_retro_match(session, plan, now)
                alert = matching.with_candidate_ids(plan.alert(), [candidate_id])
                await self._queue_alert(session, recipients, alert, composite)
                if alert is None:
                    unshown.append(composite)
            await self._commit(session)
        self.watcher.confirm()
        for composite in unshown:
            self._discard(composite)
        if plans:
            log.info("retro-matching: %d old tips became candidates", len(plans))


@dataclass
class _ClaimedTip:
    """A tip taken for matching: its session (and on PostgreSQL its row locks) and its images'
    analysis, under way in the face worker processes."""

    session: AsyncSession
    tip_id: int
    images: list[TipMedia]
    reports: asyncio.Future  # -> list of FaceReport, None for an image that cannot be analysed


def _now() -> datetime:
    return datetime.now(UTC)
