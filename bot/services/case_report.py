"""A case's tips as a record for police (the console's CSV and PDF exports): every tip with what was
said, the team's replies, places and photo facts. No tipster identity: a tip's reference and its
random alias only (privacy rule 2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AUTHOR_TEAM, Case, Tip
from bot.services import audit, tips

MAX_TIPS = 5000


@dataclass(frozen=True)
class ReportMessage:
    at: datetime
    from_team: bool
    text: str
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True)
class ReportTip:
    reference: str
    alias: str
    status: str
    received: datetime
    messages: list[ReportMessage]
    photos: int
    photo_facts: list[str]  # "taken 2024:03:14 15:30:00 at 39.93, 116.45" as far as known


def _report_tip(tip: Tip) -> ReportTip:
    messages = [ReportMessage(entry.created_at, entry.author == AUTHOR_TEAM, entry.text or "", entry.latitude,
                              entry.longitude) for entry in tip.entries]
    facts = []
    for media in tip.media:
        parts = [media.taken_at or ""]
        if media.gps_lat is not None:
            parts.append(f"{media.gps_lat:.5f}, {media.gps_lon:.5f}")
        if any(parts):
            facts.append(" · ".join(part for part in parts if part))
    return ReportTip(tip.reference, tip.alias, tip.status, tip.created_at, messages, len(tip.media), facts)


async def case_tips(session: AsyncSession, case: Case, actor_id: int, kind: str) -> list[ReportTip]:
    """The case's tips, oldest first; the export is audited (``kind``: csv or pdf)."""
    found = await tips.page_where(session, [Tip.case_id == case.id], offset=0, limit=MAX_TIPS)
    audit.record(session, actor_id, f"case.export.{kind}", case.code)
    return [_report_tip(tip) for tip, _ in reversed(found.tips)]


def csv_rows(report: list[ReportTip], tz: tzinfo) -> list[list[str]]:
    """One row per message, under a header row."""
    rows = [["tip", "alias", "status", "received", "message_time", "from", "text", "latitude", "longitude",
             "photos", "photo_facts"]]
    for tip in report:
        for message in tip.messages or [ReportMessage(tip.received, False, "", None, None)]:
            rows.append([tip.reference, tip.alias, tip.status, tip.received.astimezone(tz).isoformat(),
                         message.at.astimezone(tz).isoformat(), "team" if message.from_team else tip.alias,
                         message.text, "" if message.latitude is None else f"{message.latitude:.6f}",
                         "" if message.longitude is None else f"{message.longitude:.6f}", str(tip.photos),
                         " | ".join(tip.photo_facts)])
    return rows


def pdf_from_html(html: str) -> bytes:
    """The printable report's HTML as a PDF. WeasyPrint takes seconds of CPU for hundreds of tips, so
    this runs in the flyer worker process (``flyers.run_in_worker``: module-level, plain data in and
    out), off the bot's event loop and out of its interpreter's lock."""
    from weasyprint import HTML

    return HTML(string=html).write_pdf()
