"""Render missing-person flyers: Jinja2 -> HTML/CSS -> WeasyPrint (PDF) -> pypdfium2 (JPEG).

Two designs:

* the A4 **poster** (PDF for print, JPEG for chat), after NCMEC / Missing People UK /
  寻人启事 conventions, and
* the square **card** (JPEG) for broadcasts and sharing.

Rendering is synchronous and CPU-bound, and pypdfium2 is not thread-safe, so the bot
calls :func:`~flyers.pool.render_flyers_async`, which runs :func:`render_flyers` in a
long-lived worker process. :func:`fingerprint` tells callers whether a flyer they already sent
is still current, so an unchanged case is never rendered twice.

Safety: templates autoescape every field, and WeasyPrint fetches ``data:`` URLs only
(all images are embedded as data URIs), so text typed by a family can neither inject
markup nor make the renderer read a local file or reach the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
import pypdfium2 as pdfium
import weasyprint
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

from .context import build_context, resolve_lang
from .images import DataOnlyURLFetcher
from .model import FlyerCase, FlyerFiles, FlyerPhoto, Lang
from .text import flyer_date

log = logging.getLogger(__name__)

#: Bump whenever renderer code changes what a flyer looks like. Template files are
#: hashed into the fingerprint automatically; this covers the Python side.
TEMPLATE_VERSION = "2025.1"

TEMPLATES_DIR = Path(__file__).with_name("templates")

# Output geometry. A4 is 595.28 x 841.89 pt; Telegram recompresses photos to about
# 1,280 px, so a poster around 2,000 px tall stays sharp after that.
POSTER_JPEG_HEIGHT = 2000
CARD_JPEG_SIZE = 1080
JPEG_QUALITY = 88
MAX_JPEG_BYTES = 2_000_000

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every field is user text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_FONT_CONFIG: FontConfiguration | None = None


def _font_config() -> FontConfiguration:
    """One FontConfiguration per process: building it (fontconfig + Pango font map)
    for every render costs ~30 ms; the flyers use no @font-face, so sharing is safe."""
    global _FONT_CONFIG
    if _FONT_CONFIG is None:
        _FONT_CONFIG = FontConfiguration()
    return _FONT_CONFIG


def _render_document(case: FlyerCase, lang: str, design: str,
                     fetcher: URLFetcher | None = None) -> weasyprint.document.Document:
    """Lay out one design on exactly one page.

    Text is clipped and sized to fit in the first place (see :func:`fit_poster`); if
    the layout still spills onto a second page, it is redone in the compact layout,
    whose main area has a fixed, clipped height, so the contact band (phone, QR code)
    is always on the page. Keeping only the first page is a guard that should never
    be needed.
    """
    template = _ENV.get_template(f"{design}.html.j2")
    fetcher = fetcher or DataOnlyURLFetcher()
    for compact in (False, True):
        html = template.render(**build_context(case, lang, design, compact))
        doc = weasyprint.HTML(string=html, url_fetcher=fetcher).render(
            font_config=_font_config())
        if len(doc.pages) == 1:
            return doc
        if not compact:
            log.info("flyer %s %s: %d pages, retrying in the compact layout",
                     design, lang, len(doc.pages))
    log.warning("flyer %s %s: compact layout still %d pages, keeping the first",
                design, lang, len(doc.pages))
    return doc.copy(doc.pages[:1])


def _rasterize(pdf: bytes, *, height: int | None = None, width: int | None = None) -> bytes:
    """First PDF page -> JPEG bytes at the given pixel height (or width)."""
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[0]
        page_w, page_h = page.get_size()
        scale = height / page_h if height else width / page_w
        image = page.render(scale=scale, may_draw_forms=False).to_pil().convert("RGB")
        page.close()
    finally:
        document.close()
    quality = JPEG_QUALITY
    while True:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality, subsampling=0 if quality >= 85 else 2)
        data = buf.getvalue()
        # Photo-heavy pages can exceed the size budget: step the quality down.
        if len(data) < MAX_JPEG_BYTES or quality <= 50:
            return data
        quality -= 12


def render_poster_pdf(case: FlyerCase, lang: Lang | None = None) -> bytes:
    """The A4 poster as a one-page PDF."""
    return _render_document(case, resolve_lang(case, lang), "poster").write_pdf()


def render_poster(case: FlyerCase, lang: Lang | None = None) -> tuple[bytes, bytes]:
    """The A4 poster as ``(pdf, jpeg)``; the JPEG is 2,000 px tall."""
    pdf = render_poster_pdf(case, lang)
    return pdf, _rasterize(pdf, height=POSTER_JPEG_HEIGHT)


def render_card_jpg(case: FlyerCase, lang: Lang | None = None) -> bytes:
    """The square card as a 1080 x 1080 JPEG."""
    pdf = _render_document(case, resolve_lang(case, lang), "card").write_pdf()
    return _rasterize(pdf, width=CARD_JPEG_SIZE)


def render_flyers(case: FlyerCase, lang: Lang | None = None) -> FlyerFiles:
    """Render both designs. Sync and CPU-bound: call :func:`render_flyers_async` from
    the event loop. ``lang`` defaults to the case's language."""
    pdf, jpg = render_poster(case, lang)
    return FlyerFiles(poster_pdf=pdf, poster_jpg=jpg, card_jpg=render_card_jpg(case, lang))


# --------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------


def _templates_digest() -> str:
    """Hash of every template/CSS file, so editing a template invalidates cached flyers."""
    digest = hashlib.sha256()
    for path in sorted(TEMPLATES_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(TEMPLATES_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


_TEMPLATES_DIGEST = _templates_digest()


def _canonical(value: Any) -> Any:
    if isinstance(value, FlyerPhoto):
        return {"sha256": hashlib.sha256(value.image).hexdigest(), "age": value.age,
                "kind": value.kind, "primary": value.primary}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def fingerprint(case: FlyerCase, lang: Lang | None = None) -> str:
    """SHA-256 (hex) of everything that affects the rendered flyers.

    Equal fingerprints mean identical flyers: the caller re-sends what it stored
    (e.g. Telegram ``file_id``s) instead of rendering. It covers every case field,
    the photos' content, the language, the flyer date (``as_of``, today if unset),
    the templates, :data:`TEMPLATE_VERSION` and the WeasyPrint/pypdfium2 versions.
    """
    language = resolve_lang(case, lang)
    fields = {f.name: _canonical(getattr(case, f.name)) for f in dataclasses.fields(case)}
    # The case's language only picks the default, which ``language`` now holds.
    fields.pop("language", None)
    fields["as_of"] = flyer_date(case).isoformat()
    if not case.family_contact_public:
        fields.pop("family_contact", None)  # not printed, so not part of the output
    payload = {
        "template_version": TEMPLATE_VERSION,
        "templates": _TEMPLATES_DIGEST,
        "weasyprint": weasyprint.__version__,
        "pdfium": f"{pdfium.PYPDFIUM_INFO}/{pdfium.PDFIUM_INFO}",
        "lang": language,
        "case": fields,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
