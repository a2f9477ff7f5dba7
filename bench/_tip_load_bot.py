"""`reunite run` with measuring probes, for `bench/tip_load.py --probe` (the bot's code is not changed).

    TIPLOAD_PROBE_OUT=path.json python bench/_tip_load_bot.py

Probes (written as JSON to TIPLOAD_PROBE_OUT when the bot exits; SIGUSR1 clears them, so the
benchmark starts them after its warm-up):
- every call aiosqlite runs on a connection's worker thread: count, wall time, CPU time of that thread
  (wall - CPU is mostly waiting for SQLite's write lock: the busy handler sleeps), by statement kind;
- the update processor: wall time per update (a batch's time over its updates) and batch sizes;
- the sender: how often each outbox row id was sent (`Sender._call`), with the time between sends;
- event-loop lag: how late a 10 ms timer fires (a busy main thread shows here);
- CPU time of the main thread vs the whole process.

TIPLOAD_CPROFILE=path: cProfile of the main thread from SIGUSR1 to exit (slows the bot down).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import json
import os
import re
import resource
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosqlite.core

import bot.app
from bot.db import session as session_module
from bot.transport import processor as processor_module
from bot.transport import sender as sender_module

OUT = os.environ.get("TIPLOAD_PROBE_OUT")

_lock = threading.Lock()
_sql: dict = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # kind -> count, wall, cpu, max wall
_updates: list[float] = []
_sends: dict = {}  # row id -> [send times]
_lag: list[float] = []
_gc_pauses: dict = collections.defaultdict(list)  # generation -> seconds per collection
_gc_started = [0.0]
_t0 = {"wall": time.perf_counter(), "main_cpu": time.thread_time(), "proc_cpu": time.process_time()}
_MAIN = threading.main_thread()


def _kind(fn, args) -> str:
    """'SELECT tips', 'INSERT outbox', 'commit', 'fetchall', ...: what the worker thread ran."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if name == "_in_sqlite_thread":  # bot/db/sqlite_cursor.py: (connection, method, sql, parameters)
        name, args = args[1], args[2:]
    if name in ("execute", "executemany") and args and isinstance(args[0], str):
        sql = args[0]
        verb = sql.split(None, 1)[0].upper()
        table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", sql, re.I)
        return f"{verb} {table.group(1) if table else ''}".strip()
    return name


_orig_execute = aiosqlite.core.Connection._execute


async def _execute(self, fn, *args, **kwargs):
    kind = _kind(fn, args)

    def timed():
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            with _lock:
                s = _sql[kind]
                s[0] += 1
                s[1] += wall
                s[2] += cpu
                s[3] = max(s[3], wall)

    return await _orig_execute(self, timed)


aiosqlite.core.Connection._execute = _execute

_orig_process_batch = processor_module.UpdateProcessor._process_batch


async def _process_batch(self, batch, *args, **kwargs):
    """Time per update: a batch's wall time shared by its updates."""
    t = time.perf_counter()
    try:
        return await _orig_process_batch(self, batch, *args, **kwargs)
    finally:
        share = (time.perf_counter() - t) / max(1, len(batch))
        _updates.extend([share] * len(batch))
        _batch_sizes.append(len(batch))


processor_module.UpdateProcessor._process_batch = _process_batch
_batch_sizes: list[int] = []

_orig_call = sender_module.Sender._call


async def _call(self, chat_id, batch):
    now = time.time()
    for row in batch:
        _sends.setdefault(row.id, []).append(now)
    return await _orig_call(self, chat_id, batch)


sender_module.Sender._call = _call

_loads: list[tuple[float, float, bool]] = []  # (start, end, full_scan) of the sender's outbox reads
_orig_load = sender_module.Sender._load


async def _load(self, full_scan):
    t = time.time()
    try:
        return await _orig_load(self, full_scan)
    finally:
        _loads.append((t, time.time(), full_scan))


sender_module.Sender._load = _load


async def _lag_monitor() -> None:
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(0.01)
        _lag.append(loop.time() - t - 0.01)


_turns: dict = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])  # first write -> count, wait, hold, max hold
_orig_before_execute = session_module.SqliteWriteTurns._before_execute
_orig_give_back = session_module.SqliteWriteTurns._give_back


