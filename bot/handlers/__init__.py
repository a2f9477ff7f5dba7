"""Thin PTB handlers: parse the update, call a service, queue the answer. One module per role."""

from telegram.ext import Application

from bot.handlers import coordinator, public


def register(application: Application) -> None:
    coordinator.register(application)
    public.register(application)
