"""The console's gate: security headers on every response, the session cookie checked and the role
re-read from the database on every request, a CSRF token on every change, login links redeemed (at
a limited rate per client address), logout. A member of the public, a family or a revoked
coordinator gets nothing: a page sends them to "ask the bot for a link", anything else is a 403.
"""

from __future__ import annotations

import hmac
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from urllib.parse import urlsplit

from aiohttp import web

from bot.console import ConsoleSite
from bot.console.keys import BACKEND, CSRF, DB, FORM, NOW, SESSION_ID, USER, Form
from bot.console.render import page
from bot.services import console_auth

SESSION_COOKIE = "reunite_console"
COOKIE_PATH = "/console"
# routes anyone may open (the login page, the "ask the bot" page, styles and script)
PUBLIC_ROUTES = ("login", "login_open", "ask", "static")
# GET routes that are pages: without a session they redirect; every other route answers 403
PAGE_PREFIX = "page:"
# the ConsoleSite (its backend is attached once the bot runs), and the login limiter
SITE = web.AppKey("console_site", ConsoleSite)
LOGIN_ATTEMPTS = 10
LOGIN_WINDOW_SECONDS = 300.0
MAX_ADDRESSES = 10_000


def tile_origin(tiles_url: str | None) -> str | None:
    """The map's tile server, which the Content-Security-Policy lets images come from."""
    if not tiles_url:
        return None
    parts = urlsplit(tiles_url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(tile_origin: str | None) -> dict[str, str]:
    images = "'self' data:" + (f" {tile_origin}" if tile_origin else "")
    return {
        # no inline script or style at all: console.js and console.css are files of our own
        "Content-Security-Policy": f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
                                   "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


class LoginLimiter:
    """At most LOGIN_ATTEMPTS login attempts per client address in a sliding window (this process)."""

    def __init__(self) -> None:
        self._times: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        if len(self._times) > MAX_ADDRESSES:  # many addresses (a spread attack): forget the quiet ones
            for quiet in [key for key, times in self._times.items() if now - times[-1] > LOGIN_WINDOW_SECONDS]:
                del self._times[quiet]
        times = self._times[address]
        while times and now - times[0] > LOGIN_WINDOW_SECONDS:
            times.popleft()
        if len(times) >= LOGIN_ATTEMPTS:
            return False
        times.append(now)
        return True


LOGIN_LIMITER = web.AppKey("login_limiter", LoginLimiter)


def client_address(request: web.Request) -> str:
    """The client's address; behind a proxy on this host, the hop it appended to X-Forwarded-For
    (the leftmost entries are whatever the client wrote)."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Forwarded-For", "")
    try:
        behind_local_proxy = ip_address(peer).is_loopback
    except ValueError:
        behind_local_proxy = False
    if behind_local_proxy and forwarded:
        return forwarded.split(",")[-1].strip()
    return peer


def _refuse(request: web.Request) -> web.HTTPException:
    route = request.match_info.route.name or ""
    refusal: web.HTTPException
    if request.method == "GET" and route.startswith(PAGE_PREFIX):
        refusal = web.HTTPFound("/console/ask")
    else:
        refusal = web.HTTPForbidden(text="Ask the bot for a new link: /console")
    refusal.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return refusal


def _csrf_ok(request: web.Request, form: Form) -> bool:
    sent = request.headers.get("X-CSRF-Token") or (form.get("csrf") if form else None) or ""
    return hmac.compare_digest(str(sent), console_auth.csrf_token(request[SESSION_ID]))


@web.middleware
async def gate(request: web.Request, handler):
    """One database transaction per request; the session checked (and the role re-read) first."""
    backend = request.app[SITE].backend
    if backend is None:
        raise web.HTTPServiceUnavailable(text="The bot is starting")
    request[BACKEND] = backend
    request[NOW] = now = datetime.now(UTC)
    async with backend.sessionmaker() as db:
        request[DB] = db
        if request.match_info.route.name not in PUBLIC_ROUTES:
            session_id = request.cookies.get(SESSION_COOKIE, "")
            user = await console_auth.current_user(db, session_id, now,
                                                   timedelta(minutes=backend.settings.console_idle_minutes))
            if user is None:
                await db.commit()  # an idle or revoked session is ended for good
                raise _refuse(request)
            request[USER], request[SESSION_ID] = user, session_id
            request[CSRF] = console_auth.csrf_token(session_id)
            if request.method != "GET":
                request[FORM] = form = await request.post()
                if not _csrf_ok(request, form):
                    raise web.HTTPForbidden(text="This form is out of date: reload the page and try again")
        redirect = None
        try:
            response = await handler(request)
        except web.HTTPRedirection as moved:  # post, redirect, get: the change is kept
            response, redirect = None, moved
        await db.commit()
        backend.on_committed(db)
    if redirect is not None:
        raise redirect
    return response


@web.middleware
async def add_headers(request: web.Request, handler):
    """The security headers, on refusals and errors too."""
    backend = request.app[SITE].backend
    fixed = security_headers(tile_origin(backend.settings.map_tiles_url) if backend else None)
    try:
        response = await handler(request)
    except web.HTTPException as error:
        error.headers.update(fixed)
        raise
    response.headers.update(fixed)
    return response


async def ask(request: web.Request) -> web.Response:
    """Where anyone without a session lands: ask the bot for a link."""
    return page(request, "ask.html")


async def login_page(request: web.Request) -> web.Response:
    """The link from the bot opens this page; the button spends the link. (Opening alone spends
    nothing: a chat app's link preview fetches the address too.)"""
    return page(request, "login.html", token=request.query.get("token", "")[:100])


async def login_open(request: web.Request) -> web.Response:
    """Spend a one-time link: a session cookie and the tip queue, or the "ask the bot" page."""
    if not request.app[LOGIN_LIMITER].allow(client_address(request)):
        return page(request, "ask.html", status=429, reason="console_login_too_many")
    form = await request.post()
    opened = await console_auth.redeem(request[DB], str(form.get("token", "")), request[NOW])
    if opened is None:
        return page(request, "ask.html", status=403, reason="console_login_spent")
    secure = (request[BACKEND].settings.console_origin or "").startswith("https:") or request.secure
    response = web.HTTPFound("/console/tips")
    response.set_cookie(SESSION_COOKIE, opened.session_id, path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=secure)
    raise response


async def logout(request: web.Request) -> web.Response:
    await console_auth.end(request[DB], request[SESSION_ID], request[NOW])
    response = web.HTTPFound("/console/ask")
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    raise response
