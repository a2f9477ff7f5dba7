"""What every handler shares: the per-update scope (database session, user, settings), answers that
go through the outbox in the user's language, role checks and signed callback data.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, Message, Update
from telegram.ext import Application, CallbackContext, ExtBot

from bot.config import Settings
from bot.db.models import PRIORITY_ACK, Tip, User
from bot.i18n import t
from bot.services import outbox, users
from bot.transport.scope import UpdateScope, current_scope

#: ``application.bot_data`` key: the review floor now, a callable (the face worker's, bot/app.py)
REVIEW_FLOOR = "review_floor"

T = TypeVar("T")


class MissingPart(LookupError):
    """An update without a part its handler's filters guarantee: a handler registered wrongly, not
    something a person can cause."""


def guaranteed(part: T | None, name: str) -> T:
    """``part`` of the update being handled, which the handler's filters guarantee is there."""
    if part is None:
        raise MissingPart(f"the update has no {name}, which its handler's filters guarantee")
    return part


def chat_id_of(update: Update) -> int:
    """The chat the update came from: every message, button press and membership change has one."""
    return guaranteed(update.effective_chat, "chat").id


def message_of(update: Update) -> Message:
    """The message (new or edited) of an update a MessageHandler or CommandHandler took."""
    return guaranteed(update.effective_message, "message")


def button_of(update: Update) -> CallbackQuery:
    """The button press of an update a CallbackQueryHandler took."""
    return guaranteed(update.callback_query, "button press")


class ReuniteContext(CallbackContext[ExtBot, dict, dict, dict]):
    """PTB's context plus the scope of the update being handled."""

    def __init__(self, application: Application, chat_id: int | None = None, user_id: int | None = None):
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)

    @property
    def scope(self) -> UpdateScope:
        return current_scope.get()

    @property
    def session(self) -> AsyncSession:
        return current_scope.get().session

    @property
    def user(self) -> User:
        """The person who sent the update. A bot or an anonymous group admin is no one we know
        (``scope.user`` is None): a handler that can get their messages is ``from_a_person``, or
        checks ``scope.user`` itself."""
        return guaranteed(current_scope.get().user, "person we know")

    @property
    def language(self) -> str:
        user = current_scope.get().user
        return user.language if user else "en"

    def argument(self, number: int) -> str:
        """The command's word ``number`` (from 0) after the command itself; "" if it has fewer."""
        words = self.args or []
        return words[number] if number < len(words) else ""


def say(context: ReuniteContext, update: Update, key: str, *, reply_markup: dict | None = None,
        tip: Tip | None = None, force: bool = False, **values: object) -> None:
    """Answer the person behind ``update`` with message ``key`` in their language."""
    scope = context.scope
    if scope.quiet and not force:
        return
    text = t(context.language, key, **values)
    outbox.enqueue_text(context.session, chat_id_of(update), text, priority=PRIORITY_ACK,
                        reply_markup=reply_markup, tip=tip)


def emergency_text(context: ReuniteContext) -> str:
    return context.scope.settings.emergency_text or t(context.language, "emergency_default")


Handler = Callable[[Update, ReuniteContext], Coroutine[Any, Any, None]]


def _requires(allowed: Callable[[User], bool], refusal_key: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(update: Update, context: ReuniteContext) -> None:
            user = context.scope.user
            if user is None or not allowed(user):
                say(context, update, refusal_key, force=True)
                return
            await handler(update, context)

        return checked

    return decorate


# The role is checked on every call, buttons included: a role revoked a second ago no longer works.
coordinators_only = _requires(users.is_coordinator, "coordinators_only")
admins_only = _requires(users.is_admin, "admins_only")


def from_a_person(handler: Handler) -> Handler:
    """For a command anyone may send that also works in the coordinator group: there, an anonymous
    admin's or a bot's message has no person we know behind it, and is left unanswered."""

    @functools.wraps(handler)
    async def checked(update: Update, context: ReuniteContext) -> None:
        if context.scope.user is not None:
            await handler(update, context)

    return checked


# Callback data is at most 64 bytes and comes back from the client: we sign what we send and
# check the signature on the way back, so a forged or altered button does nothing.
_SIGNATURE_CHARS = 10


def _signature(secret: str, data: str) -> str:
    return hmac.new(secret.encode(), data.encode(), hashlib.sha256).hexdigest()[:_SIGNATURE_CHARS]


def signing_secret(settings: Settings) -> str:
    return "reunite-callbacks:" + (settings.telegram_bot_token or "")


def sign_callback(settings: Settings, *parts: str) -> str:
    data = "|".join(parts)
    signed = f"{data}|{_signature(signing_secret(settings), data)}"
    if len(signed.encode()) > 64:
        raise ValueError(f"callback data too long: {signed!r}")
    return signed


def verify_callback(settings: Settings, signed: str | None) -> list[str] | None:
    """The parts of signed callback data, or None when it was forged, altered or is not ours."""
    if not signed or "|" not in signed:
        return None
    data, _, signature = signed.rpartition("|")
    if not hmac.compare_digest(signature, _signature(signing_secret(settings), data)):
        return None
    return data.split("|")


def answer_button(context: ReuniteContext, update: Update, key: str | None = None, **values) -> None:
    """Stop the pressed button's spinner on the user's screen, with a short notice if ``key`` is given."""
    payload = {"callback_query_id": button_of(update).id}
    if key:
        payload["text"] = t(context.language, key, **values)
    outbox.enqueue(context.session, chat_id_of(update), "answerCallbackQuery", payload)


def pressed_button(context: ReuniteContext, update: Update) -> list[str] | None:
    """Answer the pressed button; the parts of its signed data, or None when forged or not ours."""
    answer_button(context, update)
    return verify_callback(context.scope.settings, button_of(update).data)


def inline_keyboard(rows: list[list[tuple[str, str]]]) -> dict:
    """Bot API InlineKeyboardMarkup from rows of (label, callback data)."""
    return {"inline_keyboard": [[{"text": label, "callback_data": data} for label, data in row] for row in rows]}
