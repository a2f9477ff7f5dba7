"""``reunite cases import FILE``: case records an organisation already holds, as JSON Lines or CSV
(UTF-8, with or without a BOM), exactly as DESIGN.md's contract says.

Each data line (blank lines and the CSV header are not counted) becomes an active case with its
photos, audited as done by the shell's admin, and one JSON line on stdout: ``{"line", "code"}``,
``{"line", "code", "existing": true}`` when its ``external_id`` was imported before, or
``{"line", "error"}``. A bad line is reported and the others are imported; each line is read and
checked by :mod:`bot.services.case_records`. Photos are checked and
stored like any image, and their faces are embedded here, by the same service code as the bot's
face worker (:func:`bot.services.matching.analyse_case_photo`: small old photos are padded until the
face is found; every face row records its model), so the worker never embeds them again. A running
bot notices the new faces within seconds (its ReferenceWatcher), indexes them and retro-matches old
tips. A photo must be a regular file (not a device, a FIFO or a folder) of at most the bot's image size
limit, inside the import file's folder or a folder given with ``--photos-from`` (after following
symbolic links: a link cannot lead out); anything else fails its line before it is read. A photo with
no usable face is kept, and its case's result line says so:
``{"line", "code", "no_usable_face": [photo paths]}``. ``skip_faces`` leaves the photos pending for
the bot's face worker instead (for a machine without the face models).

Speed (1,000 cases with one photo each: under two minutes with faces on two cores, bench/RESULTS.md):
the photos of a batch of lines are stored (decoded, stripped, re-encoded) in worker threads and
analysed by the import's own face worker processes (:class:`~bot.faces.worker_pool.FacePool`, as in
the bot: ``REUNITE_FACE_WORKERS``, at a lower priority), while the batches before it are written; each
batch's cases and faces are written in one transaction (retried line by line if it fails, so one bad
line never takes others with it).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.db.migrate import upgrade_to_head_async
from bot.db.models import Case
from bot.db.session import create_engine, create_sessionmaker
from bot.faces import decode_limits
from bot.faces.engine import DetectedFace
from bot.faces.models import ModelPackError
from bot.faces.worker_pool import FacePool
from bot.services import audit, cases, matching, media
from bot.services.case_records import CaseRecord, PhotoSource, check_line, read_lines
from bot.services.import_files import LineError, PhotoFolders, read_photo

# shell access to the server counts as admin (DESIGN.md flow 3); it has no Telegram id to record
SHELL_ADMIN = None
BATCH = 32  # cases whose photos are prepared together and written in one transaction
# batches prepared (photos stored, faces analysed) ahead of the one being written, so the face
# worker processes keep their core busy while the database writes
BATCHES_AHEAD = 2
LOOKUP_CHUNK = 500
PROGRESS_WIDTH = 30
PROGRESS_INTERVAL = 0.1  # seconds between redraws of the progress bar


@dataclass(frozen=True)
class _Existing:
    """A line whose external_id was imported before (or by an earlier line of this file)."""

    external_id: str


@dataclass(frozen=True)
class PreparedPhoto:
    """A line's photo stored in the media store, with the faces found in it (None: not analysed,
    because the analysis failed or faces are left to the bot's face worker)."""

    source: PhotoSource
    stored: cases.NewPhoto
    faces: list[DetectedFace] | None


@dataclass(frozen=True)
class _Created:
    """A case this import created; ``no_usable_face``: its photos in which no face could be used."""

    code: str
    no_usable_face: list[str]


# -- importing ----------------------------------------------------------------------------------

def _store_photo(source: PhotoSource, media_dir: Path) -> cases.NewPhoto:
    data = read_photo(source.path, source.real_path)
    try:
        stored = media.store_image(data, media_dir)
    except media.ImageRejected as rejected:
        reason = "too large" if rejected.reason == "image_too_big" else "not an image we can read"
        raise LineError(f"photo {source.path}: {reason}") from None
    return cases.NewPhoto(stored.sha256, stored.width, stored.height, source.age, source.kind)


async def _prepared_photo(source: PhotoSource, media_dir: Path, faces: FacePool | None) -> PreparedPhoto:
    stored = await asyncio.to_thread(_store_photo, source, media_dir)
    found = await matching.analyse_case_photo(faces, media_dir, stored.sha256) if faces else None
    return PreparedPhoto(source, stored, found)


