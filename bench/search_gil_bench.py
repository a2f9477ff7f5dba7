"""The GIL switch interval and in-process face search: does bot/faces/engine.py's GIL_SWITCH_INTERVAL
still earn its keep now that inference runs in worker processes?

    .venv/bin/python bench/search_gil_bench.py [--faces 100000] [--probes 40]

The bot's index (float16 rows behind the int8 screen) over random unit faces; the bot's call
(``best_per_owner`` of 5 cases at 0.29) runs in a thread at the face executor's priority, one probe
every 20 ms, while the main thread either sleeps (an idle event loop) or runs Python without pause
(a busy one). Each setting twice, interleaved: search wall time p50/p90, and how much Python the
main thread got through (iterations/s: if a short switch interval cost the loop, this would fall).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.faces.engine import _yield_to_the_event_loop
from bot.faces.index import InProcessIndex


def run(index: InProcessIndex, probes: np.ndarray, interval: float, busy: bool) -> tuple[float, float, float]:
    sys.setswitchinterval(interval)
    walls: list[float] = []

    def searcher() -> None:
        _yield_to_the_event_loop()
        for probe in probes:
            started = time.perf_counter()
            index.best_per_owner(probe, 5, 0.29)
            walls.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)

    thread = threading.Thread(target=searcher)
    work = 0
    started = time.perf_counter()
    thread.start()
    while thread.is_alive():
        if busy:
            total = 0
            for i in range(1000):
                total += i
            work += 1
        else:
            time.sleep(0.001)
    elapsed = time.perf_counter() - started
    walls.sort()
    return walls[len(walls) // 2], walls[int(len(walls) * 0.9)], work / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((args.faces, 512), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = InProcessIndex(dtype=np.float16, initial_capacity=args.faces)
    index.add(np.arange(1, args.faces + 1), np.arange(1, args.faces + 1) // 3, vectors)
    probes = rng.standard_normal((args.probes, 512), dtype=np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    for probe in probes[:5]:  # warm: the screen's session, caches
        index.best_per_owner(probe, 5, 0.29)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.faces:,} faces, {args.probes} probes per run")
    for busy in (False, True):
        for interval in (0.005, 0.0005, 0.005, 0.0005):
            p50, p90, rate = run(index, probes, interval, busy)
            print(f"main thread {'busy' if busy else 'idle'}, switch interval {interval * 1000:.1f} ms: "
                  f"search p50 {p50:.1f} / p90 {p90:.1f} ms; main thread {rate:,.0f} iterations/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
