"""Broadcast benchmark: one broadcast to N subscribers, sent by a real `reunite run` through the
stand-in, on SQLite.

    .venv/bin/python bench/broadcast_bench.py [--scenario paced|capacity|crash|all] [--subscribers 10000]

- paced (DESIGN budget): Telegram's real flood limits on the stand-in, the bot at
  REUNITE_BROADCAST_RATE=25: zero 429s, wall time within 10 % of N / 25.
- capacity: the stand-in's limits scaled up to about 1,000 messages/s and the bot's rate raised to
  1,000/s (Telegram's paid-broadcast ceiling): the messages/s the sender sustains, and its CPU.
- crash: as capacity, with the bot SIGKILLed when about half are sent and started again: every
  subscriber gets the card at most once; `unknown` deliveries are at most the sends in flight at
  the kill (the sender keeps at most 16 calls in flight).

The broadcast is seeded already sending (tests/test_broadcast_crash.py's seed_running_broadcast:
as if a coordinator had pressed Send), so the clock measures sending only. Times come from the
stand-in's clock (first to last card it accepted). Prints a markdown summary and writes it to
bench/out/broadcast_bench.md (logs: bench/out/broadcast_*.log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tip_load import (
    HOST,
    OUT_DIR,
    PYTHON,
    Processes,
    cpu_seconds,
    free_port,
    get_json,
    machine_notes,
    post_json,
    wait_until,
)

from bot.config import load_settings
from tests.conftest import COORDINATOR_ID
from tests.test_broadcast_crash import seed_running_broadcast

TOKEN = "777002:BROADCASTBENCH"
FIRST_CHAT = 100_000
TELEGRAM_OVERALL_PER_SECOND = 30
# the sender's limit of calls in flight (bot/transport/sender.py)
MAX_IN_FLIGHT = 16
BASELINE_IN_FLIGHT = (1, 2, 4, 8, 16)


def delivery_tally(db_path: Path) -> dict[str, int]:
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
        try:
            return dict(con.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return {}


def broadcast_status(db_path: Path) -> str | None:
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT status FROM broadcasts").fetchone()
            return row[0] if row else None
        finally:
            con.close()
    except sqlite3.Error:
        return None


async def start_standin(procs: Processes, http: aiohttp.ClientSession, name: str, flood_scale: float,
                        user_ids: list[int]) -> tuple[subprocess.Popen, str]:
    """A fresh stand-in with these users; (its process, its base URL)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    standin = procs.start("stand-in", [PYTHON, "-m", "bot.sandbox.serve", "--host", HOST, "--port", str(port),
                                       "--token", TOKEN, "--flood-scale", str(flood_scale)],
                          dict(os.environ), OUT_DIR / f"broadcast_{name}_standin.log")
    await wait_until(lambda: get_json(http, f"{base}/sandbox/api/stats"), 30, "the stand-in")
    specs = [{"id": user_id, "first_name": f"S{user_id}"} for user_id in user_ids]
    for first in range(0, len(specs), 2000):
        await post_json(http, f"{base}/sandbox/api/users", specs[first:first + 2000])
    return standin, base