async def _prepared_photos(record: CaseRecord, media_dir: Path, faces: FacePool | None
                           ) -> list[PreparedPhoto] | LineError:
    try:
        return await asyncio.gather(*(_prepared_photo(source, media_dir, faces) for source in record.photos))
    except LineError as error:
        return error


async def _prepare_batch(batch: list[tuple[int, CaseRecord | LineError]], imported: dict[str, str],
                         media_dir: Path, faces: FacePool | None) -> dict[int, list[PreparedPhoto] | LineError]:
    """The photos of a batch's new lines, stored and analysed side by side, by line."""
    to_store = {number: record for number, record in batch
                if isinstance(record, CaseRecord) and record.external_id not in imported}
    prepared = await asyncio.gather(*(_prepared_photos(record, media_dir, faces) for record in to_store.values()))
    return dict(zip(to_store, prepared, strict=True))


async def _codes_by_external_id(session: AsyncSession, external_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(external_ids), LOOKUP_CHUNK):
        chunk = external_ids[start:start + LOOKUP_CHUNK]
        rows = await session.execute(select(Case.external_id, Case.code).where(Case.external_id.in_(chunk)))
        # never None: one of ``chunk``; the check is for the type
        found.update((external_id, code) for external_id, code in rows if external_id is not None)
    return found


async def _add_case(session: AsyncSession, record: CaseRecord, photos: list[PreparedPhoto],
                    with_faces: bool) -> _Created:
    now = datetime.now(UTC)
    case = await cases.create_case(session, status=cases.STATUS_ACTIVE, external_id=record.external_id,
                                   **record.columns)
    rows = await cases.add_photos(session, case, [photo.stored for photo in photos], SHELL_ADMIN, now)
    if with_faces:
        for row, photo in zip(rows, photos, strict=True):
            await matching.record_case_faces(session, row, photo.faces, now)
    audit.record(session, SHELL_ADMIN, "case.import", case.code)
    return _Created(case.code, [str(photo.source.path) for row, photo in zip(rows, photos, strict=True)
                                if row.face_status in (matching.FACES_NONE, matching.FACES_FAILED)])


async def _create_cases(session: AsyncSession, items: list[tuple[int, CaseRecord, list[PreparedPhoto]]],
                        with_faces: bool) -> dict[int, _Created | LineError]:
    """Codes (or errors) by line: one transaction for all (a commit per case is slow on PostgreSQL);
    should it fail, line by line, so that only the lines at fault fail."""
    try:
        codes: dict[int, _Created | LineError] = {number: await _add_case(session, record, photos, with_faces)
                                                  for number, record, photos in items}
        await session.commit()
        return codes
    except SQLAlchemyError:  # e.g. an external_id another process imported meanwhile
        await session.rollback()
    codes = {}
    for number, record, photos in items:
        try:
            codes[number] = await _add_case(session, record, photos, with_faces)
            await session.commit()
        except SQLAlchemyError as error:
            await session.rollback()
            codes[number] = LineError(f"could not be saved: {type(error).__name__}")
    return codes


async def _write_batch(session: AsyncSession, batch: list[tuple[int, CaseRecord | LineError]],
                       prepared: dict[int, list[PreparedPhoto] | LineError], imported: dict[str, str],
                       with_faces: bool) -> list[dict]:
    """Create the cases of a prepared batch; ``imported`` (codes by external id) is kept up to date.
    A line whose external_id an earlier batch imported meanwhile is reported as existing."""
    outcomes: dict[int, _Created | LineError | _Existing] = {}
    first_line_of: dict[str, int] = {}  # external ids created by this batch
    items = []
    for number, record in batch:
        photos = prepared.get(number)
        if isinstance(record, LineError):
            outcomes[number] = record
        elif isinstance(photos, LineError):
            outcomes[number] = photos
        elif record.external_id is not None and (record.external_id in imported
                                                 or record.external_id in first_line_of):
            outcomes[number] = _Existing(record.external_id)
        else:
            # photos are prepared for every line whose external_id was not imported before
            assert photos is not None
            items.append((number, record, photos))
            if record.external_id:
                first_line_of[record.external_id] = number
    created = await _create_cases(session, items, with_faces)
    outcomes.update(created)
    for external_id, number in first_line_of.items():
        outcome = created[number]
        if isinstance(outcome, _Created):
            imported[external_id] = outcome.code
    return [_result(number, outcomes[number], imported) for number, _ in batch]


