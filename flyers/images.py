"""Images on a flyer: case photos and the QR code as data URIs, and the fetcher that allows nothing else."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import urllib.parse
from dataclasses import dataclass

import segno
from PIL import Image, ImageOps
from weasyprint.urls import URLFetcher, URLFetcherResponse

from .model import FlyerCase, FlyerPhoto

log = logging.getLogger(__name__)

# Photo sizes embedded in the PDF (longest side, px). The primary photo is printed
# 84 x 110 mm: 800 px is ~185 dpi there, plenty for a photo (and more than the
# 2,000 px poster JPEG shows); thumbnails are 26 x 32 mm: 360 px is ~285 dpi.
# Larger data URIs cost parse time: ~35 ms per render at 1,000 px.
PRIMARY_PHOTO_PX = 800
THUMB_PHOTO_PX = 360
MAX_EXTRA_PHOTOS = 3



@dataclass(frozen=True)
class Photo:
    """A photo ready for the template: a JPEG data URI plus its caption data."""

    src: str
    age: float | None
    age_progressed: bool


# Decoding and re-encoding a photo costs 10-50 ms; the poster and the card (and the
# three languages) use the same photos, so keep the last few results per process.
_PHOTO_CACHE: dict[tuple[str, int], str | None] = {}
_PHOTO_CACHE_MAX = 64


def photo_data_uri(image: bytes, max_px: int) -> str | None:
    """Downscale to ``max_px`` on the longest side, as a JPEG data URI; None if unreadable."""
    key = (hashlib.sha256(image).hexdigest(), max_px)
    if key in _PHOTO_CACHE:
        return _PHOTO_CACHE[key]
    try:
        with Image.open(io.BytesIO(image), formats=["JPEG", "PNG"]) as im:  # FlyerPhoto's formats only
            # JPEG draft mode decodes at a reduced scale: much faster for camera photos.
            im.draft("RGB", (max_px, max_px))
            upright = ImageOps.exif_transpose(im)
            rgb = upright.convert("RGB") if upright.mode != "RGB" else upright
            rgb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=84)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        # A photo that cannot be read is left off the flyer rather than failing it.
        log.warning("flyer: skipping unreadable photo (%s)", type(exc).__name__)
        uri = None
    if len(_PHOTO_CACHE) >= _PHOTO_CACHE_MAX:
        _PHOTO_CACHE.pop(next(iter(_PHOTO_CACHE)))
    _PHOTO_CACHE[key] = uri
    return uri


def ordered_photos(photos: list[FlyerPhoto]) -> list[FlyerPhoto]:
    """Primary first (else the first original photo), the rest in their given order."""
    if not photos:
        return []
    primary = next((p for p in photos if p.primary), None)
    if primary is None:
        primary = next((p for p in photos if p.kind == "original"), photos[0])
    return [primary] + [p for p in photos if p is not primary]


def prepare_photos(case: FlyerCase, extra: int) -> tuple[Photo | None, list[Photo]]:
    """The primary photo (large) and up to ``extra`` others (thumbnails)."""
    prepared: list[Photo] = []
    for photo in ordered_photos(case.photos):
        if len(prepared) > extra:
            break
        uri = photo_data_uri(photo.image, PRIMARY_PHOTO_PX if not prepared else THUMB_PHOTO_PX)
        if uri:
            prepared.append(Photo(uri, photo.age, photo.kind == "age_progressed"))
    if not prepared:
        return None, []
    return prepared[0], prepared[1:]


def qr_data_uri(url: str) -> str:
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
