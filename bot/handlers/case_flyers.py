"""/flyer C-XXXXXX [en|zh|bi]: the poster as a picture to share and as a PDF to print, for
coordinators and the family of that case, once a coordinator has verified it (privacy rule 3).

Rendering happens in the flyer worker process and only when the case changed; an unchanged flyer is
re-sent by Telegram file_id (bot/services/flyer_service.py).
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application, CommandHandler

from bot.db.models import PRIORITY_ACK
from bot.handlers.common import ReuniteContext, chat_id_of, from_a_person, say
from bot.handlers.family import open_case_from_args
from bot.i18n import t
from bot.services import audit, cases, flyer_service, outbox


@from_a_person
async def flyer(update: Update, context: ReuniteContext) -> None:
    """/flyer C-XXXXXX [en|zh|bi]: the poster JPEG with a short caption, then its PDF."""
    case = await open_case_from_args(update, context, "flyer_usage")
    if case is None:
        return
    if case.status != cases.STATUS_ACTIVE:
        say(context, update, "flyer_not_public", code=case.code, force=True)
        return
    lang = context.argument(1).lower() or case.language
    if lang not in flyer_service.FLYER_LANGUAGES:
        say(context, update, "flyer_usage", force=True)
        return
    session, scope = context.session, context.scope
    files = await flyer_service.current_flyers(session, case, lang, media_dir=scope.settings.media_dir,
                                               bot_username=context.bot.username, tz=scope.settings.tz, now=scope.now)
    chat_id = chat_id_of(update)
    outbox.enqueue_photo(session, chat_id, files[flyer_service.POSTER_JPG].sha256,
                         t(context.language, "flyer_caption", name=case.name, code=case.code), priority=PRIORITY_ACK)
    outbox.enqueue_document(session, chat_id, files[flyer_service.POSTER_PDF].sha256,
                            f"{case.code}-poster-{lang}.pdf")
    audit.record(session, context.user.id, "case.flyer", case.code)


def register(application: Application) -> None:
    application.add_handler(CommandHandler("flyer", flyer))
