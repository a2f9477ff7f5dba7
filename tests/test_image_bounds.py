"""Images that are cheap to send and costly to process, and what the stored copy keeps (issue 14,
items 6-8): pixels are bounded per format from the header, decodes share a memory budget, each person
has a daily storage quota; a refused image's caption is still kept; a photo kept as sent carries only
a minimal JFIF header, an image sent as a file is encoded afresh (the camera's quantisation tables
go); high bit depths and transparency are converted so that the stored image looks like the sent one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from datetime import timedelta

import cv2
import numpy as np
import pytest
from PIL import Image

from bot.db.models import MediaQuota, TipEntry, TipMedia, User
from bot.faces import decode_limits
from bot.faces.images import ImageTooLarge, decode_image
from bot.services import media_quota
from bot.services.media import ImageRejected, media_path, store_image
from tests.helpers import all_rows, reference_in


def one_colour_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 180, 160)).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def noisy_jpeg(width: int = 640, height: int = 480, **options) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 50).convert("RGB").save(buffer, "JPEG", **options)
    return buffer.getvalue()


ATTACK = one_colour_png(7740, 7740)  # 59.9 megapixels in ~190 KB


# -- item 6: bounded decoding ----------------------------------------------------------------------

async def test_a_tiny_png_of_sixty_megapixels_is_refused_and_its_caption_kept(reunite, people):
    assert len(ATTACK) < 250_000
    person = people(1401, "Ada")
    person.user.send_document(ATTACK, "street.png", "image/png", caption="The boy near the station at 5pm")
    answers = [await person.next_text(), await person.next_text()]
    assert "too large" in answers[0]
    reference = reference_in(answers[1])
    entries = await all_rows(reunite, TipEntry)
    assert [(entry.kind, entry.text) for entry in entries] == [("text", "The boy near the station at 5pm")]
    assert await all_rows(reunite, TipMedia) == []
    assert reference


_ATTACK_IN_A_CHILD = r"""
import json, resource, sys, threading
from pathlib import Path
from bot.services import media
data, out = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2])
answers, before = [], resource.getrusage(resource.RUSAGE_SELF)
def store(number):
    try:
        media.store_image(data + bytes([number]), out)
        answers.append("stored")
    except media.ImageRejected as rejected:
        answers.append(rejected.reason)
threads = [threading.Thread(target=store, args=(n,)) for n in range(4)]
[thread.start() for thread in threads]
[thread.join() for thread in threads]
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"answers": answers, "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                  "grew_mb": (after.ru_maxrss - before.ru_maxrss) / 1024}))
"""


def test_four_attack_pngs_at_once_cost_next_to_nothing(tmp_path):
    """Measured in a process of its own (its peak memory is its own): before the per-format limit, four
    of these cost ~5-6 s of CPU and ~1.4 GB (bench/decode_bounds.py)."""
    attack = tmp_path / "attack.png"
    attack.write_bytes(ATTACK)
    result = subprocess.run([sys.executable, "-c", _ATTACK_IN_A_CHILD, str(attack), str(tmp_path / "media")],
                            capture_output=True, text=True, check=True)
    measured = json.loads(result.stdout)
    assert measured["answers"] == ["image_too_big"] * 4
    assert measured["cpu"] < 0.2 and measured["grew_mb"] < 20, measured


def test_pixels_are_limited_per_format_before_decoding(tmp_path):
    """A PNG is decoded whole: no more pixels than the largest image kept. A JPEG is decoded at a
    reduced scale: a 24-megapixel one is kept, at half its size."""
    with pytest.raises(ImageRejected) as rejected:
        store_image(one_colour_png(5000, 4000), tmp_path)
    assert rejected.value.reason == "image_too_big"
    with pytest.raises(ImageTooLarge):
        decode_image(one_colour_png(5000, 4000))  # the face workers' decoder, the same limit
    stored = store_image(noisy_jpeg(6000, 4000, quality=60), tmp_path)
    assert (stored.width, stored.height) == (3000, 2000)
    assert (stored.width, stored.height) == Image.open(stored.path).size


def test_decodes_wait_for_memory_and_one_that_never_fits_is_refused():
    budget = decode_limits.DecodeBudget(max_bytes=100, max_in_flight=2)
    order: list[str] = []
    first_in = threading.Event()
    release_first = threading.Event()

    def first():
        with budget.reserve(80):
            order.append("first in")
            first_in.set()
            release_first.wait(5)
            order.append("first out")

    def second():
        first_in.wait(5)
        with budget.reserve(40):  # 80 + 40 > 100: waits until the first is done
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_in.wait(5)
    threading.Event().wait(0.2)
    assert order == ["first in"]
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert order == ["first in", "first out", "second in"] and budget.peak_bytes == 80
    with pytest.raises(decode_limits.ImageTooLarge):
        with budget.reserve(101):
            pass


def test_only_accepted_formats_are_opened(tmp_path):
    """Pillow reads dozens of formats; an image in one we do not accept (here ICO, a format Pillow
    would open) is refused without being decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 20, 30)).save(buffer, "ICO")
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "ICO"
    with pytest.raises(ImageRejected) as rejected:
        store_image(buffer.getvalue(), tmp_path)
    assert rejected.value.reason == "image_unreadable"


