"""Families' changes to a public case waiting for review, on the case's page: each as it reads now
beside as asked (new photos shown), Approve / Reject with an optional reason. The same services as
/changes, /approve_change and /reject_change (and their buttons): decided once, whoever comes first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from bot.console.keys import BACKEND, DB, FORM, NOW, USER
from bot.db.models import CaseChange
from bot.services import case_changes, cases

MAX_REASON_CHARS = 500
WAITING_SHOWN = 50


@dataclass(frozen=True)
class WaitingChange:
    id: int
    field: str  # the particular's name, or Photos
    now: str | None  # None: empty
    asked: str | None
    photos: list[cases.NewPhoto]  # of a change that adds photos
    asked_at: datetime


def _shown(change: CaseChange, case: cases.Case, language: str, tz) -> WaitingChange:
    photos = case_changes.proposed_photos(change)
    now, asked = (None, None) if change.field == case_changes.PHOTOS else \
        case_changes.old_and_new(change, case, language, tz)
    return WaitingChange(change.id, case_changes.field_label(language, change), now, asked, photos,
                         change.created_at)


async def waiting(request: web.Request, case: cases.Case) -> list[WaitingChange]:
    """The case's changes waiting for review, oldest first, in the coordinator's language."""
    found = await case_changes.pending(request[DB], limit=WAITING_SHOWN, case_id=case.id)
    return [_shown(change, case, request[USER].language, request[BACKEND].settings.tz)
            for change, _ in found.changes]


def _change_id(request: web.Request) -> int:
    change_id = request.match_info["change_id"]
    if not change_id.isdigit():
        raise web.HTTPNotFound()
    return int(change_id)


def _back_to_case(review: case_changes.Review, decided: str) -> web.HTTPSeeOther:
    """Back to the case's page, saying what happened (done, decided before, or the case is closed)."""
    if review.case is None:
        raise web.HTTPNotFound(text="No such change")
    outcome = decided if review.result == "done" else review.result
    return web.HTTPSeeOther(f"/console/cases/{review.case.code}?done=change_{outcome}#changes")


async def approve(request: web.Request) -> web.Response:
    """The change goes onto the case (and its next flyer); the family is told."""
    review = await case_changes.approve(request[DB], _change_id(request), request[USER].id, request[NOW])
    raise _back_to_case(review, "approved")


async def reject(request: web.Request) -> web.Response:
    """The case stays as it is; the family is told, with the reason if one was typed."""
    reason = str(request[FORM].get("reason", "")).strip()[:MAX_REASON_CHARS]
    review = await case_changes.reject(request[DB], _change_id(request), request[USER].id, request[NOW],
                                       request[BACKEND].settings.media_dir, reason or None)
    raise _back_to_case(review, "rejected")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/changes/{change_id}/approve", approve, name="change_approve")
    router.add_post("/changes/{change_id}/reject", reject, name="change_reject")
