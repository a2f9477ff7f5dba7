"""The coordinator console for cases: /verify, /case, /cases, /stats, /close.

Every command checks the role on every call (buttons too) and is audited with ids only. /tips
C-XXXXXX (a case's tips) lives with the other tip commands in coordinator.py.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.db.models import PHOTO_AGE_PROGRESSED, PRIORITY_ACK, PRIORITY_ALERT, Case
from bot.handlers.common import (
    ReuniteContext,
    chat_id_of,
    coordinators_only,
    inline_keyboard,
    pressed_button,
    say,
    sign_callback,
)
from bot.i18n import t
from bot.services import audit, case_actions, case_changes, case_fields, cases, outbox, tips

CASES_PAGE_SIZE = 10
STATS_DAYS = 7
STATS_BAR_MAX = 20
# what /cases accepts, and the statuses each word lists
CASE_FILTERS = cases.LISTINGS
DEFAULT_FILTER = cases.DEFAULT_LISTING


def _status(context: ReuniteContext, case: Case) -> str:
    return t(context.language, f"case_status_{case.status}")


async def _case_from_args(update: Update, context: ReuniteContext, usage_key: str) -> Case | None:
    if not context.args:
        say(context, update, usage_key, force=True)
        return None
    case = await cases.by_code(context.session, context.args[0])
    if case is None:
        say(context, update, "case_not_found", code=cases.code_as_typed(context.args[0]), force=True)
    return case


@coordinators_only
async def verify(update: Update, context: ReuniteContext) -> None:
    """/verify C-XXXXXX: the case becomes public (flyer, deep link) and its family is told."""
    case = await _case_from_args(update, context, "verify_usage")
    if case is None:
        return
    if not await case_actions.verify_case(context.session, case, context.user.id, context.scope.now):
        say(context, update, "verify_not_pending", code=case.code, status=_status(context, case), force=True)
        return
    say(context, update, "verify_done", code=case.code, name=case.name, force=True)


@coordinators_only
async def close(update: Update, context: ReuniteContext) -> None:
    """/close C-XXXXXX found|withdrawn: the appeal ends everywhere (deep link, flyers, broadcasts:
    they stop and their messages of the last 48 hours are deleted, face matching: its biometrics and
    leads are purged, and its photos); its family is told."""
    case = await _case_from_args(update, context, "close_usage")
    if case is None:
        return
    status = context.argument(1).lower()
    if status not in cases.CLOSED_STATUSES:
        say(context, update, "close_usage", force=True)
        return
    if not await case_actions.close_case(context.session, case, context.user.id, status, context.scope.now,
                                         context.scope.settings.media_dir):
        say(context, update, "case_is_closed", code=case.code, status=_status(context, case), force=True)
        return
    say(context, update, "close_done", code=case.code, name=case.name, status=_status(context, case), force=True)


@coordinators_only
async def case_command(update: Update, context: ReuniteContext) -> None:
    """/case C-XXXXXX: every particular, the status, how many tips, then the photos."""
    case = await _case_from_args(update, context, "case_usage")
    if case is None:
        return
    session, language, settings = context.session, context.language, context.scope.settings
    photos = await cases.photos_of(session, case.id)
    tip_count = (await cases.tip_counts(session, [case.id])).get(case.id, 0)
    lines = [t(language, "case_header", code=case.code, status=_status(context, case),
               created=case.created_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M"), tips=tip_count,
               photos=len(photos))]
    lines += [f"{t(language, 'field_' + key)}: {value}"
              for key, value in case_fields.particulars(case, language, settings.tz)]
    waiting = await case_changes.waiting_count(session, case.id)
    if waiting:
        lines.append(t(language, "case_changes_waiting", count=waiting))
    if case.status in cases.OPEN_STATUSES:
        lines.append(t(language, f"case_hint_{case.status}", code=case.code))
    chat_id = chat_id_of(update)
    outbox.enqueue_text(session, chat_id, "\n".join(lines), priority=PRIORITY_ACK)
    for number, photo in enumerate(photos, start=1):
        caption = t(language, "case_photo_caption", code=case.code, number=number, count=len(photos))
        if photo.kind == PHOTO_AGE_PROGRESSED:
            caption += " · " + t(language, "case_photo_age_progressed")
        if photo.age_years is not None:
            caption += " · " + t(language, "case_photo_age", age=f"{photo.age_years:g}")
        outbox.enqueue_photo(session, chat_id, photo.sha256, caption, priority=PRIORITY_ALERT,
                             album_key=f"{case.code}:view")
    audit.record(session, context.user.id, "case.view", case.code)


async def _send_cases_page(update: Update, context: ReuniteContext, word: str, offset: int) -> None:
    session, language, settings = context.session, context.language, context.scope.settings
    listing = await cases.page(session, CASE_FILTERS[word], offset=offset, limit=CASES_PAGE_SIZE)
    if listing.total == 0:
        say(context, update, "cases_none", force=True)
        return
    counts = await cases.tip_counts(session, [case.id for case in listing.cases])
    lines = [t(language, "cases_header", first=offset + 1, last=offset + len(listing.cases), total=listing.total)]
    lines += [t(language, "cases_line", code=case.code, status=_status(context, case), name=case.name,
                tips=counts.get(case.id, 0)) for case in listing.cases]
    lines.append(t(language, "cases_footer"))
    keyboard = None
    if offset + CASES_PAGE_SIZE < listing.total:
        keyboard = inline_keyboard([[(t(language, "tips_older"),
                                      sign_callback(settings, "cases", str(offset + CASES_PAGE_SIZE), word))]])
    outbox.enqueue_text(session, chat_id_of(update), "\n".join(lines), priority=PRIORITY_ACK,
                        reply_markup=keyboard)
    audit.record(session, context.user.id, "cases.list", word)


@coordinators_only
async def cases_command(update: Update, context: ReuniteContext) -> None:
    """/cases [open|pending|active|found|withdrawn|closed|all]: ten at a time, newest first."""
    word = context.args[0].lower() if context.args else DEFAULT_FILTER
    if word == cases.STATUS_PENDING:
        word = "pending"
    if word not in CASE_FILTERS:
        say(context, update, "cases_usage", force=True)
        return
    await _send_cases_page(update, context, word, 0)


@coordinators_only
async def cases_page(update: Update, context: ReuniteContext) -> None:
    """The 'Older' button under a /cases list."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 3 or not parts[1].isdigit() or parts[2] not in CASE_FILTERS:
        return
    await _send_cases_page(update, context, parts[2], int(parts[1]))


