"""What the gate (bot/console/auth.py) puts on each request for the pages."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession

from bot.console import ConsoleBackend
from bot.db.models import User

# a POST's fields, as aiohttp reads them (a multipart form's files among them)
Form = MultiDictProxy[str | bytes | bytearray | web.FileField]

BACKEND = web.RequestKey("backend", ConsoleBackend)
DB = web.RequestKey("db", AsyncSession)  # this request's one transaction
NOW = web.RequestKey("now", datetime)
USER = web.RequestKey("user", User)  # the coordinator, re-read from the database
SESSION_ID = web.RequestKey("session_id", str)
CSRF = web.RequestKey("csrf", str)
FORM: web.RequestKey[Form] = web.RequestKey("form")  # read by the gate, before the CSRF check
