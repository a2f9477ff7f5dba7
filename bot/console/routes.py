"""The console's aiohttp application: its middlewares and every route, by area."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bot.console import auth, cases_pages, changes_pages, files, leads_pages, overview_pages, tips_pages

STATIC_DIR = Path(__file__).parent / "static"


async def home(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/tips")


def build_app(site) -> web.Application:
    # add_headers outermost: refusals from the gate carry the headers too
    app = web.Application(middlewares=[auth.add_headers, auth.gate])
    app[auth.SITE] = site
    app[auth.LOGIN_LIMITER] = auth.LoginLimiter()
    router = app.router
    router.add_get("/ask", auth.ask, name="ask")
    router.add_get("/login", auth.login_page, name="login")
    router.add_post("/login", auth.login_open, name="login_open")
    router.add_post("/logout", auth.logout, name="logout")
    router.add_get("/", home, name="page:home")
    router.add_static("/static/", STATIC_DIR, name="static")
    for area in (tips_pages, leads_pages, cases_pages, changes_pages, overview_pages, files):
        area.add_routes(router)
    return app
