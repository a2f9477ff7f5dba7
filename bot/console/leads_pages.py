"""Face-match leads: the tip's face beside the case's photos (with the age in each), the strength in
words, Confirm / Reject; and, for a chosen case, its shortlist (every stored tip face most like it,
whether or not it passed the review floor). Deciding calls :func:`bot.services.leads.review` and
:func:`bot.services.shortlist.decide`, as the buttons under /matches and /shortlist do."""

from __future__ import annotations

from aiohttp import web

from bot.console.forms import case_from_query, case_in_path, choice, page_number, safe_back
from bot.console.keys import BACKEND, DB, FORM, NOW, USER
from bot.console.render import page
from bot.console.tips_pages import strength_labeller
from bot.db.models import MATCH_CONFIRMED, MATCH_REJECTED
from bot.services import audit, cases, lead_views, leads, shortlist

LEADS_PAGE_SIZE = 20
SHORTLIST_PAGE_SIZE = 10
DECISIONS = {"confirm": MATCH_CONFIRMED, "reject": MATCH_REJECTED}


async def _shortlist(request: web.Request, case: cases.Case | None) -> shortlist.ShortlistPage | None:
    """The ?page= of an active case's shortlist (None for no case, or one not public)."""
    if case is None or case.status != cases.STATUS_ACTIVE:
        return None
    offset = (page_number(request) - 1) * SHORTLIST_PAGE_SIZE
    listing = await shortlist.page(request[DB], request[BACKEND].settings.database_url, case, offset,
                                   SHORTLIST_PAGE_SIZE)
    audit.record(request[DB], request[USER].id, "shortlist.view", case.code)
    return listing


async def leads_page(request: web.Request) -> web.Response:
    """Pending leads of active cases (or of one case), strongest first; a case's shortlist below them."""
    db, language, floor = request[DB], request[USER].language, request[BACKEND].review_floor()
    case, typed_case = await case_from_query(request)
    pending = await leads.pending_leads(db, offset=0, limit=LEADS_PAGE_SIZE, case_id=case.id if case else None)
    shown = await lead_views.leads(db, candidate_ids=[lead.candidate_id for lead in pending.leads])
    audit.record(db, request[USER].id, "matches.list", case.code if case else None)
    return page(request, "leads.html", leads=shown, total=pending.total, case=case, typed_case=typed_case,
                strength=strength_labeller(language), shortlist=await _shortlist(request, case),
                page_size=SHORTLIST_PAGE_SIZE, number=page_number(request), confirmed=MATCH_CONFIRMED,
                entry_words=lambda entry: shortlist.entry_words(language, entry, floor))


async def review(request: web.Request) -> web.Response:
    """Confirm or reject a lead: decided once, whoever decides first (chat or console)."""
    decision = DECISIONS[choice(request, "decision", DECISIONS)]
    candidate_id = request.match_info["candidate_id"]
    if not candidate_id.isdigit():
        raise web.HTTPNotFound()
    await leads.review(request[DB], request[USER].id, int(candidate_id), decision, request[NOW])
    raise web.HTTPSeeOther(safe_back(request[FORM], "/console/leads"))


async def shortlist_review(request: web.Request) -> web.Response:
    """Confirm or reject a face of a case's shortlist, as its chat buttons do: decided once, and a
    rejected face leaves the list for good."""
    decision = DECISIONS[choice(request, "decision", DECISIONS)]
    case = await case_in_path(request)
    tip_face_id = request.match_info["tip_face_id"]
    if not tip_face_id.isdigit():
        raise web.HTTPNotFound()
    await shortlist.decide(request[DB], request[USER].id, case.id, int(tip_face_id), decision, request[NOW])
    raise web.HTTPSeeOther(safe_back(request[FORM], f"/console/leads?case={case.code}"))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/leads", leads_page, name="page:leads")
    router.add_post("/leads/{candidate_id}/review", review, name="lead_review")
    router.add_post("/shortlist/{code}/{tip_face_id}/review", shortlist_review, name="shortlist_review")
