"""The coordinators' console over plain HTTP (aiohttp's client against the bot's own web server): the
one-time link, sessions that end on logout, inactivity and revocation, CSRF, the security headers,
and the actions that must do exactly what the chat commands do. The browser walk-through is in
tests/test_console_browser.py."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import aiohttp
import pytest
from pypdf import PdfReader
from sqlalchemy import select, update

from bot.db.models import AuditEvent, ConsoleLoginToken, ConsoleSession, MatchCandidate, Tip
from tests.conftest import ADMIN_ID, COORDINATOR_ID, settle
from tests.helpers import reference_in, seed_case
from tests.test_matching import add_case, faces_done, image_bytes, match_alert
from tests.test_webhook import free_port

LINK = re.compile(r"https?://\S+/console/login\?token=[\w-]+")
CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@pytest.fixture
def settings(settings):
    """The suite's settings with the console on, served by the bot on a free port."""
    port = free_port()
    return settings.with_overrides(console_url=f"http://127.0.0.1:{port}", port=port)


async def console_link(person) -> str:
    """What /console answers ``person``: the link in it."""
    answer = await person.say("/console")
    found = LINK.search(answer)
    assert found, answer
    return found.group(0)


class Browser:
    """A cookie-keeping HTTP client, as a browser is (the session cookie is for 127.0.0.1)."""

    def __init__(self, base: str):
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def open_link(self, link: str) -> aiohttp.ClientResponse:
        """Open the link from the bot and press its button, as a person does."""
        token = link.split("token=", 1)[1]
        async with self.http.get(link) as shown:
            assert shown.status == 200 and token in await shown.text()
        async with self.http.post(self.base + "/console/login", data={"token": token}) as opened:
            await opened.read()
            return opened

    async def get(self, path: str, **kwargs) -> tuple[aiohttp.ClientResponse, str]:
        async with self.http.get(self.base + path, **kwargs) as response:
            return response, await response.text(errors="replace")

    async def post(self, path: str, data: dict, **kwargs) -> tuple[aiohttp.ClientResponse, str]:
        async with self.http.post(self.base + path, data=data, **kwargs) as response:
            return response, await response.text(errors="replace")

    async def csrf(self, path: str = "/console/tips") -> str:
        _, page = await self.get(path)
        return CSRF.search(page).group(1)

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def browser(reunite):
    opened = Browser(reunite.settings.console_url)
    yield opened
    await opened.close()


async def move_back(reunite, model, column: str, delta: timedelta) -> None:
    """Every row's ``column`` ``delta`` earlier, as if that much time went by."""
    async with reunite.sessionmaker() as session:
        for row in await session.scalars(select(model)):
            setattr(row, column, getattr(row, column) - delta)
        await session.commit()


async def logged_in(browser: Browser, person) -> None:
    response = await browser.open_link(await console_link(person))
    assert str(response.url).endswith("/console/tips"), response.url


