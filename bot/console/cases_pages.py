"""Cases: listed by status with their tip counts, one case's particulars and photos, its flyer to
preview and download, verify and close. The same services as /cases, /case, /verify, /close, /flyer."""

from __future__ import annotations

from aiohttp import web

from bot.console.changes_pages import waiting
from bot.console.forms import case_in_path, choice
from bot.console.keys import BACKEND, DB, NOW, USER
from bot.console.render import page
from bot.services import audit, case_actions, case_fields, cases, flyer_service, leads
from bot.services.media import media_path

CASES_PAGE_SIZE = 25
FLYER_TYPES = {flyer_service.POSTER_JPG: "image/jpeg", flyer_service.POSTER_PDF: "application/pdf",
               flyer_service.CARD_JPG: "image/jpeg"}
# what an action just did, as the page says it (?done=)
DONE_NOTICES = {"verified", "closed", "unchanged", "change_approved", "change_rejected", "change_already",
                "change_closed"}


async def list_page(request: web.Request) -> web.Response:
    db = request[DB]
    word = request.query.get("status", cases.DEFAULT_LISTING)
    if word not in cases.LISTINGS:
        word = cases.DEFAULT_LISTING
    listing = await cases.page(db, cases.LISTINGS[word], offset=0, limit=CASES_PAGE_SIZE * 8)
    counts = await cases.tip_counts(db, [case.id for case in listing.cases])
    audit.record(db, request[USER].id, "cases.list", word)
    return page(request, "cases.html", listing=listing, counts=counts, word=word, words=list(cases.LISTINGS))


async def case_page(request: web.Request) -> web.Response:
    """Every particular, the photos (with the age in each), the tips and leads, the flyer, the family's
    changes waiting for review, the actions."""
    db, language, settings = request[DB], request[USER].language, request[BACKEND].settings
    case = await case_in_path(request)
    audit.record(db, request[USER].id, "case.view", case.code)
    return page(request, "case.html", case=case, particulars=case_fields.particulars(case, language, settings.tz),
                photos=await cases.photos_of(db, case.id),
                tip_count=(await cases.tip_counts(db, [case.id])).get(case.id, 0),
                pending_leads=await leads.pending_lead_count(db, case.id),
                is_open=case.status in cases.OPEN_STATUSES, is_pending=case.status == cases.STATUS_PENDING,
                is_active=case.status == cases.STATUS_ACTIVE, closed_statuses=cases.CLOSED_STATUSES,
                flyer_languages=flyer_service.FLYER_LANGUAGES, changes=await waiting(request, case),
                done=done if (done := request.query.get("done", "")) in DONE_NOTICES else "")


async def verify(request: web.Request) -> web.Response:
    case = await case_in_path(request)
    done = await case_actions.verify_case(request[DB], case, request[USER].id, request[NOW])
    raise web.HTTPSeeOther(f"/console/cases/{case.code}?done={'verified' if done else 'unchanged'}")


async def close(request: web.Request) -> web.Response:
    case = await case_in_path(request)
    status = choice(request, "status", cases.CLOSED_STATUSES)
    done = await case_actions.close_case(request[DB], case, request[USER].id, status, request[NOW],
                                         request[BACKEND].settings.media_dir)
    raise web.HTTPSeeOther(f"/console/cases/{case.code}?done={'closed' if done else 'unchanged'}")


async def flyer(request: web.Request) -> web.StreamResponse:
    """An active case's flyer (poster JPEG or PDF, or the card), rendered only if the case changed."""
    case = await case_in_path(request)
    design, lang = request.match_info["design"], request.query.get("lang", case.language)
    if design not in FLYER_TYPES or lang not in flyer_service.FLYER_LANGUAGES:
        raise web.HTTPNotFound()
    if case.status != cases.STATUS_ACTIVE:  # privacy rule 3: nothing before verification or after closing
        raise web.HTTPNotFound(text="Only an active case has a flyer")
    backend = request[BACKEND]
    files = await flyer_service.current_flyers(request[DB], case, lang, media_dir=backend.settings.media_dir,
                                               bot_username=backend.bot_username, tz=backend.settings.tz,
                                               now=request[NOW])
    audit.record(request[DB], request[USER].id, "case.flyer", case.code)
    extension = "pdf" if design == flyer_service.POSTER_PDF else "jpg"
    disposition = "attachment" if request.query.get("download") == "1" else "inline"
    return web.FileResponse(media_path(backend.settings.media_dir, files[design].sha256), headers={
        "Content-Type": FLYER_TYPES[design],
        "Content-Disposition": f'{disposition}; filename="{case.code}-{design}-{lang}.{extension}"'})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/cases", list_page, name="page:cases")
    router.add_get("/cases/{code}", case_page, name="page:case")
    router.add_post("/cases/{code}/verify", verify, name="case_verify")
    router.add_post("/cases/{code}/close", close, name="case_close")
    router.add_get("/cases/{code}/flyer/{design}", flyer, name="case_flyer")
