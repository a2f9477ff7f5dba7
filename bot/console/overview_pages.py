"""The map (last-seen places of open cases, where tips put someone), statistics over time, and the
audit log (admins only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aiohttp import web

from bot.console.forms import case_from_query, day_range, page_number
from bot.console.keys import BACKEND, DB, NOW, USER
from bot.console.render import page
from bot.services import audit, cases, console_stats, tip_queue, users

MAP_WIDTH, MAP_HEIGHT = 960, 600
TILE = 256
MAX_ZOOM = 16
STATS_WEEKS = 12
STATS_DAYS = 7 * STATS_WEEKS  # the weeks, the last partly
AUDIT_PAGE_SIZE = 50


def _mercator(latitude: float, longitude: float) -> tuple[float, float]:
    """Web Mercator on the unit square (what tile servers use)."""
    latitude = max(-85.0, min(85.0, latitude))
    sine = math.sin(math.radians(latitude))
    return (longitude + 180) / 360, 0.5 - math.log((1 + sine) / (1 - sine)) / (4 * math.pi)


@dataclass(frozen=True)
class MapView:
    zoom: int
    left: float  # world pixels at ``zoom`` of the view's top-left corner
    top: float

    def point(self, latitude: float, longitude: float) -> tuple[float, float]:
        x, y = _mercator(latitude, longitude)
        scale = TILE * 2 ** self.zoom
        return round(x * scale - self.left, 1), round(y * scale - self.top, 1)

    def tiles(self, url: str) -> list[tuple[str, int, int]]:
        """(address, x, y) of the tiles that cover the view."""
        count = 2 ** self.zoom
        found = []
        for tile_y in range(max(0, int(self.top // TILE)), min(count, int((self.top + MAP_HEIGHT) // TILE) + 1)):
            for tile_x in range(int(self.left // TILE), int((self.left + MAP_WIDTH) // TILE) + 1):
                address = url.format(z=self.zoom, x=tile_x % count, y=tile_y)
                found.append((address, round(tile_x * TILE - self.left), round(tile_y * TILE - self.top)))
        return found


def fit(points: list[tuple[float, float]]) -> MapView:
    """The closest view that shows every (latitude, longitude) with a margin."""
    if not points:
        points = [(0.0, 0.0)]
    projected = [_mercator(*point) for point in points]
    xs, ys = [x for x, _ in projected], [y for _, y in projected]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    zoom = MAX_ZOOM
    while zoom > 1 and (span_x * TILE * 2 ** zoom > MAP_WIDTH * 0.8 or span_y * TILE * 2 ** zoom > MAP_HEIGHT * 0.8):
        zoom -= 1
    scale = TILE * 2 ** zoom
    centre_x, centre_y = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return MapView(zoom, centre_x * scale - MAP_WIDTH / 2, centre_y * scale - MAP_HEIGHT / 2)


async def map_page(request: web.Request) -> web.Response:
    db, settings = request[DB], request[BACKEND].settings
    case, typed_case = await case_from_query(request)
    since, until, days = day_range(request)
    case_id = case.id if case else None
    places = await console_stats.last_seen_places(db, case_id)
    tip_places = await tip_queue.places(db, case_id=case_id, since=since, until=until)
    view = fit([(p.latitude, p.longitude) for p in places] + [(p.latitude, p.longitude) for p in tip_places])
    audit.record(db, request[USER].id, "console.map", case.code if case else None)
    return page(request, "map.html", view=view, width=MAP_WIDTH, height=MAP_HEIGHT, places=places,
                tip_places=tip_places, typed_case=typed_case, days=days,
                tiles=view.tiles(settings.map_tiles_url) if settings.map_tiles_url else [])


async def stats_page(request: web.Request) -> web.Response:
    db, settings, now = request[DB], request[BACKEND].settings, request[NOW]
    counts = await cases.stats(db, settings.tz, now, STATS_DAYS)
    audit.record(db, request[USER].id, "stats.view")
    return page(request, "stats.html", counts=counts, case_statuses=cases.STATUSES,
                recent_days=counts.tips_by_day[-30:],
                weeks=console_stats.by_week(counts.tips_by_day)[-STATS_WEEKS:],
                leads=await console_stats.confirmed_leads_by_week(db, settings.tz, now, STATS_WEEKS))


async def audit_page(request: web.Request) -> web.Response:
    if not users.is_admin(request[USER]):
        raise web.HTTPForbidden(text="For admins only")
    number = page_number(request)
    found = await console_stats.audit_page(request[DB], offset=(number - 1) * AUDIT_PAGE_SIZE,
                                           limit=AUDIT_PAGE_SIZE)
    audit.record(request[DB], request[USER].id, "audit.view")
    return page(request, "audit.html", found=found, number=number, page_size=AUDIT_PAGE_SIZE)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/map", map_page, name="page:map")
    router.add_get("/stats", stats_page, name="page:stats")
    router.add_get("/audit", audit_page, name="page:audit")
