"""What a family does: /report a missing person (a guided conversation), /mycases, /edit, /addphoto,
/found; and /cancel, /skip, /back, /done within a conversation.

The conversation lives in the database (bot/services/reporting.py): one question per message, with
Skip and Back buttons; photos can come at any point and are kept. While someone is in a conversation,
their messages answer it; outside one, the same messages are tips (bot/handlers/public.py).
"""

from __future__ import annotations

import functools

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.db.models import PRIORITY_ACK, Case
from bot.handlers import case_changes, intake
from bot.handlers.common import (
    ReuniteContext,
    chat_id_of,
    guaranteed,
    inline_keyboard,
    message_of,
    pressed_button,
    say,
    sign_callback,
)
from bot.i18n import t
from bot.services import audit, case_fields, case_notices, cases, conversation, outbox, reporting
from bot.services.case_fields import CHOICE, FieldError
from bot.services.media import ImageRejected
from bot.services.reporting import STEP_DONE, STEP_PHOTO_AGE, STEP_PHOTOS, Draft

# answers within a conversation are read before anything else could take them for a tip
CONVERSATION_GROUP = -1
EDIT_BUTTONS_PER_ROW = 2


# -- asking -------------------------------------------------------------------------------------

# say(), even over the per-user rate limit: a family answering quickly must still see where they
# are (the questions themselves are queued directly for the same reason)
_tell = functools.partial(say, force=True)


def _question(language: str, draft: Draft, name: str) -> str:
    if draft.step == STEP_PHOTOS:
        if draft.photos:
            return t(language, "ask_photos_more", count=len(draft.photos))
        return t(language, "ask_photos", name=name)
    asking_photo = draft.asking_photo
    if draft.step == STEP_PHOTO_AGE and asking_photo is not None:
        return t(language, "ask_photo_age", name=name, number=asking_photo + 1)
    return t(language, f"ask_{draft.step}", name=name)


def _keyboard(context: ReuniteContext, draft: Draft, case: Case | None) -> dict | None:
    settings, language, field = context.scope.settings, context.language, draft.field

    def button(label_key: str, action: str, *choice: str) -> tuple[str, str]:
        return t(language, label_key), sign_callback(settings, "fl", action, draft.step, *choice)

    rows = []
    if field is not None and field.kind == CHOICE:
        rows.append([button(f"choice_{field.key}_{name}", "set", name) for name, _ in field.choices])
    navigation = []
    if draft.can_go_back:
        navigation.append(button("button_back", "back"))
    if field is not None and not field.required:
        if draft.flow != reporting.FLOW_EDIT:
            navigation.append(button("button_skip", "skip"))
        elif case_fields.has_value(case_fields.case_columns(case), field):
            navigation.append(button("button_remove", "skip"))
    if draft.step == STEP_PHOTO_AGE:
        navigation.append(button("button_skip", "skip"))
    if draft.step == STEP_PHOTOS and draft.photos:
        navigation.append(button("button_done", "done"))
    if navigation:
        rows.append(navigation)
    return inline_keyboard(rows) if rows else None


def _current_value(context: ReuniteContext, draft: Draft, case: Case | None) -> str | None:
    if draft.field is None:
        return None
    columns = case_fields.case_columns(case) if case is not None else case_fields.to_columns(draft.values)
    return case_fields.display(draft.field, columns, context.language, context.scope.settings.tz)


def _ask(update: Update, context: ReuniteContext, draft: Draft, case: Case | None, lead: str | None = None,
         **lead_values: object) -> None:
    """The current question (after ``lead``, a notice or what was wrong with the last answer), what
    the field holds now if anything, and its buttons."""
    language = context.language
    name = case.name if case is not None else draft.values.get("name", "")
    parts = [t(language, lead, name=name, **lead_values)] if lead else []
    parts.append(_question(language, draft, name))
    current = _current_value(context, draft, case)
    if current is not None:
        parts.append(t(language, "current_value", value=current))
    outbox.enqueue_text(context.session, chat_id_of(update), "\n\n".join(parts), priority=PRIORITY_ACK,
                        reply_markup=_keyboard(context, draft, case))


# -- taking answers -----------------------------------------------------------------------------