@coordinators_only
async def stats(update: Update, context: ReuniteContext) -> None:
    """/stats: cases by status, tips by status, and tips per day over the last week."""
    settings, language = context.scope.settings, context.language
    counts = await cases.stats(context.session, settings.tz, context.scope.now, STATS_DAYS)
    by_status = counts.cases_by_status
    lines = [t(language, "stats_cases", pending=by_status.get(cases.STATUS_PENDING, 0),
               active=by_status.get(cases.STATUS_ACTIVE, 0), found=by_status.get(cases.STATUS_FOUND, 0),
               withdrawn=by_status.get(cases.STATUS_WITHDRAWN, 0)),
             t(language, "stats_tips",
               **{status: counts.tips_by_status.get(status, 0) for status in tips.TIP_STATUSES}),
             t(language, "stats_days", days=STATS_DAYS)]
    lines += [f"{day:%m-%d}  {count:>4}  {'▇' * min(count, STATS_BAR_MAX)}".rstrip()
              for day, count in counts.tips_by_day]
    outbox.enqueue_text(context.session, chat_id_of(update), "\n".join(lines), priority=PRIORITY_ACK)
    audit.record(context.session, context.user.id, "stats.view")


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("verify", verify))
    add(CommandHandler("case", case_command))
    add(CommandHandler("cases", cases_command))
    add(CommandHandler("stats", stats))
    add(CommandHandler("close", close))
    add(CallbackQueryHandler(cases_page, pattern=r"^cases\|"))
