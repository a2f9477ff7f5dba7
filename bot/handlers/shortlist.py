"""/shortlist C-XXXXXX for coordinators: the stored tip faces most like an active case, best first,
whether or not they passed the review floor, five a page (one composite image: each tip face beside
the case photo it is most like), with Confirm lead / Reject per face and "More ›".

The role is checked on every call, buttons included; anyone else gets the answer every coordinator
command gives them. A closed case (its face data purged) is answered as an unknown one. Decisions
are audited with references only, the list itself with the case code.
"""

from __future__ import annotations

import asyncio

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.db.models import MATCH_CONFIRMED, MATCH_REJECTED, Case
from bot.handlers.common import (
    REVIEW_FLOOR,
    ReuniteContext,
    chat_id_of,
    coordinators_only,
    inline_keyboard,
    pressed_button,
    say,
    sign_callback,
)
from bot.handlers.matches import answer_review, pressed_decision, review_buttons
from bot.i18n import t
from bot.services import audit, cases, shortlist
from bot.services.shortlist import ShortlistPage

# callback data: confirm / reject a tip face of a case's shortlist, a page of it
CONFIRM = "sc"
REJECT = "sr"
PAGE = "sp"
DECISIONS = {CONFIRM: MATCH_CONFIRMED, REJECT: MATCH_REJECTED}
PAGE_SIZE = 5


def _keyboard(context: ReuniteContext, listing: ShortlistPage) -> dict | None:
    """Confirm lead / Reject for each entry not confirmed yet (by its number), and More › if there are more."""
    settings, language, case_id = context.scope.settings, context.language, str(listing.case.id)
    rows = [review_buttons(settings, language, entry.number, CONFIRM, REJECT, case_id, str(entry.tip_face_id))
            for entry in listing.entries if entry.status != MATCH_CONFIRMED]
    following = listing.offset + len(listing.entries)
    if following < listing.total:
        rows.append([(t(language, "matches_more"), sign_callback(settings, PAGE, case_id, str(following)))])
    return inline_keyboard(rows) if rows else None


async def _send_page(update: Update, context: ReuniteContext, case: Case, offset: int) -> None:
    settings = context.scope.settings
    listing = await shortlist.page(context.session, settings.database_url, case, offset, PAGE_SIZE)
    audit.record(context.session, context.user.id, "shortlist.view", case.code)
    if not listing.entries:
        key = "shortlist_no_case_faces" if not listing.has_faces else \
            "shortlist_end" if listing.total else "shortlist_empty"
        say(context, update, key, code=case.code, force=True)
        return
    composite = await asyncio.to_thread(shortlist.store_composite, settings.media_dir, listing)
    text = shortlist.caption(context.language, listing, context.bot_data[REVIEW_FLOOR]())
    shortlist.enqueue_page(context.session, chat_id_of(update), composite, text,
                           _keyboard(context, listing))


def _unknown_case(update: Update, context: ReuniteContext, code: str) -> None:
    say(context, update, "case_not_found", code=cases.code_as_typed(code), force=True)


@coordinators_only
async def shortlist_command(update: Update, context: ReuniteContext) -> None:
    """/shortlist C-XXXXXX: the first page of the case's shortlist; usage without a code, "no case"
    for an unknown or closed one, and a short notice for a case not verified yet."""
    if not context.args:
        say(context, update, "shortlist_usage", force=True)
        return
    case = await cases.by_code(context.session, context.args[0])
    if case is None or case.status in cases.CLOSED_STATUSES:
        _unknown_case(update, context, context.args[0])
    elif case.status != cases.STATUS_ACTIVE:
        say(context, update, "shortlist_not_active", code=case.code, force=True)
    else:
        await _send_page(update, context, case, 0)


@coordinators_only
async def more_pressed(update: Update, context: ReuniteContext) -> None:
    """The 'More ›' button under a shortlist page: the next page, as the list stands now."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return
    case = await shortlist.case_by_id(context.session, int(parts[1]))
    if case is None or case.status != cases.STATUS_ACTIVE:
        _unknown_case(update, context, case.code if case else "")
        return
    await _send_page(update, context, case, int(parts[2]))


@coordinators_only
async def decision_pressed(update: Update, context: ReuniteContext) -> None:
    """Confirm lead / Reject under a shortlist page: decided once, whoever presses first; a rejected
    face leaves the case's shortlist for good."""
    pressed = pressed_decision(update, context, DECISIONS, 2)
    if pressed is None:
        return
    decision, (case_id, tip_face_id) = pressed
    outcome = await shortlist.decide(context.session, context.user.id, case_id, tip_face_id, decision,
                                     context.scope.now)
    answer_review(update, context, outcome)


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("shortlist", shortlist_command))
    add(CallbackQueryHandler(decision_pressed, pattern=rf"^({CONFIRM}|{REJECT})\|"))
    add(CallbackQueryHandler(more_pressed, pattern=rf"^{PAGE}\|"))
