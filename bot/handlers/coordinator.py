"""The coordinator console: /tips, /tip, /mark, /reply, /grant, /revoke, /whoami.

Every command checks the caller's role on every call, including button presses; every action is
audited with ids only. Tipsters appear only as a tip reference and a random alias.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler

from bot.db.models import PRIORITY_ACK, PRIORITY_ALERT, ROLE_ADMIN, ROLE_COORDINATOR, ROLE_PUBLIC
from bot.handlers.common import (
    ReuniteContext,
    admins_only,
    chat_id_of,
    coordinators_only,
    from_a_person,
    inline_keyboard,
    message_of,
    pressed_button,
    say,
    sign_callback,
)
from bot.i18n import t
from bot.services import alerts, audit, cases, outbox, tips, users
from bot.services.outbox import clip

TIPS_PAGE_SIZE = 10
PREVIEW_CHARS = 70


@from_a_person
async def whoami(update: Update, context: ReuniteContext) -> None:
    """Your Telegram user id (an admin needs it to /grant you a role) and your role."""
    user = context.user
    say(context, update, "whoami", user_id=user.id, role=t(context.language, f"role_{user.role}"), force=True)


async def _target_user_id(update: Update, context: ReuniteContext, usage_key: str) -> int | None:
    if not context.args or not context.args[0].lstrip("-").isdigit():
        say(context, update, usage_key, force=True)
        return None
    return int(context.args[0])


@admins_only
async def grant(update: Update, context: ReuniteContext) -> None:
    """/grant USER_ID coordinator|admin"""
    target_id = await _target_user_id(update, context, "grant_usage")
    if target_id is None:
        return
    role = context.argument(1).lower()
    if role not in (ROLE_COORDINATOR, ROLE_ADMIN):
        say(context, update, "grant_usage", force=True)
        return
    target = await users.set_role(context.session, context.user, target_id, role)
    say(context, update, "grant_done", user_id=target_id, role=t(context.language, f"role_{role}"), force=True)
    outbox.enqueue_text(context.session, target_id, t(target.language, "granted_you",
                                                       role=t(target.language, f"role_{role}")))


@admins_only
async def revoke(update: Update, context: ReuniteContext) -> None:
    """/revoke USER_ID: back to a member of the public."""
    target_id = await _target_user_id(update, context, "revoke_usage")
    if target_id is None:
        return
    if target_id in context.scope.settings.admins:
        say(context, update, "revoke_env_admin", user_id=target_id, force=True)
        return
    await users.set_role(context.session, context.user, target_id, ROLE_PUBLIC)
    say(context, update, "revoke_done", user_id=target_id, force=True)


async def _send_tips_page(update: Update, context: ReuniteContext, offset: int, case_code: str | None) -> None:
    session, language, settings = context.session, context.language, context.scope.settings
    case = await cases.by_code(session, case_code) if case_code else None
    if case_code and case is None:
        say(context, update, "case_not_found", code=case_code, force=True)
        return
    page = await tips.recent(session, offset=offset, limit=TIPS_PAGE_SIZE, case=case)
    if page.total == 0:
        say(context, update, "tips_none", force=True)
        return
    lines = [t(language, "tips_header", first=offset + 1, last=offset + len(page.tips), total=page.total)]
    for tip, code in page.tips:
        preview = clip(tips.first_text(tip).replace("\n", " "), PREVIEW_CHARS)
        photos = f" 📷{len(tip.media)}" if tip.media else ""
        about = f" · {code}" if code else ""
        lines.append(f"{tip.reference} · {t(language, 'tip_status_' + tip.status)}{about}"
                     f" · {tip.created_at.astimezone(settings.tz).strftime('%m-%d %H:%M')}{photos}\n   {preview}")
    lines.append(t(language, "tips_footer"))
    buttons = []
    if offset + TIPS_PAGE_SIZE < page.total:
        buttons.append((t(language, "tips_older"),
                        sign_callback(settings, "tips", str(offset + TIPS_PAGE_SIZE), case.code if case else "")))
    keyboard = inline_keyboard([buttons]) if buttons else None
    outbox.enqueue_text(session, chat_id_of(update), "\n".join(lines), priority=PRIORITY_ACK,
                        reply_markup=keyboard)
    audit.record(session, context.user.id, "tips.list", case.code if case else None)


@coordinators_only
async def tips_command(update: Update, context: ReuniteContext) -> None:
    """/tips [C-XXXXXX]: the newest tips (or a case's), ten at a time, with a button for older ones."""
    await _send_tips_page(update, context, 0, context.args[0] if context.args else None)


@coordinators_only
async def tips_page(update: Update, context: ReuniteContext) -> None:
    """The 'Older' button under a /tips list."""
    parts = pressed_button(context, update)
    if parts is None or len(parts) != 3 or not parts[1].isdigit():
        return
    await _send_tips_page(update, context, int(parts[1]), parts[2] or None)


async def _tip_from_args(update: Update, context: ReuniteContext, usage_key: str):
    if not context.args:
        say(context, update, usage_key, force=True)
        return None
    tip = await tips.by_reference(context.session, context.args[0])
    if tip is None:
        say(context, update, "tip_not_found", reference=context.args[0][:20], force=True)
    return tip


@coordinators_only
async def tip_command(update: Update, context: ReuniteContext) -> None:
    """/tip T-XXXX-XXXX: the whole tip, every message and reply, then its photos (stripped copies)."""
    tip = await _tip_from_args(update, context, "tip_usage")
    if tip is None:
        return
    session, language, chat_id = context.session, context.language, chat_id_of(update)
    case = await session.get(cases.Case, tip.case_id) if tip.case_id else None
    text = "\n".join(alerts.tip_summary_lines(language, tip, case.code if case else None,
                                              context.scope.settings.tz))
    outbox.enqueue_text(session, chat_id, text + "\n\n" + t(language, "alert_reply_hint", reference=tip.reference),
                        priority=PRIORITY_ACK)
    for number, media in enumerate(tip.media, start=1):
        outbox.enqueue_photo(session, chat_id, media.sha256,
                             t(language, "tip_photo_caption", reference=tip.reference, number=number,
                               count=len(tip.media)),
                             priority=PRIORITY_ALERT, album_key=f"{tip.reference}:view")
    audit.record(session, context.user.id, "tip.view", tip.reference)


@coordinators_only
async def mark(update: Update, context: ReuniteContext) -> None:
    """/mark T-XXXX-XXXX useful|dismissed"""
    tip = await _tip_from_args(update, context, "mark_usage")
    if tip is None:
        return
    status = context.argument(1).lower()
    if status not in tips.TIP_STATUSES:
        say(context, update, "mark_usage", force=True)
        return
    tips.mark(context.session, context.user.id, tip, status)
    say(context, update, "mark_done", reference=tip.reference,
        status=t(context.language, f"tip_status_{status}"), force=True)


@coordinators_only
async def reply(update: Update, context: ReuniteContext) -> None:
    """/reply T-XXXX-XXXX text: the tipster gets it from 'the Reunite team', never from you."""
    tip = await _tip_from_args(update, context, "reply_usage")
    if tip is None:
        return
    text = (message_of(update).text or "").split(None, 2)
    if len(text) < 3 or not text[2].strip():
        say(context, update, "reply_usage", force=True)
        return
    await tips.reply_to_tipster(context.session, context.user.id, tip, text[2].strip(), context.scope.now)
    say(context, update, "reply_sent", reference=tip.reference, force=True)


def register(application: Application) -> None:
    add = application.add_handler
    add(CommandHandler("whoami", whoami))
    add(CommandHandler("grant", grant))
    add(CommandHandler("revoke", revoke))
    add(CommandHandler("tips", tips_command))
    add(CommandHandler("tip", tip_command))
    add(CommandHandler("mark", mark))
    add(CommandHandler("reply", reply))
    add(CallbackQueryHandler(tips_page, pattern=r"^tips\|"))
