"""Decode untrusted image input into the BGR arrays the face models expect.

Everything a user can send ends up here: JPEGs with EXIF orientation, PNGs with
alpha, palette GIFs, CMYK scans, 16-bit greyscale TIFFs, truncated downloads,
documents that are not images at all, and decompression bombs. The rules:

* EXIF orientation is applied first, so every coordinate the face engine reports
  is in the image as a person sees it ("the EXIF-rotated original").
* Any colour mode becomes 8-bit BGR; transparency is flattened onto white.
* Anything that cannot be decoded completely raises :class:`UnreadableImage`
  (truncated files are refused rather than half-decoded: the caller asks the
  sender for the file again).
* Huge images are refused before their pixels are decoded (a limit per format,
  :mod:`bot.faces.decode_limits`), and large ones are decoded at a reduced
  "working" size (JPEG DCT scaling makes that cheap); the :class:`DecodedImage`
  keeps the scale so results map back to the original. Each decode first
  reserves its memory from the process's decode budget.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

from bot.faces import decode_limits
from bot.faces.decode_limits import MAX_JPEG_PIXELS, ImageTooLarge, UnreadableImage

log = logging.getLogger(__name__)

#: Refuse images with more pixels than this whatever their format (each format has
#: its own, lower or equal limit: :mod:`bot.faces.decode_limits`). Checked from the
#: header, before any pixel is decoded: a tiny PNG can claim gigapixels.
MAX_IMAGE_PIXELS = MAX_JPEG_PIXELS

#: Decode larger images down to this longest side. The detector sees 640 px
#: anyway and ArcFace 112 px crops; 2,560 px keeps faces of ~40 px in a 4,000 px
#: group photo comparable while bounding memory and time per image.
MAX_WORKING_SIDE = 2560

#: Compressed input larger than this is refused without parsing (Telegram lets
#: bots download at most 20 MB anyway).
MAX_INPUT_BYTES = 40 * 1024 * 1024

# EXIF orientations 5-8 swap width and height.
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}

ImageSource = Union[bytes, bytearray, memoryview, str, os.PathLike, Image.Image, np.ndarray, "DecodedImage"]

@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the face models.

    ``bgr`` is the working copy (uint8, HxWx3, C-contiguous). ``scale`` is
    working size / original size, so ``original_xy = working_xy / scale``.
    ``original_size`` is (width, height) of the EXIF-rotated original.
    """

    bgr: np.ndarray
    original_size: tuple[int, int]
    scale: float = 1.0

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_side: int | None = MAX_WORKING_SIDE,
) -> DecodedImage:
    """Decode bytes, a path, a PIL image or a BGR array into a :class:`DecodedImage`.

    Raises :class:`UnreadableImage` (or its subclass :class:`ImageTooLarge`)
    for anything that is not a complete, acceptable image.
    """
    if isinstance(source, DecodedImage):
        return source
    if isinstance(source, np.ndarray):
        return _from_bgr_array(source, max_side)
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels=max_pixels, max_side=max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source))
    else:
        raise TypeError(f"cannot decode an image from {type(source).__name__}")
    if len(data) > MAX_INPUT_BYTES:
        raise ImageTooLarge(f"file is {len(data)} bytes, more than {MAX_INPUT_BYTES}")
    if not data:
        raise UnreadableImage("empty file")
    image = decode_limits.open_image(data, max_pixels)
    with image:
        if max_side is None or max(image.size) <= max_side:
            bgr = decode_plain_jpeg(image, data)
            if bgr is not None:
                return DecodedImage(bgr=bgr, original_size=image.size)
        return _from_pil(image, max_pixels=max_pixels, max_side=max_side)


def is_plain_jpeg(image: Image.Image, data: bytes) -> bool:
    """Whether ``data``, opened as ``image``, is a complete, upright colour or grey JPEG: what OpenCV
    decodes as Pillow would (the caller still checks that it does)."""
    return (
        image.format == "JPEG"
        and image.mode in ("RGB", "L")
        and _exif_orientation(image) in (None, 1)
        and data.endswith(b"\xff\xd9")
    )


def decode_plain_jpeg(image: Image.Image, data: bytes) -> np.ndarray | None:
    """The pixels of ``data``, opened as ``image``, as BGR if it is a complete, upright colour or
    grey JPEG, decoded by OpenCV (the same pixels as Pillow's decoder gives); None for anything else.

    Every stored photo is such a file (the media store keeps a plain JPEG as it came, less its
    metadata, and encodes anything else afresh as one), and so is
    every photo Telegram delivers. Pillow decodes to RGB, and handing its pixels to NumPy copies them
    holding the GIL: in the bot under photo load that copy and the colour conversion took about a
    third of the face thread's time with the GIL, time the event loop waited. OpenCV releases the
    GIL and decodes to BGR directly. It fills a truncated file in with grey instead of failing, so
    only files that end with the JPEG end marker are taken; Pillow checks the rest (and refuses the
    truncated ones). The caller checks the size from the header first.
    """
    if not is_plain_jpeg(image, data):
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape[:2] != (image.height, image.width):
        return None  # Pillow says what is wrong with it
    return bgr


