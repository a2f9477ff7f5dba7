"""What the console's pages read from a query string or a form, checked."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from aiohttp import web

from bot.console.keys import BACKEND, DB, FORM
from bot.services import cases


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def day_range(request: web.Request) -> tuple[datetime | None, datetime | None, dict]:
    """The ?from= and ?to= days (inclusive, in the organisation's zone) as times, and as typed."""
    tz = request[BACKEND].settings.tz
    first, last = _day(request.query.get("from")), _day(request.query.get("to"))
    since = datetime.combine(first, datetime.min.time(), tz) if first else None
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz) if last else None
    return since, until, {"from": first.isoformat() if first else "", "to": last.isoformat() if last else ""}


async def case_from_query(request: web.Request):
    """The ?case= case (None if absent or unknown), and the code as typed."""
    typed = request.query.get("case", "").strip()[:20]
    return (await cases.by_code(request[DB], typed) if typed else None), typed


def page_number(request: web.Request) -> int:
    """The ?page= number, from 1 (1 if absent or not a number)."""
    number = request.query.get("page", "1")
    return max(1, int(number)) if number.isdigit() else 1


def safe_back(form, fallback: str) -> str:
    """Where a form asked to return to, if it is a console page (never another site)."""
    back = str(form.get("back", ""))
    return back if back.startswith("/console/") and not back.startswith("/console//") else fallback


def choice(request: web.Request, name: str, allowed) -> str:
    """The form's ``name`` if it is one of ``allowed``; a 400 otherwise (no page offers anything else)."""
    value = request[FORM].get(name)
    if not isinstance(value, str) or value not in allowed:
        raise web.HTTPBadRequest(text=f"unknown {name}")
    return value


async def case_in_path(request: web.Request) -> cases.Case:
    """The case the address names ({code}); a 404 if there is none."""
    case = await cases.by_code(request[DB], request.match_info["code"])
    if case is None:
        raise web.HTTPNotFound(text="No such case")
    return case
