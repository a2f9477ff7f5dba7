"""The coordinators' console in a real browser (Debian's Chromium driven by Playwright, as in
tests/test_sandbox_browser.py): reached from `reunite sandbox` as its README says, and every page
walked as a coordinator, an admin, a coordinator whose role was revoked and someone with no role. One
Chromium serves the whole module (starting one takes seconds); each test connects to it."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy import select

from bot.db.models import Face
from bot.services import users
from tests.conftest import COORDINATOR_ID, packaged_image
from tests.helpers import reference_in, running_sandbox, seed_case, until
from tests.test_case_changes import alert_about, edit_field
from tests.test_console import console_link, settings  # noqa: F401 (the console on, for `reunite`)
from tests.test_matching import faces_done
from tests.test_sandbox_browser import CHROMIUM, PHONE, STEP_TIMEOUT_MS, act_as, bot_bubbles

LAPTOP = {"width": 1280, "height": 800}
FLAGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]  # Chromium tries to reach the network otherwise (FIELD-NOTES)


@pytest.fixture(scope="module")
def chromium_endpoint(tmp_path_factory):
    """One headless Chromium for the module (starting one takes seconds): its DevTools address, which
    each test connects to with its own event loop."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/system-deps.sh), "
                    "or apt-get install chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    # --no-sandbox as Playwright's own launch passes it: the tests may run as root, in a container
    process = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--remote-debugging-port=0",
                                f"--user-data-dir={profile}", *FLAGS, "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if line.startswith("DevTools listening on "):
                break
        else:
            pytest.fail(f"{CHROMIUM} did not start")
        # keep reading its log, so that a full pipe never blocks it
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield line.removeprefix("DevTools listening on ").strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def chromium(endpoint: str):
    """The module's Chromium; every page it opened must have raised no script error and broken no
    Content-Security-Policy rule (a blocked inline script or style shows as a console error)."""
    problems: list[str] = []
    opened = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(endpoint)

        async def new_page(viewport=LAPTOP, **options):
            context = await browser.new_context(viewport=viewport, **options)
            opened.append(context)
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error"
                    and "Content Security Policy" in message.text else None)
            return page

        yield new_page
        for context in opened:
            await context.close()
        await browser.close()  # connected, not launched: this disconnects
    assert problems == [], problems


