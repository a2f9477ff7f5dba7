"""What anyone can do: /start, /help, /privacy, /language, and send a tip by simply writing.

A tip is text, a photo, an album, an image sent as a file, or a location, sent privately outside any
other flow. It is committed before the acknowledgement is queued (both in one transaction).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.db.models import PRIORITY_ACK
from bot.handlers import intake
from bot.handlers.common import (
    ReuniteContext,
    answer_button,
    button_of,
    chat_id_of,
    emergency_text,
    guaranteed,
    inline_keyboard,
    message_of,
    pressed_button,
    say,
    sign_callback,
    verify_callback,
)
from bot.i18n import LANGUAGE_NAMES, LANGUAGES, t
from bot.services import alerts, cases, conversation, flyer_service, outbox, tips, users
from bot.services.media import ImageRejected

log = logging.getLogger(__name__)

# Conversation flow names (state lives in the database)
FLOW_CASE_TIP = "case_tip"

# Documents we try to read as images; anything else is answered without downloading
IMAGE_MIME_PREFIX = "image/"


async def start(update: Update, context: ReuniteContext) -> None:
    """Welcome. With a flyer's deep link ``c_<token>``: the next message is a tip about that case."""
    payload = context.args[0] if context.args else ""
    if payload.startswith("c_"):
        await _start_from_flyer(update, context, payload[2:])
        return
    say(context, update, "welcome", emergency=emergency_text(context))


async def _start_from_flyer(update: Update, context: ReuniteContext, token: str) -> None:
    target = await cases.resolve_deep_link(context.session, token)
    if target.state == "active" and target.case is not None:
        case = target.case
        await conversation.put(context.session, context.user.id, FLOW_CASE_TIP, "waiting", {"case_id": case.id})
        intro = t(context.language, "case_tip_intro", name=case.name, code=case.code, emergency=emergency_text(context))
        card = await _case_card(context, case)
        if card is None:
            outbox.enqueue_text(context.session, chat_id_of(update), intro)
        else:  # the card shows whom they are writing about, with the request for the tip as its caption
            outbox.enqueue_photo(context.session, chat_id_of(update), card, intro, priority=PRIORITY_ACK)
    elif target.state == "closed":
        say(context, update, "appeal_closed")
    else:
        say(context, update, "appeal_not_active")


