"""Render missing-person flyers: Jinja2 -> HTML/CSS -> WeasyPrint (PDF) -> pypdfium2 (JPEG).

Two designs:

* the A4 **poster** (PDF for print, JPEG for chat), after NCMEC / Missing People UK /
  寻人启事 conventions, and
* the square **card** (JPEG) for broadcasts and sharing.

Rendering is synchronous and CPU-bound, and pypdfium2 is not thread-safe, so the bot
calls :func:`render_flyers_async`, which runs :func:`render_flyers` in a long-lived
worker process. :func:`fingerprint` tells callers whether a flyer they already sent
is still current, so an unchanged case is never rendered twice.

Safety: templates autoescape every field, and WeasyPrint fetches ``data:`` URLs only
(all images are embedded as data URIs), so text typed by a family can neither inject
markup nor make the renderer read a local file or reach the network.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import hashlib
import io
import json
import logging
import math
import multiprocessing
import re
import threading
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import jinja2
import pypdfium2 as pdfium
import segno
import weasyprint
from PIL import Image, ImageOps
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher, URLFetcherResponse

from bot.child_process import exit_with_parent, run_in_background

from .model import FlyerCase, FlyerFiles, FlyerPhoto, Lang

log = logging.getLogger(__name__)
T = TypeVar("T")

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

# Photo sizes embedded in the PDF (longest side, px). The primary photo is printed
# 84 x 110 mm: 800 px is ~185 dpi there, plenty for a photo (and more than the
# 2,000 px poster JPEG shows); thumbnails are 26 x 32 mm: 360 px is ~285 dpi.
# Larger data URIs cost parse time: ~35 ms per render at 1,000 px.
PRIMARY_PHOTO_PX = 800
THUMB_PHOTO_PX = 360
MAX_EXTRA_PHOTOS = 3

# --------------------------------------------------------------------------------------
# Labels. Kept here (not in the bot's locales): the flyer is a printed document with its
# own wording, and the renderer must work without the bot.
# --------------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "missing": "MISSING",
        "have_you_seen": "Have you seen this person?",
        "also_known_as": "Also known as",
        "age_then": "Age when missing",
        "age_now": "Age now",
        "age": "Age",
        "missing_since": "Missing since",
        "last_seen": "Last seen",
        "sex": "Sex",
        "born": "Born",
        "height": "Height",
        "build": "Build",
        "hair": "Hair",
        "eyes": "Eyes",
        "marks": "Distinguishing marks",
        "clothing": "Last seen wearing",
        "circumstances": "Circumstances",
        "contact_intro": "If you have any information, please contact",
        "contact_intro_short": "Seen them? Call",
        "reference": "Ref.",
        "family": "Family",
        "qr_caption": "Seen them? Scan to tell us — anonymously",
        "qr_caption_short": "Scan the code to tell us — anonymously",
        "no_photo": "No photo available",
        "case": "Case",
        "flyer_date": "Flyer date",
        "emergency": "In danger now? Call the local emergency number.",
        "age_progressed": "Age-progressed image",
        "male": "Male",
        "female": "Female",
    },
    "zh": {
        "missing": "寻人启事",
        "have_you_seen": "您见过此人吗？",
        "also_known_as": "又名",
        "age_then": "失踪时年龄",
        "age_now": "现年",
        "age": "年龄",
        "missing_since": "失踪时间",
        "last_seen": "最后出现地点",
        "sex": "性别",
        "born": "出生",
        "height": "身高",
        "build": "体型",
        "hair": "头发",
        "eyes": "眼睛",
        "marks": "体貌特征",
        "clothing": "失踪时衣着",
        "circumstances": "失踪经过",
        "contact_intro": "如有任何线索，请联系",
        "contact_intro_short": "如有线索，请致电",
        "reference": "报案编号",
        "family": "家属",
        "qr_caption": "见过此人？扫码匿名提供线索",
        "qr_caption_short": "扫描二维码，匿名提供线索",
        "no_photo": "暂无照片",
        "case": "案件",
        "flyer_date": "制作日期",
        "emergency": "如遇危险，请立即拨打当地报警电话。",
        "age_progressed": "模拟成长照片",
        "male": "男",
        "female": "女",
    },
}

# HTML lang tags: "zh-Hans" makes Pango pick the Simplified Chinese glyph forms.
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
LANGS_OF: dict[str, tuple[str, ...]] = {"en": ("en",), "zh": ("zh",), "bi": ("en", "zh")}

EN_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)

# Per-field length limits in "visual width" units (a CJK character counts 2). The
# layout also clamps lines in CSS; these keep the HTML small and the page count at one.
POSTER_LIMITS = {
    "name": 90, "other_names": 90, "last_seen_place": 150, "build": 60, "hair": 60,
    "eyes": 60, "distinguishing_marks": 170, "clothing": 200, "circumstances": 560,
    "agency_name": 90, "agency_phone": 40, "agency_reference": 40, "family_contact": 60,
}
CARD_LIMITS = {
    "name": 60, "other_names": 50, "last_seen_place": 90, "agency_name": 60,
    "agency_phone": 32, "agency_reference": 30, "family_contact": 40,
}

# --------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------

_WS_RE = re.compile(r"\s+")
# C0/C1 controls other than whitespace: they draw as boxes and have no place on paper.
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Pictographic emoji (with skin tones, ZWJ sequences and flag tags), and the emoji
# presentation selector. No installed font draws them (a colour emoji font would,
# but WeasyPrint re-parses its 10 MB with fontTools on every render, ~200 ms), and a
# poster is better without them than with boxes. Symbols in U+2600-27BF stay: DejaVu
# draws them. ZWJ is removed only inside emoji sequences: Arabic and Indic text need it.
_EMOJI_RE = re.compile(
    "[\U0001F000-\U0001FAFF](?:[\U0001F3FB-\U0001F3FF\uFE0F\U000E0020-\U000E007F]"
    "|\u200D[\U0001F000-\U0001FAFF\u2600-\u27BF]\uFE0F?)*|\uFE0F")


def _vwidth(text: str) -> int:
    """Visual width: East Asian wide/fullwidth characters count 2, others 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clean(value: Any) -> str:
    """Normalise a free-text field to one line of text ('' for None)."""
    if value is None:
        return ""
    text = _EMOJI_RE.sub("", _CTRL_RE.sub("", str(value)))
    return _WS_RE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def _clip(value: Any, limit: int) -> str:
    """Clean ``value`` and cut it to ``limit`` visual units, ending with an ellipsis.

    Cuts at a word boundary when one is near, so a truncated line reads naturally.
    """
    text = _clean(value)
    if _vwidth(text) <= limit:
        return text
    out, width = [], 0
    for ch in text:
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if width > limit - 1:
            break
        out.append(ch)
    cut = "".join(out)
    space = cut.rfind(" ")
    if space > len(cut) * 0.7:
        cut = cut[:space]
    # Do not leave a dangling combining mark or joiner at the cut.
    cut = cut.rstrip(" ,;:.-\u200d\ufe0f")
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut + "…"


