"""The coordinators' console in a real browser (Debian's Chromium driven by Playwright, as in
tests/test_sandbox_browser.py): reached from `reunite sandbox` as its README says, and every page
walked as a coordinator, an admin, a coordinator whose role was revoked and someone with no role."""

from __future__ import annotations

import re
import shutil
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import async_playwright, expect

from bot.services import users
from tests.conftest import COORDINATOR_ID, settle
from tests.helpers import reference_in, running_sandbox, seed_case
from tests.test_console import console_link, settings  # noqa: F401 (the console on, for `reunite`)
from tests.test_sandbox_browser import CHROMIUM, PHONE, STEP_TIMEOUT_MS, act_as, bot_bubbles

LAPTOP = {"width": 1280, "height": 800}
FLAGS = ["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run"]  # Chromium tries to reach the network otherwise (FIELD-NOTES)


@asynccontextmanager
async def chromium():
    """Headless Chromium; every page it opened must have raised no script error and broken no
    Content-Security-Policy rule (a blocked inline script or style shows as a console error)."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/system-deps.sh), "
                    "or apt-get install chromium")
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)

        async def new_page(viewport=LAPTOP, **options):
            context = await browser.new_context(viewport=viewport, **options)
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("console", lambda message: problems.append(message.text) if message.type == "error"
                    and "Content Security Policy" in message.text else None)
            return page

        yield new_page
        await browser.close()
    assert problems == [], problems


async def test_the_console_opens_from_the_sandbox_chat_beside_the_chat_page(tmp_path):
    async with running_sandbox(tmp_path) as base, chromium() as new_page:
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
        reunite, coordinator, admin, people, tmp_path):
    family = people(5101, "Mum")
    case = await seed_case(reunite, status="pending_review", family_id=family.id)
    tipster = people(5102, "Zebulon", username="zeb_quack_77")
    reference = reference_in(await tipster.say("I think I saw Li Wei at the south gate"))
    tipster.user.send_location(39.94, 116.47)
    await settle(reunite)
    tipster.cursor = len(tipster.received())

    async with chromium() as new_page:
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
