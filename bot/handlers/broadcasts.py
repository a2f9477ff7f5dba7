"""Broadcasting an appeal (DESIGN flow 5): /broadcast, its Send / Ask / Cancel buttons, /approve,
/reject, /cancel_broadcast, /broadcasts.

A coordinator's /broadcast sends once they press Send; a family's becomes a request ``B-XXXXXX``
that a coordinator approves or rejects (privacy rule 3: fake appeals are a way to hunt people who
fled). Either way the requester first sees how many subscribers it would reach.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.db.models import BROADCAST_AWAITING_APPROVAL, BROADCAST_CANCELLED, BROADCAST_DRAFT, Broadcast, Case
from bot.handlers.common import (
    ReuniteContext,
    chat_id_of,
    coordinators_only,
    from_a_person,
    inline_keyboard,
    message_of,
    pressed_button,
    say,
    sign_callback,
)
from bot.handlers.family import open_case_from_args
from bot.i18n import t
from bot.services import broadcasts, case_notices, flyer_service, outbox, subscriptions, users

# the button under a broadcast card: a tip about that case (public.py answers it)
CASE_TIP_BUTTON = "ct"


def _status(language: str, broadcast: Broadcast) -> str:
    return t(language, f"broadcast_status_{broadcast.status}")


def _card_file(context: ReuniteContext, case: Case):
    """For broadcasts.start: the case's card in a language (rendered only if it changed) and the
    signed data of its "I have information" button."""
    scope = context.scope

    async def card_file(language: str) -> broadcasts.CardFile:
        files = await flyer_service.current_flyers(context.session, case, language, media_dir=scope.settings.media_dir,
                                                   bot_username=context.bot.username, tz=scope.settings.tz,
                                                   now=scope.now)
        return broadcasts.CardFile(files[flyer_service.CARD_JPG].sha256,
                                   sign_callback(scope.settings, CASE_TIP_BUTTON, case.deep_link_token))

    return card_file


async def _start(context: ReuniteContext, broadcast: Broadcast, case: Case) -> int:
    scope = context.scope
    return await broadcasts.start(context.session, broadcast, case, regions=scope.settings.regions,
                                  actor_id=context.user.id, now=scope.now, card_file=_card_file(context, case))


@from_a_person
async def broadcast_command(update: Update, context: ReuniteContext) -> None:
    """/broadcast C-XXXXXX (a coordinator, or the case's family): how many subscribers near the
    last-seen place it would reach, with Send (coordinator) or Ask our team (family) and Cancel.
    Nothing goes out before the button."""
    case = await open_case_from_args(update, context, "broadcast_usage")
    if case is None:
        return
    if not broadcasts.may_broadcast(case):
        say(context, update, "broadcast_not_active", code=case.code, force=True)
        return
    session, scope, language = context.session, context.scope, context.language
    audience = await subscriptions.audience(session, case, scope.settings.regions)
    if not audience:
        say(context, update, "broadcast_nobody", code=case.code, name=case.name, force=True)
        return
    broadcast = await broadcasts.draft(session, case, context.user.id, len(audience), scope.now)
    coordinator = users.is_coordinator(context.user)
    go_label = t(language, "button_broadcast_send", count=len(audience)) if coordinator \
        else t(language, "button_broadcast_ask")
    keyboard = inline_keyboard([[(go_label, sign_callback(scope.settings, "bc", "go", str(broadcast.id))),
                                 (t(language, "button_cancel"), sign_callback(scope.settings, "bc", "no",
                                                                              str(broadcast.id)))]])
    say(context, update, "broadcast_size_coordinator" if coordinator else "broadcast_size_family",
        reference=broadcast.reference, code=case.code, name=case.name, count=len(audience),
        place=case.last_seen_place or "", reply_markup=keyboard, force=True)


async def broadcast_button(update: Update, context: ReuniteContext) -> None:
    """Send (a coordinator: sending starts, with a progress message), Ask our team (a family: the
    request goes to coordinators) or Cancel under a broadcast's size."""
    session = context.session
    parts = pressed_button(context, update) or []
    broadcast = await session.get(Broadcast, int(parts[2])) if len(parts) == 3 and parts[2].isdigit() else None
    if broadcast is None or broadcast.status != BROADCAST_DRAFT or broadcast.requested_by != context.user.id:
        say(context, update, "conversation_button_stale", force=True)
        return
    case = await session.get_one(Case, broadcast.case_id)
    if parts[1] == "no":
        broadcast.status = BROADCAST_CANCELLED
        say(context, update, "broadcast_dropped", reference=broadcast.reference, force=True)
    elif not broadcasts.may_broadcast(case):
        say(context, update, "broadcast_not_active", code=case.code, force=True)
    elif users.is_coordinator(context.user):
        await _start(context, broadcast, case)
    else:
        broadcasts.ask_approval(session, broadcast, context.user.id)
        await case_notices.alert_coordinators(session, context.scope.settings.coordinator_chat_id, case,
                                              "alert_broadcast_request", reference=broadcast.reference,
                                              count=broadcast.audience)
        say(context, update, "broadcast_asked", reference=broadcast.reference, name=case.name, force=True)


async def _broadcast_from_args(update: Update, context: ReuniteContext, usage_key: str) -> Broadcast | None:
    """The broadcast named by the first argument, if this person may act on it (a coordinator, or
    whoever asked for it); the same answer whether it does not exist or is not theirs."""
    if not context.args:
        say(context, update, usage_key, force=True)
        return None
    broadcast = await broadcasts.by_reference(context.session, context.args[0])
    if broadcast is None or not (users.is_coordinator(context.user) or broadcast.requested_by == context.user.id):
        say(context, update, "broadcast_not_found", reference=broadcasts.reference_as_typed(context.args[0]),
            force=True)
        return None
    return broadcast


async def _awaiting(update: Update, context: ReuniteContext, usage_key: str) -> tuple[Broadcast, Case] | None:
    broadcast = await _broadcast_from_args(update, context, usage_key)
    if broadcast is None:
        return None
    if broadcast.status != BROADCAST_AWAITING_APPROVAL:
        say(context, update, "broadcast_not_awaiting", reference=broadcast.reference,
            status=_status(context.language, broadcast), force=True)
        return None
    return broadcast, await context.session.get_one(Case, broadcast.case_id)


@coordinators_only
async def approve(update: Update, context: ReuniteContext) -> None:
    """/approve B-XXXXXX: a family's request starts sending; the family sees its progress."""
    found = await _awaiting(update, context, "approve_usage")
    if found is None:
        return
    broadcast, case = found
    if not broadcasts.may_broadcast(case):
        say(context, update, "broadcast_not_active", code=case.code, force=True)
        return
    count = await _start(context, broadcast, case)
    say(context, update, "approve_done", reference=broadcast.reference, count=count, force=True)


@coordinators_only
async def reject(update: Update, context: ReuniteContext) -> None:
    """/reject B-XXXXXX reason: nothing is sent, and the family reads the reason."""
    words = (message_of(update).text or "").split(None, 2)
    if len(words) < 3 or not words[2].strip():
        say(context, update, "reject_usage", force=True)
        return
    found = await _awaiting(update, context, "reject_usage")
    if found is None:
        return
    broadcast, _ = found
    await broadcasts.reject(context.session, broadcast, context.user.id, words[2].strip(), context.scope.now)
    say(context, update, "reject_done", reference=broadcast.reference, force=True)


@from_a_person
async def cancel_broadcast(update: Update, context: ReuniteContext) -> None:
    """/cancel_broadcast B-XXXXXX (a coordinator, or whoever asked for it): nothing more is sent;
    the progress message shows where it stopped, and a family whose request a coordinator
    cancelled is told it was not sent."""
    broadcast = await _broadcast_from_args(update, context, "cancel_broadcast_usage")
    if broadcast is None:
        return
    if broadcast.status not in broadcasts.OPEN_BROADCAST_STATUSES:
        say(context, update, "cancel_broadcast_not_open", reference=broadcast.reference,
            status=_status(context.language, broadcast), force=True)
        return
    await broadcasts.cancel(context.session, broadcast, context.user.id, context.scope.now)
    say(context, update, "cancel_broadcast_done", reference=broadcast.reference, force=True)


@from_a_person
async def list_broadcasts(update: Update, context: ReuniteContext) -> None:
    """/broadcasts: the ten newest (all of them for a coordinator, one's own for a family), each
    with its case, status and how many were sent."""
    language, tz = context.language, context.scope.settings.tz
    requester = None if users.is_coordinator(context.user) else context.user.id
    listed = await broadcasts.recent(context.session, requester)
    if not listed:
        say(context, update, "broadcasts_none", force=True)
        return
    lines = [t(language, "broadcasts_header")]
    lines += [t(language, "broadcasts_line", reference=item.broadcast.reference, code=item.case_code,
                status=_status(language, item.broadcast), sent=item.sent, total=item.broadcast.audience,
                when=item.broadcast.created_at.astimezone(tz).strftime("%m-%d %H:%M")) for item in listed]
    outbox.enqueue_text(context.session, chat_id_of(update), "\n".join(lines))


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("broadcast", broadcast_command))
    add(CommandHandler("approve", approve))
    add(CommandHandler("reject", reject))
    add(CommandHandler("cancel_broadcast", cancel_broadcast))
    add(CommandHandler("broadcasts", list_broadcasts))
    add(CallbackQueryHandler(broadcast_button, pattern=r"^bc\|"))
