"""What decoding an untrusted image may cost: the formats opened at all, the pixels each may have (read
from the header, before any pixel is decoded), and the memory the decodes of one process may hold.

Pixels are the cost, not bytes: 59.9 megapixels of one colour compress to a PNG under 250 KB, and
decoding it took 2.2 s of CPU and ~400 MB; four sent at once held 1.5 GB (bench/RESULTS.md, "Decode
bounds"). A PNG, WebP, GIF, BMP or TIFF is decoded whole whatever size is kept afterwards, so it may
have no more pixels than the largest image kept (:data:`MAX_FULL_DECODE_PIXELS`). A JPEG larger than
that is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (Pillow's draft mode), never more pixels than
that, so a 50-megapixel camera file costs what a 12-megapixel one does and may have more
(:data:`MAX_JPEG_PIXELS`); it is kept at the size it was decoded at (4,000 x 3,000 for 8,000 x 6,000).

Each decode reserves its memory from :data:`DECODES` first, a budget for the whole process: big
images wait their turn instead of adding up, and one that could never fit is refused.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

try:  # HEIC/HEIF (iPhone photos sent as files) when the optional plugin is installed.
    import pillow_heif  # type: ignore[import-not-found]  # an optional plugin, not among our dependencies

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional dependency
    pass

Image.init()  # registers every plugin, so that each accepted format is known by name
#: The formats Pillow may open at all: every other decoder Pillow has (dozens, some rarely
#: exercised) is never handed untrusted bytes. (A phone's multi-picture JPEG opens as JPEG and is
#: reported as "MPO".)
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF",
                                     *(("HEIF",) if "HEIF" in Image.OPEN else ()))
#: Largest side of an image kept (stored copies are capped there), and so of one decoded whole.
MAX_KEPT_SIDE = 4096
MAX_FULL_DECODE_PIXELS = MAX_KEPT_SIDE * MAX_KEPT_SIDE
#: A JPEG is decoded at a reduced scale when larger than what is kept: a 60-megapixel one at 1/2,
#: about 15 megapixels.
MAX_JPEG_PIXELS = 60_000_000
_REDUCED_DECODE_FORMATS = {"JPEG", "MPO"}

#: Memory all decodes of a process may hold at once, and how many may run at once. The largest image
#: accepted (16.8 megapixels, 4 bytes a pixel decoded plus an 8-bit copy) needs ~134 MB: it decodes
#: alone; phone-sized ones side by side. Two cores gain nothing from more decodes in parallel.
DECODE_MEMORY_BYTES = 160 * 1024 * 1024
DECODES_IN_FLIGHT = 2

# bytes a pixel takes in Pillow's memory, by mode (what is not listed takes 4)
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


class UnreadableImage(ValueError):
    """The input is not a complete image we can decode (missing, corrupt, truncated, not a format we
    accept, not a regular file)."""


class ImageTooLarge(UnreadableImage):
    """The image has more pixels (or bytes) than its format may have: a possible decompression bomb."""


def open_image(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """``data`` opened by Pillow in an accepted format, its size checked against its format's limit
    (and ``max_pixels``, if lower); no pixel decoded yet."""
    try:
        with warnings.catch_warnings():
            # Pillow's bomb warning comes at its own global limit; ours is stricter, checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(str(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise UnreadableImage(f"not an image, or a format that is not accepted: {error}") from None
    check_pixels(image, max_pixels)
    return image


def pixel_limit(image_format: str | None) -> int:
    return MAX_JPEG_PIXELS if image_format in _REDUCED_DECODE_FORMATS else MAX_FULL_DECODE_PIXELS


def check_pixels(image: Image.Image, max_pixels: int | None = None) -> None:
    """Refuse an image whose header claims more pixels than its format (or ``max_pixels``) allows."""
    width, height = image.size
    if width < 1 or height < 1:
        raise UnreadableImage("image has no pixels")
    limit = min(pixel_limit(image.format), max_pixels or MAX_JPEG_PIXELS)
    if width * height > limit:
        raise ImageTooLarge(f"image is {width}x{height} pixels, more than {limit} for {image.format}")


def reduce_on_decode(image: Image.Image, max_side: int) -> None:
    """Have a JPEG decoded at the largest reduction (1/2, 1/4, 1/8) that still gives at least
    ``max_side``, and more if need be, so that no more pixels are decoded than a format decoded whole
    may have. Other formats are decoded whole (their limit was checked). Call before loading pixels."""
    if image.format not in _REDUCED_DECODE_FORMATS:
        return
    width, height = image.size
    scale = 1
    while scale < 8 and max(width, height) // (scale * 2) >= max_side:
        scale *= 2
    while scale < 8 and -(-width // scale) * -(-height // scale) > MAX_FULL_DECODE_PIXELS:
        scale *= 2
    if scale > 1:  # Pillow picks the scale from the size asked for: width // asked
        image.draft(image.mode, (max(1, width // scale), max(1, height // scale)))


def decode_cost(image: Image.Image) -> int:
    """Bytes decoding ``image`` (at its draft scale, if set) holds: its pixels in Pillow's memory and
    one 8-bit copy of them."""
    return image.width * image.height * (_BYTES_PER_PIXEL.get(image.mode, 4) + 4)


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path`` (a path someone gave: an image, an import file), if it
    has at most ``max_bytes``. Anything else is refused before it is read: a device (``/dev/zero``
    never ends), a FIFO (blocks until someone writes), a directory. Opened without blocking, then
    checked on the open file itself, so a path swapped in between changes nothing. Raises OSError (a
    missing file...), UnreadableImage or ImageTooLarge."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        facts = os.fstat(descriptor)
        if not stat.S_ISREG(facts.st_mode):
            raise UnreadableImage("not a regular file")
        if facts.st_size > max_bytes:
            raise ImageTooLarge(f"file is {facts.st_size} bytes, more than {max_bytes}")
        chunks, total = [], 0
        while chunk := os.read(descriptor, max_bytes + 1 - total):  # a file growing meanwhile is cut short
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageTooLarge(f"file is more than {max_bytes} bytes")
        return b"".join(chunks)
    finally:
        os.close(descriptor)


class DecodeBudget:
    """Memory and a number of slots shared by the decodes of one process (threads wait their turn)."""

    def __init__(self, max_bytes: int = DECODE_MEMORY_BYTES, max_in_flight: int = DECODES_IN_FLIGHT):
        self.max_bytes, self.max_in_flight = max_bytes, max_in_flight
        self._changed = threading.Condition()
        self._bytes = self._running = 0
        self.peak_bytes = 0  # what was held at most, for tests and benchmarks

    @contextlib.contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        if cost > self.max_bytes:
            raise ImageTooLarge(f"decoding would take {cost // 2**20} MB, more than {self.max_bytes // 2**20}")
        with self._changed:
            self._changed.wait_for(lambda: self._running < self.max_in_flight
                                   and self._bytes + cost <= self.max_bytes)
            self._bytes += cost
            self._running += 1
            self.peak_bytes = max(self.peak_bytes, self._bytes)
        try:
            yield
        finally:
            with self._changed:
                self._bytes -= cost
                self._running -= 1
                self._changed.notify_all()


#: The decodes of this process (the bot's threads storing images; a face worker's one decode).
DECODES = DecodeBudget()
