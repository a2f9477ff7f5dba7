"""In-process face search benchmark: the bot's index (SQLite deployments) over 100,000 faces.

    .venv/bin/python bench/face_search_bench.py [--faces 100000] [--probes 300]

Compares, on the same synthetic faces (three photos per case) and probes:
- plain NumPy, float32, one matrix-vector product per probe (what the index did before);
- InProcessIndex float32 rows behind the int8 screen (exact);
- InProcessIndex float16 rows behind the int8 screen (the bot's layout: exact up to float16 rounding);
for one probe top 10 (``search``), the bot's own call (``best_per_owner`` of the 5 best cases at the
review threshold 0.30), and four probes at once (a tip with four faces); and the int8 screen's code
ranges (bot/faces/screen.py: 7-bit probes; 7-bit rows instead; 8 bits on both sides as before, which
CPUs without VNNI can get wrong), with how many rows each leaves to score exactly. Interleaved, so
that other load on the machine hits every variant alike. Also the resident memory (RSS) of this
process with the face models loaded and warm plus the float16 index filled (the bot's configuration),
and agreement of every variant with exact float64 search.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.faces.engine import FaceEngine
from bot.faces.index import InProcessIndex
from bot.faces.screen import Int8Screen
from bot.faces.thresholds import DEFAULT_MATCH_THRESHOLD

CHUNK = 5000  # faces per add(), as the bot reads them from the database


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _doubling_columns(capacity: int) -> int:
    columns, block = 0, 1024
    while columns < capacity:
        columns, block = columns + block, min(65536, block * 2)
    return columns


class SevenBitRowsScreen(Int8Screen):
    """The other way to keep pairs of products within int16: rows lose the bit, probes keep 8."""

    row_limit, probe_limit = 64, 127


class EightBitScreen(Int8Screen):
    """Both sides at 8 bits, as before: pairs of products can exceed int16 (wrong on AVX2 without VNNI)."""

    row_limit, probe_limit = 127, 127


def with_screen(screen: type[Int8Screen], ids: np.ndarray, owners: np.ndarray, vectors: np.ndarray) -> InProcessIndex:
    """The bot's index (float16 rows) holding ``vectors``, behind a screen of the given code ranges."""
    index = InProcessIndex(dtype=np.float16, initial_capacity=len(ids))
    index._screen = screen(index.dim)
    index._screen.reserve(len(ids))
    index.add(ids, owners, vectors)
    return index


