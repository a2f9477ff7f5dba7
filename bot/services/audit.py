"""Audit trail of coordinator and admin actions: ids only, never content (privacy rule 5)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AuditEvent


def record(session: AsyncSession, actor_id: int | None, action: str, object_ref: str | None = None) -> None:
    session.add(AuditEvent(actor_id=actor_id, action=action, object_ref=object_ref,
                           created_at=datetime.now(UTC)))