def _before_execute(self, connection, cursor, statement, parameters, context, many):
    """How long each writing transaction waited for its turn, and held it, by its first write."""
    if connection.info.get(session_module._HOLDS_WRITE_TURN):
        return _orig_before_execute(self, connection, cursor, statement, parameters, context, many)
    t = time.perf_counter()
    _orig_before_execute(self, connection, cursor, statement, parameters, context, many)
    if connection.info.get(session_module._HOLDS_WRITE_TURN):
        kind = _kind(cursor.execute, (statement,))
        connection.info["probe_turn"] = (kind, time.perf_counter())
        with _lock:
            _turns[kind][0] += 1
            _turns[kind][1] += time.perf_counter() - t


def _give_back(self, connection):
    taken = connection.info.pop("probe_turn", None)
    if taken:
        hold = time.perf_counter() - taken[1]
        with _lock:
            _turns[taken[0]][2] += hold
            _turns[taken[0]][3] = max(_turns[taken[0]][3], hold)
    return _orig_give_back(self, connection)


session_module.SqliteWriteTurns._before_execute = _before_execute
session_module.SqliteWriteTurns._give_back = _give_back

_orig_start = bot.app.Reunite.start.__func__


async def _start(cls, settings, **kwargs):
    reunite = await _orig_start(cls, settings, **kwargs)
    task = asyncio.get_running_loop().create_task(_lag_monitor())
    _start.monitor = task  # keep a reference
    return reunite


bot.app.Reunite.start = classmethod(_start)


_profile = {"on": None}


def _reset(*_args) -> None:
    if os.environ.get("TIPLOAD_CPROFILE") and _profile["on"] is None:
        import cProfile

        _profile["on"] = cProfile.Profile()  # the main thread only: the event loop
        _profile["on"].enable()
    with _lock:
        _sql.clear()
        _turns.clear()
    _updates.clear()
    _batch_sizes.clear()
    _sends.clear()
    _lag.clear()
    _loads.clear()
    _gc_pauses.clear()
    _t0.update(wall=time.perf_counter(), main_cpu=time.thread_time(), proc_cpu=time.process_time())


def _gc_watch(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc_pauses[info["generation"]].append(time.perf_counter() - _gc_started[0])


gc.callbacks.append(_gc_watch)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))]


def _dump() -> None:
    if _profile["on"] is not None:
        _profile["on"].disable()
        _profile["on"].dump_stats(os.environ["TIPLOAD_CPROFILE"])
    if not OUT:
        return
    wall = time.perf_counter() - _t0["wall"]
    dup = {row_id: times for row_id, times in _sends.items() if len(times) > 1}
    # a re-send whose row was read again as 'pending' by a full rescan that ended between the sends
    by_rescan = sum(1 for times in dup.values()
                    if any(full and times[0] < end < times[1] for _, end, full in _loads))
    data = {
        "window_s": wall,
        "main_thread_cpu_s": time.thread_time() - _t0["main_cpu"],
        "process_cpu_s": time.process_time() - _t0["proc_cpu"],
        "sql": {k: {"count": v[0], "wall_s": v[1], "cpu_s": v[2], "max_ms": v[3] * 1000} for k, v in _sql.items()},
        "write_turns": {k: {"count": v[0], "wait_s": v[1], "hold_s": v[2], "max_hold_ms": v[3] * 1000}
                        for k, v in _turns.items()},
        "updates": {"count": len(_updates), "p50_ms": _pct(_updates, 0.5) * 1000, "p99_ms": _pct(_updates, 0.99) * 1000,
                    "max_ms": max(_updates, default=0) * 1000, "sum_s": sum(_updates)},
        "sends": {"rows": len(_sends), "rows_sent_twice_or_more": len(dup),
                  "explained_by_full_rescan": by_rescan,
                  "full_rescans": sum(1 for *_, full in _loads if full),
                  "incremental_loads": sum(1 for *_, full in _loads if not full),
                  "gap_s_examples": [round(t[1] - t[0], 3) for t in list(dup.values())[:10]]},
        "loop_lag": {"samples": len(_lag), "p50_ms": _pct(_lag, 0.5) * 1000, "p99_ms": _pct(_lag, 0.99) * 1000,
                     "max_ms": max(_lag, default=0) * 1000},
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mean_batch": sum(_batch_sizes) / max(1, len(_batch_sizes)),
        "max_batch": max(_batch_sizes, default=0),
        "gc": {str(generation): {"count": len(pauses), "max_ms": max(pauses) * 1000, "sum_ms": sum(pauses) * 1000}
               for generation, pauses in sorted(_gc_pauses.items())},
    }
    Path(OUT).write_text(json.dumps(data, indent=1))


atexit.register(_dump)
signal.signal(signal.SIGUSR1, _reset)

if __name__ == "__main__":
    from bot.__main__ import main

    sys.exit(main(["run"]))