def _result(number: int, outcome: _Created | LineError | _Existing, imported: dict[str, str]) -> dict:
    if isinstance(outcome, LineError):
        return {"line": number, "error": str(outcome)}
    if isinstance(outcome, _Existing):
        if outcome.external_id not in imported:
            return {"line": number, "error": f"external_id {outcome.external_id!r} is on an earlier line that failed"}
        return {"line": number, "code": imported[outcome.external_id], "existing": True}
    if outcome.no_usable_face:
        return {"line": number, "code": outcome.code, "no_usable_face": outcome.no_usable_face}
    return {"line": number, "code": outcome.code}


class ProgressBar:
    """``[#####.....] 500/1000`` on stderr, redrawn at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream, self.done, self._drawn_at = total, stream, 0, 0.0

    def advance(self) -> None:
        self.done += 1
        if self.done == self.total or time.monotonic() - self._drawn_at >= PROGRESS_INTERVAL:
            self._drawn_at = time.monotonic()
            filled = PROGRESS_WIDTH * self.done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


async def import_cases(path: Path, settings: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
                       *, skip_faces: bool = False, photo_folders: Sequence[Path] = ()) -> int:
    """Import ``path``; one result line per data line on ``out``. The exit status: 0 unless every
    line failed (2 if the file cannot be read at all, or the face models cannot be loaded).
    ``skip_faces``: leave the photos' faces to the running bot's face worker. ``photo_folders``:
    where photos may come from besides the file's own folder."""
    try:
        lines = read_lines(path)
    except (OSError, UnicodeDecodeError, csv.Error, decode_limits.UnreadableImage) as error:
        err.write(f"cannot read {path}: {error}\n")
        return 2
    folders = PhotoFolders(path, photo_folders)
    now = datetime.now(UTC)
    checked: list[tuple[int, CaseRecord | LineError]] = []
    for number, line in lines:
        if isinstance(line, LineError):
            checked.append((number, line))
            continue
        try:
            checked.append((number, check_line(line, folders, settings.tz, now)))
        except LineError as error:
            checked.append((number, error))

    faces = None if skip_faces else FacePool()
    try:
        if faces is not None:
            try:
                await faces.start()  # the worker processes load the models once
            except ModelPackError as error:
                err.write(f"cannot load the face models: {error}\n")
                return 2
        return await _import_checked(checked, settings, out, err, faces)
    finally:
        if faces is not None:
            await asyncio.to_thread(faces.shutdown)


async def _import_checked(checked: list[tuple[int, CaseRecord | LineError]], settings: Settings, out: TextIO,
                          err: TextIO, faces: FacePool | None) -> int:
    """Write the checked lines in batches, each batch's photos prepared while earlier ones are written."""
    await upgrade_to_head_async(settings.database_url)
    engine = create_engine(settings.database_url)
    progress = ProgressBar(len(checked), err)
    batches = [checked[start:start + BATCH] for start in range(0, len(checked), BATCH)]
    preparing: deque[asyncio.Task] = deque()
    failures = 0
    try:
        async with create_sessionmaker(engine)() as session:
            imported = await _codes_by_external_id(
                session, [r.external_id for _, r in checked if isinstance(r, CaseRecord) and r.external_id])

            def prepare(batch):
                return asyncio.ensure_future(_prepare_batch(batch, imported, settings.media_dir, faces))

            preparing.extend(prepare(batch) for batch in batches[:BATCHES_AHEAD])
            for index, batch in enumerate(batches):
                prepared = await preparing.popleft()
                if index + BATCHES_AHEAD < len(batches):
                    preparing.append(prepare(batches[index + BATCHES_AHEAD]))
                for result in await _write_batch(session, batch, prepared, imported, faces is not None):
                    failures += "error" in result
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
                    progress.advance()
                out.flush()
    finally:
        for task in preparing:
            task.cancel()
        await engine.dispose()
    return 1 if checked and failures == len(checked) else 0
