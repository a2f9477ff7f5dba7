"""Photo-tip benchmark: photo tips through the stand-in to a real `reunite run` (SQLite) whose face
index holds 100,000 reference faces of active cases; every photo (1280 px, one face) matches a case.

    .venv/bin/python bench/photo_tips.py [--scenario capacity|latency|all] [--faces 100000]
                                         [--photo-rate 10] [--text-rate 30] [--seconds 30] [--photos 30]

Both processes run as in production: `python -m bot.sandbox.serve` and `reunite run`, on 127.0.0.1.
The database is seeded first: one case whose photo is yaoming.jpg (its faces embedded by the product's
engine) and random reference faces of other active cases (three per case) up to --faces.

- capacity (DESIGN: >= 10 photos/s processed, flood control off): REUNITE_SEND_RATE=0, stand-in
  --no-flood. Photos at --photo-rate for --seconds, each from a new user (a new tip), and text tips
  at --text-rate from other users at the same time. "Processed" = the image's face_status left
  'pending' (downloaded, stored, detected, embedded, searched, candidates stored, alert queued), sampled
  from SQLite every 0.25 s; the sustained rate is taken between the 10th and 90th percentile of
  completions. Text tips: update -> acknowledgement on the stand-in's clock (budget p99 <= 100 ms).
- latency (DESIGN: p50 <= 300 ms at one photo per 2 s, flood control on): Telegram's limits in the
  stand-in, the bot's default pacing, one coordinator. Per photo: update -> the tip's own photo alert
  at the coordinator; -> candidates stored and match alert queued (one commit: a sent outbox row's
  payload is blanked, so the candidates' time stands for the queueing); -> match alert delivered.
  The match alert is the second message to the same private chat within a second: the sender's
  pacing (about one message a second to a person, with a burst of 2) lets it follow at once.

The bot is its process *and its child processes*: since the face engine runs in worker processes
(bot/faces/worker_pool.py), the bot's CPU is the sum of its own and its children's (the face workers,
told apart by their lower priority; the flyer worker and multiprocessing's resource tracker, idle
here), split by role, and its memory is reported per process: the bot's own RSS (the index, no models
since the face workers came) and the face workers' RSS (the models), after start and at the peak, plus
their sum (which counts shared library pages twice) and the PSS of them all (shared pages divided among
the processes: what they take together). The same script measures code from before the face workers
(face threads in the bot's process, no face worker children).
Prints markdown; writes bench/out/photo_tips.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import numpy as np
import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tip_load import (
    HOST,
    OUT_DIR,
    PYTHON,
    VENV_BIN,
    Processes,
    cpu_seconds,
    free_port,
    get_json,
    machine_notes,
    pct,
    post_json,
    pyspy_summary,
    wait_until,
)

TOKEN = "777002:PHOTOBENCH"
COORDINATOR_ID = 1001
PHOTO_USER_BASE = 6_000_001
TEXT_USER_BASE = 7_000_001
WARMUP_PHOTOS = 3
REF_RE = re.compile(r"T-[0-9A-Z]{4}-[0-9A-Z]{4}")
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=60)
BOT_ENV: list[str] = []  # --bot-env KEY=VALUE: settings for the bot (e.g. REUNITE_FACE_WORKERS=2)


# -- data -------------------------------------------------------------------------------------------


def sample(name: str) -> Path:
    from bot.faces.models import vectron_model_dir

    return vectron_model_dir() / name


def one_face_photos(count: int, seed: int = 1) -> list[bytes]:
    """1280x960 JPEGs with one face (yaoming.jpg at 2x) on different backgrounds and places."""
    rng = random.Random(seed)
    face = Image.open(sample("yaoming.jpg")).convert("RGB")
    face = face.resize((face.width * 2, face.height * 2), Image.Resampling.BICUBIC)
    photos = []
    for _ in range(count):
        ramp = np.linspace(rng.randint(40, 120), rng.randint(140, 230), 1280, dtype=np.uint8)
        canvas = Image.fromarray(np.repeat(np.tile(ramp, (960, 1))[:, :, None], 3, axis=2))
        canvas.paste(face, (rng.randint(0, 1280 - face.width), rng.randint(0, 960 - face.height)))
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def seed_database(data_dir: Path, faces: int) -> str:
    """Migrate, then write the Yao Ming case (real embedding) and random reference faces of other
    active cases, three per case, up to ``faces`` in all. Returns the Yao Ming case's code."""
    from sqlalchemy import create_engine, insert, select

    from bot.db.migrate import upgrade_to_head
    from bot.db.models import Case, CasePhoto, Face
    from bot.faces.engine import FaceEngine
    from bot.services import media
    from bot.services.references import new_case_code, new_deep_link_token

    upgrade_to_head(f"sqlite+aiosqlite:///{data_dir}/reunite.db")
    engine = FaceEngine.load()
    yao_faces = engine.analyse_case_photo(sample("yaoming.jpg"), with_crops=False)
    stored = media.store_image(sample("yaoming.jpg").read_bytes(), data_dir / "media")
    cases = 1 + (max(0, faces - len(yao_faces)) + 2) // 3
    now = datetime.now(UTC)
    codes: set[str] = set()
    while len(codes) < cases:
        codes.add(new_case_code())
    codes_in_order = sorted(codes)
    rng = np.random.default_rng(7)
    db = create_engine(f"sqlite:///{data_dir}/reunite.db")
    with db.begin() as connection:
        connection.execute(insert(Case), [
            {"code": code, "status": "active", "name": "Yao Ming" if number == 0 else f"Case {number}",
             "deep_link_token": new_deep_link_token(), "created_at": now, "updated_at": now}
            for number, code in enumerate(codes_in_order)])
        case_ids = dict(connection.execute(select(Case.code, Case.id)).all())
        connection.execute(insert(CasePhoto), [
            {"case_id": case_ids[code], "sha256": stored.sha256, "width": stored.width, "height": stored.height,
             "face_status": "done", "created_at": now} for code in codes_in_order])
        photo_ids = dict(connection.execute(select(CasePhoto.case_id, CasePhoto.id)).all())
        yao = case_ids[codes_in_order[0]]
        rows = [{"case_photo_id": photo_ids[yao], "case_id": yao, "x1": f.bbox[0], "y1": f.bbox[1], "x2": f.bbox[2],
                 "y2": f.bbox[3], "det_score": f.score, "embedding": f.embedding, "model_id": f.model_id,
                 "created_at": now} for f in yao_faces]
        others = [case_ids[code] for code in codes_in_order[1:]]
        for start in range(0, faces - len(rows), 20_000):
            count = min(20_000, faces - len(rows) - start)
            vectors = rng.standard_normal((count, 512), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            batch = [{"case_photo_id": photo_ids[others[(start + i) // 3]], "case_id": others[(start + i) // 3],
                      "x1": 0.0, "y1": 0.0, "x2": 100.0, "y2": 100.0, "det_score": 0.9, "embedding": vectors[i],
                      "model_id": engine.model_id, "created_at": now} for i in range(count)]
            connection.execute(insert(Face), batch)
        connection.execute(insert(Face), rows)
    db.dispose()
    return codes_in_order[0]


# -- the run ----------------------------------------------------------------------------------------


class Run:
    """The stand-in and the bot as child processes, and what the benchmark reads from them."""

    def __init__(self, flood: bool, send_rate: str | None, faces: int, keep: bool) -> None:
        self.flood, self.send_rate, self.faces, self.keep = flood, send_rate, faces, keep
        self.extra_env = dict(item.split("=", 1) for item in BOT_ENV)
        self.data_dir = Path(tempfile.mkdtemp(prefix="reunite-photobench-"))
        self.procs = Processes()
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.rss: list[tuple[float, float]] = []  # (the bot's own process, its face worker processes), MB

    async def __aenter__(self) -> Run:
        self.loadavg_before = os.getloadavg()
        self.case_code = await asyncio.to_thread(seed_database, self.data_dir, self.faces)
        label = "flood" if self.flood else "noflood"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TELEGRAM_", "REUNITE_", "WEBHOOK_")) and k not in ("DATABASE_URL", "PORT")}
        argv = [PYTHON, "-m", "bot.sandbox.serve", "--host", HOST, "--port", str(self.port), "--token", TOKEN,
                "--no-demo-users"] + ([] if self.flood else ["--no-flood"])
        self.standin = self.procs.start("stand-in", argv, env, OUT_DIR / f"photo_tips_{label}_standin.log")
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128), timeout=HTTP_TIMEOUT)
        await wait_until(lambda: self._up(), 30, "the stand-in", procs=[("stand-in", self.standin)])
        await post_json(self.http, f"{self.base}/sandbox/api/users",
                        [{"id": COORDINATOR_ID, "first_name": "Coordinator", "label": "coordinator"}])
        bot_env = dict(env, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=self.base, REUNITE_DATA_DIR=str(self.data_dir),
                       REUNITE_ADMINS=str(COORDINATOR_ID), REUNITE_USER_RATE_LIMIT="1000")
        if self.send_rate is not None:
            bot_env["REUNITE_SEND_RATE"] = self.send_rate
        bot_env.update(self.extra_env)
        reunite = VENV_BIN / "reunite"
        argv = [str(reunite), "run"] if reunite.exists() else [PYTHON, "-m", "bot", "run"]
        argv = os.environ.get("PHOTO_TIPS_BOT", "").split() or argv  # e.g. a bot with probes
        started = time.monotonic()
        self.bot = self.procs.start("reunite run", argv, bot_env, OUT_DIR / f"photo_tips_{label}_bot.log")
        self.alive = [("stand-in", self.standin), ("reunite run", self.bot)]

        async def polling() -> bool:
            stats = await get_json(self.http, f"{self.base}/sandbox/api/stats")
            return stats["calls"].get("getUpdates", 0) >= 1
        await wait_until(polling, 180, "the bot to poll", procs=self.alive)
        self.start_seconds = time.monotonic() - started
        self.bot_ps = psutil.Process(self.bot.pid)
        self.rss_after_start = rss_mb(self.bot_ps)
        self.pss_after_start = pss_mb(self.bot_ps)
        self._sampler = asyncio.create_task(self._sample_rss())
        return self

    async def __aexit__(self, *exc) -> None:
        self._sampler.cancel()
        await self.http.close()
        self.procs.stop_all()
        if not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _up(self) -> bool:
        await get_json(self.http, f"{self.base}/sandbox/api/config")
        return True

    async def _sample_rss(self) -> None:
        while True:
            try:
                self.rss.append(rss_mb(self.bot_ps))
            except psutil.Error:
                return
            await asyncio.sleep(0.5)

    async def users(self, ids: list[int], name: str) -> None:
        for start in range(0, len(ids), 2000):
            await post_json(self.http, f"{self.base}/sandbox/api/users",
                            [{"id": uid, "first_name": name} for uid in ids[start:start + 2000]])

    async def send_photo(self, user_id: int, photo: bytes) -> None:
        form = aiohttp.FormData()
        form.add_field("user_id", str(user_id))
        form.add_field("kind", "photo")
        form.add_field("file", photo, filename="photo.jpg", content_type="image/jpeg")
        async with self.http.post(f"{self.base}/sandbox/api/send", data=form) as response:
            response.raise_for_status()

    async def send_text(self, user_id: int, text: str) -> None:
        await post_json(self.http, f"{self.base}/sandbox/api/send", {"user_id": user_id, "text": text})

    async def timeline(self) -> list:
        return (await get_json(self.http, f"{self.base}/sandbox/api/timeline", params={"since": "0"}))["rows"]

    def query(self, sql: str, *args) -> list:
        connection = sqlite3.connect(f"file:{self.data_dir}/reunite.db?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def processed_count(self) -> int:
        return self.query("SELECT COUNT(*) FROM tip_media WHERE face_status != 'pending'")[0][0]


def _epoch(stored: str) -> float:
    """A UtcDateTime as SQLite keeps it (ISO text) -> seconds since the epoch."""
    moment = datetime.fromisoformat(stored)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Times:
    """Per tip reference: when its update reached the stand-in and when messages about it left."""

    def __init__(self, rows: list, users: set[int]) -> None:
        self.update_at: dict[str, float] = {}
        self.first_in: dict[int, float] = {}
        self.tip_alert: dict[str, float] = {}
        self.match_alert: dict[str, float] = {}
        self.ack_latency_ms: dict[int, float] = {}
        for chat_id, direction, at, method, text in sorted(rows, key=lambda row: row[2]):
            if direction == "in":
                self.first_in.setdefault(chat_id, at)
                continue
            reference = REF_RE.search(text or "")
            if reference is None:
                continue
            reference = reference.group(0)
            if chat_id in users and method == "sendMessage" and chat_id in self.first_in:
                self.update_at.setdefault(reference, self.first_in[chat_id])
                self.ack_latency_ms.setdefault(chat_id, (at - self.first_in[chat_id]) * 1000)
            elif chat_id == COORDINATOR_ID and method == "sendPhoto":
                alerts = self.match_alert if "Face match" in text else self.tip_alert
                alerts.setdefault(reference, at)

    def latencies_ms(self, sent: dict[str, float]) -> list[float]:
        return [(sent[ref] - at) * 1000 for ref, at in self.update_at.items() if ref in sent]


def thread_cpu(proc: psutil.Process) -> dict[str, float]:
    """CPU seconds of the bot's threads by role: the event loop (the main thread), face work in the bot's
    process (threads at the face executor's lower priority, and the onnxruntime threads they start,
    which inherit it: index searches since the face engine runs in worker processes, the engine itself
    before) and everything else (aiosqlite's connection threads, asyncio's default executor, the face
    pool's threads)."""
    from bot.faces.engine import FACE_THREAD_NICE

    roles = {"event loop": 0.0, "face threads": 0.0, "other threads": 0.0}
    for thread in proc.threads():
        seconds = thread.user_time + thread.system_time
        if thread.id == proc.pid:
            roles["event loop"] += seconds
            continue
        try:
            nice = int(Path(f"/proc/{proc.pid}/task/{thread.id}/stat").read_text().rsplit(")", 1)[1].split()[16])
        except (OSError, IndexError, ValueError):
            nice = 0
        roles["face threads" if nice == FACE_THREAD_NICE else "other threads"] += seconds
    return roles


def child_processes(proc: psutil.Process) -> dict[int, tuple[str, psutil.Process]]:
    """The bot's child processes by pid, with their role: face workers (the children that loaded
    onnxruntime) or others (the flyer renderer, multiprocessing's resource tracker). Not by priority:
    the flyer renderer runs at the face workers' lower priority too since a329dfa, and counting it
    as a face worker put its ~200 MB into the face workers' memory."""
    try:
        children = proc.children(recursive=True)
    except psutil.Error:
        return {}
    found = {}
    for child in children:
        try:
            role = "face worker processes" if _loaded_onnxruntime(child) else "other child processes"
        except OSError:  # gone meanwhile
            continue
        found[child.pid] = (role, child)
    return found


_face_workers: set[int] = set()  # pids seen with onnxruntime loaded (a worker never unloads it)


def _loaded_onnxruntime(process: psutil.Process) -> bool:
    if process.pid not in _face_workers and "onnxruntime" in Path(f"/proc/{process.pid}/maps").read_text():
        _face_workers.add(process.pid)
    return process.pid in _face_workers


def child_cpu(proc: psutil.Process) -> dict[int, tuple[str, float]]:
    """CPU seconds of each child process so far, with its role."""
    return {pid: (role, cpu_seconds(child)) for pid, (role, child) in child_processes(proc).items()}


def cpu_by_role(proc: psutil.Process, threads0: dict[str, float], children0: dict[int, tuple[str, float]]
                ) -> dict[str, float]:
    """CPU seconds since ``threads0`` / ``children0`` by role: the bot's threads and its child processes
    (a child that exited meanwhile is not counted)."""
    roles = {role: seconds - threads0[role] for role, seconds in thread_cpu(proc).items()}
    roles.update({"face worker processes": 0.0, "other child processes": 0.0})
    for pid, (role, seconds) in child_cpu(proc).items():
        roles[role] += seconds - children0.get(pid, (role, 0.0))[1]
    return roles


def rss_mb(proc: psutil.Process) -> tuple[float, float]:
    """Resident memory (MB) of the bot's own process and of its face worker processes together."""
    workers = 0.0
    for role, child in child_processes(proc).values():
        if role == "face worker processes":
            try:
                workers += child.memory_info().rss / 2**20
            except psutil.Error:
                pass
    return proc.memory_info().rss / 2**20, workers


def pss_mb(proc: psutil.Process) -> tuple[float, float]:
    """Proportional set size (MB), shared pages counted once: (the bot's process and its face workers,
    which hold the index and the models: what the memory budget is about; the bot and all its children,
    the flyer renderer's process and multiprocessing's resource tracker too)."""
    budgeted = everything = 0.0
    for role, process in [("bot", proc), *child_processes(proc).values()]:
        try:
            pss = process.memory_full_info().pss / 2**20
        except (psutil.Error, AttributeError):
            return float("nan"), float("nan")
        everything += pss
        if role in ("bot", "face worker processes"):
            budgeted += pss
    return budgeted, everything


def memory(run: Run) -> dict:
    at_end = pss_mb(run.bot_ps)
    own, workers = zip(*run.rss, strict=True) if run.rss else ((float("nan"),), (float("nan"),))
    return {"rss_after_start_mb": sum(run.rss_after_start), "rss_peak_mb": max(a + b for a, b in run.rss),
            "rss_bot_process_after_start_mb": run.rss_after_start[0], "rss_bot_process_peak_mb": max(own),
            "rss_face_workers_after_start_mb": run.rss_after_start[1], "rss_face_workers_peak_mb": max(workers),
            "pss_bot_and_face_workers_after_start_mb": run.pss_after_start[0],
            "pss_bot_and_face_workers_at_end_mb": at_end[0],
            "pss_all_after_start_mb": run.pss_after_start[1], "pss_all_at_end_mb": at_end[1]}


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": pct(values, 0.5), "p90": pct(values, 0.9), "p99": pct(values, 0.99),
            "max": max(values) if values else float("nan")}


async def warm_up(run: Run, photos: list[bytes]) -> None:
    ids = list(range(PHOTO_USER_BASE - WARMUP_PHOTOS, PHOTO_USER_BASE))
    await run.users(ids, "Warm")
    for uid, photo in zip(ids, photos, strict=False):  # the first few photos warm up
        await run.send_photo(uid, photo)

    async def matched() -> bool:
        return run.query("SELECT COUNT(*) FROM match_candidates")[0][0] >= WARMUP_PHOTOS
    await wait_until(matched, 120, "the warm-up photos to be matched", procs=run.alive)


async def capacity(args, photos: list[bytes]) -> dict:
    async with Run(flood=False, send_rate="0", faces=args.faces, keep=args.keep) as run:
        await warm_up(run, photos)
        count = int(args.photo_rate * args.seconds)
        texts = int(args.text_rate * args.seconds)
        photo_users = list(range(PHOTO_USER_BASE, PHOTO_USER_BASE + count))
        text_users = list(range(TEXT_USER_BASE, TEXT_USER_BASE + texts))
        await run.users(photo_users, "Photo")
        await run.users(text_users, "Text")
        base_processed = run.processed_count()
        standin_ps = psutil.Process(run.standin.pid)
        cpu0, standin0, machine0, wall0 = (cpu_seconds(run.bot_ps), cpu_seconds(standin_ps), psutil.cpu_times(),
                                           time.time())
        threads0, children0 = thread_cpu(run.bot_ps), child_cpu(run.bot_ps)
        samples: list[tuple[float, int]] = []
        stop = asyncio.Event()

        async def sample_db() -> None:
            while not stop.is_set():
                samples.append((time.time(), await asyncio.to_thread(run.processed_count) - base_processed))
                await asyncio.sleep(0.25)

        async def schedule(user_ids: list[int], rate: float, send) -> None:
            started = time.monotonic()
            tasks = []
            for i, uid in enumerate(user_ids):
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(send(i, uid)))
            await asyncio.gather(*tasks)

        sampler = asyncio.create_task(sample_db())
        spy = start_py_spy(run, args.seconds + 5) if args.py_spy else None
        await asyncio.gather(
            schedule(photo_users, args.photo_rate, lambda i, uid: run.send_photo(uid, photos[i % len(photos)])),
            schedule(text_users, args.text_rate, lambda i, uid: run.send_text(uid, f"I saw her near the market #{i}")))
        offered_s = time.time() - wall0

        async def all_processed() -> bool:
            return bool(samples) and samples[-1][1] >= count
        await wait_until(all_processed, 300, "every photo to be processed", interval=0.5, procs=run.alive)
        stop.set()
        await sampler
        if spy is not None:
            spy.wait(timeout=60)
            print(pyspy_summary(str(OUT_DIR / "photo_tips_pyspy.txt")), file=sys.stderr)
        roles = cpu_by_role(run.bot_ps, threads0, children0)
        own_cpu, standin_cpu = cpu_seconds(run.bot_ps) - cpu0, cpu_seconds(standin_ps) - standin0
        cpu = own_cpu + roles["face worker processes"] + roles["other child processes"]  # the bot and its children
        machine = psutil.cpu_times()
        machine_total = sum(machine) - sum(machine0)
        machine_busy = 1 - ((machine.idle - machine0.idle) + (machine.iowait - machine0.iowait)) / machine_total
        rows = await run.timeline()
        done_at = [next(at for at, done in samples if done >= k) for k in range(1, count + 1)]
        low, high = done_at[count // 10], done_at[count * 9 // 10]
        times = Times(rows, set(text_users))
        stored_to_matched = [(_epoch(matched) - _epoch(stored)) * 1000 for stored, matched in run.query(
            "SELECT m.created_at, MIN(c.created_at) FROM tip_media m JOIN match_candidates c ON c.tip_id = m.tip_id "
            "WHERE m.id > ? GROUP BY m.id", WARMUP_PHOTOS)]
        return {
            "photos": count, "photo_rate_offered": args.photo_rate, "text_tips": texts,
            "text_rate_offered": args.text_rate, "offered_s": offered_s,
            "photos_per_s_sustained": (count * 8 // 10) / (high - low) if high > low else float("nan"),
            "photos_per_s_overall": count / (done_at[-1] - wall0),
            "all_processed_after_s": done_at[-1] - wall0,
            "matched": run.query("SELECT COUNT(DISTINCT tip_id) FROM match_candidates")[0][0] - WARMUP_PHOTOS,
            "stored_to_matched_ms": summary(stored_to_matched),
            "text_ack_ms": summary(list(times.ack_latency_ms.values())),
            "bot_cpu_s": cpu, "bot_cpu_share": cpu / (done_at[-1] - wall0),
            "bot_own_process_cpu_share": own_cpu / (done_at[-1] - wall0),
            "cpu_ms_per_photo": {role: 1000 * seconds / count for role, seconds in roles.items()},
            "standin_cpu_share": standin_cpu / (done_at[-1] - wall0), "machine_busy": machine_busy,
            **memory(run),
            "bot_start_s": run.start_seconds, "loadavg": [run.loadavg_before, os.getloadavg()],
        }


async def latency(args, photos: list[bytes]) -> dict:
    async with Run(flood=True, send_rate=None, faces=args.faces, keep=args.keep) as run:
        await warm_up(run, photos)

        async def warm_up_delivered() -> bool:  # the coordinator's chat is paced: let it empty first
            return len(Times(await run.timeline(), set()).match_alert) >= WARMUP_PHOTOS
        await wait_until(warm_up_delivered, 60, "the warm-up alerts", interval=0.5, procs=run.alive)
        await asyncio.sleep(2)
        users = list(range(PHOTO_USER_BASE, PHOTO_USER_BASE + args.photos))
        await run.users(users, "Photo")
        for i, uid in enumerate(users):
            await run.send_photo(uid, photos[i % len(photos)])
            await asyncio.sleep(args.interval)

        async def delivered() -> bool:
            return len(Times(await run.timeline(), set(users)).match_alert) >= args.photos + WARMUP_PHOTOS
        await wait_until(delivered, 120, "every match alert", interval=0.5, procs=run.alive)
        times = Times(await run.timeline(), set(users))
        stored, matched = {}, {}
        for reference, stored_at, matched_at in run.query(
                "SELECT t.reference, m.created_at, MIN(c.created_at) FROM tip_media m JOIN tips t ON t.id = m.tip_id "
                "JOIN match_candidates c ON c.tip_id = m.tip_id GROUP BY m.id"):
            stored[reference], matched[reference] = _epoch(stored_at), _epoch(matched_at)
        return {
            "photos": args.photos, "interval_s": args.interval,
            "update_to_stored_ms": summary(times.latencies_ms(stored)),
            "update_to_matched_ms": summary(times.latencies_ms(matched)),
            "update_to_tip_alert_ms": summary(times.latencies_ms(times.tip_alert)),
            "update_to_match_alert_delivered_ms": summary(times.latencies_ms(times.match_alert)),
            **memory(run), "bot_start_s": run.start_seconds,
            "loadavg": [run.loadavg_before, os.getloadavg()],
        }


def engine_baseline(photos: list[bytes]) -> dict:
    """The same photos through the engine alone, one thread of this process at normal priority: what
    the machine gives face work right now (the reference for the bot's figures of the same run)."""
    from bot.faces.engine import FaceEngine

    engine = FaceEngine.load()
    engine.analyse_tip_image(photos[0])
    walls, cpus = [], []
    for photo in photos:
        wall, cpu = time.perf_counter(), time.thread_time()
        engine.analyse_tip_image(photo)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.thread_time() - cpu) * 1000)
    return {"wall_ms": summary(walls), "cpu_ms_p50": pct(cpus, 0.5), "loadavg": os.getloadavg()}


