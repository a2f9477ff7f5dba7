"""Images as Telegram handles them: photos recompressed to at most 1,280 px, in several sizes."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from bot.sandbox.wire import USER_PHOTO_MAX_SIDE, ApiError, bad_request


def _jpeg(img: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    if img.mode != "RGB":
        img = img.convert("RGB")
    img.save(buf, "JPEG", quality=quality)  # no exif= and no icc_profile=: metadata is dropped
    return buf.getvalue()


def encode_photo(data: bytes, max_side: int = USER_PHOTO_MAX_SIDE, *, keep_if_small_jpeg: bool = False,
                 strict: bool = False) -> list[tuple[bytes, int, int]]:
    """Telegram's photo treatment: EXIF orientation applied, re-encoded as JPEG at most `max_side`
    on the long side with no metadata; plus thumbnails. Returns [(bytes, w, h)] smallest first.
    `strict` applies the Bot API's upload limits (bots); a user's app scales any photo itself.
    CPU-bound and thread-safe (touches no StandIn state)."""
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
        fmt = img.format
        w0, h0 = img.size
        if strict and (w0 + h0 > 10000 or w0 <= 0 or h0 <= 0 or max(w0, h0) / max(1, min(w0, h0)) > 20):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        kept = None
        if keep_if_small_jpeg and fmt == "JPEG" and max(w0, h0) <= max_side and not img.getexif():
            kept = (data, w0, h0)
        img.draft("RGB", (max_side, max_side))
        img = ImageOps.exif_transpose(img)
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGBA") if "A" in img.getbands() or img.mode == "P" else img.convert("RGB")
            if img.mode == "RGBA":
                bg = Image.new("RGB", img.size, (255, 255, 255))
                bg.paste(img, mask=img.getchannel("A"))
                img = bg
        if kept is not None:
            full = img
            sizes = [kept]
        else:
            full = img.copy()
            full.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            sizes = [(_jpeg(full, 87), full.width, full.height)]
    except ApiError:
        raise
    except Exception as exc:  # corrupt, truncated, not an image, decompression bomb
        raise bad_request("IMAGE_PROCESS_FAILED") from exc
    for side in (320, 90):
        if max(full.size) > side:
            t = full.copy()
            t.thumbnail((side, side), Image.Resampling.BILINEAR)
            sizes.insert(0, (_jpeg(t, 80), t.width, t.height))
            if len(sizes) >= 3:
                break
    if len(sizes) == 1:  # tiny image: Telegram still gives a thumbnail and the full one
        sizes.insert(0, sizes[0])
    return sizes


def user_photo(data: bytes) -> list[tuple[bytes, int, int]]:
    try:
        return encode_photo(data)
    except ApiError as exc:
        raise ValueError(f"a Telegram app could not send this as a photo ({exc.description}); "
                         "send it as a document") from exc
