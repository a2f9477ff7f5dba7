"""What the gate (bot/console/auth.py) puts on each request for the pages."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import User

BACKEND = web.RequestKey("backend", object)  # the ConsoleBackend
DB = web.RequestKey("db", AsyncSession)  # this request's one transaction
NOW = web.RequestKey("now", datetime)
USER = web.RequestKey("user", User)  # the coordinator, re-read from the database
SESSION_ID = web.RequestKey("session_id", str)
CSRF = web.RequestKey("csrf", str)
FORM = web.RequestKey("form", object)  # a POST's fields, already read
