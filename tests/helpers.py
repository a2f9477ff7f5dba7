"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import re
from datetime import UTC
from pathlib import Path

from PIL import Image
from sqlalchemy import select

TIP_REFERENCE = re.compile(r"T-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def reference_in(text: str) -> str:
    match = TIP_REFERENCE.search(text)
    assert match, f"no tip reference in {text!r}"
    return match.group(0)


def jpeg_bytes(width: int = 640, height: int = 480, colour=(180, 90, 40), exif: Image.Exif | None = None) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif if exif is not None else b"")
    return buffer.getvalue()


def exif_with_gps_and_time(lat: float, lon: float, taken: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "ReuniteTestCam"  # Make
    exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal

    def dms(value: float):
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round(((value - degrees) * 60 - minutes) * 60, 4)
        return (degrees, minutes, seconds)

    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    return exif


async def until(check, timeout: float = 30.0, what: str = "condition"):
    """Poll ``check()`` (async) until it returns something truthy, and return that: for a state that
    nothing signals (a row a moment after a send, another process's work)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.05)


async def all_rows(reunite, model):
    async with reunite.sessionmaker() as session:
        return list(await session.scalars(select(model)))


async def age_tips(reunite, delta) -> None:
    """Move every tip's last message ``delta`` into the past, as if that much time went by."""
    from bot.db.models import Tip

    async with reunite.sessionmaker() as session:
        for tip in await session.scalars(select(Tip)):
            tip.last_message_at -= delta
            if tip.last_team_reply_at is not None:
                tip.last_team_reply_at -= delta
        await session.commit()


@contextlib.asynccontextmanager
async def running_sandbox(folder: Path, ready_timeout: float = 60.0):
    """`reunite sandbox` in ``folder`` (its ./data) on a free port, as a person starts it: without
    the environment's TELEGRAM_*, REUNITE_* and DATABASE_URL, and a token it must ignore. Yields the
    page's base URL; stopped with Ctrl+C (SIGINT) afterwards, which must exit 0."""
    import asyncio
    import os
    import subprocess
    import sys

    from tests.test_webhook import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "REUNITE_", "DATABASE_URL"))}
    env["TELEGRAM_BOT_TOKEN"] = "must-be-ignored"
    log_path = folder / "sandbox.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "bot", "sandbox", "--port", str(port)], cwd=folder,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ready_timeout
        while not any("sandbox is ready" in line and base in line for line in log_path.read_text().splitlines()):
            assert process.poll() is None, "the sandbox exited: " + log_path.read_text()[-2000:]
            assert loop.time() < deadline, "the sandbox did not get ready: " + log_path.read_text()[-2000:]
            await asyncio.sleep(0.1)
        yield base
    finally:
        stop_process(process)
    assert process.returncode == 0, log_path.read_text()[-2000:]


def stop_process(process, timeout: float = 20.0) -> None:
    """SIGTERM (or SIGINT for the sandbox's Ctrl+C), then SIGKILL if it does not stop in time."""
    import signal
    import subprocess

    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def press(person, label: str) -> str:
    """Press the button ``label`` under the last message ``person`` received; the bot's next answer."""
    message = person.received()[-1]
    person.cursor = len(person.received())
    person.user.press(message, label)
    return await person.next_text()


async def send_photo(person, data: bytes, caption: str | None = None) -> str:
    """``person`` sends a photo; the bot's next answer."""
    person.cursor = len(person.received())
    person.user.send_photo(data, caption=caption)
    return await person.next_text()


async def seed_case(reunite, *, status: str = "active", family_id: int | None = None, **particulars):
    """A case with one real photo (from the installed wheels), written straight to the database;
    ``family_id`` is the user who reported it."""
    from datetime import datetime

    from bot.services import cases, media, users
    from tests.conftest import packaged_image

    image = media.store_image(packaged_image("yaoming.jpg").read_bytes(), reunite.settings.media_dir)
    details = {"name": "Li Wei", "other_names": "李伟", "sex": "male", "birth_year": 2009,
               "missing_since": datetime(2024, 3, 14, 7, 30, tzinfo=UTC), "missing_since_has_time": True,
               "last_seen_place": "Chaoyang Park south gate, Beijing", "agency_name": "Chaoyang Police",
               "agency_phone": "+86 10 6509 1234", **particulars}
    async with reunite.sessionmaker() as session:
        if family_id is not None:
            await users.get_or_create(session, family_id, "en", frozenset())
        case = await cases.create_case(session, status=status, reported_by=family_id, **details)
        await cases.add_photos(session, case, [cases.NewPhoto(image.sha256, image.width, image.height, 14.0)],
                               family_id, datetime.now(UTC))
        await session.commit()
    return case


CASE_CODE = re.compile(r"C-[0-9A-HJKMNP-TV-Z]{6}")


def code_in(text: str) -> str:
    match = CASE_CODE.search(text)
    assert match, f"no case code in {text!r}"
    return match.group(0)
