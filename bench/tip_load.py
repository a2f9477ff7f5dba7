"""Tip-line load benchmark: simulated users send text tips through the stand-in to a real `reunite run`.

    .venv/bin/python bench/tip_load.py [--scenario capacity|surge|all] [--rate 300,400] [--seconds 15]
                                       [--users N] [--repeat K] [--coordinator] [--py-spy] [--keep]

Each run starts two fresh processes on 127.0.0.1: the Bot API stand-in (`python -m bot.sandbox.serve`)
and the bot (`reunite run`, SQLite in a fresh REUNITE_DATA_DIR). Every simulated user sends exactly
one text tip, on a fixed open-loop schedule (tip i at t0 + i/rate, whether or not earlier ones were
answered), through POST /sandbox/api/send.

- capacity (DESIGN budget: >= 300 tips/s, p99 update->ack <= 100 ms): stand-in flood control off,
  REUNITE_SEND_RATE=0 (the bot's pacer off), no coordinator (so no alert per tip) unless --coordinator.
  Default: 300/s and 400/s for 15 s each.
- surge (a TV appeal): 3,000 tips in 10 s (300/s), stand-in flood control on with Telegram's real
  limits, the bot's default pacer (REUNITE_SEND_RATE unset: 25/s), one coordinator (REUNITE_ADMINS=1001)
  who gets the alerts (digested), unless --no-coordinator.

Latency is measured on the stand-in's clock (GET /sandbox/api/timeline): from when it created the
user's update to when it accepted the bot's first sendMessage to that chat containing "T-".
"Committed" is read from the bot's SQLite file (read-only connection, WAL) every 0.25 s: rows in
`tips` and `inbox` against the sends completed so far. At the end: every user has exactly one
acknowledgement with a T- reference and exactly one tip, no update id twice, outbox statuses, the
stand-in's 429 count. CPU time of the bot, the stand-in and this generator plus machine load are
recorded so results on a shared machine can be judged.

Prints a markdown summary and writes it to bench/out/tip_load.md (bot logs: bench/out/tip_load_*.log).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
HOST = "127.0.0.1"
TOKEN = "777001:TIPLOADBENCH"
COORDINATOR_ID = 1001
WARMUP_BASE = 4_000_001
USER_BASE = 5_000_001
WARMUP_TIPS = 30
REF_RE = re.compile(r"T-[0-9A-Z]{4}-[0-9A-Z]{4}")
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
POLL_INTERVAL = 0.25

TIP_TEXTS = [
    "I think I saw her at the bus station on Harbour Road around 5 pm, red coat, with an older man.",
    "A boy who looks like the photo sells flowers near the night market entrance most evenings.",
    "Saw someone matching the description at the 24h shop by the river, she seemed scared.",
    "My neighbour's new lodger looks a lot like the man in the appeal, arrived two weeks ago.",
    "Girl with a scar over the left eyebrow on the 7:40 train to the coast this morning.",
]


# ------------------------------------------------------------------------------------------------
# processes


class Processes:
    """Child processes, each in its own session; all are stopped at the end, even on error."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, log_path: Path) -> subprocess.Popen:
        # this checkout's code, not whatever the venv's editable install points at (another worktree)
        env = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
        log = open(log_path, "wb")
        proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.procs.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def machine_notes() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "loadavg": [round(value, 2) for value in os.getloadavg()],
            "kernel": platform.release(), "mem_gb": round(psutil.virtual_memory().total / 2**30, 1)}


# ------------------------------------------------------------------------------------------------
# one run


@dataclass
class Config:
    scenario: str  # capacity | surge
    rate: float
    seconds: float
    users: int
    flood: bool
    send_rate: str | None  # REUNITE_SEND_RATE; None = the bot's default
    coordinator: bool
    py_spy: bool = False
    cprofile: bool = False
    probe: bool = False
    drain_timeout: float | None = None
    keep: bool = False

    @property
    def tips(self) -> int:
        return int(round(self.rate * self.seconds))

    @property
    def label(self) -> str:
        return f"{self.scenario}-{int(self.rate)}"


@dataclass
class Timeline:
    """Everything the stand-in recorded, fetched incrementally."""

    since: float = 0.0
    first_in: dict = field(default_factory=dict)  # chat -> stand-in time of its first inbound message
    ins: collections.Counter = field(default_factory=collections.Counter)
    acks: dict = field(default_factory=lambda: collections.defaultdict(list))  # chat -> [(at, ref)]
    other_out: collections.Counter = field(default_factory=collections.Counter)
    out_times: list = field(default_factory=list)  # every outbound message's time (all chats)

    def add(self, rows: list) -> None:
        for chat_id, direction, at, method, text in rows:
            if direction == "in":
                self.ins[chat_id] += 1
                self.first_in.setdefault(chat_id, at)
                continue
            self.out_times.append(at)
            match = REF_RE.search(text or "") if method == "sendMessage" else None
            if match:
                self.acks[chat_id].append((at, match.group(0)))
            else:
                self.other_out[chat_id] += 1


