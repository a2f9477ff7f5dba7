"""Flyers of a case: built from its rows, rendered in the flyer worker process only when something
that shapes them changed (their fingerprint), kept in the media store by SHA-256, and recorded in
``flyer_files``. The sender writes Telegram's file_id into those rows once a flyer went out, so an
unchanged flyer is re-sent by file_id: no rendering and no upload.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.db.models import Case, CasePhoto, FlyerFile
from bot.db.session import create_engine, create_sessionmaker
from bot.services import cases, retention
from bot.services.media import media_path, renewed
from flyers import (
    CaseLang,
    FlyerCase,
    FlyerFiles,
    FlyerPhoto,
    PhotoKind,
    Sex,
    as_lang,
    fingerprint,
    render_flyers,
    render_flyers_async,
)

POSTER_JPG = "poster_jpg"
POSTER_PDF = "poster_pdf"
CARD_JPG = "card_jpg"
DESIGNS = (POSTER_JPG, POSTER_PDF, CARD_JPG)
FLYER_LANGUAGES = ("en", "zh", "bi")
# the rows' strings as the flyer's types (a case's language other than these prints in English)
_CASE_LANGUAGES: dict[str, CaseLang] = {language: language for language in get_args(CaseLang)}
_SEXES: dict[str, Sex] = {sex: sex for sex in get_args(Sex)}
_PHOTO_KINDS: dict[str, PhotoKind] = {kind: kind for kind in get_args(PhotoKind)}


def deep_link_url(bot_username: str, case: Case) -> str:
    """Where the flyer's QR code leads: a tip about this case (``/start c_<token>``)."""
    return f"https://t.me/{bot_username}?start=c_{case.deep_link_token}"


def flyer_case(case: Case, photos: list[tuple[CasePhoto, bytes]], deep_link: str, tz: tzinfo,
               today: date) -> FlyerCase:
    """What the flyer shows of ``case``; its photos as (row, image bytes), primary first."""
    if case.missing_since is None:  # required of every reported and imported case
        raise ValueError(f"{case.code} has no missing_since")
    return FlyerCase(
        code=case.code, name=case.name, other_names=case.other_names,
        sex=_SEXES.get(case.sex) if case.sex is not None else None,
        date_of_birth=case.date_of_birth, birth_year=case.birth_year, age_when_missing=case.age_when_missing,
        # the renderer prints the wall-clock time it is given
        missing_since=case.missing_since.astimezone(tz), missing_since_has_time=case.missing_since_has_time,
        last_seen_place=case.last_seen_place or "", height_cm=case.height_cm, build=case.build, hair=case.hair,
        eyes=case.eyes, distinguishing_marks=case.distinguishing_marks, clothing=case.clothing,
        circumstances=case.circumstances, agency_name=case.agency_name, agency_phone=case.agency_phone,
        agency_reference=case.agency_reference, family_contact=case.family_contact,
        family_contact_public=case.family_contact_public,
        language=_CASE_LANGUAGES.get(case.language, "en"),
        photos=[FlyerPhoto(image, row.age_years, _PHOTO_KINDS[row.kind], row.is_primary) for row, image in photos],
        deep_link_url=deep_link, as_of=today,
    )


def _read_photos(media_dir: Path, rows: list[CasePhoto]) -> list[tuple[CasePhoto, bytes]]:
    return [(row, media_path(media_dir, row.sha256).read_bytes()) for row in rows]


def _prepare(case: Case, rows: list[CasePhoto], media_dir: Path, deep_link: str, tz: tzinfo, today: date,
             lang: str) -> tuple[FlyerCase, str]:
    """(what to render, its fingerprint): reads and hashes the photos, so off the event loop."""
    content = flyer_case(case, _read_photos(media_dir, rows), deep_link, tz, today)
    return content, fingerprint(content, as_lang(lang))


def store_file(data: bytes, media_dir: Path) -> str:
    """Keep a rendered file in the media store under its SHA-256 (write, then rename)."""
    digest = hashlib.sha256(data).hexdigest()
    path = media_path(media_dir, digest)
    if not renewed(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)
    return digest


async def flyer_content(session: AsyncSession, case: Case, lang: str, *, media_dir: Path, bot_username: str,
                        tz: tzinfo, now: datetime) -> tuple[FlyerCase, str]:
    """(what the case's flyer in ``lang`` shows today, its fingerprint)."""
    rows = await cases.photos_of(session, case.id)
    return await asyncio.to_thread(_prepare, case, rows, media_dir, deep_link_url(bot_username, case), tz,
                                   now.astimezone(tz).date(), lang)


async def current_flyers(session: AsyncSession, case: Case, lang: str, *, media_dir: Path, bot_username: str,
                         tz: tzinfo, now: datetime) -> dict[str, FlyerFile]:
    """The case's flyers in ``lang`` by design, rendered now only if the stored ones are out of date."""
    content, key = await flyer_content(session, case, lang, media_dir=media_dir, bot_username=bot_username,
                                       tz=tz, now=now)
    stored = {row.design: row for row in await session.scalars(
        select(FlyerFile).where(FlyerFile.case_id == case.id, FlyerFile.language == lang))}
    if len(stored) == len(DESIGNS) and all(row.fingerprint == key for row in stored.values()):
        return stored
    files = await render_flyers_async(content, as_lang(lang))
    replaced = {row.sha256 for row in stored.values()}
    for design, data in ((POSTER_JPG, files.poster_jpg), (POSTER_PDF, files.poster_pdf), (CARD_JPG, files.card_jpg)):
        row = stored.get(design)
        if row is None:
            row = stored[design] = FlyerFile(case_id=case.id, language=lang, design=design)
            session.add(row)
        row.fingerprint, row.telegram_file_id, row.created_at = key, None, now
        row.sha256 = await asyncio.to_thread(store_file, data, media_dir)
    await session.flush()
    # the flyers they replace (an old phone number, say) go, unless a message still to be sent needs one
    await retention.release_files(session, media_dir, replaced)
    return stored


class NotPrintable(Exception):
    """Why a case's flyer cannot be printed, in words for the person at the shell."""


async def flyer_for_print(settings: Settings, code: str, lang: str | None) -> FlyerFiles:
    """``reunite flyer render``: an active case's flyers (in ``lang``, else its own language)."""
    if not settings.bot_username:
        raise NotPrintable("REUNITE_BOT_USERNAME is not set: the QR code needs the bot's username (e.g. reunite_bot)")
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            case = await cases.by_code(session, code)
            if case is None:
                raise NotPrintable(f"no case {cases.code_as_typed(code)}")
            if case.status != cases.STATUS_ACTIVE:  # privacy rule 3: nothing before verification or after closing
                raise NotPrintable(f"{case.code} is {case.status}: only an active (verified, open) case has a flyer")
            lang = lang or case.language
            content, _ = await flyer_content(session, case, lang, media_dir=settings.media_dir,
                                             bot_username=settings.bot_username, tz=settings.tz,
                                             now=datetime.now(UTC))
    finally:
        await engine.dispose()
    return render_flyers(content, as_lang(lang))  # the command's own process: no event loop to keep free