class TestDailyQuota:
    @pytest.fixture
    def settings(self, settings):
        return settings.with_overrides(user_daily_media_bytes=1)  # the first image crosses the line

    async def test_a_person_over_the_daily_quota_is_told_and_their_words_are_kept(
            self, reunite, people, coordinator):
        person = people(1402, "Bo")
        person.user.send_photo(noisy_jpeg(), caption="first")
        reference = reference_in(await person.next_text())
        person.user.send_photo(noisy_jpeg(), caption="second, same tip")
        refusal, added = await person.next_text(), await person.next_text()
        assert "a lot of pictures today" in refusal and reference in added
        assert [(e.kind, e.text) for e in await all_rows(reunite, TipEntry)] == [
            ("photo", "first"), ("text", "second, same tip")]
        assert len(await all_rows(reunite, TipMedia)) == 1
        # a coordinator has no quota, and nothing is counted for them
        coordinator.user.send_photo(noisy_jpeg())
        assert reference_in(await coordinator.next_text())
        (used,) = await all_rows(reunite, MediaQuota)
        assert used.user_id == 1402 and used.stored_bytes > 1
        # the next day there is room again
        async with reunite.sessionmaker() as session:
            user = await session.get(User, 1402)
            assert not await media_quota.has_room(session, user, used.day, 1)
            assert await media_quota.has_room(session, user, used.day + timedelta(days=1), 1)


# -- item 7: what a stored JPEG keeps --------------------------------------------------------------

