"""A family's change to a public case waits for a coordinator (bot/services/case_changes.py says what
waits and why).

The family's side: the end of /edit and /addphoto, saved at once or held for review. The coordinators'
side: an alert with the case's value beside the asked one (new photos follow it) and Approve / Reject
buttons; /changes lists what waits; /approve_change N and /reject_change N [reason] decide by command.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.db.models import PRIORITY_ACK, PRIORITY_ALERT, Case, CaseChange
from bot.handlers.common import (
    ReuniteContext,
    answer_button,
    button_of,
    chat_id_of,
    coordinators_only,
    inline_keyboard,
    message_of,
    say,
    sign_callback,
    verify_callback,
)
from bot.i18n import t
from bot.services import alerts, audit, case_changes, case_fields, case_notices, cases, outbox, users
from bot.services.reporting import Draft

# callback data: approve / reject a change
APPROVE = "cha"
REJECT = "chr"
CHANGES_SHOWN = 10
EMPTY = "—"
# a long particular (what happened: up to 3,000 characters) twice would not fit one message
VALUE_SHOWN = 1000


# -- the family's side ----------------------------------------------------------------------------

async def save_edit(update: Update, context: ReuniteContext, draft: Draft, case: Case) -> None:
    """The end of /edit: the family reads that the change is saved, or that it waits for the team
    (then coordinators get it to review)."""
    session, scope, user = context.session, context.scope, context.user
    field = draft.answered_field
    columns = case_fields.to_columns(draft.values)
    label = t(context.language, f"field_{field.key}")
    if case_changes.needs_review(user, case, columns):
        change = await case_changes.propose(session, case, field.key, draft.values, user.id, scope.now)
        say(context, update, "change_waiting", code=case.code, field=label, force=True)
        await _alert_coordinators(context, case, change)
        return
    cases.update_particulars(session, case, columns, user.id, scope.now)
    say(context, update, "edit_saved", code=case.code, field=label, force=True)
    if case.status == cases.STATUS_ACTIVE and not users.is_coordinator(user):  # published nothing, still shown
        await case_notices.alert_coordinators(session, scope.settings.coordinator_chat_id, case, "alert_case_changed")


async def save_photos(update: Update, context: ReuniteContext, draft: Draft, case: Case) -> None:
    """The end of /addphoto: the photos are added (and go to face matching), or wait for the team."""
    session, scope, user = context.session, context.scope, context.user
    if case_changes.needs_review(user, case):
        change = await case_changes.propose(session, case, case_changes.PHOTOS, draft.new_photos(), user.id,
                                            scope.now)
        say(context, update, "change_waiting_photos", code=case.code, count=len(draft.photos), force=True)
        await _alert_coordinators(context, case, change)
        return
    await cases.add_photos(session, case, draft.new_photos(), user.id, scope.now)
    audit.record(session, user.id, "case.photo.add", case.code)
    say(context, update, "addphoto_saved", code=case.code, count=len(draft.photos), force=True)


# -- what coordinators see ------------------------------------------------------------------------

def _review_keyboard(context: ReuniteContext, language: str, change: CaseChange) -> dict:
    settings = context.scope.settings
    return inline_keyboard([[(t(language, "change_button_approve"), sign_callback(settings, APPROVE, str(change.id))),
                             (t(language, "change_button_reject"), sign_callback(settings, REJECT, str(change.id)))]])


def _describe(context: ReuniteContext, language: str, change: CaseChange, case: Case) -> str:
    """One change as coordinators read it: the case, the particular, what it is now beside what is asked."""
    if change.field == case_changes.PHOTOS:
        return t(language, "change_photos", number=change.id, code=case.code, name=case.name,
                 count=len(case_changes.proposed_photos(change)))
    old, new = case_changes.old_and_new(change, case, language, context.scope.settings.tz)
    return t(language, "change_particular", number=change.id, code=case.code, name=case.name,
             field=case_changes.field_label(language, change), old=outbox.clip(old or EMPTY, VALUE_SHOWN),
             new=outbox.clip(new or EMPTY, VALUE_SHOWN))


async def _alert_coordinators(context: ReuniteContext, case: Case, change: CaseChange) -> None:
    session = context.session
    photos = case_changes.proposed_photos(change)
    for recipient in await alerts.recipients(session, context.scope.settings.coordinator_chat_id):
        language = recipient.language
        text = _describe(context, language, change, case) + "\n\n" + t(language, "change_alert_hint", number=change.id)
        outbox.enqueue_text(session, recipient.chat_id, text, priority=PRIORITY_ALERT,
                            reply_markup=_review_keyboard(context, language, change))
        for number, photo in enumerate(photos, start=1):
            caption = t(language, "change_photo_caption", number=change.id, code=case.code, photo=number,
                        count=len(photos))
            if photo.age_years is not None:
                caption += " · " + t(language, "case_photo_age", age=f"{photo.age_years:g}")
            outbox.enqueue_photo(session, recipient.chat_id, photo.sha256, caption, priority=PRIORITY_ALERT,
                                 album_key=f"change:{change.id}")


@coordinators_only
async def list_changes(update: Update, context: ReuniteContext) -> None:
    """/changes: the families' changes waiting for review, oldest first, each old beside new."""
    session, language = context.session, context.language
    page = await case_changes.pending(session, limit=CHANGES_SHOWN)
    if page.total == 0:
        say(context, update, "changes_none", force=True)
        return
    lines = [t(language, "changes_header", shown=len(page.changes), total=page.total)]
    lines += [_describe(context, language, change, case) for change, case in page.changes]
    lines.append(t(language, "changes_footer"))
    outbox.enqueue_text(session, chat_id_of(update), "\n\n".join(lines), priority=PRIORITY_ACK)
    audit.record(session, context.user.id, "changes.list")


