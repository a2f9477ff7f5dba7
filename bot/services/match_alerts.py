"""What coordinators see of a face match: one composite image per alert (each tip face crop beside
the candidate case's face, numbered, best first), a caption with the tip reference and the case codes
with the strength in words, and Confirm lead / Reject buttons per candidate.

The words are always those of a possible lead that needs verification ("strong", "possible" or
"weak" lead), never of someone found. Crops are cut from the stored, stripped images in the media
store by the boxes stored with the faces, so an old tip's alert (retro-matching) looks the same.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import PRIORITY_ALERT
from bot.faces.engine import FacePolicy
from bot.faces.thresholds import match_strength
from bot.i18n import t
from bot.services import outbox
from bot.services.alerts import Recipient
from bot.services.matching import FaceCrop, MatchAlert
from bot.services.media import media_path, store_own_jpeg

log = logging.getLogger(__name__)

# a tile is the face worker's crop of a face (FacePolicy), or the same square cut from a stored photo
TILE_PX = FacePolicy.crop_side_px
GAP_PX = 8
NUMBER_COLUMN_PX = 40
# context around a face box on each side, as a fraction of the box (hair, chin, a bit of background)
CROP_MARGIN = FacePolicy.crop_expand / 2
BACKGROUND = (32, 32, 36)
MISSING_TILE = (90, 90, 90)
LABEL_BAND = (0, 0, 0, 150)
TEXT = (255, 255, 255)
COMPOSITE_JPEG_QUALITY = 90  # as the media store keeps every image

# (language, alert) -> Bot API inline keyboard: signed callback data is the handlers' business
MarkupBuilder = Callable[[str, MatchAlert], dict]


def face_tile(media_dir: Path, crop: FaceCrop) -> Image.Image:
    """A square tile around the face, or a grey one if the image is no longer stored."""
    if crop.jpeg:
        # the face worker's crop of a fresh tip's face: no decode of the whole photo (bench/RESULTS.md)
        tile = Image.open(io.BytesIO(crop.jpeg), formats=["JPEG"]).convert("RGB")
        return tile if tile.size == (TILE_PX, TILE_PX) else tile.resize((TILE_PX, TILE_PX), Image.Resampling.LANCZOS)
    path = media_path(media_dir, crop.sha256)
    try:
        with Image.open(path, formats=["JPEG"]) as image:  # the media store holds JPEGs only
            width = image.size[0]
            x1, y1, x2, y2 = crop.bbox
            side = max(x2 - x1, y2 - y1) * (1 + 2 * CROP_MARGIN)
            # JPEG draft decoding at 1/2, 1/4, 1/8 scale: a small face in a large photo needs no full decode
            reduce = max(1, int(side // TILE_PX))
            image.draft("RGB", (image.size[0] // reduce, image.size[1] // reduce))
            scale = image.size[0] / width
            centre_x, centre_y = (x1 + x2) / 2 * scale, (y1 + y2) / 2 * scale
            half = side * scale / 2
            box = (round(centre_x - half), round(centre_y - half), round(centre_x + half), round(centre_y + half))
            return image.crop(box).convert("RGB").resize((TILE_PX, TILE_PX), Image.Resampling.LANCZOS)
    except (OSError, ValueError):
        log.warning("match alert: image %s is gone; a grey tile instead", crop.sha256[:12])
        return Image.new("RGB", (TILE_PX, TILE_PX), MISSING_TILE)


def _label(canvas: Image.Image, font, x: int, y: int, text: str) -> None:
    """Text on a dark band along the bottom of the tile whose top-left corner is (x, y)."""
    overlay = ImageDraw.Draw(canvas, "RGBA")
    band = font.size + 8
    overlay.rectangle((x, y + TILE_PX - band, x + TILE_PX, y + TILE_PX), fill=LABEL_BAND)
    overlay.text((x + 6, y + TILE_PX - band + 3), text, font=font, fill=TEXT)


@dataclass(frozen=True)
class CompositeRow:
    """One row of a composite image: its number, a tip's face and a case's face, each with a label."""

    number: int
    tip_face: FaceCrop
    tip_label: str
    case_face: FaceCrop
    case_label: str


def render_rows(media_dir: Path, rows: list[CompositeRow]) -> bytes:
    """One JPEG: a row per entry, in order: number | tip face | case face, each face labelled."""
    width = NUMBER_COLUMN_PX + 2 * TILE_PX + 3 * GAP_PX
    height = len(rows) * (TILE_PX + GAP_PX) + GAP_PX
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    number_font = ImageFont.load_default(size=28)
    label_font = ImageFont.load_default(size=18)
    draw = ImageDraw.Draw(canvas)
    for index, row in enumerate(rows):
        top = GAP_PX + index * (TILE_PX + GAP_PX)
        tip_x = NUMBER_COLUMN_PX + GAP_PX
        case_x = tip_x + TILE_PX + GAP_PX
        draw.text((NUMBER_COLUMN_PX // 2, top + TILE_PX // 2), str(row.number), font=number_font, fill=TEXT,
                  anchor="mm")
        canvas.paste(face_tile(media_dir, row.tip_face), (tip_x, top))
        canvas.paste(face_tile(media_dir, row.case_face), (case_x, top))
        _label(canvas, label_font, tip_x, top, row.tip_label)
        _label(canvas, label_font, case_x, top, row.case_label)
    buffer = io.BytesIO()
    # Encoded once, as it is sent and kept: a PNG would be decoded, checked and encoded again as a JPEG
    # by the media store, as what users send is; under photo load that was 30 % of the samples of the
    # bot's asyncio.to_thread workers (py-spy, bench/photo_tips.py).
    canvas.save(buffer, format="JPEG", quality=COMPOSITE_JPEG_QUALITY)
    return buffer.getvalue()


def _alert_rows(alert: MatchAlert) -> list[CompositeRow]:
    return [CompositeRow(number, candidate.tip_face, alert.tip_reference, candidate.case_face, candidate.case_code)
            for number, candidate in enumerate(alert.candidates, start=1)]


def store_rows(media_dir: Path, rows: list[CompositeRow]) -> str:
    """Render a composite into the media store; its SHA-256. CPU-bound: run it in a thread."""
    return store_own_jpeg(render_rows(media_dir, rows), media_dir)[0]


def store_composite(media_dir: Path, alert: MatchAlert) -> str:
    """Render a match alert's composite into the media store; its SHA-256. CPU-bound: run it in a thread."""
    return store_rows(media_dir, _alert_rows(alert))