# --------------------------------------------------------------------------------------
# Ages and dates
# --------------------------------------------------------------------------------------


def _months_between(start: date, end: date) -> int:
    """Whole months from ``start`` to ``end`` (negative if ``end`` is earlier)."""
    months = (end.year - start.year) * 12 + (end.month - start.month)
    if end.day < start.day:
        months -= 1
    return months


@dataclass(frozen=True)
class _Age:
    years: float
    approx: bool = False


def _age_then(case: FlyerCase) -> _Age | None:
    missing = case.missing_since.date()
    if case.date_of_birth:
        return _Age(max(0, _months_between(case.date_of_birth, missing)) / 12)
    if case.age_when_missing is not None:
        return _Age(max(0.0, float(case.age_when_missing)))
    if case.birth_year:
        return _Age(max(0, missing.year - case.birth_year), approx=True)
    return None


def _age_now(case: FlyerCase, as_of: date) -> _Age | None:
    if case.date_of_birth:
        return _Age(max(0, _months_between(case.date_of_birth, as_of)) / 12)
    if case.birth_year:
        return _Age(max(0, as_of.year - case.birth_year), approx=True)
    if case.age_when_missing is not None:
        elapsed = max(0, _months_between(case.missing_since.date(), as_of)) / 12
        # Age then is usually whole years, so "now" may be a year off: say "about".
        return _Age(float(case.age_when_missing) + elapsed, approx=elapsed >= 1)
    return None