def start_py_spy(run: Run, seconds: float):
    """py-spy (if installed) records the bot, every thread, into bench/out/photo_tips_pyspy.txt."""
    binary = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if binary is None:
        print("py-spy is not installed: no profile", file=sys.stderr)
        return None
    return subprocess.Popen([binary, "record", "-p", str(run.bot.pid), "-r", "100", "-f", "raw", "--threads",
                             "--nonblocking", "-d", str(int(seconds)), "-o", str(OUT_DIR / "photo_tips_pyspy.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ms(block: dict) -> str:
    return (f"p50 {block['p50']:.0f} / p90 {block['p90']:.0f} / p99 {block['p99']:.0f} / max {block['max']:.0f} ms"
            f" (n={block['n']})")


def _load(result: dict) -> str:
    return " / ".join(" ".join(f"{value:.2f}" for value in triple) for triple in result["loadavg"])


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10).stdout
        return head + ("+uncommitted" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def memory_line(r: dict) -> str:
    return (f"resident memory (RSS), after start / peak: the bot's own process "
            f"{r['rss_bot_process_after_start_mb']:.0f} / {r['rss_bot_process_peak_mb']:.0f} MB, "
            f"its face worker processes "
            f"{r['rss_face_workers_after_start_mb']:.0f} / {r['rss_face_workers_peak_mb']:.0f} MB, together "
            f"{r['rss_after_start_mb']:.0f} / {r['rss_peak_mb']:.0f} MB (shared library pages counted in each); PSS "
            f"of the bot and its face workers (the index and the models) "
            f"{r['pss_bot_and_face_workers_after_start_mb']:.0f} MB "
            f"after start, {r['pss_bot_and_face_workers_at_end_mb']:.0f} MB at the end; with its other children "
            f"(the flyer renderer, multiprocessing's resource tracker) "
            f"{r['pss_all_after_start_mb']:.0f} / {r['pss_all_at_end_mb']:.0f} MB")


def report(results: dict, notes: dict, args) -> str:
    lines = [f"# Photo-tip benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Commit {commit()}. Machine: {notes['nproc']} CPUs ({notes['cpu']}), {notes['mem_gb']} GB, "
             f"Python {notes['python']}. "
             f"Bot: `reunite run` on SQLite with {args.faces:,} reference faces of active cases in its in-process "
             "index; stand-in and load generator in separate processes on the same machine."
             + (f" Bot settings: {', '.join(args.bot_env)}." if args.bot_env else ""), ""]
    b = results["baseline"]
    lines += [f"Baseline (same run, before the bot starts): the engine alone on one thread of the benchmark "
              f"process, {b['wall_ms']['n']} of these photos: {ms(b['wall_ms'])} wall, {b['cpu_ms_p50']:.0f} ms "
              f"CPU (p50) per photo; load average {b['loadavg'][0]:.2f}.", ""]
    if "capacity" in results:
        r = results["capacity"]
        lines += ["## Capacity (flood control off, REUNITE_SEND_RATE=0)", "",
                  f"- offered: {r['photos']} photos at {r['photo_rate_offered']:g}/s (1280x960, one face, each a "
                  f"new tip that matches a case) and {r['text_tips']} text tips at {r['text_rate_offered']:g}/s, "
                  f"over {r['offered_s']:.1f} s",
                  f"- photos processed: **{r['photos_per_s_sustained']:.1f}/s sustained** (10th-90th percentile of "
                  f"completions), {r['photos_per_s_overall']:.1f}/s overall "
                  f"(last done {r['all_processed_after_s']:.1f} s "
                  f"after the first was sent); {r['matched']} of them matched (alert queued)",
                  f"- photo stored -> candidates stored and alert queued: {ms(r['stored_to_matched_ms'])}",
                  f"- text tips meanwhile, update -> acknowledgement: **{ms(r['text_ack_ms'])}**",
                  f"- bot CPU, its process and its child processes (the face workers): {r['bot_cpu_s']:.1f} s "
                  f"({100 * r['bot_cpu_share']:.0f}% of one core; the bot's own process "
                  f"{100 * r['bot_own_process_cpu_share']:.0f}%), stand-in "
                  f"{100 * r['standin_cpu_share']:.0f}% of one core, machine busy {100 * r['machine_busy']:.0f}% "
                  f"(both cores, everything running); start-up {r['bot_start_s']:.1f} s",
                  f"- {memory_line(r)}",
                  "- bot CPU per photo (text tips' share included; threads of the bot's process and its child "
                  "processes, by role): " + ", ".join(
                      f"{role} {value:.0f} ms" for role, value in r["cpu_ms_per_photo"].items())
                  + f" = {sum(r['cpu_ms_per_photo'].values()):.0f} ms",
                  f"- load average (1/5/15 min) before / after: {_load(r)}", ""]
    if "latency" in results:
        r = results["latency"]
        lines += [f"## Latency (flood control on, default pacing, one photo every {r['interval_s']:g} s)", "",
                  f"- update -> photo downloaded, checked and stored with its tip: {ms(r['update_to_stored_ms'])}",
                  "- update -> faces detected, embedded, searched, candidates stored and match alert queued (one "
                  f"commit): **{ms(r['update_to_matched_ms'])}**",
                  f"- update -> the tip's photo alert at the coordinator: **{ms(r['update_to_tip_alert_ms'])}**",
                  f"- update -> match alert delivered: {ms(r['update_to_match_alert_delivered_ms'])} (the second "
                  "message to that chat within a second: the sender allows a person a burst of 2)",
                  f"- {memory_line(r)}",
                  f"- load average (1/5/15 min) before / after: {_load(r)}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("capacity", "latency", "all"), default="all")
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--photo-rate", type=float, default=10.0)
    parser.add_argument("--text-rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--photos", type=int, default=30, help="latency: photos, one every --interval s")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    parser.add_argument("--py-spy", action="store_true", help="capacity: profile the bot with py-spy (if installed)")
    parser.add_argument("--bot-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the bot, e.g. REUNITE_FACE_WORKERS=2 (repeatable)")
    args = parser.parse_args()
    BOT_ENV[:] = args.bot_env
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    photos = one_face_photos(20)
    results = {"baseline": engine_baseline(photos)}
    if args.scenario in ("capacity", "all"):
        results["capacity"] = asyncio.run(capacity(args, photos))
    if args.scenario in ("latency", "all"):
        results["latency"] = asyncio.run(latency(args, photos))
    notes = machine_notes()
    text = report(results, notes, args)
    print(text)
    suffix = "" if args.scenario == "all" else f"_{args.scenario}"
    (OUT_DIR / f"photo_tips{suffix}.md").write_text(text)
    (OUT_DIR / f"photo_tips{suffix}.json").write_text(json.dumps({"machine": notes, "args": vars(args),
                                                                  "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
