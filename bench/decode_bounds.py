"""Cheap to send, costly to process: what storing hostile images costs (issue 14, item 6).

    python bench/decode_bounds.py [--concurrent 4] [--photos 50]

Makes the attack file (a PNG of 59.9 megapixels in one colour: under 250 KB) and the largest PNG
accepted since (4096 x 4096), then, each in a fresh
child process so that its peak memory is its own, stores ``--concurrent`` copies of it at once
through ``media.store_image`` in threads, as the bot's four photo updates in flight do. Prints the
child's CPU seconds, its peak resident memory above what it had after its imports, and what each
call answered. Then the photo path: CPU per 1280 px phone photo stored (``--photos`` of them).

Run it from a checkout (``PYTHONPATH=$PWD``); comparing two checkouts, interleave the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ATTACK_SIDE = 7740  # 59.9 megapixels, just under the 60-megapixel limit the store had
LARGEST_ACCEPTED_SIDE = 4096  # the largest PNG accepted since (16.8 megapixels)

_CHILD = r"""
import inspect, json, resource, sys, threading, time
from pathlib import Path
from bot.services import media

path, copies, photo = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "photo"
data = Path(path).read_bytes()
out = Path(sys.argv[4])
before = resource.getrusage(resource.RUSAGE_SELF)
answers = []

# a photo as Telegram delivers it (before issue 14 there was no such argument: every JPEG was one)
as_photo = {"from_photo": True} if "from_photo" in inspect.signature(media.store_image).parameters else {}

def store(number):
    try:
        # each copy differs in one trailing byte after IEND, so none is found stored already
        media.store_image(data + bytes([number]) if not photo else data, out, **as_photo)
        answers.append("stored")
    except media.ImageRejected as rejected:
        answers.append(rejected.reason)

started = time.perf_counter()
if photo:
    for _ in range(copies):
        store(0)
else:
    threads = [threading.Thread(target=store, args=(n,)) for n in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3),
    "wall_s": round(time.perf_counter() - started, 3),
    "peak_rss_mb_above_start": round((after.ru_maxrss - before.ru_maxrss) / 1024, 1),
    "answers": sorted(set(answers)),
}))
"""


def one_colour_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 180, 160)).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


def phone_photo() -> bytes:
    """A 1280 px JPEG as Telegram delivers photos, with a JFIF header and an EXIF block."""
    buffer = io.BytesIO()
    Image.effect_noise((1280, 960), 40).convert("RGB").save(buffer, "JPEG", quality=87, exif=Image.Exif())
    return buffer.getvalue()


def run_child(path: Path, copies: int, kind: str) -> dict:
    with tempfile.TemporaryDirectory() as media_dir:
        result = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(copies), kind, media_dir],
                                capture_output=True, text=True, env=os.environ, check=True)
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--photos", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder, "photo.jpg")
        photo.write_bytes(phone_photo())
        for name, side in (("attack", ATTACK_SIDE), ("largest accepted", LARGEST_ACCEPTED_SIDE)):
            png = Path(folder, f"{side}.png")
            png.write_bytes(one_colour_png(side))
            print(f"{name}: {side}x{side} PNG, {png.stat().st_size // 1024} KB, {args.concurrent} at once:",
                  json.dumps(run_child(png, args.concurrent, "attack")))
        result = run_child(photo, args.photos, "photo")
        print(f"photo path: 1280x960 JPEG, {args.photos} stored one after another:", json.dumps(result),
              f"-> {1000 * result['cpu_s'] / args.photos:.2f} ms CPU per photo")


if __name__ == "__main__":
    main()