def _caption_age(caption: str | None) -> float | None:
    """The age written as a photo's caption, if that is what the caption is."""
    try:
        return case_fields.parse_age(caption) if caption else None
    except FieldError:
        return None


class _Silent(Exception):
    """The later photos of an album are kept without an answer each: the first one was answered."""


async def _take_photo(context: ReuniteContext, draft: Draft, file_id: str, file_size: int | None,
                      caption: str | None, album: str | None, *, from_photo: bool) -> str | None:
    if draft.flow == reporting.FLOW_EDIT:
        raise FieldError("report_expects_text")
    image = await intake.fetch_and_store(context, file_id, file_size, from_photo=from_photo,
                                         store=reporting.store_case_photo)
    first_of_album = album is None or all(photo.get("album") != album for photo in draft.photos)
    draft.give_photo(image, _caption_age(caption), album)
    if not first_of_album:
        raise _Silent
    return None if draft.step in (STEP_PHOTOS, STEP_PHOTO_AGE) else "report_photo_kept"


async def _take_message(update: Update, context: ReuniteContext, draft: Draft) -> str | None:
    """Apply one message to the conversation; returns a notice to lead the next question with."""
    message = message_of(update)
    if message.photo:
        return await _take_photo(context, draft, message.photo[-1].file_id, message.photo[-1].file_size,
                                 message.caption, message.media_group_id, from_photo=True)
    if message.document is not None:
        if not (message.document.mime_type or "").startswith("image/"):
            raise FieldError("photo_not_image")
        return await _take_photo(context, draft, message.document.file_id, message.document.file_size,
                                 message.caption, message.media_group_id, from_photo=False)
    if message.location is not None:
        if draft.field is not case_fields.LAST_SEEN_PIN:
            raise FieldError("report_expects_other")
        draft.give(case_fields.pin_value(message.location.latitude, message.location.longitude))
        return None
    if not message.text:
        raise FieldError("report_expects_other")
    if draft.field is not None:
        scope = context.scope
        draft.give(case_fields.parse(draft.field, message.text, scope.settings.tz, scope.now))
    elif draft.step == STEP_PHOTO_AGE:
        draft.give_age(case_fields.parse_age(message.text))
    else:
        raise FieldError("report_expects_photo")
    return None


async def _case_of(update: Update, context: ReuniteContext, draft: Draft) -> tuple[bool, Case | None]:
    """(may go on, the case being changed): the case is checked again on every step (a role can be
    revoked, a case closed, in the meantime)."""
    if draft.case_id is None:
        return True, None
    case = await context.session.get(Case, draft.case_id)
    if case is None or not cases.can_manage(context.user, case) or case.status in cases.CLOSED_STATUSES:
        await conversation.clear(context.session, context.user.id)
        _tell(context, update, "case_conversation_ended")
        return False, None
    return True, case


async def _continue(update: Update, context: ReuniteContext, draft: Draft, answer) -> None:
    """Apply ``answer`` (a coroutine function of the draft returning a notice or None), then ask the
    next question, or finish the conversation."""
    may_go_on, case = await _case_of(update, context, draft)
    if not may_go_on:
        return
    try:
        lead, lead_values = await answer(draft), {}
    except FieldError as problem:
        lead, lead_values = problem.key, problem.values
    except ImageRejected as rejected:
        # the tip line's "describe what you saw in words" is no help to a family sending a photo
        lead = "report_photo_unreadable" if rejected.reason == "image_unreadable" else rejected.reason
        lead_values = {}
    except _Silent:
        await draft.save(context.session, context.user.id)
        return
    if draft.step == STEP_DONE:
        await conversation.clear(context.session, context.user.id)
        await _finish(update, context, draft, case)
        return
    await draft.save(context.session, context.user.id)
    _ask(update, context, draft, case, lead, **lead_values)


async def _conversation(context: ReuniteContext) -> Draft | None:
    user = context.scope.user
    state = await conversation.get(context.session, user.id) if user else None
    return Draft.from_state(state) if state is not None and state.flow in reporting.FLOWS else None


