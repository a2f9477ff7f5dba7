"""Face-match leads for coordinators: the Confirm lead / Reject buttons under a match alert and under
/matches, and /matches [C-XXXXXX] itself (the pending leads, strongest first, ten at a time; for one
case, also the tips confirmed as its leads).

Every press checks the role and the signature of the callback data; a second press (or a second
coordinator) finds the lead decided and changes nothing; decisions are audited with references only.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.config import Settings
from bot.db.models import MATCH_CONFIRMED, MATCH_REJECTED, PRIORITY_ACK
from bot.handlers.common import (
    ReuniteContext,
    answer_button,
    button_of,
    chat_id_of,
    coordinators_only,
    inline_keyboard,
    pressed_button,
    say,
    sign_callback,
    verify_callback,
)
from bot.i18n import t
from bot.services import audit, cases, leads, outbox, shortlist
from bot.services.leads import ReviewOutcome
from bot.services.match_alerts import strength_words
from bot.services.matching import MatchAlert

# callback data: confirm / reject a candidate, a page of /matches
CONFIRM = "mc"
REJECT = "mr"
PAGE = "mp"
DECISIONS = {CONFIRM: MATCH_CONFIRMED, REJECT: MATCH_REJECTED}
LEADS_PAGE_SIZE = 10


def review_buttons(settings: Settings, language: str, label: object, confirm: str, reject: str,
                   *ids: str) -> list[tuple[str, str]]:
    """Confirm lead / Reject, labelled ``label``: signed callback data ``confirm`` (or ``reject``) and ``ids``."""
    return [(t(language, "match_button_confirm", label=label), sign_callback(settings, confirm, *ids)),
            (t(language, "match_button_reject", label=label), sign_callback(settings, reject, *ids))]


def pressed_decision(update: Update, context: ReuniteContext, decisions: dict[str, str],
                     ids: int) -> tuple[str, list[int]] | None:
    """The decision (by the code in ``decisions``) and the ``ids`` numbers of a signed Confirm lead /
    Reject press; None, the button answered as expired, when it is forged, altered or not ours."""
    parts = verify_callback(context.scope.settings, button_of(update).data)
    if parts is None or len(parts) != 1 + ids or parts[0] not in decisions \
            or not all(part.isdigit() for part in parts[1:]):
        answer_button(context, update, "button_stale")
        return None
    return decisions[parts[0]], [int(part) for part in parts[1:]]


def review_keyboard(settings: Settings, language: str, alert: MatchAlert) -> dict:
    """Confirm lead / Reject for each candidate of a match alert (the face worker's markup)."""
    return inline_keyboard([review_buttons(settings, language, candidate.case_code, CONFIRM, REJECT,
                                           str(candidate.candidate_id))
                            for candidate in alert.candidates])


@coordinators_only
async def review_pressed(update: Update, context: ReuniteContext) -> None:
    """Confirm lead / Reject: decided once, whoever presses first."""
    pressed = pressed_decision(update, context, DECISIONS, 1)
    if pressed is None:
        return
    decision, (candidate_id,) = pressed
    outcome = await leads.review(context.session, context.user.id, candidate_id, decision, context.scope.now)
    answer_review(update, context, outcome)


def answer_review(update: Update, context: ReuniteContext, outcome: ReviewOutcome) -> None:
    """What the coordinator who pressed Confirm lead / Reject is told of the outcome."""
    if outcome.result == "gone":
        answer_button(context, update, "review_gone")
    elif outcome.result == "already":
        answer_button(context, update, "review_already", status=t(context.language, f"lead_{outcome.status}"))
    else:
        answer_button(context, update)
        say(context, update, f"review_done_{outcome.status}", reference=outcome.tip_reference,
            code=outcome.case_code, force=True)


async def _send_leads_page(update: Update, context: ReuniteContext, offset: int, case_code: str | None) -> None:
    session, language, settings = context.session, context.language, context.scope.settings
    case = await cases.by_code(session, case_code) if case_code else None
    if case_code and case is None:
        say(context, update, "case_not_found", code=cases.code_as_typed(case_code), force=True)
        return
    page = await leads.pending_leads(session, offset=offset, limit=LEADS_PAGE_SIZE,
                                        case_id=case.id if case else None)
    confirmed = await shortlist.confirmed_leads(session, case.id) if case and offset == 0 else []
    if page.total == 0 and not confirmed:
        say(context, update, "matches_none", force=True)
        return
    lines = [t(language, "matches_header", first=offset + 1, last=offset + len(page.leads), total=page.total)
             if page.total else t(language, "matches_none")]
    rows = []
    for number, lead in enumerate(page.leads, start=offset + 1):
        lines.append(t(language, "matches_line", number=number, reference=lead.tip_reference, code=lead.case_code,
                       name=outbox.clip(lead.case_name, 40), strength=strength_words(language, lead.similarity),
                       date=lead.created_at.astimezone(settings.tz).strftime("%m-%d %H:%M")))
        rows.append(review_buttons(settings, language, number, CONFIRM, REJECT, str(lead.candidate_id)))
    if case is not None and confirmed:
        lines.append(t(language, "matches_confirmed", code=case.code, references=", ".join(confirmed)))
    lines.append(t(language, "matches_footer"))
    if offset + LEADS_PAGE_SIZE < page.total:
        rows.append([(t(language, "matches_more"),
                      sign_callback(settings, PAGE, str(offset + LEADS_PAGE_SIZE), case.code if case else ""))])
    outbox.enqueue_text(session, chat_id_of(update), "\n".join(lines), priority=PRIORITY_ACK,
                        reply_markup=inline_keyboard(rows))
    audit.record(session, context.user.id, "matches.list", case.code if case else None)


@coordinators_only
async def matches_command(update: Update, context: ReuniteContext) -> None:
    """/matches [C-XXXXXX]: pending face-match leads (of one case), strongest first."""
    await _send_leads_page(update, context, 0, context.args[0] if context.args else None)


@coordinators_only
async def matches_page(update: Update, context: ReuniteContext) -> None:
    """The 'More' button under a /matches list."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 3 or not parts[1].isdigit():
        return
    await _send_leads_page(update, context, int(parts[1]), parts[2] or None)


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("matches", matches_command))
    add(CallbackQueryHandler(review_pressed, pattern=rf"^({CONFIRM}|{REJECT})\|"))
    add(CallbackQueryHandler(matches_page, pattern=rf"^{PAGE}\|"))