def _read_file(path: Path) -> bytes:
    try:
        return decode_limits.read_regular_file(path, MAX_INPUT_BYTES)
    except FileNotFoundError as exc:
        raise UnreadableImage(f"no such file: {path}") from exc
    except OSError as exc:
        raise UnreadableImage(f"cannot read {path}: {exc.strerror or exc}") from exc


def _from_pil(image: Image.Image, *, max_pixels: int, max_side: int | None) -> DecodedImage:
    decode_limits.check_pixels(image, max_pixels)
    header_width, header_height = image.size
    orientation = _exif_orientation(image)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        original_size = (header_height, header_width)
    else:
        original_size = (header_width, header_height)

    try:
        if getattr(image, "is_animated", False):  # (n_frames would read every frame to count them)
            image.seek(0)  # animations and multi-page TIFFs: the first frame
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale: much faster and smaller than
        # decoding in full and resizing. Not below max_side (unless that would
        # decode too many pixels), so the exact resize happens further down.
        decode_limits.reduce_on_decode(image, max_side or decode_limits.MAX_KEPT_SIDE)
        with decode_limits.DECODES.reserve(decode_limits.decode_cost(image)):
            load_all_pixels(image)
            if orientation not in (None, 1):
                try:
                    image = ImageOps.exif_transpose(image)
                except Exception as exc:  # a malformed EXIF block must not cost the photo
                    log.warning("ignoring unusable EXIF orientation: %s", exc)
                    original_size = (header_width, header_height)
            bgr = cv2.cvtColor(np.asarray(to_8bit(image)), cv2.COLOR_RGB2BGR)
    except UnreadableImage:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data ("image file is truncated", broken PNG chunks...).
        raise UnreadableImage(f"image data is corrupt or truncated: {exc}") from exc

    working = _from_bgr_array(bgr, max_side)
    scale = working.bgr.shape[1] / original_size[0]
    return DecodedImage(bgr=working.bgr, original_size=original_size, scale=scale)


def _exif_orientation(image: Image.Image) -> int | None:
    try:
        return image.getexif().get(0x0112)  # Orientation tag
    except Exception:  # broken EXIF is common and harmless here
        return None


def _fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    factor = min(1.0, max_side / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_8bit(image: Image.Image, *, grey_stays_grey: bool = False) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (or L, with ``grey_stays_grey``) that looks like the original:
    16- and 32-bit values are scaled down, not clipped (clipped, a 16-bit grey photo is pure white);
    transparency is flattened onto white (a cut-out face on black reads as night)."""
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        grey = Image.fromarray(_high_depth_to_uint8(np.asarray(image), mode))
        return grey if grey_stays_grey else grey.convert("RGB")
    if grey_stays_grey and mode == "L":
        return image
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # Handles 1, L, P, CMYK (Pillow undoes Adobe's inverted CMYK on decode), YCbCr, LAB, HSV, RGBX.
    # (an RGB image as it is: convert() would copy it, ~4 MB for a phone photo at working size)
    return image if mode == "RGB" else image.convert("RGB")


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = values.astype(np.float32)
    if mode.startswith("I;16"):
        values = values / 257.0  # 0..65535 -> 0..255
    else:
        low, high = float(values.min()), float(values.max())
        if mode == "F" and low >= 0.0 and high <= 1.0:
            values = values * 255.0  # float image in 0..1
        elif not (low >= 0.0 and high <= 255.0):
            if high <= 65535.0 and low >= 0.0:
                values = values / 257.0  # 16-bit data stored as 32-bit "I"
            else:
                values = (values - low) * (255.0 / max(high - low, 1e-6))
    return np.clip(values + 0.5, 0, 255).astype(np.uint8)


def _from_bgr_array(bgr: np.ndarray, max_side: int | None) -> DecodedImage:
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    if bgr.ndim != 3 or bgr.shape[2] not in (3, 4) or bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise UnreadableImage(f"expected an HxWx3 BGR array, got shape {bgr.shape}")
    if bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    if bgr.dtype != np.uint8:
        raise UnreadableImage(f"expected a uint8 array, got {bgr.dtype}")
    height, width = bgr.shape[:2]
    original_size = (width, height)
    if max_side is not None and max(width, height) > max_side:
        new_size = _fit_within(width, height, max_side)
        bgr = cv2.resize(bgr, new_size, interpolation=cv2.INTER_AREA)
    return DecodedImage(
        bgr=np.ascontiguousarray(bgr),
        original_size=original_size,
        scale=bgr.shape[1] / width,
    )


def load_all_pixels(image: Image.Image) -> None:
    """Decode fully, failing on a truncated file even where Pillow was told to tolerate them
    (WeasyPrint sets ``ImageFile.LOAD_TRUNCATED_IMAGES`` for the whole process when imported)."""
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
