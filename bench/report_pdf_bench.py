"""The console's police PDF report for a case with 200 tips: what rendering it costs the bot's process
and its event loop, rendered in a thread of the bot (as it was) and in the flyer worker process.

    PYTHONPATH=$PWD .venv/bin/python bench/report_pdf_bench.py [--tips 200] [--rounds 3]

The report's HTML comes from the console's own template (bot/console/templates/report.html) over
made-up tips in English and Chinese. Each way is timed ``--rounds`` times, interleaved, after one
warm-up each: the bot process's CPU seconds over the render (every thread of it: what competes with
the event loop for the interpreter's lock), the event loop's worst lag (a 5 ms ticker's largest delay
during the render), and the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.console.render import ENV
from bot.i18n import t
from bot.services.case_report import ReportMessage, ReportTip, pdf_from_html
from flyers import run_in_worker, shutdown_pool

TICK = 0.005


def report_html(tip_count: int) -> str:
    start = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    tips = []
    for number in range(tip_count):
        at = start + timedelta(minutes=17 * number)
        said = (f"Tip {number}: I think I saw him near the south gate of Chaoyang Park, red coat, with an older "
                "man. 我好像在朝阳公园南门看到他了。")
        messages = [ReportMessage(at, False, said, 39.93, 116.45),
                    ReportMessage(at + timedelta(minutes=5), True, "Thank you. What time was it?", None, None),
                    ReportMessage(at + timedelta(minutes=9), False, "Around half past four.", None, None)]
        tips.append(ReportTip(f"T-{number:06d}", f"Blue Heron {number}", "new", at, messages, 1,
                              ["taken 2026:03:01 16:30:00 · 39.93000, 116.45000"]))
    case = SimpleNamespace(code="C-7K3M9P", name="Li Wei 李伟", other_names="Xiao Wei", status="active")
    when = lambda moment: moment.strftime("%Y-%m-%d %H:%M")  # noqa: E731
    return ENV.get_template("report.html").render(
        _=functools.partial(t, "en"), html_lang="en", case=case, report=tips, now=start, when=when,
        particulars=[("name", "Li Wei 李伟"), ("last_seen_place", "Chaoyang Park, south gate")])


async def in_a_thread(html: str) -> bytes:
    return await asyncio.to_thread(pdf_from_html, html)


async def in_the_worker(html: str) -> bytes:
    return await run_in_worker(pdf_from_html, html)


async def measured(render, html: str) -> tuple[float, float, float, int]:
    """(process CPU s, worst event-loop lag ms, wall s, PDF bytes) of one render."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            worst = max(worst, time.perf_counter() - before - TICK)

    ticking = asyncio.create_task(ticker())
    cpu, wall = time.process_time(), time.perf_counter()
    pdf = await render(html)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done.set()
    await ticking
    return cpu, worst * 1000, wall, len(pdf)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tips", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    html = report_html(arguments.tips)
    ways = {"thread in the bot": in_a_thread, "flyer worker": in_the_worker}
    results: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in ways}
    for render in ways.values():
        await render(html)  # warm: WeasyPrint's imports and fonts, the worker process
    for _ in range(arguments.rounds):
        for name, render in ways.items():
            results[name].append(await measured(render, html))
    print(f"report of {arguments.tips} tips, {len(html):,} characters of HTML, {arguments.rounds} rounds (median):")
    for name, runs in results.items():
        cpu, lag, wall, size = (statistics.median(run[i] for run in runs) for i in range(4))
        print(f"  {name:18} bot process CPU {cpu:6.2f} s · worst loop lag {lag:7.1f} ms · wall {wall:5.2f} s"
              f" · {size / 1024:,.0f} KiB")
    shutdown_pool()


if __name__ == "__main__":
    asyncio.run(main())