async def _decide(update: Update, context: ReuniteContext, approving: bool, change_id: int,
                  reason: str | None = None) -> None:
    session, scope = context.session, context.scope
    if approving:
        review = await case_changes.approve(session, change_id, context.user.id, scope.now)
    else:
        review = await case_changes.reject(session, change_id, context.user.id, scope.now, scope.settings.media_dir,
                                           reason)
    # no case and no change only when there is no such change, whose message names neither
    code = review.case.code if review.case is not None else ""
    status = t(context.language, f"change_status_{review.change.status}") if review.change is not None else ""
    key = f"change_{'approved' if approving else 'rejected'}_done" if review.result == "done" \
        else f"change_review_{review.result}"
    say(context, update, key, force=True, number=change_id, code=code, status=status)


async def _decide_by_command(update: Update, context: ReuniteContext, approving: bool) -> None:
    words = (message_of(update).text or "").split(None, 2)
    if len(words) < 2 or not words[1].isdigit():
        say(context, update, "approve_change_usage" if approving else "reject_change_usage", force=True)
        return
    reason = words[2].strip() if len(words) > 2 and not approving else None
    await _decide(update, context, approving, int(words[1]), reason or None)


@coordinators_only
async def approve_change(update: Update, context: ReuniteContext) -> None:
    """/approve_change N: the change goes onto the case (and its next flyer); the family is told."""
    await _decide_by_command(update, context, True)


@coordinators_only
async def reject_change(update: Update, context: ReuniteContext) -> None:
    """/reject_change N [reason]: the case stays as it is; the family is told, with the reason."""
    await _decide_by_command(update, context, False)


@coordinators_only
async def change_button(update: Update, context: ReuniteContext) -> None:
    """Approve / Reject under a change's alert: decided once, whoever presses first."""
    parts = verify_callback(context.scope.settings, button_of(update).data)
    if parts is None or len(parts) != 2 or not parts[1].isdigit():
        answer_button(context, update, "button_stale")
        return
    answer_button(context, update)
    await _decide(update, context, parts[0] == APPROVE, int(parts[1]))


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("changes", list_changes))
    add(CommandHandler("approve_change", approve_change))
    add(CommandHandler("reject_change", reject_change))
    add(CallbackQueryHandler(change_button, pattern=rf"^({APPROVE}|{REJECT})\|"))
