"""Thin PTB handlers: parse the update, call a service, queue the answer. One module per role."""

from telegram.ext import Application

from bot.handlers import (
    broadcasts,
    case_changes,
    case_flyers,
    cases_console,
    chats,
    console_link,
    coordinator,
    family,
    matches,
    public,
    rate_limit,
    shortlist,
    subscriptions,
)


def register(application: Application, user_rate_limit: int) -> None:
    chats.register(application)  # first: updates from groups other than the coordinators' go no further
    rate_limit.register(application, user_rate_limit)
    coordinator.register(application)
    console_link.register(application)
    # before public.py, whose catch-alls answer unknown commands and buttons
    family.register(application)
    cases_console.register(application)
    case_changes.register(application)
    case_flyers.register(application)
    matches.register(application)
    shortlist.register(application)
    broadcasts.register(application)
    subscriptions.register(application)
    public.register(application)