async def case_tip_button(update: Update, context: ReuniteContext) -> None:
    """"I have information" under a broadcast card: like the flyer's QR code, the next message is a
    tip about that case; once the case is closed, it says the appeal is closed."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 2:
        say(context, update, "appeal_not_active")
        return
    await _start_from_flyer(update, context, parts[1])


async def _case_card(context: ReuniteContext, case: cases.Case) -> str | None:
    """The SHA-256 of the case's card in its language (rendered once, then cached); None if it
    cannot be made right now: the tip matters more than the picture."""
    scope = context.scope
    try:
        files = await flyer_service.current_flyers(context.session, case, case.language,
                                                   media_dir=scope.settings.media_dir,
                                                   bot_username=context.bot.username, tz=scope.settings.tz,
                                                   now=scope.now)
    except Exception:  # a renderer failure of any kind must not cost the tip
        log.exception("could not make the card of case %s", case.code)
        return None
    return files[flyer_service.CARD_JPG].sha256


async def help_command(update: Update, context: ReuniteContext) -> None:
    """How to send a tip or report someone missing, the commands a person can use, and what to do if
    someone is in danger."""
    language, chat_id = context.language, chat_id_of(update)
    general = t(language, "help", emergency=emergency_text(context))
    outbox.enqueue_text(context.session, chat_id,
                        f"{general}\n\n{t(language, 'help_subscribe')}\n\n{t(language, 'help_family')} "
                        f"{t(language, 'help_broadcast_family')}")
    if users.is_coordinator(context.user):
        outbox.enqueue_text(context.session, chat_id,
                            f"{t(language, 'help_coordinator')}\n{t(language, 'help_cases_coordinator')}\n"
                            f"{t(language, 'help_broadcasts_coordinator')}")


async def privacy(update: Update, context: ReuniteContext) -> None:
    """What we keep, who sees it, for how long, and that tipsters stay anonymous."""
    say(context, update, "privacy", days=context.scope.settings.tip_retention_days, emergency=emergency_text(context))


async def language(update: Update, context: ReuniteContext) -> None:
    """Buttons to choose English or Simplified Chinese."""
    settings = context.scope.settings
    keyboard = inline_keyboard([[(LANGUAGE_NAMES[code], sign_callback(settings, "lang", code))
                                 for code in LANGUAGES]])
    say(context, update, "language_choose", reply_markup=keyboard)


async def language_chosen(update: Update, context: ReuniteContext) -> None:
    """The user pressed a language button: from now on the bot speaks it."""
    parts = verify_callback(context.scope.settings, button_of(update).data)
    if parts is None or len(parts) != 2 or parts[1] not in LANGUAGES:
        answer_button(context, update, "button_stale")
        return
    users.choose_language(context.user, parts[1])
    answer_button(context, update)
    say(context, update, "language_set")


async def _tip_target(update: Update, context: ReuniteContext) -> tuple[int | None, cases.Case | None]:
    """(tip a Telegram reply points at, case of a pending flyer deep link)."""
    message = message_of(update)
    replied_tip_id = None
    if message.reply_to_message is not None:
        replied_tip_id = await outbox.tip_of_message(context.session, message.chat_id,
                                                     message.reply_to_message.message_id)
    about_case = None
    state = await conversation.get(context.session, context.user.id)
    if state is not None and state.flow == FLOW_CASE_TIP:
        await conversation.clear(context.session, context.user.id)
        about_case = await context.session.get(cases.Case, state.data["case_id"])
        if about_case is not None and about_case.status != cases.STATUS_ACTIVE:
            about_case = None
    return replied_tip_id, about_case


async def _record(update: Update, context: ReuniteContext, content: tips.TipContent) -> None:
    """Keep one tip message, alert coordinators, and acknowledge it (all queued in one transaction)."""
    replied_tip_id, about_case = await _tip_target(update, context)
    scope = context.scope
    result = await tips.add_message(context.session, context.user.id, content, scope.now,
                                    replied_tip_id=replied_tip_id, about_case=about_case)
    answering_team = not result.is_new and result.tip.last_team_reply_at is not None
    await alerts.alert_tip(context.session, scope.settings.coordinator_chat_id, result, answering_team)
    if not result.needs_ack:
        return
    if result.is_new:
        say(context, update, "tip_received", reference=result.tip.reference, tip=result.tip,
            emergency=emergency_text(context))
    else:
        say(context, update, "tip_added", reference=result.tip.reference, tip=result.tip)


async def tip_text(update: Update, context: ReuniteContext) -> None:
    """A written tip. The tipster gets the T- reference (or 'added to T-...')."""
    await _record(update, context, tips.TipContent(kind="text", text=message_of(update).text))


async def tip_location(update: Update, context: ReuniteContext) -> None:
    """A shared location becomes part of the tip."""
    location = guaranteed(message_of(update).location, "location")
    await _record(update, context, tips.TipContent(kind="location", latitude=location.latitude,
                                                   longitude=location.longitude))


async def tip_edited(update: Update, context: ReuniteContext) -> None:
    """An edited message: the new wording is added to the tip (the first wording stays too)."""
    message = guaranteed(update.edited_message, "edited message")
    text = message.text or message.caption
    if not text:
        return
    await _record(update, context, tips.TipContent(kind="edit", text=text))


async def tip_photo(update: Update, context: ReuniteContext) -> None:
    """A photo (or one photo of an album): downloaded, checked, stripped and stored with the tip."""
    message = message_of(update)
    await _record_image(update, context, message.photo[-1].file_id, message.photo[-1].file_size, from_photo=True)


async def tip_image_file(update: Update, context: ReuniteContext) -> None:
    """An image sent as a file keeps its EXIF: the capture time and GPS are read, then stripped (and
    the image encoded afresh, so the camera's own quantisation tables go too)."""
    document = guaranteed(message_of(update).document, "document")
    await _record_image(update, context, document.file_id, document.file_size, from_photo=False)


async def _record_image(update: Update, context: ReuniteContext, file_id: str, file_size: int | None, *,
                        from_photo: bool) -> None:
    """An image refused (too large, unreadable, over the daily quota) is answered plainly; its caption
    is still kept as the tip's words."""
    message = message_of(update)
    try:
        stored = await intake.fetch_and_store(context, file_id, file_size, from_photo=from_photo)
    except ImageRejected as rejected:
        say(context, update, rejected.reason, force=True)
        if message.caption:
            await _record(update, context, tips.TipContent(kind="text", text=message.caption,
                                                           media_group_id=message.media_group_id))
        return
    await _record(update, context, tips.TipContent(kind="photo", text=message.caption, image=stored,
                                                   media_group_id=message.media_group_id))


async def not_an_image(update: Update, context: ReuniteContext) -> None:
    """A document that is not an image: we cannot read it, and say so."""
    say(context, update, "document_not_image", force=True)


async def unsupported(update: Update, context: ReuniteContext) -> None:
    """Stickers, voice, video, GIFs, contacts, polls...: ask for words, photos or a location instead."""
    say(context, update, "unsupported_content", force=True)


async def unknown_command(update: Update, context: ReuniteContext) -> None:
    say(context, update, "unknown_command", force=True)


async def stale_button(update: Update, context: ReuniteContext) -> None:
    """A button we do not know (forged, or from an old version): a short notice, nothing else."""
    answer_button(context, update, "button_stale")


async def chat_member_changed(update: Update, context: ReuniteContext) -> None:
    """A user blocked the bot (status 'kicked'): stop sending to them until they write again."""
    change = guaranteed(update.my_chat_member, "membership change")
    if change.chat.type == "private" and change.new_chat_member.status in ("kicked", "left"):
        await users.mark_blocked(context.session, change.chat.id)


def register(application: Application) -> None:
    private = filters.ChatType.PRIVATE
    add = application.add_handler
    add(CommandHandler("start", start, filters=private))
    add(CommandHandler("help", help_command, filters=private))
    add(CommandHandler("privacy", privacy, filters=private))
    add(CommandHandler("language", language, filters=private))
    add(CallbackQueryHandler(language_chosen, pattern=r"^lang\|"))
    add(CallbackQueryHandler(case_tip_button, pattern=r"^ct\|"))
    add(MessageHandler(private & filters.COMMAND, unknown_command))
    add(MessageHandler(private & filters.UpdateType.EDITED_MESSAGE, tip_edited))
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.TEXT, tip_text))
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.PHOTO, tip_photo))
    # a GIF arrives as an animation that also carries a document: answer it as unsupported
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.ANIMATION, unsupported))
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.Document.IMAGE, tip_image_file))
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.Document.ALL, not_an_image))
    add(MessageHandler(private & filters.UpdateType.MESSAGE & filters.LOCATION, tip_location))
    add(MessageHandler(private & filters.UpdateType.MESSAGE, unsupported))
    add(CallbackQueryHandler(stale_button))
    add(ChatMemberHandler(chat_member_changed, ChatMemberHandler.MY_CHAT_MEMBER))