def _fmt_age(age: float, lang: str, approx: bool = False) -> str:
    """'37' / '37岁'; children under 3 get months ('2 years 8 months' / '2岁8个月')."""
    total_months = int(math.floor(age * 12 + 1e-6))
    years, months = divmod(total_months, 12)
    if lang == "zh":
        if years == 0:
            text = f"{months}个月"
        elif years < 3 and months:
            text = f"{years}岁{months}个月"
        else:
            text = f"{years}岁"
        return f"约{text}" if approx else text
    if years == 0:
        text = f"{months} month" + ("" if months == 1 else "s")
    elif years < 3 and months:
        text = f"{years} year{'' if years == 1 else 's'} {months} month{'' if months == 1 else 's'}"
    else:
        text = str(years)
    return f"about {text}" if approx else text


def _fmt_date(d: date, lang: str) -> str:
    if lang == "zh":
        return f"{d.year}年{d.month}月{d.day}日"
    return f"{d.day} {EN_MONTHS[d.month - 1]} {d.year}"


def _fmt_missing_since(case: FlyerCase, lang: str) -> str:
    moment = case.missing_since
    text = _fmt_date(moment.date(), lang)
    if case.missing_since_has_time:
        sep = " " if lang == "zh" else ", "
        text += f"{sep}{moment:%H:%M}"
    return text


def _fmt_height(cm: float, lang: str) -> str:
    cm_int = int(round(cm))
    if lang == "zh":
        return f"{cm_int}厘米"
    inches = round(cm / 2.54)
    return f"{cm_int} cm ({inches // 12} ft {inches % 12} in)"


def _as_of(case: FlyerCase) -> date:
    """The flyer's date: ``case.as_of``, else today in the zone of ``missing_since``."""
    if case.as_of is not None:
        return case.as_of
    return datetime.now(case.missing_since.tzinfo).date()


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Photo:
    """A photo ready for the template: a JPEG data URI plus its caption data."""

    src: str
    age: float | None
    age_progressed: bool


# Decoding and re-encoding a photo costs 10-50 ms; the poster and the card (and the
# three languages) use the same photos, so keep the last few results per process.
_PHOTO_CACHE: dict[tuple[str, int], str | None] = {}
_PHOTO_CACHE_MAX = 64


def _photo_data_uri(image: bytes, max_px: int) -> str | None:
    """Downscale to ``max_px`` on the longest side, as a JPEG data URI; None if unreadable."""
    key = (hashlib.sha256(image).hexdigest(), max_px)
    if key in _PHOTO_CACHE:
        return _PHOTO_CACHE[key]
    try:
        with Image.open(io.BytesIO(image), formats=["JPEG", "PNG"]) as im:  # FlyerPhoto's formats only
            # JPEG draft mode decodes at a reduced scale: much faster for camera photos.
            im.draft("RGB", (max_px, max_px))
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB") if im.mode != "RGB" else im
            im.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=84)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # A photo that cannot be read is left off the flyer rather than failing it.
        log.warning("flyer: skipping unreadable photo (%s)", type(exc).__name__)
        uri = None
    if len(_PHOTO_CACHE) >= _PHOTO_CACHE_MAX:
        _PHOTO_CACHE.pop(next(iter(_PHOTO_CACHE)))
    _PHOTO_CACHE[key] = uri
    return uri


def _ordered_photos(photos: list[FlyerPhoto]) -> list[FlyerPhoto]:
    """Primary first (else the first original photo), the rest in their given order."""
    if not photos:
        return []
    primary = next((p for p in photos if p.primary), None)
    if primary is None:
        primary = next((p for p in photos if p.kind == "original"), photos[0])
    return [primary] + [p for p in photos if p is not primary]


