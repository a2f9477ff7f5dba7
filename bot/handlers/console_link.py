"""/console: a coordinator's one-time link to the coordinators' console in a browser."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler, filters

from bot.handlers.common import ReuniteContext, say
from bot.services import console_auth, users


async def console_command(update: Update, context: ReuniteContext) -> None:
    """A coordinator or admin, in a private chat, gets a link that opens the console once within ten
    minutes; anyone else gets the answer to a command we do not know."""
    user = context.scope.user
    if user is None or not users.is_coordinator(user):
        say(context, update, "unknown_command", force=True)
        return
    origin = context.scope.settings.console_origin
    if origin is None:
        say(context, update, "console_not_set_up", force=True)
        return
    token = console_auth.issue_login_token(context.session, user, context.scope.now)
    say(context, update, "console_link", url=f"{origin}/console/login?token={token}",
        minutes=int(console_auth.LINK_LIFETIME.total_seconds() // 60), force=True)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("console", console_command, filters=filters.ChatType.PRIVATE))
