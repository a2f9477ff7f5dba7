"""Files for a logged-in coordinator only: stripped tip images and case photos from the media store,
face tiles for leads, and a case's tips exported as CSV and as a PDF report for police."""

from __future__ import annotations

import asyncio
import csv
import io
import re

from aiohttp import web

from bot.console.forms import case_in_path
from bot.console.keys import BACKEND, DB, NOW, USER
from bot.console.render import render
from bot.services import case_changes, case_fields, case_report, lead_views
from bot.services.match_alerts import face_tile
from bot.services.media import media_path
from flyers import run_in_worker

SHA256 = re.compile(r"^[0-9a-f]{64}$")
TILE_JPEG_QUALITY = 88


async def media(request: web.Request) -> web.StreamResponse:
    """A tip image, a case photo or a waiting change's photo by SHA-256 (never any other file of the store)."""
    sha256 = request.match_info["sha256"]
    if not SHA256.match(sha256) or not (await lead_views.is_shown_image(request[DB], sha256)
                                        or await case_changes.is_waiting_photo(request[DB], sha256)):
        raise web.HTTPNotFound()
    path = media_path(request[BACKEND].settings.media_dir, sha256)
    if not path.exists():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


def _tile_jpeg(media_dir, crop) -> bytes:
    buffer = io.BytesIO()
    face_tile(media_dir, crop).save(buffer, format="JPEG", quality=TILE_JPEG_QUALITY)
    return buffer.getvalue()


async def face(request: web.Request) -> web.Response:
    """A square tile around a stored face (a tip's or a case photo's), cut as match alerts cut it."""
    face_id = request.match_info["face_id"]
    crop = await lead_views.face_crop(request[DB], int(face_id)) if face_id.isdigit() else None
    if crop is None:
        raise web.HTTPNotFound()
    data = await asyncio.to_thread(_tile_jpeg, request[BACKEND].settings.media_dir, crop)
    return web.Response(body=data, content_type="image/jpeg")


async def export_csv(request: web.Request) -> web.Response:
    case = await case_in_path(request)
    report = await case_report.case_tips(request[DB], case, request[USER].id, "csv")
    buffer = io.StringIO()
    csv.writer(buffer).writerows(case_report.csv_rows(report, request[BACKEND].settings.tz))
    # a BOM, so that spreadsheet programs read the Chinese as UTF-8
    return web.Response(body=("\ufeff" + buffer.getvalue()).encode("utf-8"), headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{case.code}-tips.csv"'})


async def export_pdf(request: web.Request) -> web.Response:
    """A printable report: the case's particulars, then every tip in full (WeasyPrint, CJK font)."""
    case = await case_in_path(request)
    settings, language = request[BACKEND].settings, request[USER].language
    report = await case_report.case_tips(request[DB], case, request[USER].id, "pdf")
    html = render(request, "report.html", case=case, particulars=case_fields.particulars(case, language, settings.tz),
                  report=report, now=request[NOW])
    data = await run_in_worker(case_report.pdf_from_html, html)
    return web.Response(body=data, headers={
        "Content-Type": "application/pdf",
        "Content-Disposition": f'attachment; filename="{case.code}-tips-report.pdf"'})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/media/{sha256}.jpg", media, name="media")
    router.add_get("/faces/{face_id}.jpg", face, name="face")
    router.add_get("/cases/{code}/tips.csv", export_csv, name="export_csv")
    router.add_get("/cases/{code}/report.pdf", export_pdf, name="export_pdf")
