"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import io
import re

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
