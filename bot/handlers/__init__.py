"""Thin PTB handlers: parse the update, call a service, queue the answer. One module per role."""

from telegram.ext import Application

from bot.handlers import (
    broadcasts,
    case_changes,
    case_flyers,
    cases_console,
    chats,
    coordinator,
    family,
    matches,
    public,
    subscriptions,
)


def register(application: Application) -> None:
    chats.register(application)  # first: updates from groups other than the coordinators' go no further
    coordinator.register(application)
    # before public.py, whose catch-alls answer unknown commands and buttons
    family.register(application)
    cases_console.register(application)
    case_changes.register(application)
    case_flyers.register(application)
    matches.register(application)
    broadcasts.register(application)
    subscriptions.register(application)
    public.register(application)
