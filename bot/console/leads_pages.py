"""Face-match leads: the tip's face beside the case's photos (with the age in each), the strength in
words, Confirm / Reject. Deciding calls :func:`bot.services.matching.review`, as /matches' buttons do."""

from __future__ import annotations

from aiohttp import web

from bot.console.forms import case_from_query, choice, safe_back
from bot.console.keys import DB, FORM, NOW, USER
from bot.console.render import page
from bot.console.tips_pages import strength_labeller
from bot.db.models import MATCH_CONFIRMED, MATCH_REJECTED
from bot.services import audit, lead_views, matching

LEADS_PAGE_SIZE = 20
DECISIONS = {"confirm": MATCH_CONFIRMED, "reject": MATCH_REJECTED}


async def leads_page(request: web.Request) -> web.Response:
    """Pending leads of active cases (or of one case), strongest first."""
    db = request[DB]
    case, typed_case = await case_from_query(request)
    pending = await matching.pending_leads(db, offset=0, limit=LEADS_PAGE_SIZE, case_id=case.id if case else None)
    shown = await lead_views.leads(db, candidate_ids=[lead.candidate_id for lead in pending.leads])
    audit.record(db, request[USER].id, "matches.list", case.code if case else None)
    return page(request, "leads.html", leads=shown, total=pending.total, case=case, typed_case=typed_case,
                strength=strength_labeller(request[USER].language))


async def review(request: web.Request) -> web.Response:
    """Confirm or reject a lead: decided once, whoever decides first (chat or console)."""
    decision = DECISIONS[choice(request, "decision", DECISIONS)]
    candidate_id = request.match_info["candidate_id"]
    if not candidate_id.isdigit():
        raise web.HTTPNotFound()
    await matching.review(request[DB], request[USER].id, int(candidate_id), decision, request[NOW])
    raise web.HTTPSeeOther(safe_back(request[FORM], "/console/leads"))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/leads", leads_page, name="page:leads")
    router.add_post("/leads/{candidate_id}/review", review, name="lead_review")
