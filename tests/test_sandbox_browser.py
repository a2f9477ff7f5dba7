"""Issue 3's family report clicked through `reunite sandbox` in a real browser, as a person would:
headless Chromium (Debian's, installed by `make test` through scripts/system-deps.sh) driven by
Playwright, on a phone-sized screen. The family types /report, answers by typing and by tapping the
inline buttons, attaches a photo through the page's file picker, and gets a C-XXXXXX code and the
pending-review message; switching to the coordinator on the same page shows the review alert; after
the sandbox is started again over the same ./data, /mycases still lists the case."""

from __future__ import annotations

import re
import shutil

import pytest
from playwright.async_api import Page, async_playwright, expect

from tests.conftest import packaged_image
from tests.helpers import CASE_CODE, running_sandbox

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
FAMILY = "Alex (public)"
COORDINATOR = "Casey (coordinator)"
# what the bot's questions say, in the order /report asks them
ANSWERS = [
    ("full name", "type", "Li Wei"),
    ("other names", "tap", "Skip ›"),
    ("male or female", "tap", "Male"),
    ("born", "type", "2009-05-02"),
    ("last seen", "type", "2024-03-14 15:30"),
    ("Where was Li Wei last seen", "type", "Chaoyang Park south gate, Beijing"),
    ("location", "tap", "Skip ›"),
    ("How tall", "type", "158"),
    *[(None, "tap", "Skip ›")] * 10,  # build ... the family's contact: all optional
    ("language", "tap", "English"),
]
STEP_TIMEOUT_MS = 15_000
# how many lines the browser laid out an element's text on
TEXT_LINES = "e => { const r = document.createRange(); r.selectNodeContents(e); return r.getClientRects().length; }"


@pytest.fixture
async def phone():
    """A new page in headless Chromium on a phone-sized viewport."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (scripts/system-deps.sh), "
                    "or apt-get install chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run"])  # Chromium tries to reach the network otherwise (FIELD-NOTES)
        context = await browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        page = await context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        await browser.close()
    assert errors == [], f"the page raised: {errors}"


def bot_bubbles(page: Page):
    return page.locator("#messages .row.out .bubble")


async def last_bot_text(page: Page) -> str:
    return await bot_bubbles(page).last.inner_text()


async def answer(page: Page, question: str | None, how: str, value: str) -> None:
    """Wait for the bot's question (the last bubble), then type or tap the answer, and wait for the
    bot to say the next thing."""
    if question is not None:
        await expect(bot_bubbles(page).last).to_contain_text(question, timeout=STEP_TIMEOUT_MS)
    asked = await bot_bubbles(page).count()
    if how == "type":
        await page.locator("#text").fill(value)
        await page.locator("#send").tap()
    else:
        keyboard = page.locator("#messages .ikb").last
        # on a phone the labels once broke mid-word ("Femal|e"): each must be drawn on one line
        lines = await keyboard.get_by_role("button").evaluate_all(f"buttons => buttons.map({TEXT_LINES})")
        assert set(lines) == {1}, f"buttons drawn on several lines: {await keyboard.inner_text()!r}"
        await keyboard.get_by_role("button", name=value, exact=True).tap()
    await expect(bot_bubbles(page)).not_to_have_count(asked, timeout=STEP_TIMEOUT_MS)


async def act_as(page: Page, name: str) -> None:
    """Switch user the way a phone shows it: back to the list of users, tap one."""
    if await page.locator("#back").is_visible():
        await page.locator("#back").tap()
    await page.locator("#users").get_by_role("option", name=re.compile(re.escape(name))).tap()
    await expect(page.locator("#chat-sub")).to_contain_text(name)


async def test_a_family_reports_a_case_in_the_browser_and_the_coordinator_is_alerted(tmp_path, phone):
    page = phone
    async with running_sandbox(tmp_path) as base:
        await page.goto(base)
        await act_as(page, FAMILY)
        await page.locator("#text").fill("/report")
        await page.locator("#text").press("Enter")
        for question, how, value in ANSWERS:
            await answer(page, question, how, value)

        await expect(bot_bubbles(page).last).to_contain_text("photos of Li Wei", timeout=STEP_TIMEOUT_MS)
        asked = await bot_bubbles(page).count()
        async with page.expect_file_chooser() as chooser:
            await page.locator("#attach-photo").tap()
        await (await chooser.value).set_files(packaged_image("yaoming.jpg"))
        await expect(page.locator("#messages .row.in img")).to_have_count(1)  # the family's own photo
        await expect(bot_bubbles(page)).not_to_have_count(asked, timeout=STEP_TIMEOUT_MS)
        await answer(page, "How old", "type", "14")
        await answer(page, "Photos saved: 1", "tap", "Done ✓")

        filed = await last_bot_text(page)
        code = CASE_CODE.search(filed)
        assert code, filed
        assert "Li Wei" in filed and "Our team will check it soon" in filed  # pending review
        await page.screenshot(path=tmp_path / "family.png")  # what the family sees, for a person to look at

        await act_as(page, COORDINATOR)
        alert = bot_bubbles(page).filter(has_text=code.group(0))
        await expect(alert.last).to_contain_text(f"/verify {code.group(0)}", timeout=STEP_TIMEOUT_MS)
        await expect(alert.last).to_contain_text("Li Wei")

    # the next day: the sandbox started again over the same ./data, the family asks for their cases
    async with running_sandbox(tmp_path) as base:
        await page.goto(base)
        await act_as(page, FAMILY)
        await page.locator("#text").fill("/mycases")
        await page.locator("#send").tap()
        await expect(bot_bubbles(page).last).to_contain_text(code.group(0), timeout=STEP_TIMEOUT_MS)
        await expect(bot_bubbles(page).last).to_contain_text("waiting for review")
