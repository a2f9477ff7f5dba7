"""Where the bot speaks: private chats, and the coordinator group (REUNITE_COORDINATOR_CHAT_ID).

Every update passes here first. One from any other group or supergroup goes no further: the bot says
once, in one line, that it works in private chats only, and leaves. So a coordinator's command typed
in the wrong group (/tip, /case, /stats..., or a button of ours pressed there) reveals nothing, whatever
handler it was meant for, and a group the bot is added to never becomes a second audience for tips.
Membership of the coordinator group itself is access to every tip: the README says so.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, TypeHandler

from bot.handlers.common import ReuniteContext, say
from bot.services import outbox

# before every other handler group (the rate limit's is -10, conversations' -2 and -1): PTB runs the
# first matching handler of each group, and this one matches every update
GUARD_GROUP = -20
GROUP_CHATS = ("group", "supergroup")
GONE = ("left", "kicked")


async def outside_our_chats(update: Update, context: ReuniteContext) -> None:
    """A message, button or membership change in a group other than the coordinators': the group reads
    one line saying the bot works in private chats only (once, however many messages came), and the
    bot leaves; nothing else is answered there. That the bot has left is taken in silence."""
    chat = update.effective_chat
    if chat is None or chat.type not in GROUP_CHATS or chat.id == context.scope.settings.coordinator_chat_id:
        return
    change = update.my_chat_member
    gone = change is not None and change.new_chat_member.status in GONE
    if not gone and not await outbox.leaving(context.session, chat.id):
        say(context, update, "private_chats_only", force=True)
        outbox.enqueue(context.session, chat.id, outbox.LEAVE_CHAT, {})
    raise ApplicationHandlerStop


def register(application: Application) -> None:
    application.add_handler(TypeHandler(Update, outside_our_chats), group=GUARD_GROUP)