async def run(scenario: str, subscribers: int, rate: float, flood_scale: float) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix=f"broadcast_{scenario}_"))
    db_path = data_dir / "reunite.db"
    settings = load_settings({"REUNITE_DATA_DIR": str(data_dir)})
    procs = Processes()
    chat_ids = list(range(FIRST_CHAT, FIRST_CHAT + subscribers))
    try:
        async with aiohttp.ClientSession() as http:
            standin, base = await start_standin(procs, http, scenario, flood_scale, [COORDINATOR_ID, *chat_ids])
            await seed_running_broadcast(settings, chat_ids)
            env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": base,
                   "REUNITE_DATA_DIR": str(data_dir), "REUNITE_BROADCAST_RATE": str(rate),
                   "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
            log_path = OUT_DIR / f"broadcast_{scenario}_bot.log"

            def start_bot() -> subprocess.Popen:
                return procs.start("reunite run", [PYTHON, "-m", "bot", "run"], env, log_path)

            bot = start_bot()
            bot_ps = psutil.Process(bot.pid)

            async def first_card() -> bool:
                return (await get_json(http, f"{base}/sandbox/api/stats"))["sent_messages"] > 1

            # the bot's CPU from its first card on: sending only, not starting (models, migrations)
            await wait_until(first_card, 300, "the first card", interval=0.02, procs=[("reunite run", bot)])
            cpu_at_first = cpu_seconds(bot_ps)
            standin_ps = psutil.Process(standin.pid)
            standin_cpu_at_first = cpu_seconds(standin_ps)
            cpu_before_kill, killed_after, sent_at_kill = 0.0, None, None
            if scenario == "crash":
                async def half_sent() -> bool:
                    return (await get_json(http, f"{base}/sandbox/api/stats"))["sent_messages"] >= subscribers // 2

                await wait_until(half_sent, 600, "half the cards", interval=0.005, procs=[("reunite run", bot)])
                cpu_before_kill = cpu_seconds(bot_ps) - cpu_at_first
                os.killpg(bot.pid, signal.SIGKILL)
                bot.wait()
                sent_at_kill = (await get_json(http, f"{base}/sandbox/api/stats"))["sent_messages"]
                killed_after = delivery_tally(db_path)
                bot = start_bot()
                bot_ps = psutil.Process(bot.pid)
                cpu_at_first = 0.0  # a restart's start-up counts: it is part of resuming

            async def finished() -> bool:
                return broadcast_status(db_path) == "done"

            await wait_until(finished, 3600, "the broadcast to finish", interval=0.5, procs=[("reunite run", bot)])
            cpu = cpu_before_kill + cpu_seconds(bot_ps) - cpu_at_first
            standin_cpu = cpu_seconds(standin_ps) - standin_cpu_at_first
            timeline = (await get_json(http, f"{base}/sandbox/api/timeline"))["rows"]
            stats = await get_json(http, f"{base}/sandbox/api/stats")
    finally:
        procs.stop_all()
    cards = [row for row in timeline if row[1] == "out" and row[3] == "sendPhoto" and row[0] >= FIRST_CHAT]
    per_chat: dict[int, int] = {}
    for row in cards:
        per_chat[row[0]] = per_chat.get(row[0], 0) + 1
    times = sorted(row[2] for row in cards)
    wall = times[-1] - times[0] if len(times) > 1 else float("nan")
    tally = delivery_tally(db_path)
    unknown_ids = []
    if tally.get("unknown"):
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        unknown_ids = [row[0] for row in con.execute("SELECT chat_id FROM deliveries WHERE status = 'unknown'")]
        con.close()
    return {
        "scenario": scenario, "subscribers": subscribers, "rate": rate, "flood_scale": flood_scale,
        "cards": len(cards), "chats_reached": len(per_chat), "twice": sum(count > 1 for count in per_chat.values()),
        "wall_s": wall, "expected_s": (subscribers - 1) / rate, "msgs_per_s": (len(cards) - 1) / wall,
        "flood_429": stats["flood_429"], "tally": tally, "killed_after": killed_after, "sent_at_kill": sent_at_kill,
        "unknown_arrived": sum(per_chat.get(chat, 0) for chat in unknown_ids), "cpu_bot_s": cpu,
        "cpu_standin_s": standin_cpu, "loadavg": os.getloadavg()[0],
    }


async def _limited(slots: asyncio.Semaphore, send: Callable[[int], Awaitable[None]], chat_id: int) -> None:
    async with slots:
        await send(chat_id)


async def baseline(subscribers: int, flood_scale: float) -> list[dict]:
    """The same sends without the bot against the same stand-in: through PTB alone (the bot's HTTP
    stack, no database) with 1 to 16 calls in flight, and through a bare aiohttp client. What the
    sender adds is the difference; how PTB's throughput changes with calls in flight chose the
    sender's number."""
    from telegram import Bot
    from telegram.request import HTTPXRequest

    from bot.transport.http import AiohttpRequest

    procs = Processes()
    chat_ids = list(range(FIRST_CHAT, FIRST_CHAT + subscribers))
    rows = []
    clients = [(f"PTB + httpx alone, {k} in flight", k) for k in BASELINE_IN_FLIGHT]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)) as http:
            _, base = await start_standin(procs, http, "baseline", flood_scale, chat_ids)
            bot = Bot(TOKEN, base_url=f"{base}/bot", request=HTTPXRequest(connection_pool_size=32))
            # the bot's own backend (bot/transport/http.py) under PTB, at the sender's calls in flight
            lean = Bot(TOKEN, base_url=f"{base}/bot", request=AiohttpRequest(connection_pool_size=32))
            async with bot, lean:
                card = await bot.send_photo(chat_ids[0], await asyncio.to_thread(card_jpeg))
                file_id = card.photo[-1].file_id
                markup = {"inline_keyboard": [[{"text": "I have information", "callback_data": "ct|bench|0"}]]}

                async def through_ptb(chat_id: int) -> None:
                    await bot.do_api_request("sendPhoto", api_kwargs={"chat_id": chat_id, "photo": file_id,
                                                                      "caption": "Please help", "reply_markup": markup})

                async def through_ptb_aiohttp(chat_id: int) -> None:
                    await lean.do_api_request("sendPhoto", api_kwargs={
                        "chat_id": chat_id, "photo": file_id, "caption": "Please help", "reply_markup": markup})

                async def through_aiohttp(chat_id: int) -> None:
                    form = {"chat_id": str(chat_id), "photo": file_id, "caption": "Please help",
                            "reply_markup": json.dumps(markup)}
                    async with http.post(f"{base}/bot{TOKEN}/sendPhoto", data=form) as response:
                        await response.read()

                per_client = (len(chat_ids) - 1) // (len(clients) + 2)
                runs = [(name, through_ptb, k) for name, k in clients]
                runs.append((f"PTB + AiohttpRequest alone, {MAX_IN_FLIGHT} in flight", through_ptb_aiohttp,
                             MAX_IN_FLIGHT))
                runs.append((f"bare aiohttp, {MAX_IN_FLIGHT} in flight", through_aiohttp, MAX_IN_FLIGHT))
                for number, (name, send, in_flight) in enumerate(runs):
                    slots = asyncio.Semaphore(in_flight)
                    chats = chat_ids[1 + number * per_client:1 + (number + 1) * per_client]
                    me = psutil.Process()
                    cpu, started = cpu_seconds(me), time.monotonic()
                    await asyncio.gather(*(_limited(slots, send, chat_id) for chat_id in chats))
                    wall = time.monotonic() - started
                    rows.append({"client": name, "sends": len(chats), "wall_s": wall, "msgs_per_s": len(chats) / wall,
                                 "cpu_ms": 1000 * (cpu_seconds(me) - cpu) / len(chats)})
    finally:
        procs.stop_all()
    return rows


