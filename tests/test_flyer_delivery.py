"""Flow 4 through the stand-in, and the issue's "done when": a family reports, a coordinator verifies,
the family gets both flyer files (read back: one page, the name in both scripts, a JPEG of the right
size), and a passer-by using the QR code's deep link lands in a tip about that case. An unchanged
flyer is re-sent by file_id: no rendering, no upload. And `reunite flyer render`."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys

import pypdf
from PIL import Image
from sqlalchemy import select

from bot.db.models import FlyerFile, Tip
from tests.conftest import packaged_image
from tests.helpers import code_in, press, reference_in, seed_case, send_photo, until

POSTER_HEIGHTS = range(1600, 2401)
MAX_JPEG_BYTES = 2_000_000


def pdf_pages_and_text(data: bytes) -> tuple[int, str]:
    """Number of pages, and the text without whitespace (extraction breaks lines where layout wrapped)."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), re.sub(r"\s+", "", "".join(page.extract_text() for page in reader.pages))


def check_poster_jpeg(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and len(data) < MAX_JPEG_BYTES
    assert image.height in POSTER_HEIGHTS and abs(image.width / image.height - 210 / 297) < 0.01


async def flyer_messages(person, command: str) -> tuple[dict, dict]:
    """``person`` sends ``command``; the poster photo and the PDF document it brings."""
    before = len(person.received())
    person.user.send_text(command)
    photo, document = (await person.wait(before + 2, timeout=60))[before:before + 2]
    assert photo["_method"] == "sendPhoto" and document["_method"] == "sendDocument"
    return photo, document


async def flyer_rows(reunite, case_id: int) -> dict[str, FlyerFile]:
    async with reunite.sessionmaker() as session:
        rows = await session.scalars(select(FlyerFile).where(FlyerFile.case_id == case_id))
        return {row.design: row for row in rows}


async def test_report_verify_flyer_and_a_tip_from_the_qr_code(reunite, people, coordinator, stand_in, quick_chats):
    family, passer_by = people(1101, "Mei"), people(1102, "Walker")
    await family.say("/report")
    await family.say("Li Wei")
    await family.say("李伟")
    for _ in range(2):  # sex, birth
        await press(family, "Skip ›")
    await family.say("2024-03-14 15:30")
    await family.say("Chaoyang Park south gate, Beijing")
    for _ in range(12):  # pin ... family contact
        await press(family, "Skip ›")
    await press(family, "English")
    await send_photo(family, packaged_image("yaoming.jpg").read_bytes(), "14")
    code = code_in(await press(family, "Done ✓"))

    await coordinator.wait(1, predicate=lambda m: code in (m.get("text") or ""))
    coordinator.cursor = len(coordinator.received())
    assert "now public" in await coordinator.say(f"/verify {code}")
    await family.wait(1, predicate=lambda m: "now public" in (m.get("text") or ""))

    photo, document = await flyer_messages(family, f"/flyer {code} bi")
    assert "Li Wei" in photo["caption"] and code in photo["caption"]
    check_poster_jpeg(photo["_files"]["photo"])
    assert document["document"]["file_name"] == f"{code}-poster-bi.pdf"
    pages, text = pdf_pages_and_text(stand_in.file_bytes(document["document"]["file_id"]))
    assert pages == 1 and "LiWei" in text and "李伟" in text and code in text

    async with reunite.sessionmaker() as session:
        from bot.services import cases

        case = await cases.by_code(session, code)
    card = await _card(passer_by, case.deep_link_token)
    assert "Li Wei" in card["caption"] and code in card["caption"]
    assert Image.open(io.BytesIO(card["_files"]["photo"])).size == (1080, 1080)
    reference = reference_in(await passer_by.say("I think I saw him at the bus station"))
    async with reunite.sessionmaker() as session:
        tip = await session.scalar(select(Tip).where(Tip.reference == reference))
    assert tip.case_id == case.id
    alert = await coordinator.wait(1, predicate=lambda m: reference in (m.get("text") or ""))
    assert code in alert[0]["text"]


async def _card(person, token: str) -> dict:
    person.cursor = len(person.received())
    person.user.send_text(f"/start c_{token}")
    return await person.next_message(timeout=60)


async def test_an_unchanged_flyer_is_resent_by_file_id(reunite, people, coordinator, quick_chats):
    family = people(1103, "Ann")
    case = await seed_case(reunite, family_id=family.id)
    first_photo, first_document = await flyer_messages(family, f"/flyer {case.code}")
    assert first_photo["_files"] and first_document["_files"]  # uploaded once
    async def file_id_written():  # the sender writes it a moment after the send
        rows = await flyer_rows(reunite, case.id)
        return rows if rows.get("poster_pdf") and rows["poster_pdf"].telegram_file_id else None

    rendered = await until(file_id_written, timeout=10, what="the flyer's file_id")
    assert set(rendered) == {"poster_jpg", "poster_pdf", "card_jpg"}
    assert rendered["poster_pdf"].telegram_file_id == first_document["document"]["file_id"]

    photo, document = await flyer_messages(family, f"/flyer {case.code}")
    assert photo["_files"] == {} and document["_files"] == {}  # sent by file_id: nothing uploaded
    assert photo["photo"][-1]["file_id"] == first_photo["photo"][-1]["file_id"]
    assert document["document"]["file_id"] == first_document["document"]["file_id"]
    again = await flyer_rows(reunite, case.id)
    assert {d: (r.created_at, r.sha256) for d, r in again.items()} == {d: (r.created_at, r.sha256)
                                                                       for d, r in rendered.items()}

    # a change to the case makes a new flyer (a coordinator's: a family's waits for review first,
    # tests/test_case_changes.py)
    await coordinator.say(f"/edit {case.code}")
    await press(coordinator, "Height")
    await coordinator.say("171")
    photo, _ = await flyer_messages(family, f"/flyer {case.code}")
    assert photo["_files"]
    assert (await flyer_rows(reunite, case.id))["poster_jpg"].created_at > rendered["poster_jpg"].created_at


async def test_long_right_to_left_and_emoji_text_still_makes_a_one_page_flyer(reunite, coordinator, stand_in):
    name = ("محمد بن سلمان 😀 Montgomery-Fitzgerald 欧阳娜娜 " * 12)[:500]
    case = await seed_case(reunite, name=name, circumstances="שוק הכרמל 🏪 " * 200, clothing="👕 " * 300,
                           other_names="😀" * 100, language="zh")
    assert "Usage" in await coordinator.say(f"/flyer {case.code} fr")
    photo, document = await flyer_messages(coordinator, f"/flyer {case.code}")
    check_poster_jpeg(photo["_files"]["photo"])
    pages, text = pdf_pages_and_text(stand_in.file_bytes(document["document"]["file_id"]))
    assert pages == 1 and "محمد" in text and case.code in text
    assert document["document"]["file_name"] == f"{case.code}-poster-zh.pdf"


async def test_flyer_render_command_writes_the_three_files(reunite, tmp_path):
    active = await seed_case(reunite)
    pending = await seed_case(reunite, status="pending_review")
    env = {**os.environ, "DATABASE_URL": reunite.settings.database_url,
           "REUNITE_DATA_DIR": str(reunite.settings.data_dir), "REUNITE_BOT_USERNAME": "reunite_bot"}

    async def render(code: str, *options: str):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "flyer", "render", code, "--out", str(tmp_path / code), *options,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        return process.returncode, out.decode(), err.decode()

    status, out, err = await render(active.code, "--lang", "bi")
    assert status == 0, err
    folder = tmp_path / active.code
    assert sorted(p.name for p in folder.iterdir()) == ["card.jpg", "poster.jpg", "poster.pdf"]
    pages, text = pdf_pages_and_text((folder / "poster.pdf").read_bytes())
    assert pages == 1 and "LiWei" in text and "李伟" in text
    check_poster_jpeg((folder / "poster.jpg").read_bytes())
    assert Image.open(folder / "card.jpg").size == (1080, 1080)

    status, _, err = await render(pending.code)
    assert status == 1 and "pending_review" in err and not (tmp_path / pending.code).exists()