async def conversation_message(update: Update, context: ReuniteContext) -> None:
    """A message while someone is in a /report, /edit or /addphoto conversation answers its question;
    someone back after a long pause is first shown where they were. Outside a conversation this does
    nothing and the message is a tip."""
    user = context.scope.user
    state = await conversation.get(context.session, user.id) if user else None
    if state is None or state.flow not in reporting.FLOWS:
        return
    draft = Draft.from_state(state)
    if update.edited_message is not None:
        _tell(context, update, "report_edited_ignored")
    elif reporting.came_back_after_a_while(state, context.scope.now):
        may_go_on, case = await _case_of(update, context, draft)
        if may_go_on:
            await draft.save(context.session, context.user.id)  # from now on, messages answer again
            _ask(update, context, draft, case, "report_resumed")
    else:
        await _continue(update, context, draft, lambda d: _take_message(update, context, d))
    raise ApplicationHandlerStop


async def _apply_action(draft: Draft, action: str, choice: str | None) -> None:
    if action == "set" and draft.field is not None:
        draft.give(case_fields.choice_value(draft.field, choice or ""))
    elif action == "skip":
        draft.skip()
    elif action == "back":
        draft.back()
    elif action == "done":
        draft.done()


async def conversation_button(update: Update, context: ReuniteContext) -> None:
    """A Skip, Back, Done or choice button under a question; one under an earlier question is stale."""
    parts = pressed_button(context, update)
    draft = await _conversation(context)
    if parts is None or len(parts) not in (3, 4) or draft is None or parts[2] != draft.step:
        _tell(context, update, "conversation_button_stale")
        return
    action, choice = parts[1], parts[3] if len(parts) == 4 else None
    await _continue(update, context, draft, lambda d: _apply_action(d, action, choice))


async def conversation_command(update: Update, context: ReuniteContext) -> None:
    """/skip, /back and /done: the buttons, typed."""
    draft = await _conversation(context)
    if draft is None:
        _tell(context, update, "no_conversation")
        return
    command = guaranteed(message_of(update).text, "command")
    action = command.split()[0].lstrip("/").split("@")[0].lower()
    await _continue(update, context, draft, lambda d: _apply_action(d, action, None))


async def cancel(update: Update, context: ReuniteContext) -> None:
    """/cancel: leaves a report (nothing is sent), an edit (nothing changes) or a pending flyer tip."""
    state = await conversation.get(context.session, context.user.id)
    if state is None:
        _tell(context, update, "no_conversation")
        return
    await conversation.clear(context.session, context.user.id)
    _tell(context, update, "report_cancelled" if state.flow == reporting.FLOW_REPORT else "conversation_cancelled")


# -- finishing ----------------------------------------------------------------------------------

async def _file_report(update: Update, context: ReuniteContext, draft: Draft) -> None:
    session, scope = context.session, context.scope
    case = await reporting.file_report(session, draft, context.user.id, scope.now)
    _tell(context, update, "report_filed", code=case.code, name=case.name)
    columns = case_fields.case_columns(case)
    await case_notices.alert_coordinators(
        session, scope.settings.coordinator_chat_id, case, "alert_case_reported",
        since=case_fields.display(case_fields.MISSING_SINCE, columns, context.language, scope.settings.tz),
        place=case.last_seen_place, photos=len(draft.photos))


async def _finish(update: Update, context: ReuniteContext, draft: Draft, case: Case | None) -> None:
    """A /report is filed; an /edit's or /addphoto's case (there is one) is changed, or a family's
    change to a public case waits for review (bot/handlers/case_changes.py)."""
    if case is None:
        await _file_report(update, context, draft)
    elif draft.flow == reporting.FLOW_EDIT:
        await case_changes.save_edit(update, context, draft, case)
    else:
        await case_changes.save_photos(update, context, draft, case)


# -- commands about one's cases -----------------------------------------------------------------

async def report(update: Update, context: ReuniteContext) -> None:
    """/report: the first question of a new report, or, with one unfinished, where it stopped."""
    draft = await _conversation(context)
    if draft is not None and draft.flow == reporting.FLOW_REPORT:
        await draft.save(context.session, context.user.id)
        _ask(update, context, draft, None, "report_in_progress")
        return
    draft = reporting.new_report()
    await draft.save(context.session, context.user.id)
    _ask(update, context, draft, None, "report_intro")