async def test_the_console_opens_from_the_sandbox_chat_beside_the_chat_page(tmp_path, chromium_endpoint):
    async with running_sandbox(tmp_path) as base, chromium(chromium_endpoint) as new_page:
        chat = await new_page(PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        await chat.goto(base)
        await act_as(chat, "Casey (coordinator)")
        await chat.locator("#text").fill("/console")
        await chat.locator("#send").tap()
        link = bot_bubbles(chat).last.locator('a[href*="/console/login?token="]')
        await expect(link).to_be_visible(timeout=STEP_TIMEOUT_MS)
        assert (await link.get_attribute("href")).startswith(f"{base}/console/login?token=")
        async with chat.context.expect_page() as opened:
            await link.tap()
        console = await opened.value
        await console.get_by_role("button", name="Open the console").tap()
        await expect(console.get_by_role("heading", name="Tips")).to_be_visible()
        for name, heading in (("Leads", "Leads"), ("Cases", "Cases"), ("Map", "Map"), ("Statistics", "Statistics"),
                              ("Audit log", "Audit log")):  # Casey is the sandbox's admin
            await console.get_by_role("navigation").get_by_role("link", name=name).tap()
            await expect(console.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        await expect(console.locator("table.audit")).to_contain_text("console.login")
        await console.screenshot(path=tmp_path / "console-phone.png", full_page=True)


async def test_a_coordinator_works_through_every_page_and_loses_it_when_revoked(
        reunite, coordinator, admin, people, tmp_path, chromium_endpoint, quick_chats):
    family = people(5101, "Mum")
    case = await seed_case(reunite, status="pending_review", family_id=family.id)
    tipster = people(5102, "Zebulon", username="zeb_quack_77")
    reference = reference_in(await tipster.say("I think I saw Li Wei at the south gate"))
    tipster.user.send_location(39.94, 116.47)
    tipster.user.send_photo(packaged_image("players.jpg").read_bytes())  # Yao Ming, the case photo, is in it
    await faces_done(reunite)
    tipster.cursor = len(tipster.received())

    async with chromium(chromium_endpoint) as new_page:
        page = await new_page()
        await page.goto(await console_link(coordinator))
        await page.get_by_role("button", name="Open the console").click()

        # the queue: filter by place, open the tip, reply and mark it
        await page.get_by_label("With place").check()
        await page.get_by_role("button", name="Show").click()
        await page.get_by_role("link", name=reference).click()
        await expect(page.locator(".messages")).to_contain_text("south gate")
        await page.get_by_label(re.compile("Reply to the tipster")).fill("Thank you. What was he wearing?")
        await page.get_by_role("button", name="Send reply").click()
        await expect(page.locator("#reply-sent")).to_be_visible()
        assert "What was he wearing?" in await tipster.next_text()
        await page.get_by_role("button", name="Mark useful").click()
        await expect(page.locator("#tip-status")).to_have_text("useful")
        assert "zeb_quack_77" not in await page.content() and "Zebulon" not in await page.content()

        # the case: verify it, see its flyer links; the map and the statistics
        await page.goto(f"{reunite.settings.console_url}/console/cases?status=pending")
        await page.get_by_role("link", name=case.code).click()
        await page.get_by_role("button", name="Verify: make it public").click()
        await expect(page.locator("#case-status")).to_have_text("public")
        await expect(page.get_by_role("link", name="PDF (bi)")).to_be_visible()

        # its shortlist on the leads page: the face most like it confirmed as a lead (once the face worker
        # has seen the case become public and given its photo's face its cohort statistics, within a second)
        async def scored() -> bool:
            async with reunite.sessionmaker() as session:
                return bool(await session.scalar(select(Face.id).where(Face.case_id == case.id,
                                                                       Face.cohort_std.is_not(None))))
        await until(scored, what="the case's face scored")
        await page.get_by_role("link", name=re.compile("leads to decide")).click()
        entry = page.locator("#shortlist article.shortlist-entry").first
        await expect(entry).to_contain_text(reference)
        await entry.get_by_role("button", name="Confirm lead").click()
        await expect(page.locator("#shortlist article.shortlist-entry").first).to_contain_text("confirmed as a lead")
        assert f"Confirmed leads of {case.code}:" in await coordinator.say(f"/matches {case.code}")

        # the family asks for a change: it waits on the case's page, rejected there with a reason
        await edit_field(family, case.code, "Clothing")
        assert "once our team has checked it" in await family.say("A red coat and jeans")
        await page.goto(f"{reunite.settings.console_url}/console/cases/{case.code}")
        change = page.locator("article.change")
        await expect(change.locator(".asked")).to_contain_text("A red coat and jeans")
        await change.get_by_label("Reason for the family (optional)").fill("Please send a photo of the coat.")
        await change.get_by_role("button", name="Reject").click()
        await expect(page.locator(".notice")).to_contain_text("Rejected")
        await expect(page.locator("article.change")).to_have_count(0)
        assert "Please send a photo of the coat." in (await alert_about(family, "did not make your change"))["text"]
        await page.get_by_role("navigation").get_by_role("link", name="Map").click()
        await expect(page.locator("svg.map circle.tip-point")).to_have_count(1)
        await page.screenshot(path=tmp_path / "console-map.png")
        await page.get_by_role("navigation").get_by_role("link", name="Statistics").click()
        await expect(page.locator("#cases-by-status")).to_contain_text("1 public")
        await expect(page.get_by_role("navigation").get_by_role("link", name="Audit log")).to_have_count(0)
        await page.screenshot(path=tmp_path / "console-laptop.png", full_page=True)

        # revoked: the next click lands on "ask the bot", and a new link is not given
        assert "no longer" in await admin.say(f"/revoke {COORDINATOR_ID}")
        await page.get_by_role("navigation").get_by_role("link", name="Tips").click()
        await expect(page).to_have_url(re.compile(r"/console/ask$"))
        await expect(page.locator("main")).to_contain_text("send /console to the bot")

        # someone with no role, with no link: the same page
        outsider = await new_page()
        await outsider.goto(f"{reunite.settings.console_url}/console/tips/{reference}")
        await expect(outsider).to_have_url(re.compile(r"/console/ask$"))

        # an admin who chose Chinese reads the audit log in Chinese
        async with reunite.sessionmaker() as session:
            users.choose_language(await session.get(users.User, admin.id), "zh")
            await session.commit()
        page = await new_page()
        await page.goto(await console_link(admin))
        await page.get_by_role("button").click()  # the login page is in the browser's language
        await page.get_by_role("navigation").get_by_role("link", name="审计日志").click()
        await expect(page.get_by_role("heading", name="审计日志")).to_be_visible()
        await expect(page.locator("table.audit")).to_contain_text("case.verify")