async def test_the_link_opens_one_session_once_and_not_after_ten_minutes(reunite, coordinator, people, browser):
    link = await console_link(coordinator)
    assert link.startswith(reunite.settings.console_url)
    opened = await browser.open_link(link)
    assert opened.status == 200 and str(opened.url).endswith("/console/tips")
    cookie = opened.history[0].headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    async with reunite.sessionmaker() as session:
        stored = list(await session.scalars(select(ConsoleLoginToken.token_hash)))
    assert link.split("token=")[1] not in stored  # only its hash is kept

    again = Browser(browser.base)
    try:
        refused = await again.open_link(link)
        assert refused.status == 403 and "used already or has expired" in await refused.text()
        late = await console_link(coordinator)
        await move_back(reunite, ConsoleLoginToken, "expires_at", timedelta(minutes=10, seconds=1))
        assert (await again.open_link(late)).status == 403
        response, _ = await again.get("/console/tips", allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/console/ask"
    finally:
        await again.close()

    # a member of the public and a family get the answer to an unknown command, and no link
    outsider = people(4101, "Olly")
    assert "don't know that command" in await outsider.say("/console")
    family = people(4102, "Mum")
    await seed_case(reunite, family_id=family.id)
    assert "don't know that command" in await family.say("/console")


async def test_a_session_ends_on_logout_after_inactivity_and_when_the_role_is_revoked(
        reunite, coordinator, admin, people, browser):
    await logged_in(browser, coordinator)
    response, _ = await browser.post("/console/logout", {"csrf": await browser.csrf()})
    assert str(response.url).endswith("/console/ask")
    response, _ = await browser.get("/console/tips", allow_redirects=False)
    assert response.status == 302

    await logged_in(browser, coordinator)
    await move_back(reunite, ConsoleSession, "last_seen_at", timedelta(minutes=31))
    response, _ = await browser.get("/console/cases", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/console/ask"

    await logged_in(browser, coordinator)
    token = await browser.csrf()
    assert "no longer" in await admin.say(f"/revoke {COORDINATOR_ID}")
    response, _ = await browser.get("/console/tips", allow_redirects=False)
    assert response.status == 302  # at once: the role is read on every request
    response, _ = await browser.post("/console/tips/mark", {"csrf": token, "status": "useful"})
    assert response.status == 403
    response, _ = await browser.get("/console/media/" + "0" * 64 + ".jpg")
    assert response.status == 403
    # and the link is refused to them now
    assert "don't know that command" in await coordinator.say("/console")


async def test_changes_need_the_csrf_token_and_every_response_has_strict_headers(reunite, coordinator, people,
                                                                               browser):
    tipster = people(4201, "Tess")
    reference = reference_in(await tipster.say("A boy in a red coat at the bus stop"))
    await settle(reunite)
    await logged_in(browser, coordinator)
    for data in ({"status": "useful"}, {"status": "useful", "csrf": "0" * 64}):
        response, _ = await browser.post(f"/console/tips/{reference}/mark", data)
        assert response.status == 403
    response, _ = await browser.post(f"/console/tips/{reference}/mark", {"status": "useful"},
                                     headers={"X-CSRF-Token": "forged"})
    assert response.status == 403
    async with reunite.sessionmaker() as session:
        assert (await session.scalar(select(Tip.status))) == "new"

    response, page = await browser.get(f"/console/tips/{reference}")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in page and " style=" not in page
    response, _ = await browser.post(f"/console/tips/{reference}/mark",
                                     {"status": "useful", "csrf": CSRF.search(page).group(1)})
    assert response.status == 200
    async with reunite.sessionmaker() as session:
        assert (await session.scalar(select(Tip.status))) == "useful"
        marked = await session.scalar(select(AuditEvent).where(AuditEvent.action == "tip.mark.useful"))
    assert marked.actor_id == COORDINATOR_ID and marked.object_ref == reference

    # someone without a session: pages send them to the bot, anything else is refused
    stranger = Browser(browser.base)
    try:
        response, page = await stranger.get("/console/leads")
        assert str(response.url).endswith("/console/ask") and "/console" in page
        assert response.headers["X-Frame-Options"] == "DENY"
        response, _ = await stranger.post(f"/console/tips/{reference}/mark", {"status": "dismissed"})
        assert response.status == 403
        response, _ = await stranger.get("/console/tips", cookies={"reunite_console": "made-up"},
                                         allow_redirects=False)
        assert response.status == 302
    finally:
        await stranger.close()


async def test_a_reply_from_the_console_reaches_the_tipster_as_reply_does_and_hides_who_they_are(
        reunite, coordinator, people, browser):
    tipster = people(777004, "Zebulon", last_name="Quackenbush", username="zeb_quack_77")
    reference = reference_in(await tipster.say("I saw her near the pier at noon"))
    await settle(reunite)
    await logged_in(browser, coordinator)
    _, page = await browser.get(f"/console/tips/{reference}")
    assert "near the pier" in page
    response, page = await browser.post(f"/console/tips/{reference}/reply",
                                        {"csrf": CSRF.search(page).group(1), "message": "Thank you! Which pier?"})
    assert response.status == 200 and "Sent to the tipster" in page and "Which pier?" in page
    answer = await tipster.next_text()
    assert "Reunite team" in answer and "Which pier?" in answer
    # their answer joins the tip, as after /reply
    assert reference_in(await tipster.say("The ferry pier")) == reference
    await settle(reunite)

    shown = ""
    for path in ("/console/tips", f"/console/tips/{reference}", "/console/tips?q=ferry", "/console/stats",
                 "/console/map"):
        response, page = await browser.get(path)
        assert response.status == 200, path
        shown += page
    assert "ferry pier" in shown
    for secret in ("Zebulon", "Quackenbush", "zeb_quack_77", "777004"):
        assert secret not in shown
    async with reunite.sessionmaker() as session:
        replied = await session.scalar(select(AuditEvent).where(AuditEvent.action == "tip.reply"))
    assert replied.actor_id == COORDINATOR_ID and replied.object_ref == reference


async def test_the_queue_filters_and_marks_many_at_once(reunite, coordinator, people, browser):
    references = [reference_in(await people(4300 + n, f"P{n}").say(f"Sighting number {n} near the lake"))
                  for n in range(4)]
    photo_tipster = people(4310, "Pat")
    photo_tipster.user.send_location(39.93, 116.45)
    located = reference_in((await photo_tipster.wait(1))[0]["text"])
    await settle(reunite)
    await logged_in(browser, coordinator)
    _, page = await browser.get("/console/tips")
    assert page.index(located) < page.index(references[-1]) < page.index(references[0])  # newest first
    _, page = await browser.get("/console/tips?place=1")
    assert located in page and references[0] not in page
    _, page = await browser.get("/console/tips?q=NUMBER+2")
    assert references[2] in page and references[1] not in page
    _, page = await browser.get("/console/tips?case=C-ZZZZZZ")
    assert "No case C-ZZZZZZ" in page

    response, _ = await browser.post("/console/tips/mark", {"csrf": await browser.csrf(), "status": "dismissed",
                                                            "tip": references[:3], "back": "/console/tips?status=new"})
    assert str(response.url).endswith("/console/tips?status=new")
    _, page = await browser.get("/console/tips?status=dismissed")
    assert all(reference in page for reference in references[:3]) and references[3] not in page


async def test_a_lead_confirmed_in_the_console_is_confirmed_in_the_chat_and_the_other_way_round(
        reunite, coordinator, people, stand_in, browser):
    yao = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    await faces_done(reunite)
    tipster = people(4401, "Uma")
    tipster.user.send_photo(image_bytes("players.jpg"))
    alert = await match_alert(coordinator)
    await logged_in(browser, coordinator)
    _, page = await browser.get(f"/console/leads?case={yao.code}")
    candidate_id = re.search(r"/console/leads/(\d+)/review", page).group(1)
    face_image = re.search(r'src="(/console/faces/\d+\.jpg)"', page).group(1)
    response, _ = await browser.get(face_image)
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert "Age 14" not in page and "Age in photo not known" in page

    response, page = await browser.post(f"/console/leads/{candidate_id}/review",
                                        {"csrf": CSRF.search(page).group(1), "decision": "confirm",
                                         "back": f"/console/leads?case={yao.code}"})
    assert response.status == 200 and "0 leads waiting" in page
    assert "No face-match leads" in await coordinator.say(f"/matches {yao.code}")
    coordinator.cursor = len(coordinator.received())
    coordinator.user.press(alert, f"✖ Reject {yao.code}")
    await settle(reunite)
    answers = [m for m in stand_in.messages(COORDINATOR_ID) if m.get("_callback_answer")]
    assert "Already confirmed as a lead" in (answers[-1]["_callback_answer"].get("text") or "")

    # and the other way: decided in the chat, shown decided in the console
    async with reunite.sessionmaker() as session:
        await session.execute(update(MatchCandidate).values(status="pending", reviewer_id=None, reviewed_at=None))
        await session.commit()
    coordinator.user.press(alert, f"✖ Reject {yao.code}")
    assert "Rejected" in await coordinator.next_text()
    reference = reference_in(alert["caption"])
    _, page = await browser.get(f"/console/tips/{reference}")
    assert "rejected" in page and f"/console/leads/{candidate_id}/review" not in page


async def test_a_case_is_verified_closed_and_exported_from_the_console(reunite, coordinator, people, browser):
    family = people(4501, "Mum")
    case = await seed_case(reunite, status="pending_review", family_id=4501)
    await logged_in(browser, coordinator)
    _, page = await browser.get("/console/cases?status=pending")
    assert case.code in page and "Li Wei" in page
    _, page = await browser.get(f"/console/cases/{case.code}")
    assert "李伟" in page and "Chaoyang Park" in page and "Age 14 in this photo" in page
    response, page = await browser.post(f"/console/cases/{case.code}/verify", {"csrf": CSRF.search(page).group(1)})
    assert "Verified" in page and "public" in page
    assert "It is now public" in (await family.wait(1))[-1]["text"]

    # a tip about the case, through its flyer's deep link
    tipster = people(4502, "Quinn", username="quinn_secret")
    async with reunite.sessionmaker() as session:
        token = (await session.get(type(case), case.id)).deep_link_token
    await tipster.say(f"/start c_{token}")
    reference = reference_in(await tipster.say("Saw him at the south gate, 李伟 I think"))
    await settle(reunite)

    response, body = await browser.get(f"/console/cases/{case.code}/tips.csv")
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][0] == "tip" and any(row[0] == reference and "south gate" in row[6] for row in rows[1:])
    assert "Quinn" not in body and "quinn_secret" not in body and "4502" not in body
    async with browser.http.get(browser.base + f"/console/cases/{case.code}/report.pdf") as response:
        assert response.headers["Content-Type"] == "application/pdf"
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(await response.read())).pages)
    assert "Li Wei" in text and "李伟" in text and reference in text and "Quinn" not in text
    async with browser.http.get(browser.base + f"/console/cases/{case.code}/flyer/poster_pdf?lang=bi") as response:
        assert response.status == 200 and (await response.read()).startswith(b"%PDF")

    _, page = await browser.get(f"/console/cases/{case.code}")
    response, page = await browser.post(f"/console/cases/{case.code}/close",
                                        {"csrf": CSRF.search(page).group(1), "status": "found"})
    assert "Closed" in page
    assert "is closed: found" in (await family.wait(2))[-1]["text"]
    async with reunite.sessionmaker() as session:
        actions = set(await session.scalars(select(AuditEvent.action).where(AuditEvent.actor_id == COORDINATOR_ID)))
    assert {"case.verify", "case.close.found", "case.export.csv", "case.export.pdf"} <= actions


