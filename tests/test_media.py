"""Image intake rules that hold whatever else the process has imported."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from bot.services.media import ImageRejected, store_image
from tests.helpers import exif_with_gps_and_time, jpeg_bytes


def noisy_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 50).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def test_truncated_upload_is_refused_even_when_pillow_was_told_to_tolerate_it(tmp_path, monkeypatch):
    import weasyprint  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES for the whole process)

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = noisy_jpeg()
    with pytest.raises(ImageRejected) as rejected:
        store_image(data[: len(data) // 3], tmp_path)
    assert rejected.value.reason == "image_unreadable"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # left as the rest of the process set it


def test_stored_copy_has_no_metadata_but_the_facts_are_returned(tmp_path):
    exif = exif_with_gps_and_time(-33.85678, 151.21530, "2025:01:02 03:04:05")
    stored = store_image(jpeg_bytes(1200, 900, exif=exif), tmp_path)
    assert stored.taken_at == "2025:01:02 03:04:05"
    assert round(stored.gps_lat, 4) == -33.8568 and round(stored.gps_lon, 4) == 151.2153
    kept = Image.open(stored.path)
    assert not kept.getexif() and "icc_profile" not in kept.info
    assert stored.path.name == f"{stored.sha256}.jpg"


@pytest.mark.parametrize("orientation", [1, 6])
def test_stored_copy_keeps_no_comment_xmp_or_icc_profile_upright_or_rotated(tmp_path, orientation):
    """Sent as a file, an upright JPEG and a rotated one are both encoded afresh: neither keeps any metadata."""
    exif = exif_with_gps_and_time(-33.85678, 151.21530, "2025:01:02 03:04:05")
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (400, 300), (180, 90, 40)).save(
        buffer, "JPEG", exif=exif, comment=b"tipster's secret", xmp=b"<x:xmpmeta>secret</x:xmpmeta>",
        icc_profile=b"\0" * 128)
    stored = store_image(buffer.getvalue(), tmp_path)
    data = stored.path.read_bytes()
    assert b"secret" not in data and b"ReuniteTestCam" not in data
    kept = Image.open(stored.path)
    assert not kept.getexif() and not {"comment", "xmp", "icc_profile"} & kept.info.keys()
    assert (kept.width, kept.height) == ((400, 300) if orientation == 1 else (300, 400))
    assert stored.taken_at == "2025:01:02 03:04:05"


def _with_metadata(jpeg: bytes, trailer: bytes = b"") -> bytes:
    """``jpeg`` with an EXIF segment carrying GPS, a comment and a maker's segment after its start, and
    ``trailer`` after its end (phones append a second image or a video there)."""
    exif = exif_with_gps_and_time(51.5, -0.12, "2025:06:07 08:09:10").tobytes()
    segments = b"".join(b"\xff" + bytes([marker]) + (len(payload) + 2).to_bytes(2, "big") + payload
                        for marker, payload in [(0xE1, b"Exif\x00\x00" + exif), (0xFE, b"tipster's secret"),
                                                (0xEB, b"VENDOR secret")])
    return jpeg[:2] + segments + jpeg[2:] + trailer


@pytest.mark.parametrize("flags", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                                   [cv2.IMWRITE_JPEG_RST_INTERVAL, 4], [cv2.IMWRITE_JPEG_QUALITY, 100]],
                         ids=["baseline", "progressive", "restart-markers", "quality-100"])
def test_an_upright_jpeg_is_kept_pixel_for_pixel_without_its_metadata(tmp_path, flags):
    """No quality is lost to storing a photo Telegram sent: its pixels are exactly those sent, whatever
    the encoder."""
    noise = np.asarray(Image.effect_noise((640, 480), 60).convert("RGB"))
    ok, encoded = cv2.imencode(".jpg", noise, flags)
    assert ok
    sent = _with_metadata(encoded.tobytes())
    assert Image.open(io.BytesIO(sent)).getexif()  # the test's photo does carry EXIF

    stored = store_image(sent, tmp_path, from_photo=True)
    data = stored.path.read_bytes()
    assert b"secret" not in data and b"ReuniteTestCam" not in data and b"Exif" not in data
    assert stored.taken_at == "2025:06:07 08:09:10" and round(stored.gps_lat, 1) == 51.5
    assert (stored.width, stored.height) == (640, 480)
    original = cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), original)


def test_what_a_phone_appends_after_the_image_is_not_kept(tmp_path):
    """A motion photo's video (or a second image) after the JPEG's end: dropped with the metadata."""
    appended = b"\x00\x00\x00\x18ftypmp42 secret video of the street"
    stored = store_image(_with_metadata(jpeg_bytes(320, 240), trailer=appended + b"\xff\xd9"), tmp_path,
                         from_photo=True)
    data = stored.path.read_bytes()
    assert b"secret" not in data and data.endswith(b"\xff\xd9")
    assert Image.open(stored.path).size == (320, 240)

