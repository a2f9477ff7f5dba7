"""Images people send: checked, EXIF-stripped and stored by SHA-256 under ``REUNITE_DATA_DIR/media/``.

The capture time and GPS position a camera wrote into EXIF can matter to a search, so they are read
first and returned for the tip record; the stored file itself carries no metadata at all (privacy).
A photo Telegram delivered as a plain upright JPEG is kept as it came, less every segment that can
carry metadata and with a minimal JFIF header of our own (Telegram recompressed it: its quantisation
tables are Telegram's). Anything else, an image sent as a file above all (its quantisation tables are
the camera's and name the phone model), is decoded, turned upright and encoded afresh. Decoding is
bounded by :mod:`bot.faces.decode_limits` (pixels per format, memory and decodes in flight).
CPU-heavy at times: call :func:`store_image` from a worker thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from bot.faces import decode_limits
from bot.faces.images import is_plain_jpeg, load_all_pixels, to_8bit

# Telegram lets bots download up to 20 MB; above that we cannot even fetch the file.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Stored copies are capped; faces and coordinators need detail, not 100-megapixel originals.
MAX_STORED_SIDE = decode_limits.MAX_KEPT_SIDE
STORED_JPEG_QUALITY = 90

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
    stored_bytes: int  # the stored file's size, what counts against the sender's daily quota


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
    """Open ``data`` as an image after checking size, format and pixel count (from the header, before
    decoding allocates anything); its pixels not decoded yet."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected("image_too_big")
    try:
        return decode_limits.open_image(data)
    except decode_limits.ImageTooLarge:
        raise ImageRejected("image_too_big") from None
    except decode_limits.UnreadableImage:
        raise ImageRejected("image_unreadable") from None


def store_image(data: bytes, media_dir: Path, *, from_photo: bool = False) -> StoredImage:
    """Check ``data``, strip its metadata and store it content-addressed; return what we learned.
    ``from_photo``: Telegram delivered it as a photo (recompressed by Telegram), so a plain JPEG is
    kept as sent; an image sent as a file, or from anywhere else, is always encoded afresh."""
    image = open_checked(data)
    taken_at, gps_lat, gps_lon = read_exif_facts(image)
    stripped = strip_plain_jpeg(image, data) if from_photo and max(image.size) <= MAX_STORED_SIDE else None
    if stripped is not None:
        digest, path = store_own_jpeg(stripped, media_dir)
        return StoredImage(digest, path, image.width, image.height, taken_at, gps_lat, gps_lon, len(stripped))
    decode_limits.reduce_on_decode(image, MAX_STORED_SIDE)
    try:
        with decode_limits.DECODES.reserve(decode_limits.decode_cost(image)):
            upright = _decoded_upright(image)
    except decode_limits.ImageTooLarge:
        raise ImageRejected("image_too_big") from None
    except (OSError, ValueError, SyntaxError, EOFError):
        raise ImageRejected("image_unreadable") from None
    buffer = io.BytesIO()
    # a fresh encode from pixels carries no EXIF, XMP or ICC, and only the encoder's own quantisation
    # tables; Pillow copies the JPEG comment unless told otherwise
    upright.save(buffer, format="JPEG", quality=STORED_JPEG_QUALITY, optimize=False, comment=b"")
    encoded = buffer.getvalue()
    digest, path = store_own_jpeg(encoded, media_dir)
    return StoredImage(digest, path, upright.width, upright.height, taken_at, gps_lat, gps_lon, len(encoded))