def with_app0_text(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` (whose JFIF header follows its start) with ``text`` after the JFIF header's fields."""
    assert jpeg[2:4] == b"\xff\xe0"
    length = int.from_bytes(jpeg[4:6], "big")
    payload = jpeg[6:20] + text  # "JFIF\0", version, density unit and values, thumbnail size
    return jpeg[:2] + b"\xff\xe0" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[4 + length:]


def app0_segments(jpeg: bytes) -> list[bytes]:
    segments, at = [], 2
    while jpeg[at + 1] != 0xDA:  # up to the first scan
        length = int.from_bytes(jpeg[at + 2:at + 4], "big")
        if jpeg[at + 1] == 0xE0:
            segments.append(jpeg[at:at + 2 + length])
        at += 2 + length
    return segments


# Tables a phone camera might use (any tables other than an encoder's standard ones name their maker)
CAMERA_TABLES = [[2 + (n * 7) % 11 for n in range(64)], [3 + (n * 5) % 13 for n in range(64)]]


def test_a_photo_kept_as_sent_carries_only_a_minimal_jfif_header(tmp_path):
    sent = with_app0_text(noisy_jpeg(), b"tipster's secret note")
    assert b"secret" in Image.open(io.BytesIO(sent)).app["APP0"]
    stored = store_image(sent, tmp_path, from_photo=True)
    data = stored.path.read_bytes()
    assert b"secret" not in data
    assert app0_segments(data) == [b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"]
    sent_pixels = cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), sent_pixels)


async def test_photos_and_files_are_stored_without_hidden_text_or_the_cameras_tables(reunite, people):
    """Through the stand-in: a photo (which Telegram, and the stand-in, deliver as sent when small) keeps
    no text hidden in its JFIF header; an image sent as a file is encoded afresh, so the quantisation
    tables its camera chose (which name the phone model) are not in the stored copy."""
    person = people(1403, "Cy")
    person.user.send_photo(with_app0_text(noisy_jpeg(), b"tipster's secret note"))
    reference = reference_in(await person.next_text())
    camera_file = noisy_jpeg(800, 600, qtables=CAMERA_TABLES)
    assert Image.open(io.BytesIO(camera_file)).quantization == dict(enumerate(CAMERA_TABLES))
    person.user.send_document(camera_file, "IMG_0001.jpg", "image/jpeg")
    assert reference in await person.next_text()
    photo, document = sorted(await all_rows(reunite, TipMedia), key=lambda media: media.id)
    photo_data = media_path(reunite.settings.media_dir, photo.sha256).read_bytes()
    assert b"secret" not in photo_data
    kept = Image.open(media_path(reunite.settings.media_dir, document.sha256))
    assert kept.size == (800, 600)
    assert kept.quantization == Image.open(io.BytesIO(noisy_jpeg(quality=90))).quantization


# -- item 8: high bit depths and transparency ------------------------------------------------------

RAMP = np.tile(np.linspace(0, 65535, 320).astype(np.uint16), (240, 1))  # dark to light, left to right


def png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)  # OpenCV writes 16-bit PNGs, channels in BGR order
    assert ok
    return encoded.tobytes()


def tiff(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "TIFF")
    return buffer.getvalue()


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (320, 240), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)  # 0: black but transparent, 1: red
    image.paste(1, (0, 0, 160, 240))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


def _rgb_of_ramp(ramp16: np.ndarray) -> np.ndarray:
    return np.repeat((ramp16 / 257.0)[..., None], 3, axis=2)


def _half_red_half_white() -> np.ndarray:
    expected = np.full((240, 320, 3), 255.0)
    expected[:, :160] = (200, 30, 30)
    return expected


def _rgba16_half_transparent() -> np.ndarray:
    bgra = np.zeros((240, 320, 4), np.uint16)
    bgra[..., 2] = RAMP  # red channel ramps
    bgra[:, :160, 3] = 65535  # the left half opaque, the right half transparent
    return bgra


def _expected_rgba16() -> np.ndarray:
    expected = np.full((240, 320, 3), 255.0)
    expected[:, :160, 0] = RAMP[:, :160] / 257.0
    expected[:, :160, 1:] = 0
    return expected


HIGH_DEPTH_FILES = {
    "16-bit grey PNG": (lambda: png(RAMP), lambda: _rgb_of_ramp(RAMP)),
    "16-bit RGB PNG": (lambda: png(np.dstack([RAMP // 2, RAMP, 65535 - RAMP])),
                       lambda: np.dstack([65535 - RAMP, RAMP, RAMP // 2]) / 257.0),
    "16-bit RGBA PNG, half transparent": (lambda: png(_rgba16_half_transparent()), _expected_rgba16),
    "32-bit integer TIFF": (lambda: tiff(Image.fromarray(RAMP.astype(np.int32), "I")), lambda: _rgb_of_ramp(RAMP)),
    "32-bit float TIFF (0-1)": (lambda: tiff(Image.fromarray((RAMP / 65535.0).astype(np.float32), "F")),
                                lambda: _rgb_of_ramp(RAMP)),
    "palette PNG with transparency": (palette_png_with_transparency, _half_red_half_white),
}


@pytest.mark.parametrize("kind", HIGH_DEPTH_FILES)
def test_high_bit_depths_and_transparency_are_stored_as_they_look(tmp_path, kind):
    make, expected = HIGH_DEPTH_FILES[kind]
    stored = store_image(make(), tmp_path)
    kept = np.asarray(Image.open(stored.path).convert("RGB"), dtype=np.float64)
    assert kept.shape == (240, 320, 3)
    assert np.abs(kept - expected()).mean() < 3, kind  # JPEG at quality 90 moves a few levels


async def test_a_16_bit_grey_scan_sent_as_a_file_is_not_stored_white(reunite, people):
    person = people(1404, "Di")
    person.user.send_document(png(RAMP), "scan.png", "image/png")
    reference_in(await person.next_text())
    (kept,) = await all_rows(reunite, TipMedia)
    pixels = np.asarray(Image.open(media_path(reunite.settings.media_dir, kept.sha256)).convert("L"), dtype=float)
    assert np.abs(pixels - RAMP / 257.0).mean() < 3