def strength_words(language: str, score: float) -> str:
    # candidates passed the floor when they were found: the word follows their normalised score alone
    return t(language, f"match_strength_{match_strength(score, threshold=float('-inf'))}")


def caption(language: str, alert: MatchAlert, tz) -> str:
    """Tip reference, then the cases best first with the strength in words, within 1,024 characters."""
    if alert.retro:
        header = t(language, "match_alert_retro_header", reference=alert.tip_reference, alias=alert.tip_alias,
                   received=alert.tip_created_at.astimezone(tz).strftime("%Y-%m-%d"))
    else:
        header = t(language, "match_alert_header", reference=alert.tip_reference, alias=alert.tip_alias)
    lines = [header]
    for number, candidate in enumerate(alert.candidates, start=1):
        lines.append(t(language, "match_alert_line", number=number, code=candidate.case_code,
                       name=outbox.clip(candidate.case_name, 60),
                       strength=strength_words(language, candidate.similarity),
                       similarity=f"{candidate.similarity:.1f}"))
    if alert.skipped_faces:
        lines.append(t(language, "match_alert_skipped", count=alert.skipped_faces))
    lines.append(t(language, "match_alert_footer"))
    return outbox.clip("\n".join(lines), outbox.CAPTION_LIMIT)


def enqueue(session: AsyncSession, recipients: list[Recipient], composite_sha: str, alert: MatchAlert,
            markup: MarkupBuilder, tz) -> list:
    """Queue the alert to every coordinator recipient; the outbox rows."""
    rows = []
    for recipient in recipients:
        payload = {"photo_sha256": composite_sha, "caption": caption(recipient.language, alert, tz),
                   "reply_markup": markup(recipient.language, alert)}
        rows.append(outbox.enqueue(session, recipient.chat_id, "sendPhoto", payload, priority=PRIORITY_ALERT))
    return rows