async def test_the_audit_log_is_for_admins_only(reunite, coordinator, admin, browser):
    await logged_in(browser, coordinator)
    response, _ = await browser.get("/console/audit")
    assert response.status == 403
    await browser.post("/console/logout", {"csrf": await browser.csrf()})
    await logged_in(browser, admin)
    response, page = await browser.get("/console/audit")
    assert response.status == 200 and "console.login" in page and str(ADMIN_ID) in page


async def test_login_attempts_are_limited_per_client_address(reunite, coordinator, browser):
    for _ in range(10):
        response, _ = await browser.post("/console/login", {"token": "guessed"})
        assert response.status == 403
    response, page = await browser.post("/console/login", {"token": "guessed"})
    assert response.status == 429 and "Too many attempts" in page
    # even a good link waits: the address is over its limit
    assert (await browser.open_link(await console_link(coordinator))).status == 429


def test_the_map_fits_its_points_and_covers_the_view_with_tiles():
    from bot.console.auth import security_headers, tile_origin
    from bot.console.overview_pages import MAP_HEIGHT, MAP_WIDTH, TILE, fit

    beijing = [(39.93, 116.45), (39.99, 116.30), (39.87, 116.40)]
    view = fit(beijing)
    points = [view.point(*place) for place in beijing]
    assert all(0 < x < MAP_WIDTH and 0 < y < MAP_HEIGHT for x, y in points)
    assert view.zoom >= 10  # a city, not the world
    tiles = view.tiles("https://tiles.example.org/{z}/{x}/{y}.png")
    assert all(address.startswith(f"https://tiles.example.org/{view.zoom}/") for address, _, _ in tiles)
    assert min(x for _, x, _ in tiles) <= 0 and max(x for _, x, _ in tiles) + TILE >= MAP_WIDTH
    assert min(y for _, _, y in tiles) <= 0 and max(y for _, _, y in tiles) + TILE >= MAP_HEIGHT
    policy = security_headers(tile_origin("https://tiles.example.org/{z}/{x}/{y}.png"))["Content-Security-Policy"]
    assert "img-src 'self' data: https://tiles.example.org;" in policy
    assert "https:" not in security_headers(None)["Content-Security-Policy"]
