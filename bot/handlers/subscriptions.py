"""Alerts near me (DESIGN flow 6): /subscribe, /subscriptions, /unsubscribe.

/subscribe is a short conversation kept in the database: a place (Telegram's "share location"
button, or the name of a region the organisation configured), then for a shared place a radius
(5, 25 or 100 km), then which appeals (children only, or all). Each answer is a button, so a
stale button (an earlier question's) is answered as such.
"""

from __future__ import annotations

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.db.models import Subscriber
from bot.handlers.common import ReuniteContext, chat_id_of, inline_keyboard, pressed_button, say, sign_callback
from bot.i18n import t
from bot.services import conversation, outbox, subscriptions

FLOW_SUBSCRIBE = "subscribe"
STEP_AREA = "area"  # waiting for a shared location or a region's name
STEP_RADIUS = "radius"  # a location came: waiting for the radius button
STEP_WHICH = "which"  # waiting for the children-only / all button
# answers within /subscribe are read before the report conversation's and the tip handlers
SUBSCRIBE_GROUP = -2
WHICH_CHOICES = ("children", "all")


def _region_names(context: ReuniteContext) -> str:
    return ", ".join(region.name for region in context.scope.settings.regions)


def _area_text(language: str, area: Subscriber) -> str:
    where = (t(language, "area_region", region=area.region) if area.region is not None
             else t(language, "area_point", km=f"{area.radius_km:g}", lat=f"{area.latitude:.3f}",
                    lon=f"{area.longitude:.3f}"))
    return f"{where} · {t(language, 'which_children' if area.children_only else 'which_all')}"


def _ask_which(update: Update, context: ReuniteContext) -> None:
    settings, language = context.scope.settings, context.language
    keyboard = inline_keyboard([[(t(language, f"button_which_{choice}"), sign_callback(settings, "sub", "w", choice))
                                 for choice in WHICH_CHOICES]])
    say(context, update, "subscribe_ask_which", reply_markup=keyboard, force=True)


async def subscribe(update: Update, context: ReuniteContext) -> None:
    """/subscribe: "Share my location" under the message (Telegram's location button), and the
    regions one may type instead, if the organisation configured any. Someone in the middle of
    another conversation (a report) is asked to finish or /cancel it first: nothing of it is lost."""
    state = await conversation.get(context.session, context.user.id)
    if state is not None and state.flow != FLOW_SUBSCRIBE:
        say(context, update, "subscribe_finish_first", force=True)
        return
    await conversation.put(context.session, context.user.id, FLOW_SUBSCRIBE, STEP_AREA, {})
    language = context.language
    keyboard = {"keyboard": [[{"text": t(language, "button_share_location"), "request_location": True}]],
                "resize_keyboard": True, "one_time_keyboard": True}
    regions = _region_names(context)
    text = t(language, "subscribe_ask_area")
    if regions:
        text += "\n\n" + t(language, "subscribe_regions", regions=regions)
    outbox.enqueue_text(context.session, chat_id_of(update), text, reply_markup=keyboard)


async def subscribe_answer(update: Update, context: ReuniteContext) -> None:
    """A message during /subscribe: a shared location brings the radius buttons, a region's name
    the choice of appeals; anything else is asked for again. Outside /subscribe this does nothing."""
    user = context.scope.user
    state = await conversation.get(context.session, user.id) if user else None
    if state is None or state.flow != FLOW_SUBSCRIBE:
        return
    message = update.effective_message
    settings, language = context.scope.settings, context.language
    if state.step != STEP_AREA:
        say(context, update, "subscribe_press_button", force=True)
    elif message is not None and message.location is not None:
        await conversation.put(context.session, context.user.id, FLOW_SUBSCRIBE, STEP_RADIUS,
                               {"lat": message.location.latitude, "lon": message.location.longitude})
        keyboard = inline_keyboard([[(t(language, "button_radius", km=km), sign_callback(settings, "sub", "r", str(km)))
                                     for km in subscriptions.RADII_KM]])
        say(context, update, "subscribe_ask_radius", reply_markup=keyboard, force=True)
    elif message is not None and message.text:
        region = subscriptions.find_region(settings.regions, message.text)
        if region is None:
            key = "subscribe_region_unknown" if settings.regions else "subscribe_need_location"
            say(context, update, key, text=message.text[:40], regions=_region_names(context), force=True)
        else:
            await conversation.put(context.session, context.user.id, FLOW_SUBSCRIBE, STEP_WHICH,
                                   {"region": region.name})
            _ask_which(update, context)
    else:
        say(context, update, "subscribe_need_location", force=True)
    raise ApplicationHandlerStop