def counting_exact_rows(index: InProcessIndex) -> list[int]:
    """From now on, the number of rows ``index`` scores exactly in each call (appended to the list)."""
    counts: list[int] = []
    exact = index._exact

    def counted(rows: np.ndarray, probes: np.ndarray) -> np.ndarray:
        counts.append(len(rows))
        return exact(rows, probes)

    index._exact = counted
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()

    rss = {"python + libraries": rss_mb()}
    engine = FaceEngine.load()
    engine.analyse_tip_image(np.full((960, 1280, 3), 128, dtype=np.uint8))
    rss["+ face models loaded and warm"] = rss_mb()

    # faces shaped like buffalo_s embeddings (see bench/pgvector_bench.py): identities in a
    # 145-dimensional subspace, three noisy photos each; made chunk by chunk, so that the memory
    # figure is the index's, not this benchmark's copy of the vectors
    rng = np.random.default_rng(2024)
    basis = np.linalg.qr(rng.standard_normal((512, 145)))[0].astype(np.float32)
    cases = args.faces // 3 + 1
    identities = unit(rng.standard_normal((cases, 145), dtype=np.float32) @ basis.T)
    owners = np.arange(args.faces) // 3
    ids = np.arange(args.faces)

    def chunk(start: int) -> np.ndarray:
        part = identities[owners[start:start + CHUNK]]
        noise = np.random.default_rng(start).standard_normal(part.shape, dtype=np.float32)
        return unit(part + 0.75 * unit(noise))

    started = time.perf_counter()
    bot_index = InProcessIndex(dtype=np.float16, initial_capacity=args.faces)
    for start in range(0, args.faces, CHUNK):  # as the bot loads it from the database
        bot_index.add(ids[start:start + CHUNK], owners[start:start + CHUNK], chunk(start))
    load_s = time.perf_counter() - started
    # one face more, as when a case photo is added after start: the index grows past what it reserved
    extra = unit(rng.standard_normal((1, 512), dtype=np.float32))
    bot_index.add(np.array([args.faces]), np.array([cases]), extra)
    rss[f"+ {args.faces:,} faces in the bot's index (float16 + int8)"] = rss_mb()

    vectors = np.vstack([chunk(start) for start in range(0, args.faces, CHUNK)] + [extra])
    ids, owners = np.append(ids, args.faces), np.append(owners, cases)
    half = args.probes // 2
    probes = unit(np.vstack([
        identities[rng.integers(0, cases, half)] + 0.75 * unit(rng.standard_normal((half, 512), dtype=np.float32)),
        rng.standard_normal((args.probes - half, 145), dtype=np.float32) @ basis.T]))
    exact_index = InProcessIndex(dtype=np.float32, initial_capacity=len(ids))
    exact_index.add(ids, owners, vectors)

    # the same index as the screen was laid out before blocks were sized to what they hold: blocks
    # doubling with the index's capacity (1,024 up to 65,536 columns), twice the faces after one add
    old_layout = InProcessIndex(dtype=np.float16, initial_capacity=len(ids))
    old_layout.add(ids, owners, vectors)
    old_layout._screen.reserve(_doubling_columns(2 * args.faces))

    # the screen's code ranges, each on the same index (the bot's, float16, sized to what it holds)
    ranges = {
        "7-bit probes, 8-bit rows (the bot)": with_screen(Int8Screen, ids, owners, vectors),
        "7-bit rows, 8-bit probes": with_screen(SevenBitRowsScreen, ids, owners, vectors),
        "8-bit probes and rows (before; not exact without VNNI)": with_screen(EightBitScreen, ids, owners, vectors),
    }

    variants = {
        "NumPy float32, matrix-vector per probe": lambda p: np.argpartition(-(vectors @ p), 10)[:10],
        "index float32 + int8 screen": lambda p: exact_index.search(p, 10),
        "index float16 + int8 screen (the bot)": lambda p: bot_index.search(p, 10),
        f"the same, screen laid out as before ({old_layout._screen.capacity:,} columns)":
            lambda p: old_layout.search(p, 10),
        "bot's call: best_per_owner(5 cases, >= 0.30)":
            lambda p: bot_index.best_per_owner(p, 5, DEFAULT_MATCH_THRESHOLD),
    }
    for label, index in ranges.items():
        variants[f"screen with {label}: search"] = functools.partial(index.search, k=10)
    for label, index in ranges.items():
        variants[f"screen with {label}: best_per_owner"] = functools.partial(
            index.best_per_owner, k_owners=5, min_score=DEFAULT_MATCH_THRESHOLD)
    # rows scored exactly per call, by the indices that differ only in the screen's code ranges
    counted = [counting_exact_rows(index) for index in ranges.values()]
    rows_scored: dict[str, list[int]] = {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    four: list[float] = []
    for number, probe in enumerate(probes):
        for name, search in variants.items():
            for counts in counted:
                counts.clear()
            begun = time.perf_counter()
            search(probe)
            times[name].append((time.perf_counter() - begun) * 1000)
            rows_scored.setdefault(name, []).extend(n for counts in counted for n in counts)
        if number % 4 == 3:
            begun = time.perf_counter()
            bot_index.best_per_owner(probes[number - 3:number + 1], 5, DEFAULT_MATCH_THRESHOLD)
            four.append((time.perf_counter() - begun) * 1000)

    truth = np.argsort(-(probes.astype(np.float64) @ vectors.astype(np.float64).T), axis=1)[:, :10]
    probed = list(zip(probes, truth, strict=True))
    same_top10 = np.mean([[h.face_id for h in bot_index.search(p, 10)] == t.tolist() for p, t in probed])
    same_set = np.mean([{h.face_id for h in bot_index.search(p, 10)} == set(t.tolist()) for p, t in probed])
    exact_same = np.mean([[h.face_id for h in exact_index.search(p, 10)] == t.tolist() for p, t in probed])

    print(f"# In-process face search ({len(ids):,} faces, {args.probes} probes, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f})\n")
    print("| search | p50 ms | p90 ms | p99 ms | rows scored exactly, p50 / p90 |\n|---|---:|---:|---:|---:|")
    for name, values in times.items():
        values.sort()
        scored = sorted(rows_scored[name])
        exactly = f"{statistics.median(scored):,.0f} / {scored[int(0.9 * (len(scored) - 1))]:,}" if scored else ""
        print(f"| {name} | {statistics.median(values):.2f} | {values[int(0.9 * (len(values) - 1))]:.2f} | "
              f"{values[int(0.99 * (len(values) - 1))]:.2f} | {exactly} |")
    four.sort()
    print(f"| best_per_owner, 4 probes in one call (per probe) | {statistics.median(four) / 4:.2f} | "
          f"{four[int(0.9 * (len(four) - 1))] / 4:.2f} | | |")
    print(f"\nAgreement with exact (float64) top 10: float32 index {exact_same:.3f} same order; float16 index "
          f"{same_top10:.3f} same order, {same_set:.3f} same ten faces (float16 rounding swaps near-ties).")
    print(f"The bot's int8 screen scores {bot_index._screen.capacity:,} columns for {len(bot_index):,} faces.")
    print(f"Loading {args.faces:,} faces into the bot's index in batches of {CHUNK:,}: {load_s:.1f} s; "
          f"{bot_index.nbytes / 2**20:.0f} MB allocated.\n")
    print("| resident memory (this process) | MB |\n|---|---:|")
    for name, value in rss.items():
        print(f"| {name} | {value:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