def _decoded_upright(image: Image.Image) -> Image.Image:
    """The pixels of ``image`` (its first frame), upright, in 8-bit colour or grey, at most
    MAX_STORED_SIDE a side."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    load_all_pixels(image)
    # orientation first, so the stripped copy still stands the right way up (in place: otherwise an
    # upright photo is copied for nothing)
    ImageOps.exif_transpose(image, in_place=True)
    upright = to_8bit(image, grey_stays_grey=True)
    upright.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
    return upright


def strip_plain_jpeg(image: Image.Image, data: bytes) -> bytes | None:
    """``data`` (opened as ``image``) without its metadata, if it is a plain JPEG (complete, upright,
    colour or grey) that decodes; None for anything else, which is decoded and encoded afresh.

    No pixel is decoded and encoded again: the segments that can carry metadata are dropped from the
    file as it is, and a JFIF or Adobe header is written anew (:func:`_without_metadata_segments`).
    Under photo load the decode and encode this replaces were ~12 ms of CPU per 1280 px photo in the
    bot (bench/RESULTS.md, session 7), and every photo lost a little quality to them. The file is still
    decoded once, at 1/8 scale (under a millisecond): a photo that does not decode is refused now, as
    before, not found out by the face worker later.
    """
    if not is_plain_jpeg(image, data):
        return None
    stripped = _without_metadata_segments(data)
    if stripped is None:
        return None
    # decoded at 1/8 scale, libjpeg rounds each side up
    expected = (-(-image.height // 8), -(-image.width // 8))
    preview = cv2.imdecode(np.frombuffer(stripped, np.uint8),
                           cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION)
    if preview is None or preview.shape[:2] != expected:
        return None  # Pillow says what is wrong with it
    return stripped


#: JPEG markers kept: frame and scan headers, tables, restart interval. Every APPn (EXIF, XMP, ICC
#: profiles, maker notes, MPF) and COM goes; a JFIF (APP0) or Adobe (APP14) header, which tells a
#: decoder the colour space, is replaced by a minimal one of our own (the sent one can carry a
#: thumbnail, a density, or any bytes after its fields).
_KEPT_MARKERS = frozenset(range(0xC0, 0xD0)) | {0xDB, 0xDD, 0xDC}
_APP0, _APP14 = 0xE0, 0xEE
_SOS, _EOI = 0xDA, 0xD9
#: JFIF 1.01, no density unit, aspect 1:1, no thumbnail
_MINIMAL_JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
#: "Adobe", version 100, no flags; the colour transform byte (0: RGB or CMYK, 1: YCbCr) follows
_MINIMAL_ADOBE = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00"
_ADOBE_TRANSFORM_AT = 15  # from the marker: marker 2, length 2, "Adobe" 5, version 2, flags 4


def _without_metadata_segments(data: bytes) -> bytes | None:
    """The JPEG ``data`` from SOI to its first EOI, with only the segments in :data:`_KEPT_MARKERS` and a
    minimal JFIF or Adobe header where it had one; anything after EOI (another image, a video, vendor
    data) is dropped too. None if the file is not laid out as a baseline or progressive JPEG should be."""
    if not data.startswith(b"\xff\xd8"):
        return None
    kept = [b"\xff\xd8"]
    at, end = 2, len(data)
    while at + 1 < end:
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == _EOI:
            kept.append(b"\xff\xd9")
            return b"".join(kept)
        if at + 4 > end:
            return None
        length = int.from_bytes(data[at + 2:at + 4], "big")
        segment_end = at + 2 + length
        if length < 2 or segment_end > end:
            return None
        if marker == _SOS:
            scan_end = _end_of_scan(data, segment_end)
            if scan_end is None:
                return None
            kept.append(data[at:scan_end])
            segment_end = scan_end
        elif marker in _KEPT_MARKERS:
            kept.append(data[at:segment_end])
        elif marker == _APP0 and data.startswith(b"JFIF\x00", at + 4):
            kept.append(_MINIMAL_JFIF)
        elif marker == _APP14 and data.startswith(b"Adobe", at + 4):
            if length < _ADOBE_TRANSFORM_AT - 1:
                return None
            kept.append(_MINIMAL_ADOBE + data[at + _ADOBE_TRANSFORM_AT:at + _ADOBE_TRANSFORM_AT + 1])
        elif not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            return None  # a marker no photo has (hierarchical, arithmetic extensions...): decode afresh
        at = segment_end
    return None


def _end_of_scan(data: bytes, at: int) -> int | None:
    """Where a scan's entropy-coded data starting at ``at`` ends: the next marker that is not a stuffed
    0xFF00 or a restart marker (RST0-7)."""
    while (at := data.find(b"\xff", at)) != -1 and at + 1 < len(data):
        follower = data[at + 1]
        if follower == 0x00 or 0xD0 <= follower <= 0xD7 or follower == 0xFF:
            at += 1 if follower == 0xFF else 2
            continue
        return at
    return None


def store_own_jpeg(data: bytes, media_dir: Path) -> tuple[str, Path]:
    """Store a JPEG this process encoded itself (no metadata to strip, nothing to check) as it is;
    its SHA-256 and path. What users send goes through :func:`store_image` instead."""
    digest = hashlib.sha256(data).hexdigest()
    path = media_path(media_dir, digest)
    if not renewed(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # write-then-rename: a crash never leaves a half file under a valid name
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return digest, path


def renewed(path: Path) -> bool:
    """Whether the file is stored already; if so its time is renewed, so that retention, which may
    have just found it unneeded, leaves it to the row about to need it (bot.services.retention)."""
    try:
        os.utime(path)
        return True
    except FileNotFoundError:
        return False


def media_path(media_dir: Path, sha256: str) -> Path:
    return media_dir / sha256[:2] / f"{sha256}.jpg"