def card_jpeg() -> bytes:
    from tests.helpers import jpeg_bytes

    return jpeg_bytes(1080, 1080)


def baseline_report(rows: list[dict]) -> str:
    lines = ["", "Baseline, same machine and stand-in limit, no bot:", "",
             "| client | sends | wall s | msgs/s | client CPU ms per send |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['client']} | {r['sends']} | {r['wall_s']:.1f} | {r['msgs_per_s']:.1f} | {r['cpu_ms']:.2f} |"
              for r in rows]
    return "\n".join(lines)


def report(results: list[dict], notes: dict, commit: str) -> str:
    lines = [f"Machine: {notes['nproc']} cores ({notes['cpu']}), {notes['mem_gb']} GB, Python {notes['python']}, "
             f"shared with other jobs (load average per run below); commit {commit}", "",
             "| scenario | subscribers | rate /s | stand-in limit /s | cards | chats twice | 429s | wall s "
             "| expected s | msgs/s | bot CPU s (ms per card) | stand-in CPU s | load avg | deliveries "
             "| unknown (arrived) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        tally = ", ".join(f"{k} {v}" for k, v in sorted(r["tally"].items()))
        lines.append(f"| {r['scenario']} | {r['subscribers']} | {r['rate']:g} | "
                     f"{TELEGRAM_OVERALL_PER_SECOND * r['flood_scale']:g} | {r['cards']} | {r['twice']} | "
                     f"{r['flood_429']} | {r['wall_s']:.1f} | {r['expected_s']:.1f} | {r['msgs_per_s']:.1f} | "
                     f"{r['cpu_bot_s']:.1f} ({1000 * r['cpu_bot_s'] / max(1, r['cards']):.2f}) | "
                     f"{r['cpu_standin_s']:.1f} | {r['loadavg']:.1f} | {tally} | "
                     f"{r['tally'].get('unknown', 0)} ({r['unknown_arrived']}) |")
        if r["killed_after"] is not None:
            lines.append(f"|  | killed with {r['sent_at_kill']} messages accepted by the stand-in; deliveries "
                         f"then: {r['killed_after']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("baseline", "paced", "capacity", "crash", "all"), default="all")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--paced-rate", type=float, default=25.0)
    parser.add_argument("--capacity-rate", type=float, default=1000.0)
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Telegram's own limits at least; above them, a little more than the rate asked for
    scale = max(1.0, args.capacity_rate / TELEGRAM_OVERALL_PER_SECOND * 1.05)
    plans = {"paced": (args.paced_rate, 1.0), "capacity": (args.capacity_rate, scale),
             "crash": (args.capacity_rate, scale)}
    chosen = ["baseline", *plans] if args.scenario == "all" else [args.scenario]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    results, baseline_text = [], ""
    for scenario in chosen:
        if scenario == "baseline":
            baseline_text = baseline_report(asyncio.run(baseline(args.subscribers, scale)))
            print(baseline_text, flush=True)
            continue
        rate, flood_scale = plans[scenario]
        results.append(asyncio.run(run(scenario, args.subscribers, rate, flood_scale)))
        print(report(results[-1:], machine_notes(), commit), flush=True)
    text = report(results, machine_notes(), commit) + "\n" + baseline_text
    (OUT_DIR / "broadcast_bench.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
