"""Images people send: checked, EXIF-stripped and stored by SHA-256 under ``REUNITE_DATA_DIR/media/``.

The capture time and GPS position a camera wrote into EXIF can matter to a search, so they are read
first and returned for the tip record; the stored file itself carries no metadata at all (privacy).
CPU-heavy: call :func:`store_image` from a worker thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
from PIL import Image, ImageOps, UnidentifiedImageError

from bot.faces.images import decode_plain_jpeg, load_all_pixels

# Telegram lets bots download up to 20 MB; above that we cannot even fetch the file.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# A 50-megapixel phone photo is plausible; more is a decompression bomb or a scan nobody needs.
MAX_IMAGE_PIXELS = 60_000_000
# Stored copies are capped; faces and coordinators need detail, not 100-megapixel originals.
MAX_STORED_SIDE = 4096
STORED_JPEG_QUALITY = 90
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_DATETIME = 0x0132


class ImageRejected(Exception):
    """The file cannot be kept as an image; ``reason`` is a message key for the sender."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    path: Path
    width: int
    height: int
    taken_at: str | None
    gps_lat: float | None
    gps_lon: float | None


def _gps_degrees(values, ref) -> float | None:
    try:
        degrees, minutes, seconds = (float(v) for v in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    return -value if str(ref).upper() in ("S", "W") else value


def read_exif_facts(image: Image.Image) -> tuple[str | None, float | None, float | None]:
    """Capture time (as the camera wrote it) and GPS latitude/longitude, where present."""
    exif = image.getexif()
    taken = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    taken_at = str(taken).strip("\x00 ")[:32] if taken else None
    gps = exif.get_ifd(_GPS_IFD)
    lat = lon = None
    if gps and 2 in gps and 4 in gps:
        lat = _gps_degrees(gps[2], gps.get(1, "N"))
        lon = _gps_degrees(gps[4], gps.get(3, "E"))
        if lat is not None and not -90 <= lat <= 90 or lon is not None and not -180 <= lon <= 180:
            lat = lon = None
    return taken_at, lat, lon


def open_checked(data: bytes) -> Image.Image:
    """Open ``data`` as an image after checking size, type and pixel count; its pixels not decoded yet."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected("image_too_big")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning becomes our "too big" answer
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageRejected("image_too_big") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageRejected("image_unreadable") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected("image_unreadable")
    # checked on the header, before decoding allocates anything
    if image.width * image.height > MAX_IMAGE_PIXELS or image.width < 1 or image.height < 1:
        raise ImageRejected("image_too_big")
    return image


def store_image(data: bytes, media_dir: Path) -> StoredImage:
    """Check ``data``, strip its metadata and store it content-addressed; return what we learned."""
    image = open_checked(data)
    taken_at, gps_lat, gps_lon = read_exif_facts(image)
    bgr = decode_plain_jpeg(image, data) if max(image.size) <= MAX_STORED_SIDE else None
    if bgr is not None:
        # a plain JPEG (every photo Telegram sends): decoded and encoded by OpenCV, which releases the
        # GIL (Pillow's encoder keeps it) and writes no metadata at all
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, STORED_JPEG_QUALITY])
        if not ok:
            raise ImageRejected("image_unreadable")
        digest, path = store_own_jpeg(encoded.tobytes(), media_dir)
        return StoredImage(digest, path, bgr.shape[1], bgr.shape[0], taken_at, gps_lat, gps_lon)
    try:
        load_all_pixels(image)
    except (OSError, ValueError, SyntaxError):
        raise ImageRejected("image_unreadable") from None
    # orientation first, so the stripped copy still stands the right way up (in place: otherwise an
    # upright photo, as every photo Telegram sends is, is copied for nothing)
    ImageOps.exif_transpose(image, in_place=True)
    upright = image if image.mode in ("RGB", "L") else image.convert("RGB")
    upright.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
    buffer = io.BytesIO()
    # a fresh encode from pixels carries no EXIF, XMP or ICC; Pillow copies the JPEG comment
    # unless told otherwise
    upright.save(buffer, format="JPEG", quality=STORED_JPEG_QUALITY, optimize=False, comment=b"")
    digest, path = store_own_jpeg(buffer.getvalue(), media_dir)
    return StoredImage(digest, path, upright.width, upright.height, taken_at, gps_lat, gps_lon)


def store_own_jpeg(data: bytes, media_dir: Path) -> tuple[str, Path]:
    """Store a JPEG this process encoded itself (no metadata to strip, nothing to check) as it is;
    its SHA-256 and path. What users send goes through :func:`store_image` instead."""
    digest = hashlib.sha256(data).hexdigest()
    path = media_path(media_dir, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a crash never leaves a half file under a valid name
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return digest, path


def media_path(media_dir: Path, sha256: str) -> Path:
    return media_dir / sha256[:2] / f"{sha256}.jpg"