def _prepare_photos(case: FlyerCase, extra: int) -> tuple[_Photo | None, list[_Photo]]:
    """The primary photo (large) and up to ``extra`` others (thumbnails)."""
    prepared: list[_Photo] = []
    for photo in _ordered_photos(case.photos):
        if len(prepared) > extra:
            break
        uri = _photo_data_uri(photo.image, PRIMARY_PHOTO_PX if not prepared else THUMB_PHOTO_PX)
        if uri:
            prepared.append(_Photo(uri, photo.age, photo.kind == "age_progressed"))
    if not prepared:
        return None, []
    return prepared[0], prepared[1:]


def _qr_data_uri(url: str) -> str:
    """The deep link as a QR code PNG (4-module quiet zone included), as a data URI.

    A PNG rather than SVG: one image object in the PDF, which tests can measure.
    The template prints it with ``image-rendering: pixelated`` so modules stay crisp.
    """
    qr = segno.make(url, error="m", micro=False)
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=8, border=4)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------
# WeasyPrint resource fetching: data: URLs only
# --------------------------------------------------------------------------------------


class DataOnlyURLFetcher(URLFetcher):
    """A WeasyPrint (v69+) URL fetcher that serves ``data:`` URLs and refuses all else.

    Every image on a flyer is embedded as a data URI, so the renderer needs no file
    system or network access. Refusing everything else closes SSRF and local file
    disclosure (``file:///etc/passwd``) even if markup ever slipped past escaping.
    Refused URLs are recorded in ``refused`` (tests check it).
    """

    def __init__(self) -> None:
        super().__init__(allowed_protocols=("data",), allow_redirects=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: dict | None = None) -> URLFetcherResponse:
        if not url[:5].lower() == "data:":
            self.refused.append(url)
            raise ValueError(f"flyer renderer fetches data: URLs only, refused {url[:60]!r}")
        # Decode here instead of going through urllib's opener: nothing else is reachable.
        header, sep, payload = url[5:].partition(",")
        if not sep:
            raise ValueError("malformed data: URL")
        params = header.split(";")
        is_base64 = params[-1].strip().lower() == "base64"
        if is_base64:
            params = params[:-1]
        mime = params[0].strip() or "text/plain"
        body = (base64.b64decode(payload) if is_base64
                else urllib.parse.unquote_to_bytes(payload))
        return URLFetcherResponse(url, body, {"Content-Type": mime})


# --------------------------------------------------------------------------------------
# Fitting the poster on one page
#
# CSS cannot shrink text to fit a box, so font sizes and line clamps for the variable
# texts are chosen here from estimated line counts. The numbers mirror poster.css and
# only need to be close: text is also clamped in CSS, and a layout that still spills
# onto a second page is redone in the compact layout.
# --------------------------------------------------------------------------------------

_PT = 25.4 / 72  # mm per point
POSTER_FLOW_MM = 234.0  # .top min-height in poster.css: the page above the contact band
POSTER_RIGHT_MM = 95.0  # width of the right column
POSTER_WIDTH_MM = 186.0  # content width
# Particulars that identify someone best keep a line more when space is short.
KEY_PARTICULARS = frozenset({"marks", "clothing"})


def _est_lines(units: float, width_mm: float, pt: float, em: float = 0.52) -> int:
    """Estimated wrapped lines for ``units`` of visual width (see :func:`_vwidth`).

    One unit is an average Latin character, about ``em`` (0.52 regular, 0.56 bold) of
    the font size in Noto Sans CJK; a CJK character is two units. 8% is added for
    the space lost at line ends.
    """
    return max(1, math.ceil(units * 1.08 * em * pt * _PT / width_mm))


def _parts_units(parts: list[tuple[str, str]] | str) -> int:
    if isinstance(parts, str):
        return _vwidth(parts)
    return sum(_vwidth(text) for _, text in parts) + 3 * (len(parts) - 1)


def _pick_size(units: int, width_mm: float, options: Iterable[tuple[float, int]],
               em: float = 0.56) -> tuple[float, int]:
    """First ``(pt, max_lines)`` option whose estimated line count fits, else the last
    one; returns ``(pt, lines)`` with lines clamped to that option's maximum."""
    pt, lines = 12.0, 1
    for pt, max_lines in options:
        lines = _est_lines(units, width_mm, pt, em)
        if lines <= max_lines:
            return pt, lines
        lines = max_lines
    return pt, lines