async def fetch_timeline(http: aiohttp.ClientSession, base: str, tl: Timeline) -> None:
    async with http.get(f"{base}/sandbox/api/timeline", params={"since": repr(tl.since)}) as r:
        r.raise_for_status()
        data = await r.json()
    tl.add(data["rows"])
    tl.since = data["now"]


async def get_json(http: aiohttp.ClientSession, url: str, **kw):
    async with http.get(url, **kw) as r:
        r.raise_for_status()
        return await r.json()


async def post_json(http: aiohttp.ClientSession, url: str, body):
    async with http.post(url, json=body) as r:
        r.raise_for_status()
        return await r.json()


async def wait_until(pred, timeout: float, what: str, interval: float = 0.1, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}")
        try:
            if await pred():
                return
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def db_counts(db_path: Path) -> tuple[int, int, int] | None:
    """(tips, inbox rows, processed inbox rows) as a reader sees them, or None if not readable yet."""
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)
        try:
            tips = con.execute("SELECT COUNT(*) FROM tips").fetchone()[0]
            inbox, processed = con.execute(
                "SELECT COUNT(*), COUNT(processed_at) FROM inbox").fetchone()
            return tips, inbox, processed
        finally:
            con.close()
    except sqlite3.Error:
        return None


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def generate(http: aiohttp.ClientSession, base: str, user_ids: list[int], rate: float,
                   sent_done: list[float], failures: list) -> tuple[float, float, float]:
    """Open loop: tip i is sent at t0 + i/rate. Returns (t0 wall, last send wall, max lateness s)."""
    loop = asyncio.get_running_loop()
    n = len(user_ids)
    tasks: set[asyncio.Task] = set()
    lateness = 0.0

    async def send(i: int, uid: int) -> None:
        body = {"user_id": uid, "text": f"{TIP_TEXTS[i % len(TIP_TEXTS)]} (#{i})"}
        try:
            async with http.post(f"{base}/sandbox/api/send", json=body) as r:
                await r.read()
                if r.status != 200:
                    failures.append((uid, r.status))
                    return
        except (TimeoutError, aiohttp.ClientError) as error:
            failures.append((uid, type(error).__name__))
            return
        sent_done.append(time.time())

    t0_loop = loop.time()
    t0_wall = time.time()
    i = 0
    while i < n:
        now = loop.time()
        due = min(n, int((now - t0_loop) * rate) + 1)
        while i < due:
            lateness = max(lateness, now - (t0_loop + i / rate))
            task = asyncio.create_task(send(i, user_ids[i]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0_loop + i / rate - loop.time()))
    last_wall = time.time()
    if tasks:
        await asyncio.wait(set(tasks), timeout=60)
    return t0_wall, last_wall, lateness


async def run_once(cfg: Config) -> dict:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="reunite-tipload-"))
    procs = Processes()
    probe_path = OUT_DIR / f"tip_load_{cfg.label}_probe.json"
    probe_path.unlink(missing_ok=True)
    try:
        result = await _run_once(cfg, data_dir, procs, probe_path)
    finally:
        procs.stop_all()
        if not cfg.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"  kept {data_dir}", file=sys.stderr)
    if cfg.probe:
        result["probe"] = json.loads(probe_path.read_text()) if probe_path.exists() else None
    return result


