"""Face-match leads as coordinators review them: Confirm lead / Reject (once: a second press or a
second coordinator changes nothing), and the pending leads of active cases, strongest first. The
chat's buttons and /matches, the shortlist and the console all decide and list through here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    MATCH_CONFIRMED,
    MATCH_PENDING,
    MATCH_REJECTED,
    Case,
    MatchCandidate,
    Tip,
)
from bot.db.statements import rows_changed
from bot.services import audit
from bot.services.cases import STATUS_ACTIVE

REVIEW_DECISIONS = (MATCH_CONFIRMED, MATCH_REJECTED)


@dataclass(frozen=True)
class ReviewOutcome:
    """``changed``: this press decided it; ``already``: it had been decided; ``gone``: no such lead
    (its case was closed and purged, or the tip's images expired)."""

    result: str  # changed | already | gone
    status: str | None = None  # the candidate's status now
    tip_reference: str | None = None
    case_code: str | None = None


async def review(session: AsyncSession, actor_id: int, candidate_id: int, decision: str,
                 now: datetime) -> ReviewOutcome:
    """Confirm or reject a pending candidate, once: a second press (or a second coordinator) changes
    nothing. Audited with the references only."""
    if decision not in REVIEW_DECISIONS:
        raise ValueError(decision)
    row = (await session.execute(
        select(MatchCandidate.status, Tip.reference, Case.code)
        .join(Tip, Tip.id == MatchCandidate.tip_id).join(Case, Case.id == MatchCandidate.case_id)
        .where(MatchCandidate.id == candidate_id)
    )).first()
    if row is None:
        return ReviewOutcome("gone")
    _, tip_reference, case_code = row
    changed = await rows_changed(session, (
        update(MatchCandidate).where(MatchCandidate.id == candidate_id, MatchCandidate.status == MATCH_PENDING)
        .values(status=decision, reviewer_id=actor_id, reviewed_at=now)
    ))
    if changed == 0:
        status = await session.scalar(select(MatchCandidate.status).where(MatchCandidate.id == candidate_id))
        if status is None:  # purged between the two statements
            return ReviewOutcome("gone")
        return ReviewOutcome("already", status, tip_reference, case_code)
    action = "match.confirm" if decision == MATCH_CONFIRMED else "match.reject"
    audit.record(session, actor_id, action, f"{tip_reference} {case_code}")
    return ReviewOutcome("changed", decision, tip_reference, case_code)


@dataclass(frozen=True)
class Lead:
    candidate_id: int
    tip_reference: str
    case_code: str
    case_name: str
    similarity: float
    created_at: datetime


@dataclass(frozen=True)
class LeadPage:
    leads: list[Lead]
    total: int
    offset: int


def _pending_of_active_cases(case_id: int | None):
    conditions = [MatchCandidate.status == MATCH_PENDING, Case.status == STATUS_ACTIVE]
    if case_id is not None:
        conditions.append(MatchCandidate.case_id == case_id)
    return conditions


async def pending_lead_count(session: AsyncSession, case_id: int) -> int:
    """Face-match leads of a case that no coordinator has confirmed or rejected yet."""
    return await session.scalar(
        select(func.count()).select_from(MatchCandidate).join(Case, Case.id == MatchCandidate.case_id)
        .where(*_pending_of_active_cases(case_id))
    ) or 0


async def pending_leads(session: AsyncSession, *, offset: int = 0, limit: int = 10,
                        case_id: int | None = None) -> LeadPage:
    """Pending leads of active cases (or of one case), strongest first, paged."""
    conditions = _pending_of_active_cases(case_id)
    total = await session.scalar(
        select(func.count()).select_from(MatchCandidate).join(Case, Case.id == MatchCandidate.case_id)
        .where(*conditions))
    rows = await session.execute(
        select(MatchCandidate.id, Tip.reference, Case.code, Case.name, MatchCandidate.similarity,
               MatchCandidate.created_at)
        .join(Tip, Tip.id == MatchCandidate.tip_id).join(Case, Case.id == MatchCandidate.case_id)
        .where(*conditions).order_by(MatchCandidate.similarity.desc(), MatchCandidate.id.desc())
        .offset(offset).limit(limit)
    )
    return LeadPage([Lead(*row) for row in rows], total or 0, offset)
