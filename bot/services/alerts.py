"""Coordinator alerts: what coordinators see of a tip. Never the tipster's name, username, id or
phone: only the tip's reference, its random alias, and what was said or shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import PRIORITY_ALERT, Tip, TipMedia
from bot.i18n import t
from bot.services import outbox, users
from bot.services.tips import TipUpdate

DIGEST_PREVIEW = 90
# an album's photos arrive as separate updates within a moment of each other
ALBUM_GATHER_SECONDS = 1.5


@dataclass(frozen=True)
class Recipient:
    chat_id: int
    language: str


async def recipients(session: AsyncSession, coordinator_chat_id: int | None) -> list[Recipient]:
    """The coordinator group if there is one, else each coordinator privately."""
    if coordinator_chat_id is not None:
        return [Recipient(coordinator_chat_id, "en")]
    return [Recipient(user.id, user.language) for user in await users.coordinators(session)]


def map_link(latitude: float, longitude: float) -> str:
    return f"https://www.openstreetmap.org/?mlat={latitude:.5f}&mlon={longitude:.5f}#map=16/{latitude:.5f}/{longitude:.5f}"


def _headline(language: str, update: TipUpdate, answering_team: bool) -> str:
    tip = update.tip
    if update.is_new:
        key = "alert_new_tip"
    elif answering_team:
        key = "alert_tipster_answered"
    else:
        key = "alert_more_on_tip"
    headline = t(language, key, reference=tip.reference, alias=tip.alias)
    if update.case is not None:
        headline += "\n" + t(language, "alert_about_case", code=update.case.code, name=update.case.name)
    return headline


def _body(language: str, update: TipUpdate) -> str:
    entry = update.entry
    parts = []
    if entry.kind == "edit":
        parts.append(t(language, "alert_edited"))
    if entry.text:
        parts.append(entry.text)
    if entry.latitude is not None and entry.longitude is not None:
        parts.append(t(language, "alert_location", lat=f"{entry.latitude:.5f}", lon=f"{entry.longitude:.5f}",
                       link=map_link(entry.latitude, entry.longitude)))
    return "\n".join(parts)


def _photo_caption(language: str, update: TipUpdate, media: TipMedia, headline: str) -> str:
    lines = [headline]
    if media.taken_at:
        lines.append(t(language, "alert_photo_taken", taken=media.taken_at))
    if media.gps_lat is not None and media.gps_lon is not None:
        lines.append(t(language, "alert_photo_gps", link=map_link(media.gps_lat, media.gps_lon)))
    if update.entry.text:
        lines.append(update.entry.text)
    return "\n".join(lines)


def _digest_line(update: TipUpdate) -> str:
    entry = update.entry
    preview = (entry.text or "").replace("\n", " ")
    if len(preview) > DIGEST_PREVIEW:
        preview = preview[: DIGEST_PREVIEW - 1] + "…"
    if entry.latitude is not None:
        preview = f"📍 {entry.latitude:.4f}, {entry.longitude:.4f} {preview}".strip()
    mark = "🆕" if update.is_new else "➕"
    return f"{mark} {update.tip.reference} · {update.tip.alias}: {preview}"


async def alert_tip(session: AsyncSession, coordinator_chat_id: int | None, update: TipUpdate,
                    answering_team: bool = False) -> None:
    """Queue the alert for one tip message to every coordinator recipient."""
    for recipient in await recipients(session, coordinator_chat_id):
        language = recipient.language
        headline = _headline(language, update, answering_team)
        if update.media is not None:
            album_key = f"{update.tip.reference}:{update.entry.media_group_id or update.entry.id}"
            outbox.enqueue_photo(session, recipient.chat_id, update.media.sha256,
                                 _photo_caption(language, update, update.media, headline), priority=PRIORITY_ALERT,
                                 album_key=album_key,
                                 gather_seconds=ALBUM_GATHER_SECONDS if update.entry.media_group_id else None)
            continue
        text = "\n\n".join(part for part in (headline, _body(language, update),
                                             t(language, "alert_reply_hint", reference=update.tip.reference)) if part)
        # the sender merges queued alerts into one digest when a chat cannot take them one by one
        outbox.enqueue_text(session, recipient.chat_id, text, priority=PRIORITY_ALERT,
                            digest_line=_digest_line(update),
                            digest_header=t(language, "alert_digest_header"))


def tip_summary_lines(language: str, tip: Tip, case_code: str | None, tz: tzinfo) -> list[str]:
    """A tip in full, for /tip: every message in order, the team's replies marked; times in ``tz``."""
    lines = [t(language, "tip_full_header", reference=tip.reference, alias=tip.alias,
               status=t(language, f"tip_status_{tip.status}"),
               created=tip.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"))]
    if case_code:
        lines.append(t(language, "tip_full_case", code=case_code))
    for entry in tip.entries:
        when = entry.created_at.astimezone(tz).strftime("%H:%M")
        who = t(language, "tip_full_team") if entry.author == "team" else tip.alias
        body = entry.text or ""
        if entry.kind == "photo":
            body = ("📷 " + body).strip()
        if entry.latitude is not None and entry.longitude is not None:
            body = f"📍 {map_link(entry.latitude, entry.longitude)} {body}".strip()
        if entry.kind == "edit":
            body = t(language, "alert_edited") + " " + body
        lines.append(f"[{when}] {who}: {body}")
    for media in tip.media:
        facts = []
        if media.taken_at:
            facts.append(t(language, "alert_photo_taken", taken=media.taken_at))
        if media.gps_lat is not None and media.gps_lon is not None:
            facts.append(t(language, "alert_photo_gps", link=map_link(media.gps_lat, media.gps_lon)))
        if facts:
            lines.append("📷 " + " · ".join(facts))
    return lines
