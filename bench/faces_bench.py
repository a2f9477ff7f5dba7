"""Benchmark the face engine and the in-process face index.

    python bench/faces_bench.py [--runs 30] [--faces 100000] [--probes 200]

Measures, on this machine:

* one tip photo (1280 px JPEG, one face): decode + detection + embedding
  (the tip face alone; case photos add its mirror image), median over
  ``--runs``, and each step alone;
* exact search in :class:`InProcessIndex` over ``--faces`` random unit
  vectors: one probe (top 10), best case per tip (``best_per_owner``), and
  four probes at once (a tip with four faces);
* resident memory (RSS) with the models loaded and the faces indexed.

Budgets (DESIGN.md): >= 10 photos/s, <= 10 ms per probe over 100k faces,
<= 600 MB resident. Prints a markdown table. Leaves OPENBLAS_CORETYPE alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.faces.engine import FaceEngine
from bot.faces.images import decode_image
from bot.faces.index import InProcessIndex
from bot.faces.models import vectron_model_dir


def rss_mb() -> float:
    """Resident set size of this process in MB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> tuple[float, float]:
    """(median, p90) wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def one_face_photo_jpeg() -> bytes:
    """A 1280x960 JPEG with one face of about 210 px (yaoming.jpg at 2x on a plain background)."""
    face = cv2.imread(str(vectron_model_dir() / "yaoming.jpg"))
    face = cv2.resize(face, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    canvas = np.empty((960, 1280, 3), dtype=np.uint8)
    canvas[:] = np.linspace(90, 200, 1280, dtype=np.uint8)[None, :, None]  # a soft gradient
    top, left = 200, 500
    canvas[top : top + face.shape[0], left : left + face.shape[1]] = face
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return encoded.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    rss_start = rss_mb()
    started = time.perf_counter()
    engine = FaceEngine.load()
    load_s = time.perf_counter() - started
    rss_models = rss_mb()
    rows.append(("load models + warm-up", f"{load_s * 1000:.0f} ms", engine.model_id))

    photo = one_face_photo_jpeg()
    decoded = decode_image(photo)
    report = engine.analyse_tip_image(photo)
    assert len(report.faces) == 1, report
    face = report.faces[0]
    crop = engine.embedder.align(decoded.bgr, face.landmarks * decoded.scale)

    med, p90 = median_ms(lambda: engine.analyse_tip_image(photo), args.runs)
    rows.append(("tip photo 1280 px, 1 face: decode + detect + embed", f"{med:.1f} ms (p90 {p90:.1f})",
                 f"{1000 / med:.1f} photos/s on one worker"))
    med_case, _ = median_ms(lambda: engine.analyse_case_photo(photo), args.runs)
    rows.append(("same photo as a case photo", f"{med_case:.1f} ms", ""))
    med_decode, _ = median_ms(lambda: decode_image(photo), args.runs)
    rows.append(("  decode JPEG (OpenCV for an upright, complete one; else Pillow)", f"{med_decode:.1f} ms", ""))
    med_detect, _ = median_ms(lambda: engine.detector.detect(decoded.bgr), args.runs)
    rows.append(("  detect (SCRFD at 128 + 640, input fitted to the photo)", f"{med_detect:.1f} ms", ""))
    squares = list(engine.detector.input_sizes)
    med_square, _ = median_ms(lambda: engine.detector.model.detect(decoded.bgr, input_size=squares), args.runs)
    rows.append(("  detect, inputs padded to squares", f"{med_square:.1f} ms", ""))
    med_embed, _ = median_ms(lambda: engine.embed_crops([crop], mirror=True), args.runs)
    rows.append(("  embed 1 face with its mirror image (case photos), one batch", f"{med_embed:.1f} ms", ""))
    med_plain, _ = median_ms(lambda: engine.embed_crops([crop], mirror=False), args.runs)
    rows.append(("  embed 1 face alone (tip faces)", f"{med_plain:.1f} ms", ""))

    t1 = Path(list(importlib.util.find_spec("insightface").submodule_search_locations)[0]) / "data/images/t1.jpg"
    t1_bytes = t1.read_bytes()
    med_t1, _ = median_ms(lambda: engine.analyse_tip_image(t1_bytes), max(5, args.runs // 3))
    rows.append(("tip photo t1.jpg 1280 px, 6 faces", f"{med_t1:.1f} ms", ""))

    # -- index ---------------------------------------------------------------------------
    rng = np.random.default_rng(20240601)
    index = InProcessIndex()
    batch = 10_000
    started = time.perf_counter()
    for start in range(0, args.faces, batch):
        count = min(batch, args.faces - start)
        vectors = rng.standard_normal((count, 512), dtype=np.float32)
        ids = np.arange(start, start + count, dtype=np.int64)
        index.add(ids, ids // 3, vectors)  # three photos per case
    build_s = time.perf_counter() - started
    rss_indexed = rss_mb()
    rows.append((f"index {args.faces:,} faces (add in batches of {batch:,})", f"{build_s * 1000:.0f} ms",
                 f"{index.nbytes / 2**20:.0f} MB allocated"))

    probes = rng.standard_normal((args.probes, 512), dtype=np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    probe_iter = iter(range(10**9))

    def one_probe():
        return index.search(probes[next(probe_iter) % len(probes)], 10)

    med_search, p90_search = median_ms(one_probe, args.probes)
    rows.append((f"search 1 probe, top 10, {args.faces:,} faces", f"{med_search:.2f} ms (p90 {p90_search:.2f})",
                 "budget <= 10 ms"))
    med_best, _ = median_ms(lambda: index.best_per_owner(probes[next(probe_iter) % len(probes)], 5),
                            args.probes)
    rows.append(("best_per_owner 1 probe, top 5 cases", f"{med_best:.2f} ms", ""))
    med_four, _ = median_ms(lambda: index.best_per_owner(probes[:4], 5), max(10, args.probes // 4))
    rows.append(("best_per_owner 4 probes at once (tip with 4 faces)", f"{med_four:.2f} ms",
                 f"{med_four / 4:.2f} ms per probe"))

    rows.append(("RSS: Python + libraries", f"{rss_start:.0f} MB", ""))
    rows.append(("RSS: + models loaded and warm", f"{rss_models:.0f} MB", ""))
    rows.append((f"RSS: + {args.faces:,} faces indexed", f"{rss_indexed:.0f} MB", "budget <= 600 MB"))

    print(f"# Faces benchmark ({engine.model_id}, {os.cpu_count()} CPUs, "
          f"onnxruntime threads {engine.detector.model.session.get_session_options().intra_op_num_threads})\n")
    print("| measurement | result | note |")
    print("|---|---|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    main()
