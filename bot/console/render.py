"""Pages from Jinja2 templates (autoescaped, strict) in the coordinator's language."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import jinja2
from aiohttp import web

from bot.console.keys import BACKEND, CSRF, USER
from bot.i18n import DEFAULT_LANGUAGE, language_from_telegram, t
from bot.services import users

TEMPLATES_DIR = Path(__file__).parent / "templates"
HTML_LANG = {"en": "en", "zh": "zh-Hans"}

ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,  # tips are whatever anyone typed
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def language_of(request: web.Request) -> str:
    """The coordinator's language (their user row); before login, the browser's."""
    user = request.get(USER)
    if user is not None:
        return user.language
    accepted = request.headers.get("Accept-Language", "")
    return language_from_telegram(accepted.split(",")[0].strip()) if accepted else DEFAULT_LANGUAGE


def _when(tz, moment: datetime | None, with_time: bool = True) -> str:
    if moment is None:
        return ""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def render(request: web.Request, template: str, **values) -> str:
    language = language_of(request)
    user = request.get(USER)
    return ENV.get_template(template).render(
        _=functools.partial(t, language), lang=language, html_lang=HTML_LANG.get(language, "en"),
        user=user, is_admin=user is not None and users.is_admin(user), csrf=request.get(CSRF, ""),
        when=functools.partial(_when, request[BACKEND].settings.tz), path=request.path,
        here=request.path_qs, **values)


def page(request: web.Request, template: str, *, status: int = 200, **values) -> web.Response:
    return web.Response(text=render(request, template, **values), status=status, content_type="text/html")