async def subscribe_button(update: Update, context: ReuniteContext) -> None:
    """A radius button (then the choice of appeals) or a children-only / all button (the area is
    saved and described back)."""
    parts = pressed_button(context, update) or []
    state = await conversation.get(context.session, context.user.id)
    expected_step = {"r": STEP_RADIUS, "w": STEP_WHICH}.get(parts[1]) if len(parts) == 3 else None
    if expected_step is None or state is None or state.flow != FLOW_SUBSCRIBE or state.step != expected_step:
        say(context, update, "conversation_button_stale", force=True)
        return
    if expected_step == STEP_RADIUS:
        if not parts[2].isdigit() or int(parts[2]) not in subscriptions.RADII_KM:
            say(context, update, "conversation_button_stale", force=True)
            return
        await conversation.put(context.session, context.user.id, FLOW_SUBSCRIBE, STEP_WHICH,
                               {**state.data, "radius_km": int(parts[2])})
        _ask_which(update, context)
        return
    if parts[2] not in WHICH_CHOICES:
        say(context, update, "conversation_button_stale", force=True)
        return
    await _save(update, context, state.data, children_only=parts[2] == "children")


async def _save(update: Update, context: ReuniteContext, data: dict, children_only: bool) -> None:
    session, settings, now = context.session, context.scope.settings, context.scope.now
    region = subscriptions.find_region(settings.regions, data["region"]) if "region" in data else None
    if region is not None:
        area = subscriptions.add_region(session, context.user.id, region, children_only, now)
    elif "lat" in data:
        area = subscriptions.add_point(session, context.user.id, data["lat"], data["lon"], data["radius_km"],
                                       children_only, now)
    else:  # the region was taken out of the configuration meanwhile
        await conversation.clear(session, context.user.id)
        say(context, update, "subscribe_need_location", force=True)
        return
    await conversation.clear(session, context.user.id)
    say(context, update, "subscribe_done", area=_area_text(context.language, area), force=True)


async def list_subscriptions(update: Update, context: ReuniteContext) -> None:
    """/subscriptions: each of one's areas, numbered, with how to remove them."""
    areas = await subscriptions.areas_of(context.session, context.user.id)
    if not areas:
        say(context, update, "subscriptions_none", force=True)
        return
    lines = "\n".join(f"{number}. {_area_text(context.language, area)}" for number, area in enumerate(areas, 1))
    say(context, update, "subscriptions_list", lines=lines, force=True)


async def unsubscribe(update: Update, context: ReuniteContext) -> None:
    """/unsubscribe N, /unsubscribe all, or /unsubscribe alone: a button per area and one for all."""
    session, settings, language = context.session, context.scope.settings, context.language
    areas = await subscriptions.areas_of(session, context.user.id)
    if not areas:
        say(context, update, "subscriptions_none", force=True)
        return
    word = context.args[0].lower() if context.args else ""
    if word == "all":
        await _remove(update, context, [area.id for area in areas], len(areas))
    elif word.isdigit() and 1 <= int(word) <= len(areas):
        await _remove(update, context, [areas[int(word) - 1].id], len(areas))
    elif word:
        say(context, update, "unsubscribe_usage", force=True)
    else:
        buttons = [(str(number), sign_callback(settings, "unsub", str(area.id)))
                   for number, area in enumerate(areas, 1)]
        rows = [buttons[n:n + 5] for n in range(0, len(buttons), 5)]
        rows.append([(t(language, "button_unsubscribe_all"), sign_callback(settings, "unsub", "all"))])
        lines = "\n".join(f"{number}. {_area_text(language, area)}" for number, area in enumerate(areas, 1))
        say(context, update, "unsubscribe_choose", lines=lines, reply_markup=inline_keyboard(rows), force=True)


async def unsubscribe_button(update: Update, context: ReuniteContext) -> None:
    """A button under /unsubscribe: that area (or all) is removed."""
    parts = pressed_button(context, update)
    areas = await subscriptions.areas_of(context.session, context.user.id)
    if parts is None or len(parts) != 2:
        say(context, update, "conversation_button_stale", force=True)
    elif parts[1] == "all":
        await _remove(update, context, [area.id for area in areas], len(areas))
    elif parts[1].isdigit() and int(parts[1]) in {area.id for area in areas}:
        await _remove(update, context, [int(parts[1])], len(areas))
    else:  # already removed
        say(context, update, "conversation_button_stale", force=True)


async def _remove(update: Update, context: ReuniteContext, area_ids: list[int], had: int) -> None:
    removed = await subscriptions.remove(context.session, context.user.id, area_ids)
    left = had - removed
    if left:
        say(context, update, "unsubscribe_done", count=left, force=True)
    else:
        say(context, update, "unsubscribe_all_done", force=True)


def register(application: Application) -> None:
    private = filters.ChatType.PRIVATE
    add = application.add_handler
    add(CommandHandler("subscribe", subscribe, filters=private))
    add(CommandHandler("subscriptions", list_subscriptions, filters=private))
    add(CommandHandler("unsubscribe", unsubscribe, filters=private))
    add(CallbackQueryHandler(subscribe_button, pattern=r"^sub\|"))
    add(CallbackQueryHandler(unsubscribe_button, pattern=r"^unsub\|"))
    add(MessageHandler(private & ~filters.COMMAND & filters.UpdateType.MESSAGE, subscribe_answer),
        group=SUBSCRIBE_GROUP)
