"""The tip queue and a tip: filters, bulk marking, every message and reply, photos, places, a reply
to the tipster and a mark. The same services as /tips, /tip, /reply and /mark."""

from __future__ import annotations

from aiohttp import web

from bot.console.forms import case_from_query, choice, day_range, page_number, safe_back
from bot.console.keys import DB, FORM, NOW, USER
from bot.console.render import page
from bot.services import audit, lead_views, tip_queue, tips
from bot.services.alerts import map_link
from bot.services.match_alerts import strength_words

QUEUE_PAGE_SIZE = 25
MAX_REPLY_CHARS = 3000


def strength_labeller(language: str):
    """A lead's score in words, as /matches says it."""
    return lambda similarity: strength_words(language, similarity)


async def queue(request: web.Request) -> web.Response:
    """Newest first, filtered, 25 to a page, with boxes for marking many at once."""
    db = request[DB]
    case, typed_case = await case_from_query(request)
    since, until, days = day_range(request)
    wanted = tip_queue.TipFilter(
        status=request.query.get("status") or None, case_id=case.id if case else None, since=since, until=until,
        has_photo=request.query.get("photo") == "1", has_place=request.query.get("place") == "1",
        words=request.query.get("q", ""))
    if typed_case and case is None:
        found = tips.TipPage([], 0, 0)
    else:
        number = page_number(request)
        found = await tip_queue.find(db, wanted, offset=(number - 1) * QUEUE_PAGE_SIZE, limit=QUEUE_PAGE_SIZE)
    audit.record(db, request[USER].id, "console.tips.list", case.code if case else None)
    query = {key: value for key, value in request.query.items() if key != "page"}
    return page(request, "tips.html", found=found, page_size=QUEUE_PAGE_SIZE, number=page_number(request),
                statuses=tips.TIP_STATUSES, wanted=wanted, typed_case=typed_case, days=days, query=query,
                first_text=tips.first_text, unknown_case=bool(typed_case and case is None))


async def mark_many(request: web.Request) -> web.Response:
    """Bulk: the ticked tips marked useful or dismissed (each audited as /mark is)."""
    form = request[FORM]
    status = choice(request, "status", tips.TIP_STATUSES)
    references = [value for value in form.getall("tip", [])[:200] if isinstance(value, str)]
    for tip in await tip_queue.by_references(request[DB], references):
        tips.mark(request[DB], request[USER].id, tip, status)
    raise web.HTTPSeeOther(safe_back(form, "/console/tips"))


async def _tip(request: web.Request):
    tip = await tips.by_reference(request[DB], request.match_info["reference"])
    if tip is None:
        raise web.HTTPNotFound(text="No such tip")
    return tip


async def tip_page(request: web.Request) -> web.Response:
    """A tip in full: messages and replies in order, photos with their capture facts, places, leads."""
    db = request[DB]
    tip = await _tip(request)
    audit.record(db, request[USER].id, "tip.view", tip.reference)
    return page(request, "tip.html", tip=tip, case_code=await tip_queue.with_case_code(db, tip),
                statuses=tips.TIP_STATUSES, leads=await lead_views.leads(db, tip_id=tip.id), map_link=map_link,
                sent=request.query.get("sent") == "1", strength=strength_labeller(request[USER].language))


async def reply(request: web.Request) -> web.Response:
    """The tipster gets the text from "the Reunite team", as /reply sends it."""
    tip = await _tip(request)
    message = str(request[FORM].get("message", "")).strip()[:MAX_REPLY_CHARS]
    if not message:
        raise web.HTTPSeeOther(f"/console/tips/{tip.reference}")
    await tips.reply_to_tipster(request[DB], request[USER].id, tip, message, request[NOW])
    raise web.HTTPSeeOther(f"/console/tips/{tip.reference}?sent=1")


async def mark(request: web.Request) -> web.Response:
    tip = await _tip(request)
    status = choice(request, "status", tips.TIP_STATUSES)
    tips.mark(request[DB], request[USER].id, tip, status)
    raise web.HTTPSeeOther(f"/console/tips/{tip.reference}")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/tips", queue, name="page:tips")
    router.add_post("/tips/mark", mark_many, name="tips_mark")
    router.add_get("/tips/{reference}", tip_page, name="page:tip")
    router.add_post("/tips/{reference}/reply", reply, name="tip_reply")
    router.add_post("/tips/{reference}/mark", mark, name="tip_mark")