async def _run_once(cfg: Config, data_dir: Path, procs: Processes, probe_path: Path) -> dict:
    port = free_port()
    base = f"http://{HOST}:{port}"
    standin_argv = [PYTHON, "-m", "bot.sandbox.serve", "--host", HOST, "--port", str(port), "--token", TOKEN,
                    "--no-demo-users"] + ([] if cfg.flood else ["--no-flood"])
    clean_env = {k: v for k, v in os.environ.items()
                 if not k.startswith(("TELEGRAM_", "REUNITE_", "WEBHOOK_")) and k not in ("DATABASE_URL", "PORT")}
    standin = procs.start("stand-in", standin_argv, clean_env, OUT_DIR / f"tip_load_{cfg.label}_standin.log")
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=HTTP_TIMEOUT) as http:
        async def standin_up() -> bool:
            await get_json(http, f"{base}/sandbox/api/config")
            return True
        await wait_until(standin_up, 30, "the stand-in", procs=[("stand-in", standin)])

        warm_ids = list(range(WARMUP_BASE, WARMUP_BASE + WARMUP_TIPS))
        user_ids = list(range(USER_BASE, USER_BASE + cfg.users))[: cfg.tips]
        specs = [{"id": uid, "first_name": "Warm"} for uid in warm_ids]
        specs += [{"id": uid, "first_name": f"Tipster{uid % 10000}"} for uid in range(USER_BASE, USER_BASE + cfg.users)]
        if cfg.coordinator:
            specs.append({"id": COORDINATOR_ID, "first_name": "Coordinator", "label": "coordinator"})
        for start in range(0, len(specs), 2000):
            await post_json(http, f"{base}/sandbox/api/users", specs[start:start + 2000])

        env = dict(clean_env, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=base, REUNITE_DATA_DIR=str(data_dir),
                   REUNITE_USER_RATE_LIMIT="1000")
        if cfg.coordinator:
            env["REUNITE_ADMINS"] = str(COORDINATOR_ID)
        if cfg.send_rate is not None:
            env["REUNITE_SEND_RATE"] = cfg.send_rate
        reunite = VENV_BIN / "reunite"
        bot_argv = [str(reunite), "run"] if reunite.exists() else [PYTHON, "-m", "bot", "run"]
        if cfg.probe:  # the same bot with measuring probes (bench/_tip_load_bot.py)
            bot_argv = [PYTHON, str(ROOT / "bench" / "_tip_load_bot.py")]
            env["TIPLOAD_PROBE_OUT"] = str(probe_path)
        if cfg.cprofile:  # cProfile of the bot's main thread during the load (bench/out/tip_load_<run>.prof)
            bot_argv = [PYTHON, str(ROOT / "bench" / "_tip_load_bot.py")]
            env["TIPLOAD_CPROFILE"] = str(OUT_DIR / f"tip_load_{cfg.label}.prof")
        bot_log = OUT_DIR / f"tip_load_{cfg.label}_bot.log"
        bot = procs.start("reunite run", bot_argv, env, bot_log)
        alive = [("stand-in", standin), ("reunite run", bot)]

        async def polling() -> bool:
            stats = await get_json(http, f"{base}/sandbox/api/stats")
            return stats["calls"].get("getUpdates", 0) >= 1
        await wait_until(polling, 90, "the bot to poll getUpdates", procs=alive)

        # warm-up: a few tips, all acknowledged, before anything is measured
        tl = Timeline()
        for uid in warm_ids:
            await post_json(http, f"{base}/sandbox/api/send", {"user_id": uid, "text": "warm-up tip"})

        async def warmed() -> bool:
            await fetch_timeline(http, base, tl)
            return all(tl.acks.get(uid) for uid in warm_ids)
        await wait_until(warmed, 60, "the warm-up tips to be acknowledged", interval=0.2, procs=alive)
        await asyncio.sleep(1.5 if cfg.flood else 0.3)  # let the pacer's buckets refill
        await fetch_timeline(http, base, tl)
        db_path = data_dir / "reunite.db"
        base_counts = db_counts(db_path) or (0, 0, 0)
        stats0 = await get_json(http, f"{base}/sandbox/api/stats")
        if cfg.probe or cfg.cprofile:
            os.kill(bot.pid, signal.SIGUSR1)  # the probes start counting now (after the warm-up)

        # measurement
        bot_ps, standin_ps, self_ps = psutil.Process(bot.pid), psutil.Process(standin.pid), psutil.Process()
        cpu0 = {"bot": cpu_seconds(bot_ps), "standin": cpu_seconds(standin_ps), "loadgen": cpu_seconds(self_ps)}
        sys0 = psutil.cpu_times()
        load0 = os.getloadavg()
        spy = None
        spy_out = OUT_DIR / f"tip_load_{cfg.label}_pyspy.txt"
        if cfg.py_spy:
            spy_bin = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
            if spy_bin:
                spy = subprocess.Popen([spy_bin, "record", "-p", str(bot.pid), "-r", "200", "-f", "raw", "-o",
                                        str(spy_out), "-d", str(int(cfg.seconds + 3)), "--nonblocking",
                                        "--threads", "--idle"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                procs.procs.append(("py-spy", spy))
                await asyncio.sleep(0.5)
            else:
                print("  py-spy not installed (pip install py-spy): no profile", file=sys.stderr)

        sent_done: list[float] = []
        failures: list = []
        samples: list[tuple[float, int, int, int]] = []  # (wall, tips, inbox, processed) beyond warm-up
        stop_polling = asyncio.Event()
        want = set(user_ids)

        async def poll_db() -> None:
            while not stop_polling.is_set():
                counts = await asyncio.to_thread(db_counts, db_path)
                if counts is not None:
                    samples.append((time.time(), counts[0] - base_counts[0], counts[1] - base_counts[1],
                                    counts[2] - base_counts[2]))
                try:
                    await asyncio.wait_for(stop_polling.wait(), POLL_INTERVAL)
                except TimeoutError:
                    pass

        async def poll_timeline() -> None:
            while not stop_polling.is_set():
                try:
                    await fetch_timeline(http, base, tl)
                except (TimeoutError, aiohttp.ClientError):
                    pass
                try:
                    await asyncio.wait_for(stop_polling.wait(), 0.5)
                except TimeoutError:
                    pass

        db_task = asyncio.create_task(poll_db())
        tl_task = asyncio.create_task(poll_timeline())
        t0, t_last_send, lateness = await generate(http, base, user_ids, cfg.rate, sent_done, failures)
        cpu_load = {"bot": cpu_seconds(bot_ps), "standin": cpu_seconds(standin_ps), "loadgen": cpu_seconds(self_ps)}
        wall_load = time.time() - t0

        # wait for every acknowledgement (bounded), then a moment more to catch duplicates
        if cfg.drain_timeout:
            ack_timeout = cfg.drain_timeout
        elif cfg.send_rate in (None, "") or float(cfg.send_rate) > 0:
            ack_timeout = len(user_ids) / (0.8 * float(cfg.send_rate or 25.0)) + 60
        else:  # unpaced: a bot that falls behind gets time to drain at >= 20 tips/s
            ack_timeout = len(user_ids) / 20 + 60
        deadline = time.monotonic() + ack_timeout
        drained = False
        while time.monotonic() < deadline:
            if sum(1 for uid in want if tl.acks.get(uid)) >= len(want) - len(failures):
                drained = True
                break
            for name, proc in alive:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode} during the run")
            await asyncio.sleep(0.25)
        t_acked = time.time()
        cpu1 = {"bot": cpu_seconds(bot_ps), "standin": cpu_seconds(standin_ps), "loadgen": cpu_seconds(self_ps)}
        sys1 = psutil.cpu_times()
        load1 = os.getloadavg()
        await asyncio.sleep(2.0)
        stop_polling.set()
        await asyncio.gather(db_task, tl_task)
        if spy is not None:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

        # final state, read in full
        final = Timeline()
        await fetch_timeline(http, base, final)
        stats1 = await get_json(http, f"{base}/sandbox/api/stats")

    # ---- analysis (processes are still up; the DB is read read-only)
    ins_at = [final.first_in[uid] for uid in user_ids if uid in final.first_in]
    latencies = []
    first_ack_at = []
    by_second = collections.defaultdict(list)  # second of the load -> latencies of the tips sent in it
    for uid in user_ids:
        acks = final.acks.get(uid)
        if acks and uid in final.first_in:
            latencies.append((acks[0][0] - final.first_in[uid]) * 1000.0)
            first_ack_at.append(acks[0][0])
            by_second[int(final.first_in[uid] - min(ins_at))].append(latencies[-1])
    n = len(user_ids)
    no_ack = [uid for uid in user_ids if not final.acks.get(uid)]
    dup_ack = [uid for uid in user_ids if len(final.acks.get(uid, ())) > 1]
    extra_out = sum(final.other_out.get(uid, 0) for uid in user_ids)
    coord_msgs = final.other_out.get(COORDINATOR_ID, 0) + len(final.acks.get(COORDINATOR_ID, ()))

    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        per_user = dict(con.execute(
            "SELECT tipster_id, COUNT(*) FROM tips WHERE tipster_id >= ? GROUP BY tipster_id", (USER_BASE,)))
        inbox_total, inbox_distinct, inbox_unprocessed, inbox_retried = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT update_id), SUM(processed_at IS NULL), SUM(attempts > 0) "
            "FROM inbox").fetchone()
        outbox = con.execute("SELECT priority, status, COUNT(*) FROM outbox GROUP BY priority, status").fetchall()
        refs_db = {row[0]: row[1] for row in con.execute(
            "SELECT tipster_id, reference FROM tips WHERE tipster_id >= ?", (USER_BASE,))}
    finally:
        con.close()
    no_tip = [uid for uid in user_ids if per_user.get(uid, 0) == 0]
    dup_tip = [uid for uid in user_ids if per_user.get(uid, 0) > 1]
    ref_mismatch = sum(1 for uid in user_ids if final.acks.get(uid) and refs_db.get(uid)
                       and final.acks[uid][0][1] != refs_db[uid])
    lost = len(set(no_ack) | set(no_tip))
    duplicates = len(dup_ack) + len(dup_tip) + (inbox_total - inbox_distinct)

    # committed as it arrives: backlog of completed sends not yet visible as tips / inbox rows
    sent_sorted = sorted(sent_done)
    max_backlog = max_lag_s = max_inbox_backlog = max_inbox_lag_s = 0.0
    t_all_committed = None
    for wall, tips, inbox_rows, _ in samples:
        sent_by = bisect.bisect_right(sent_sorted, wall)
        for count, kind in ((tips, "tips"), (inbox_rows, "inbox")):
            backlog = max(0, sent_by - count)
            lag = wall - sent_sorted[count] if backlog and count < len(sent_sorted) else 0.0
            if kind == "tips":
                max_backlog, max_lag_s = max(max_backlog, backlog), max(max_lag_s, lag)
            else:
                max_inbox_backlog, max_inbox_lag_s = max(max_inbox_backlog, backlog), max(max_inbox_lag_s, lag)
        if t_all_committed is None and tips >= len(sent_sorted) and sent_by >= len(sent_sorted):
            t_all_committed = wall

    first_in = min(ins_at) if ins_at else t0
    last_in = max(ins_at) if ins_at else t0
    last_ack = max(first_ack_at) if first_ack_at else float("nan")
    # peak acks in any 1-second window of the stand-in's clock (messages to everyone, coordinator included)
    outs = sorted(t for t in final.out_times if t >= first_in)
    peak_1s = 0
    j = 0
    for i_out, t_out in enumerate(outs):
        while outs[j] < t_out - 1.0:
            j += 1
        peak_1s = max(peak_1s, i_out - j + 1)
    # steady ack rate: acks between 10% and 90% of them
    ack_sorted = sorted(first_ack_at)
    steady = float("nan")
    if len(ack_sorted) >= 20:
        a, b = ack_sorted[len(ack_sorted) // 10], ack_sorted[len(ack_sorted) * 9 // 10]
        if b > a:
            steady = (len(ack_sorted) * 8 // 10) / (b - a)

    wall_all = t_acked - t0
    sys_delta = {k: getattr(sys1, k) - getattr(sys0, k) for k in sys0._fields}
    sys_total = sum(sys_delta.values()) or 1.0
    busy = 1.0 - (sys_delta.get("idle", 0) + sys_delta.get("iowait", 0)) / sys_total
    steal = sys_delta.get("steal", 0.0) / sys_total

    verdict = []
    if cfg.scenario == "capacity":
        # 300/s arrived and each was committed within a second of its arrival (committed/s over the
        # whole run reads just under the offered rate: the last sample comes up to 0.25 s late)
        arrived_rate = (len(ins_at) - 1) / max(1e-9, last_in - first_in)
        ok = arrived_rate >= 300 * 0.995 and t_all_committed is not None and max_lag_s <= 1.0 \
            and pct(latencies, 0.99) <= 100
        verdict = ["PASS" if ok and not lost and not duplicates else "FAIL"]
        if cfg.rate < 300:
            verdict = ["n/a", "offered below the budget's 300/s: a sweep point"]
    else:
        checks = {"committed on arrival (max lag <= 1 s)": max_lag_s <= 1.0,
                  "no 429 storm (< 10)": stats1["flood_429"] - stats0["flood_429"] < 10,
                  "nothing lost": lost == 0, "no duplicates": duplicates == 0,
                  "acked at pace (steady >= 20/s)": steady == steady and steady >= 20.0}
        verdict = ["PASS" if all(checks.values()) else "FAIL"] + [k for k, ok in checks.items() if not ok]
    result = {
        "verdict": verdict, "drained": drained, "drain_timeout_s": ack_timeout,
        "label": cfg.label, "scenario": cfg.scenario, "offered_rate": cfg.rate, "tips": n,
        "flood": cfg.flood, "send_rate": cfg.send_rate or "default (25)", "coordinator": cfg.coordinator,
        "actual_offered_rate": ((len(ins_at) - 1) / (last_in - first_in)
                                if len(ins_at) > 1 and last_in > first_in else float("nan")),
        "gen_max_lateness_ms": lateness * 1000, "send_failures": len(failures),
        "committed_per_s": (n / (t_all_committed - first_in)
                            if t_all_committed and t_all_committed > first_in else float("nan")),
        "time_all_committed_s": (t_all_committed - first_in) if t_all_committed else float("nan"),
        "max_commit_backlog": max_backlog, "max_commit_lag_s": max_lag_s,
        "max_inbox_backlog": max_inbox_backlog, "max_inbox_lag_s": max_inbox_lag_s,
        "acks": len(first_ack_at),
        "acks_per_s": (len(first_ack_at) / (last_ack - first_in)
                       if first_ack_at and last_ack > first_in else float("nan")),
        "steady_acks_per_s": steady, "peak_msgs_1s": peak_1s,
        "time_all_acked_s": last_ack - first_in if first_ack_at else float("nan"),
        "p50": pct(latencies, 0.50), "p95": pct(latencies, 0.95), "p99": pct(latencies, 0.99),
        "max": max(latencies) if latencies else float("nan"),
        # a high p99 from one stall shows as one bad second; from a slow pipeline, as all of them
        "p99_by_second": [round(pct(by_second[second], 0.99), 1) for second in sorted(by_second)],
        "flood_429": stats1["flood_429"] - stats0["flood_429"], "api_errors": stats1.get("errors", {}),
        "lost": lost, "no_ack": len(no_ack), "no_tip": len(no_tip), "duplicates": duplicates,
        "dup_acks": len(dup_ack), "dup_tips": len(dup_tip), "dup_update_ids": inbox_total - inbox_distinct,
        "dup_ack_examples": [(uid, [(round(at - final.first_in.get(uid, at), 3), ref) for at, ref in final.acks[uid]])
                             for uid in dup_ack[:5]],
        "ref_mismatch": ref_mismatch, "other_msgs_to_tipsters": extra_out, "coordinator_msgs": coord_msgs,
        "inbox_unprocessed": inbox_unprocessed, "inbox_retried": inbox_retried or 0,
        "outbox": {f"p{p}:{s}": c for p, s, c in outbox},
        "wall_s": wall_all, "load_window_s": wall_load,
        "cpu_bot_s": cpu1["bot"] - cpu0["bot"], "cpu_standin_s": cpu1["standin"] - cpu0["standin"],
        "cpu_loadgen_s": cpu1["loadgen"] - cpu0["loadgen"],
        "cpu_bot_load_window_s": cpu_load["bot"] - cpu0["bot"],
        "machine_busy": busy, "machine_steal": steal, "loadavg_before": load0, "loadavg_after": load1,
        "bot_log_warnings": _count_log(bot_log),
        "py_spy": str(spy_out) if cfg.py_spy and spy_out.exists() else None,
    }
    return result


def _count_log(path: Path) -> dict:
    counts = collections.Counter()
    try:
        for line in path.read_text(errors="replace").splitlines():
            for level in ("WARNING", "ERROR", "CRITICAL"):
                if f" {level} " in line:
                    counts[level] += 1
    except OSError:
        pass
    return dict(counts)


# ------------------------------------------------------------------------------------------------
# py-spy summary


def pyspy_summary(path: str, top: int = 15) -> str:
    """Top functions by self and by inclusive samples from a py-spy raw (collapsed stacks) file."""
    self_c: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_c[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    if not total:
        return "(empty profile)"
    out = [f"py-spy samples: {total}", "", "| self % | function |", "|---:|---|"]
    out += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in self_c.most_common(top)]
    out += ["", "| inclusive % | function |", "|---:|---|"]
    out += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in incl.most_common(top * 3)
            if "/bot/" in f or "sqlalchemy" in f or "telegram" in f or "aiosqlite" in f or "httpx" in f][:top * 2]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# report


def f1(x, nd=1) -> str:
    if isinstance(x, float) and x != x:
        return "n/a"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def probe_report(r: dict) -> str:
    p = r["probe"]
    n = max(1, r["tips"])
    out = [f"## Probe: {r['label']} (bot process after warm-up, {p['window_s']:.1f} s; "
           f"mean batch {p['mean_batch']:.1f} updates)", "",
           f"- CPU per tip: process {1000 * p['process_cpu_s'] / n:.1f} ms, main thread (event loop) "
           f"{1000 * p['main_thread_cpu_s'] / n:.1f} ms; "
           f"main thread busy {100 * p['main_thread_cpu_s'] / p['window_s']:.0f}% "
           f"of the window; event-loop lag p50 {p['loop_lag']['p50_ms']:.1f} / p99 {p['loop_lag']['p99_ms']:.1f} / "
           f"max {p['loop_lag']['max_ms']:.0f} ms; max RSS {p['maxrss_mb']:.0f} MB",
           f"- update processing (`_process_once`, wall): p50 {p['updates']['p50_ms']:.1f} ms, p99 "
           f"{p['updates']['p99_ms']:.1f} ms, max {p['updates']['max_ms']:.0f} ms "
           f"over {p['updates']['count']} updates; "
           f"largest round {p.get('max_batch', '?')} updates",
           "- garbage collections (generation: count, longest, total): " + ", ".join(
               f"{generation}: {g['count']}, {g['max_ms']:.1f} / {g['sum_ms']:.0f} ms"
               for generation, g in p.get("gc", {}).items()),
           f"- outbox rows sent more than once: {p['sends']['rows_sent_twice_or_more']} of {p['sends']['rows']} "
           f"(seconds between the sends: {p['sends']['gap_s_examples']}); "
           f"{p['sends'].get('explained_by_full_rescan', '?')} "
           f"of them were read back as pending by one of the sender's "
           f"{p['sends'].get('full_rescans', '?')} full rescans "
           f"between the two sends ({p['sends'].get('incremental_loads', '?')} incremental outbox reads)", "",
           "| SQLite call on the worker thread | calls/tip | wall ms/tip | CPU ms/tip | wait ms/tip (wall-CPU) "
           "| max ms |",
           "|---|---:|---:|---:|---:|---:|"]
    rows = sorted(p["sql"].items(), key=lambda kv: -kv[1]["wall_s"])
    tot = {"count": 0, "wall_s": 0.0, "cpu_s": 0.0}
    for kind, v in rows:
        for k in tot:
            tot[k] += v[k]
        out.append(f"| `{kind}` | {v['count'] / n:.2f} | {1000 * v['wall_s'] / n:.2f} | {1000 * v['cpu_s'] / n:.2f} | "
                   f"{1000 * (v['wall_s'] - v['cpu_s']) / n:.2f} | {v['max_ms']:.0f} |")
    out.append(f"| **all** | {tot['count'] / n:.1f} | {1000 * tot['wall_s'] / n:.2f} | {1000 * tot['cpu_s'] / n:.2f} | "
               f"{1000 * (tot['wall_s'] - tot['cpu_s']) / n:.2f} | |")
    if p.get("write_turns"):
        out += ["", "| writing transaction (by its first write) | count | wait for the turn ms (mean) | "
                    "held ms (mean) | held ms (max) |", "|---|---:|---:|---:|---:|"]
        for kind, v in sorted(p["write_turns"].items(), key=lambda kv: -kv[1]["hold_s"]):
            count = max(1, v["count"])
            out.append(f"| `{kind}` | {v['count']} | {1000 * v['wait_s'] / count:.1f} | "
                       f"{1000 * v['hold_s'] / count:.1f} | {v['max_hold_ms']:.0f} |")
    return "\n".join(out)


def report(results: list[dict], notes: dict, started: str) -> str:
    lines = [f"# Tip-line load benchmark ({started})", "",
             f"Machine: {notes['nproc']} CPUs ({notes['cpu']}), {notes['mem_gb']} GB, Python {notes['python']}, "
             f"kernel {notes['kernel']}. Bot: `reunite run` on SQLite; stand-in and load generator are separate "
             "processes on the same machine.", "",
             "| run | flood ctl | offered tips/s (actual) | tips | committed/s | acks/s (steady) | p50 ms | p95 ms | "
             "p99 ms | max ms | 429s | lost | dup | all acked after s | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['label']} | {'on' if r['flood'] else 'off'} "
            f"| {f1(r['offered_rate'], 0)} ({f1(r['actual_offered_rate'])}) "
            f"| {r['tips']} | {f1(r['committed_per_s'])} | {f1(r['acks_per_s'])} ({f1(r['steady_acks_per_s'])}) "
            f"| {f1(r['p50'])} | {f1(r['p95'])} | {f1(r['p99'])} | {f1(r['max'])} | {r['flood_429']} "
            f"| {r['lost']}{'' if r['drained'] else ' (not drained in ' + f1(r['drain_timeout_s'], 0) + ' s)'} "
            f"| {r['duplicates']} | {f1(r['time_all_acked_s'])} | {f1(r['wall_s'])} |")
    lines += ["", "| run | bot CPU s (% of a core, load window / whole) | stand-in CPU % | load-gen CPU % "
              "| machine busy % (steal) | loadavg 1m before/after | commit backlog max (lag s) "
              "| inbox backlog max (lag s) | peak msgs in 1 s | gen lateness max ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['label']} | {f1(r['cpu_bot_s'])} ({f1(100 * r['cpu_bot_load_window_s'] / r['load_window_s'], 0)}% / "
            f"{f1(100 * r['cpu_bot_s'] / r['wall_s'], 0)}%) | {f1(100 * r['cpu_standin_s'] / r['wall_s'], 0)} "
            f"| {f1(100 * r['cpu_loadgen_s'] / r['wall_s'], 0)} "
            f"| {f1(100 * r['machine_busy'], 0)} ({f1(100 * r['machine_steal'], 1)}) "
            f"| {r['loadavg_before'][0]:.2f}/{r['loadavg_after'][0]:.2f} "
            f"| {int(r['max_commit_backlog'])} ({f1(r['max_commit_lag_s'], 2)}) "
            f"| {int(r['max_inbox_backlog'])} ({f1(r['max_inbox_lag_s'], 2)}) | {r['peak_msgs_1s']} "
            f"| {f1(r['gen_max_lateness_ms'])} |")
    lines += ["", "Checks per run:", ""]
    for r in results:
        failed = r["verdict"][1:]
        why = " (" + "; ".join(failed) + ")" if failed else ""
        coordinator = "1 (id 1001, alerts digested)" if r["coordinator"] else "none"
        dup_acks = " " + str(r["dup_ack_examples"]) if r["dup_ack_examples"] else ""
        lines.append(
            f"- {r['label']}: **{r['verdict'][0]}**{why}; send rate {r['send_rate']}, coordinator {coordinator}; "
            f"no ack {r['no_ack']}, no tip {r['no_tip']}, dup acks {r['dup_acks']}, dup tips {r['dup_tips']}, "
            f"dup update ids {r['dup_update_ids']}{dup_acks}, ack ref != DB ref {r['ref_mismatch']}, "
            f"inbox unprocessed {r['inbox_unprocessed']}, retried {r['inbox_retried']}, "
            f"other msgs to tipsters {r['other_msgs_to_tipsters']}, "
            f"coordinator msgs {r['coordinator_msgs']}, send failures {r['send_failures']}, "
            f"stand-in API errors {r['api_errors'] or 'none'}, outbox {r['outbox']}, "
            f"bot log {r['bot_log_warnings'] or 'clean'}; "
            f"p99 ms by second of the load {r['p99_by_second']}")
    lines += ["", "Budgets (DESIGN.md): flood control off >= 300 tips/s with p99 <= 100 ms; on: 3,000 tips in 10 s "
              "committed on arrival, acked at Telegram's pace (the bot paces at 25/s), no 429 storm, nothing lost.",
              "Latency is update created -> acknowledgement accepted, both on the stand-in's clock; 'committed/s' is "
              "tips / (time the last tip was visible in SQLite - first update), sampled every 0.25 s; "
              "'commit backlog' is tips sent (HTTP 200 from the stand-in) but not yet visible in `tips`, "
              "its lag the age of the oldest of them.",
              "Verdicts: capacity PASS = 300/s arrived, every tip committed within 1 s of arriving, p99 <= 100 ms, "
              "nothing lost or duplicated; surge PASS = "
              "max commit lag <= 1 s, < 10 429s, nothing lost or duplicated, "
              "steady ack rate >= 20/s (the bot paces at 25/s)."]
    for r in results:
        if r.get("probe"):
            lines += ["", probe_report(r)]
    for r in results:
        if r.get("py_spy"):
            lines += ["", f"## py-spy: {r['label']} (bot process, load window)", "", pyspy_summary(r["py_spy"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("capacity", "surge", "all"), default="all")
    ap.add_argument("--rate", default=None,
                    help="tips/s; comma-separated for several capacity runs (default capacity 300,400; surge 300)")
    ap.add_argument("--seconds", type=float, default=None, help="length of the load (default capacity 15, surge 10)")
    ap.add_argument("--users", type=int, default=None,
                    help="simulated users (default rate x seconds: each sends one tip; must be >= that)")
    ap.add_argument("--repeat", type=int, default=1, help="run each configuration this many times")
    coord = ap.add_mutually_exclusive_group()
    coord.add_argument("--coordinator", dest="coordinator", action="store_true", default=None,
                       help="one coordinator (REUNITE_ADMINS) who gets an alert per tip (default in surge)")
    coord.add_argument("--no-coordinator", dest="coordinator", action="store_false",
                       help="no coordinator (default in capacity)")
    ap.add_argument("--py-spy", action="store_true", help="record the bot with py-spy during the load (needs py-spy)")
    ap.add_argument("--cprofile", action="store_true",
                    help="cProfile the bot's event-loop thread during the load (slower!): "
                         "bench/out/tip_load_<run>.prof")
    ap.add_argument("--probe", action="store_true",
                    help="run the bot through bench/_tip_load_bot.py: SQLite time/lock waits, loop lag, re-sends")
    ap.add_argument("--drain-timeout", type=float, default=None,
                    help="seconds to wait for the last acknowledgement after the load (default: from the tip count)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = ap.parse_args(argv)

    configs: list[Config] = []
    scenarios = ["capacity", "surge"] if args.scenario == "all" else [args.scenario]
    for scenario in scenarios:
        default_rates = "300,400" if scenario == "capacity" else "300"
        rates = [float(x) for x in (args.rate or default_rates).split(",") if x.strip()]
        seconds = args.seconds or (15.0 if scenario == "capacity" else 10.0)
        for rate in rates:
            tips = int(round(rate * seconds))
            users = args.users or tips
            if users < tips:
                ap.error(f"--users {users} < {tips} tips: each simulated user sends exactly one tip")
            coordinator = args.coordinator if args.coordinator is not None else scenario == "surge"
            cfg = Config(scenario, rate, seconds, users, flood=(scenario == "surge"),
                         send_rate="0" if scenario == "capacity" else None, coordinator=coordinator,
                         py_spy=args.py_spy,
                         cprofile=args.cprofile, probe=args.probe, drain_timeout=args.drain_timeout,
                         keep=args.keep)
            configs.extend([cfg] * max(1, args.repeat))

    def _terminate(*_args):
        raise KeyboardInterrupt  # unwinds through run_once's finally: the child processes are stopped

    signal.signal(signal.SIGTERM, _terminate)
    notes = machine_notes()
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = []
    interrupted = False
    for i, cfg in enumerate(configs, 1):
        print(f"[{i}/{len(configs)}] {cfg.label}: {cfg.tips} tips at {cfg.rate:.0f}/s, flood control "
              f"{'on' if cfg.flood else 'off'}, REUNITE_SEND_RATE={cfg.send_rate or 'default'}", file=sys.stderr)
        try:
            result = asyncio.run(run_once(cfg))
        except KeyboardInterrupt:
            interrupted = True
            break
        except Exception as error:  # one failed run is reported, the others go on
            print(f"  run failed: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        results.append(result)
        print(f"  p99 {f1(result['p99'])} ms, committed {f1(result['committed_per_s'])}/s, acks "
              f"{f1(result['acks_per_s'])}/s, 429s {result['flood_429']}, lost {result['lost']}, dup "
              f"{result['duplicates']}", file=sys.stderr)
    if not results:
        return 1
    text = report(results, notes, started)
    print(text)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "tip_load.md").write_text(text)
    (OUT_DIR / "tip_load.json").write_text(json.dumps({"machine": notes, "results": results}, indent=1, default=str))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