@dataclass
class _PosterFit:
    """Variable sizes for the poster template (points and line counts)."""

    name_pt: float = 44
    name_lines: int = 1
    place_pt: float = 15
    place_lines: int = 3
    row_lines: int = 3
    key_row_lines: int = 3  # marks and clothing: one line more than the others
    circ_pt: float = 10.5
    circ_lines: int = 9


def _fit_poster(ctx: dict[str, Any], compact: bool) -> _PosterFit:
    fit = _PosterFit()
    bi = ctx["bilingual"]
    label_h = 9.5 * _PT * 1.2

    # Name: the largest size that fits on one line, else two (three when tiny).
    options = ((44, 1), (36, 1), (30, 1), (26, 2), (22, 2), (18, 2), (15, 3))
    fit.name_pt, fit.name_lines = _pick_size(
        _vwidth(ctx["name"]), POSTER_WIDTH_MM, options if not compact else ((20, 1), (16, 2)))
    header_h = (27 if compact else 34.5) if bi else (31 if compact else 38.5)
    name_h = fit.name_lines * fit.name_pt * _PT * 1.08 + 9
    if ctx["other_names"]:
        name_h += 13 * _PT * 1.25 + 1
    budget = POSTER_FLOW_MM - header_h - name_h - 3  # 3 mm to spare

    # Right column, top to bottom.
    used = 0.0
    if ctx["ages"]:
        used += label_h * (2 if bi else 1) + 25 * _PT * 1.1 + 3
        if any(len(parts) > 1 for _, parts in ctx["ages"]):
            used += 15 * _PT * 1.1
    used += label_h + 15 * _PT * 1.2 + (12 * _PT * 1.2 if bi else 0) + 2.6
    if ctx["last_seen"]:
        options = ((15, 2), (13, 3), (11.5, 4)) if not compact else ((11.5, 2),)
        fit.place_pt, fit.place_lines = _pick_size(
            _vwidth(ctx["last_seen"]), POSTER_RIGHT_MM, options)
        used += label_h + fit.place_lines * fit.place_pt * _PT * 1.2 + 2.6

    def particulars_h(row_clamp: int) -> float:
        if not ctx["particulars"]:
            return 0.0
        height = 6.5
        for key, value in ctx["particulars"]:
            units = _parts_units(ctx["L"][key]) * 1.05 + 2 + _parts_units(value)
            clamp = min(3, row_clamp + 1) if key in KEY_PARTICULARS else row_clamp
            lines = min(clamp, _est_lines(units, POSTER_RIGHT_MM, 10.5))
            height += lines * 10.5 * _PT * 1.25 + 1.6
        return height

    # Circumstances get what is left, at the largest size that fits. Particulars
    # (marks, clothing) matter more for recognising someone, so their rows are
    # clamped harder only if the circumstances would otherwise get under 5 lines.
    circ_units = _vwidth(ctx["circumstances"])
    for row_clamp in ((3, 2, 1) if not compact else (1,)):
        fit.row_lines, fit.key_row_lines = row_clamp, min(3, row_clamp + 1)
        remaining = budget - used - particulars_h(row_clamp) - (5.5 + label_h + 0.8)
        if not circ_units:
            break
        for pt in ((10.5, 9.5, 8.5) if not compact else (8.5,)):
            room = int(remaining // (pt * _PT * 1.3))
            need = _est_lines(circ_units, POSTER_RIGHT_MM, pt)
            fit.circ_pt, fit.circ_lines = pt, max(2, min(need, room, 14 if not compact else 4))
            if need <= room:
                break
        if fit.circ_lines >= min(5, _est_lines(circ_units, POSTER_RIGHT_MM, 8.5)):
            break
    return fit


CARD_RIGHT_MM = 59.0  # text column of the card, next to the photo
CARD_FLOW_MM = 81.5  # .top min-height in card.css: the card above its contact band


@dataclass
class _CardFit:
    name_pt: float = 24
    name_lines: int = 1
    place_pt: float = 12
    place_lines: int = 2
    show_aka: bool = True


def _fit_card(ctx: dict[str, Any], compact: bool) -> _CardFit:
    """Sizes for the card's text column (the rest of the card has fixed sizes)."""
    fit = _CardFit()
    names = ((24, 1), (20, 2), (16, 2), (13, 3)) if not compact else ((13, 2),)
    fit.name_pt, fit.name_lines = _pick_size(_vwidth(ctx["name"]), CARD_RIGHT_MM, names)
    places = ((12, 2), (10.5, 3), (9.5, 4)) if not compact else ((9.5, 2),)
    fit.place_pt, fit.place_lines = _pick_size(_vwidth(ctx["last_seen"]), CARD_RIGHT_MM, places)

    # Height of the text column; give up the place's extra lines, then the other
    # names, until it fits beside the photo (CARD_FLOW_MM minus header and padding).
    fact_head = 2 + 7.5 * _PT * 1.25
    value_line = 12 * _PT * 1.18
    budget = CARD_FLOW_MM - (15.2 if ctx["bilingual"] else 16.9) - 4.5 - 1.5
    used = fit.name_lines * fit.name_pt * _PT * 1.08
    for _, parts in ctx["ages"][-1:]:
        used += fact_head + sum(_est_lines(_vwidth(t), CARD_RIGHT_MM, 12, 0.56)
                                for _, t in parts) * value_line
    used += fact_head + len(ctx["missing_since"]) * value_line
    aka_h = 10 * _PT * 1.25 + 0.4 if ctx["other_names"] else 0.0
    place_line = fit.place_pt * _PT * 1.18
    while used + aka_h + fact_head + fit.place_lines * place_line > budget:
        if fit.place_lines > 1:
            fit.place_lines -= 1
        elif aka_h:
            aka_h, fit.show_aka = 0.0, False
        else:
            break  # the compact layout takes over
    fit.show_aka = fit.show_aka and bool(aka_h)
    return fit


# --------------------------------------------------------------------------------------
# Template context
# --------------------------------------------------------------------------------------

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # every field is user text
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _resolve_lang(case: FlyerCase, lang: str | None) -> str:
    lang = lang or case.language or "en"
    if lang not in LANGS_OF:
        raise ValueError(f"unknown flyer language {lang!r} (expected en, zh or bi)")
    return lang


def _multi(langs: tuple[str, ...], make) -> list[tuple[str, str]]:
    """``[(html_lang, text), ...]`` for each language, without repeating equal texts."""
    out: list[tuple[str, str]] = []
    for lg in langs:
        text = make(lg)
        if text and all(text != t for _, t in out):
            out.append((HTML_LANG[lg], text))
    return out


def _build_context(case: FlyerCase, lang: str, design: str, compact: bool) -> dict[str, Any]:
    """Everything the templates print, already clipped, formatted and translated."""
    langs = LANGS_OF[lang]
    limits = POSTER_LIMITS if design == "poster" else CARD_LIMITS
    if compact:
        limits = {k: max(20, int(v * 0.6)) for k, v in limits.items()}

    def clip(field: str) -> str:
        return _clip(getattr(case, field), limits.get(field, 120))

    labels = {key: _multi(langs, lambda lg, k=key: LABELS[lg][k]) for key in LABELS["en"]}
    as_of = _as_of(case)

    name = clip("name") or "—"
    other_names = clip("other_names")

    # Ages: show "age then / age now" only when they differ; otherwise one "Age".
    then, now = _age_then(case), _age_now(case, as_of)

    def age_parts(a: _Age) -> list[tuple[str, str]]:
        parts = _multi(langs, lambda lg: _fmt_age(a.years, lg, a.approx))
        # "14 · 14岁" says nothing twice: a bare number serves both readers.
        return parts[:1] if parts[0][1].isdigit() else parts

    ages: list[tuple[str, list[tuple[str, str]]]] = []
    if then and now and int(now.years) != int(then.years):
        if design == "card":
            # The card has room for one line: "41 (3 when missing)" / "41岁（失踪时3岁）".
            def now_and_then(lg: str) -> str:
                age_now = _fmt_age(now.years, lg, now.approx)
                age_then = _fmt_age(then.years, lg, then.approx)
                return (f"{age_now}（失踪时{age_then}）" if lg == "zh"
                        else f"{age_now} ({age_then} when missing)")
            ages.append(("age_now", _multi(langs, now_and_then)))
        else:
            ages.append(("age_then", age_parts(then)))
            ages.append(("age_now", age_parts(now)))
    elif then or now:
        ages.append(("age", age_parts(then or now)))

    if design == "card" and len(langs) > 1:
        # A bilingual card has no room for the date twice: ISO reads in both languages.
        iso = case.missing_since.date().isoformat()
        if case.missing_since_has_time:
            iso += f" {case.missing_since:%H:%M}"
        missing_since = [("en", iso)]
    else:
        missing_since = _multi(langs, lambda lg: _fmt_missing_since(case, lg))

    particulars: list[tuple[str, list[tuple[str, str]] | str]] = []
    if case.sex in ("male", "female"):
        particulars.append(("sex", _multi(langs, lambda lg: LABELS[lg][case.sex])))
    if case.date_of_birth:
        particulars.append(("born", _multi(langs, lambda lg: _fmt_date(case.date_of_birth, lg))))
    elif case.birth_year:
        particulars.append(("born", _multi(
            langs, lambda lg: f"{case.birth_year}年" if lg == "zh" else str(case.birth_year))))
    if case.height_cm:
        # One height for both languages in a bilingual flyer: "170 cm (5 ft 7 in)".
        height = _multi(langs[:1], lambda lg: _fmt_height(case.height_cm, lg))
        particulars.append(("height", height))
    for key, field in (("build", "build"), ("hair", "hair"), ("eyes", "eyes"),
                       ("marks", "distinguishing_marks"), ("clothing", "clothing")):
        if value := clip(field):
            particulars.append((key, value))

    primary, extras = _prepare_photos(case, MAX_EXTRA_PHOTOS if design == "poster" else 0)
    if compact:
        extras = extras[:2]

    def photo_caption(photo: _Photo) -> list[tuple[str, str]]:
        """'Age 12' / '12岁'; an age-progressed image says so in every language."""
        out = _multi(langs, lambda lg: LABELS[lg]["age_progressed"]) if photo.age_progressed else []
        if photo.age is not None:
            # Bilingual: one age ("Age 12") is enough under a photo.
            lg = langs[0]
            age = _fmt_age(photo.age, lg)
            out.append((HTML_LANG[lg], age if lg == "zh" else f"Age {age}"))
        return out

    circumstances = clip("circumstances") if design == "poster" else ""
    family_contact = clip("family_contact") if case.family_contact_public else ""
    link = case.deep_link_url
    link_text = re.sub(r"^https?://", "", link)

    ctx = {
        "lang": lang,
        "html_lang": HTML_LANG[langs[0]] if len(langs) == 1 else "en",
        "bilingual": len(langs) > 1,
        "compact": compact,
        "L": labels,
        "name": name,
        "other_names": other_names,
        "ages": ages,
        "missing_since": missing_since,
        "last_seen": clip("last_seen_place"),
        "particulars": particulars,
        "circumstances": circumstances,
        "photo": primary,
        "photo_caption": photo_caption(primary) if primary else [],
        "extras": [(p, photo_caption(p)) for p in extras],
        "agency_name": clip("agency_name"),
        "agency_phone": clip("agency_phone"),
        "agency_reference": clip("agency_reference"),
        "family_contact": family_contact,
        "qr": _qr_data_uri(link),
        "link_text": link_text if len(link_text) <= 64 else "",
        "code": _clean(case.code),
        # Bilingual: an ISO date reads the same in both languages and saves space.
        "flyer_date": (_multi(langs, lambda lg: _fmt_date(as_of, lg)) if len(langs) == 1
                       else [("en", as_of.isoformat())]),
    }
    ctx["fit"] = _fit_poster(ctx, compact) if design == "poster" else _fit_card(ctx, compact)
    return ctx


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


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

    Text is clipped and sized to fit in the first place (see :func:`_fit_poster`); if
    the layout still spills onto a second page, it is redone in the compact layout,
    whose main area has a fixed, clipped height, so the contact band (phone, QR code)
    is always on the page. Keeping only the first page is a guard that should never
    be needed.
    """
    template = _ENV.get_template(f"{design}.html.j2")
    fetcher = fetcher or DataOnlyURLFetcher()
    doc = None
    for compact in (False, True):
        html = template.render(**_build_context(case, lang, design, compact))
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
    return _render_document(case, _resolve_lang(case, lang), "poster").write_pdf()


def render_poster(case: FlyerCase, lang: Lang | None = None) -> tuple[bytes, bytes]:
    """The A4 poster as ``(pdf, jpeg)``; the JPEG is 2,000 px tall."""
    pdf = render_poster_pdf(case, lang)
    return pdf, _rasterize(pdf, height=POSTER_JPEG_HEIGHT)


def render_card_jpg(case: FlyerCase, lang: Lang | None = None) -> bytes:
    """The square card as a 1080 x 1080 JPEG."""
    pdf = _render_document(case, _resolve_lang(case, lang), "card").write_pdf()
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
    lang = _resolve_lang(case, lang)
    fields = {f.name: _canonical(getattr(case, f.name)) for f in dataclasses.fields(case)}
    # The case's language only picks the default, which ``lang`` now holds.
    fields.pop("language", None)
    fields["as_of"] = _as_of(case).isoformat()
    if not case.family_contact_public:
        fields.pop("family_contact", None)  # not printed, so not part of the output
    payload = {
        "template_version": TEMPLATE_VERSION,
        "templates": _TEMPLATES_DIGEST,
        "weasyprint": weasyprint.__version__,
        "pdfium": f"{pdfium.PYPDFIUM_INFO}/{pdfium.PDFIUM_INFO}",
        "lang": lang,
        "case": fields,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------
# Worker process pool
# --------------------------------------------------------------------------------------

_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_pool_workers = 1


def _warm_worker() -> None:
    """Process initializer: load fonts, WeasyPrint and pdfium once, so the first real
    render is as fast as the later ones (the first CJK layout alone takes ~0.5 s)."""
    from datetime import timezone

    # a flyer can wait a moment on a busy machine, an answer to a tip should not; this warm-up (a
    # sample flyer, about a second of CPU at the bot's start) now yields the CPU to the bot
    run_in_background()
    exit_with_parent()

    sample = FlyerCase(
        code="C-000000", name="Warm 预热", last_seen_place="—",
        missing_since=datetime(2020, 1, 1, tzinfo=timezone.utc),
        deep_link_url="https://t.me/x?start=c_warm", as_of=date(2020, 1, 2))
    try:
        render_flyers(sample, "bi")
    except Exception:  # never let warming kill the worker; the real render will report
        log.exception("flyer worker warm-up failed")


def configure_pool(max_workers: int = 1) -> None:
    """Set the number of render processes (default 1; 2 on a machine with cores to
    spare). Takes effect for the next pool created."""
    global _pool_workers
    _pool_workers = max(1, int(max_workers))


def _get_pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # "spawn": a clean interpreter, safe whatever threads the bot runs; pypdfium2
            # is not thread-safe, so each worker renders one flyer at a time.
            _pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=_pool_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_warm_worker,
            )
        return _pool


def _discard_pool(broken: concurrent.futures.ProcessPoolExecutor) -> None:
    global _pool
    with _pool_lock:
        if _pool is broken:
            _pool = None
    broken.shutdown(wait=False, cancel_futures=True)


def shutdown_pool() -> None:
    """Stop the worker processes (call on application shutdown)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _ping() -> bool:
    return True


async def warm_up() -> None:
    """Start the worker process(es) and wait until they are warm. Optional: call at
    startup so the first ``/flyer`` is answered at warm speed."""
    pool = _get_pool()
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, _ping) for _ in range(_pool_workers)))


async def run_in_worker(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a warm flyer worker process (``fn`` must be picklable:
    a module-level function). If a worker died (killed, out of memory), the pool is
    recreated and the call retried once."""
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        pool = _get_pool()
        try:
            return await loop.run_in_executor(pool, fn, *args)
        except concurrent.futures.process.BrokenProcessPool:
            _discard_pool(pool)
            if attempt == 2:
                raise
            log.warning("flyer worker pool broke; restarting it")
    raise AssertionError("unreachable")


async def render_flyers_async(case: FlyerCase, lang: Lang | None = None) -> FlyerFiles:
    """:func:`render_flyers` in a warm worker process, off the event loop."""
    return await run_in_worker(render_flyers, case, lang)
