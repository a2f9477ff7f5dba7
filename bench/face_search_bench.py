"""In-process face search benchmark: the bot's index (SQLite deployments) over 100,000 faces.

    .venv/bin/python bench/face_search_bench.py [--faces 100000] [--probes 300]

Compares, on the same synthetic faces (three photos per case) and probes:
- plain NumPy, float32, one matrix-vector product per probe;
- InProcessIndex float16 rows behind the int8 screen (the bot's layout), scores normalised per face
  against a cohort of 2,000 other people (bot.faces.normalisation): top 10 (``search``), the bot's
  own call (``best_per_owner`` of the 5 best cases at the floor the bot sets at this size), and four
  probes at once (a tip with four faces);
- the same index without normalisation (cosine, at the old floor 0.29): the baseline.
Interleaved, so that other load on the machine hits every variant alike. Also the resident memory
(RSS) of this process with the face models loaded and warm plus the float16 index filled (the bot's
configuration), and agreement of the index with exact float64 search of normalised scores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.faces.engine import FaceEngine  # noqa: E402
from bot.faces.index import InProcessIndex  # noqa: E402
from bot.faces.normalisation import ImpostorTail, reference_stats  # noqa: E402

OLD_FLOOR = 0.29  # the raw-cosine floor before scores were normalised

CHUNK = 5000  # faces per add(), as the bot reads them from the database


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


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

    cohort = unit(rng.standard_normal((2000, 145), dtype=np.float32) @ basis.T)
    cohort = unit(cohort + 0.75 * unit(rng.standard_normal(cohort.shape, dtype=np.float32)))
    floor = ImpostorTail(cohort).floor(args.faces, 1.0)
    started = time.perf_counter()
    bot_index = InProcessIndex(dtype=np.float16, initial_capacity=args.faces)
    means, stds = np.empty(args.faces + 1, np.float32), np.empty(args.faces + 1, np.float32)
    for start in range(0, args.faces, CHUNK):  # as the bot loads it from the database, statistics stored
        rows = chunk(start)
        means[start:start + len(rows)], stds[start:start + len(rows)] = reference_stats(rows, cohort)
        bot_index.add(ids[start:start + CHUNK], owners[start:start + CHUNK], rows, means[start:start + len(rows)],
                      stds[start:start + len(rows)])
    load_s = time.perf_counter() - started
    # one face more, as when a case photo is added after start: the index grows past what it reserved
    extra = unit(rng.standard_normal((1, 512), dtype=np.float32))
    means[-1:], stds[-1:] = reference_stats(extra, cohort)
    bot_index.add(np.array([args.faces]), np.array([cases]), extra, means[-1:], stds[-1:])
    rss[f"+ {args.faces:,} faces in the bot's index (float16 + int8, normalised)"] = rss_mb()

    vectors = np.vstack([chunk(start) for start in range(0, args.faces, CHUNK)] + [extra])
    ids, owners = np.append(ids, args.faces), np.append(owners, cases)
    half = args.probes // 2
    probes = unit(np.vstack([
        identities[rng.integers(0, cases, half)] + 0.75 * unit(rng.standard_normal((half, 512), dtype=np.float32)),
        rng.standard_normal((args.probes - half, 145), dtype=np.float32) @ basis.T]))
    cosine_index = InProcessIndex(dtype=np.float16, initial_capacity=len(ids))  # the baseline: no statistics
    cosine_index.add(ids, owners, vectors)
    # from here on the rows as the bot's index keeps them (float16), in id order: for NumPy and the truth
    vectors = bot_index._vectors[: len(bot_index)][np.argsort(bot_index._ids[: len(bot_index)])].astype(np.float32)

    variants = {
        "NumPy float32, matrix-vector per probe": lambda p: np.argpartition(-(vectors @ p), 10)[:10],
        "index float16 + int8 screen, normalised (the bot): top 10": lambda p: bot_index.search(p, 10),
        f"bot's call: best_per_owner(5 cases, normalised, >= floor {floor:.2f})":
            lambda p: bot_index.best_per_owner(p, 5, floor),
        f"before: the same call on cosines, >= {OLD_FLOOR}": lambda p: cosine_index.best_per_owner(p, 5, OLD_FLOOR),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    four: list[float] = []
    for number, probe in enumerate(probes):
        for name, search in variants.items():
            begun = time.perf_counter()
            search(probe)
            times[name].append((time.perf_counter() - begun) * 1000)
        if number % 4 == 3:
            begun = time.perf_counter()
            bot_index.best_per_owner(probes[number - 3:number + 1], 5, floor)
            four.append((time.perf_counter() - begun) * 1000)

    checked = probes[:100]
    truth = [np.argsort(-((vectors @ p - means) / stds))[:10] for p in checked]
    same_top10 = np.mean([[h.face_id for h in bot_index.search(p, 10)] == t.tolist()
                          for p, t in zip(checked, truth, strict=True)])

    print(f"# In-process face search ({len(ids):,} faces, {args.probes} probes, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f})\n")
    print("| search | p50 ms | p90 ms | p99 ms |\n|---|---:|---:|---:|")
    for name, values in times.items():
        values.sort()
        print(f"| {name} | {statistics.median(values):.2f} | {values[int(0.9 * (len(values) - 1))]:.2f} | "
              f"{values[int(0.99 * (len(values) - 1))]:.2f} |")
    four.sort()
    print(f"| best_per_owner, 4 probes in one call (per probe) | {statistics.median(four) / 4:.2f} | "
          f"{four[int(0.9 * (len(four) - 1))] / 4:.2f} | |")
    print(f"\nAgreement with brute-force normalised top 10 (NumPy over the rows as kept, float16), "
          f"{len(checked)} probes: {same_top10:.3f} same faces in the same order.")
    print(f"The bot's int8 screen scores {bot_index._screen.capacity:,} columns for {len(bot_index):,} faces.")
    print(f"Loading {args.faces:,} faces into the bot's index in batches of {CHUNK:,}: {load_s:.1f} s; "
          f"{bot_index.nbytes / 2**20:.0f} MB allocated.\n")
    print("| resident memory (this process) | MB |\n|---|---:|")
    for name, value in rss.items():
        print(f"| {name} | {value:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