async def my_cases(update: Update, context: ReuniteContext) -> None:
    """/mycases: the cases this person reported, with their status and what they can do next."""
    language = context.language
    reported = await cases.of_family(context.session, context.user.id)
    if not reported:
        _tell(context, update, "mycases_none")
        return
    lines = [t(language, "mycases_header")]
    lines += [f"{case.code} · {case.name} · {t(language, 'case_status_' + case.status)}" for case in reported]
    lines.append(t(language, "mycases_footer"))
    outbox.enqueue_text(context.session, chat_id_of(update), "\n".join(lines), priority=PRIORITY_ACK)


async def open_case_from_args(update: Update, context: ReuniteContext, usage_key: str) -> Case | None:
    """The open case named in the command's first argument, if this person may manage it (the same
    answer whether a case does not exist or is not theirs)."""
    if not context.args:
        _tell(context, update, usage_key)
        return None
    case = await cases.managed_case(context.session, context.user, context.args[0])
    if case is None:
        _tell(context, update, "case_not_yours", code=cases.code_as_typed(context.args[0]))
    elif case.status in cases.CLOSED_STATUSES:
        _tell(context, update, "case_is_closed", code=case.code,
              status=t(context.language, f"case_status_{case.status}"))
        case = None
    return case


async def edit(update: Update, context: ReuniteContext) -> None:
    """/edit C-XXXXXX: a button per particular; the one picked is asked again."""
    case = await open_case_from_args(update, context, "edit_usage")
    if case is None:
        return
    settings, language = context.scope.settings, context.language
    buttons = [(t(language, f"field_{field.key}"), sign_callback(settings, "ed", str(case.id), field.key))
               for field in case_fields.FIELDS]
    rows = [buttons[n:n + EDIT_BUTTONS_PER_ROW] for n in range(0, len(buttons), EDIT_BUTTONS_PER_ROW)]
    _tell(context, update, "edit_pick_field", code=case.code, name=case.name, reply_markup=inline_keyboard(rows))


async def edit_field_chosen(update: Update, context: ReuniteContext) -> None:
    """A particular picked under /edit: its question, with what it holds now."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 3 or not parts[1].isdigit() or parts[2] not in case_fields.BY_KEY:
        _tell(context, update, "conversation_button_stale")
        return
    draft = reporting.edit_of(int(parts[1]), parts[2])
    may_go_on, case = await _case_of(update, context, draft)
    if may_go_on:
        await draft.save(context.session, context.user.id)
        _ask(update, context, draft, case)


async def add_photo(update: Update, context: ReuniteContext) -> None:
    """/addphoto C-XXXXXX: asks for photos (each with the age in it) until Done."""
    case = await open_case_from_args(update, context, "addphoto_usage")
    if case is None:
        return
    draft = reporting.photos_for(case.id)
    await draft.save(context.session, context.user.id)
    _ask(update, context, draft, case)


async def found(update: Update, context: ReuniteContext) -> None:
    """/found C-XXXXXX (the family): coordinators are asked to close the appeal."""
    case = await open_case_from_args(update, context, "found_usage")
    if case is None:
        return
    if case.reported_by != context.user.id:  # a coordinator: closing is theirs to do
        _tell(context, update, "found_use_close", code=case.code)
        return
    audit.record(context.session, context.user.id, "case.found_reported", case.code)
    await case_notices.alert_coordinators(context.session, context.scope.settings.coordinator_chat_id, case,
                                          "alert_case_found")
    _tell(context, update, "found_sent", code=case.code, name=case.name)


def register(application: Application) -> None:
    private = filters.ChatType.PRIVATE
    add = application.add_handler
    add(CommandHandler("report", report, filters=private))
    add(CommandHandler("mycases", my_cases, filters=private))
    add(CommandHandler("edit", edit, filters=private))
    add(CommandHandler("addphoto", add_photo, filters=private))
    add(CommandHandler("found", found, filters=private))
    add(CommandHandler("cancel", cancel, filters=private))
    add(CommandHandler(["skip", "back", "done"], conversation_command, filters=private))
    add(CallbackQueryHandler(conversation_button, pattern=r"^fl\|"))
    add(CallbackQueryHandler(edit_field_chosen, pattern=r"^ed\|"))
    add(MessageHandler(private & ~filters.COMMAND, conversation_message), group=CONVERSATION_GROUP)
