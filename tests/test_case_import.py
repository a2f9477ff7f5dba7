"""`reunite cases import FILE` as DESIGN.md's contract says: JSON Lines or CSV (with or without a BOM),
one JSON result per data line on stdout in order, external_id makes re-imports safe, a bad line is
reported and skipped, a progress bar on stderr, exit 0 unless every line failed. Cases are active,
audited as the shell's admin, their photos stored stripped with face_status 'pending'."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from datetime import datetime, timezone

from sqlalchemy import select

from bot.db.models import AuditEvent, Case, CasePhoto
from bot.db.session import create_engine, create_sessionmaker
from bot.services.media import media_path
from tests.conftest import packaged_image


async def run_import(settings, path) -> tuple[int, list[dict], str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REUNITE_DATA_DIR": str(settings.data_dir),
           "REUNITE_TIMEZONE": "Asia/Shanghai"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "cases", "import", str(path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


async def imported_cases(settings) -> tuple[list[tuple[Case, list[CasePhoto]]], list[tuple]]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = []
            for case in await session.scalars(select(Case).order_by(Case.id)):
                photos = list(await session.scalars(select(CasePhoto).where(CasePhoto.case_id == case.id)
                                                    .order_by(CasePhoto.id)))
                found.append((case, photos))
            audit = [(e.actor_id, e.action, e.object_ref) for e in await session.scalars(select(AuditEvent))]
        return found, audit
    finally:
        await engine.dispose()


def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(packaged_image("yaoming.jpg"), folder / "face.jpg")
    (folder / "notes.jpg").write_text("not an image at all")
    return folder


async def test_json_lines_import_reports_every_line_and_reimports_safely(settings, tmp_path):
    photo_folder(tmp_path)
    full = {
        "name": "Li Wei", "other_names": "李伟", "sex": "male", "date_of_birth": "2009-05-02",
        "missing_since": "2024-03-14T15:30", "last_seen_place": "Chaoyang Park south gate",
        "last_seen_lat": 39.9337, "last_seen_lon": 116.4755, "height_cm": 162, "build": "slim", "hair": "black",
        "eyes": "brown", "distinguishing_marks": "scar", "clothing": "uniform", "circumstances": "after school",
        "agency_name": "Chaoyang Police", "agency_phone": "+86 10 6509 1234", "agency_reference": "CY-77",
        "family_contact": "+86 138 0013 8000", "language": "zh", "external_id": "ORG-1",
        "photos": [{"path": "photos/face.jpg", "age": 14.5, "kind": "original"},
                   {"path": str(packaged_image("t1.jpg")), "age": None, "kind": "age_progressed"}],
    }
    minimal = {"name": "Ana", "missing_since": "2020-01-01", "last_seen_place": "Lisbon", "birth_year": "2015",
               "external_id": 9, "photos": [{"path": "photos/face.jpg"}]}
    lines = [
        json.dumps(full, ensure_ascii=False), "",
        json.dumps({**minimal, "external_id": None, "photos": []}),
        json.dumps({**minimal, "external_id": None, "nmae": "typo"}),
        json.dumps({**minimal, "external_id": None, "sex": "x"}),
        json.dumps({**minimal, "external_id": None, "photos": [{"path": "photos/missing.jpg"}]}),
        json.dumps({**minimal, "external_id": None, "photos": [{"path": "photos/notes.jpg"}]}),
        json.dumps({**full, "name": "Li Wei again"}, ensure_ascii=False),
        "{oops",
        json.dumps({**minimal, "missing_since": "2099-01-01"}),
        json.dumps(minimal), "   ",
    ]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    status, results, err = await run_import(settings, path)
    assert status == 0, err
    assert [r["line"] for r in results] == list(range(1, 11))
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {2, 3, 4, 5, 6, 8, 9}
    assert "at least one photo" in errors[2] and "unknown key 'nmae'" in errors[3] and "sex" in errors[4]
    assert "cannot read photo" in errors[5] and "not an image" in errors[6] and "JSON" in errors[8]
    assert "missing_since" in errors[9] and "future" in errors[9]
    first_code = results[0]["code"]
    assert results[6] == {"line": 7, "code": first_code, "existing": True}
    assert "10/10" in err  # the progress bar

    found, audit = await imported_cases(settings)
    assert [case.code for case, _ in found] == [first_code, results[9]["code"]]
    (li, li_photos), (ana, _) = found
    assert li.status == "active" and li.reported_by is None and li.external_id == "ORG-1"
    assert li.missing_since == datetime(2024, 3, 14, 7, 30, tzinfo=timezone.utc)  # 15:30 in Shanghai
    assert (li.language, li.height_cm, li.date_of_birth.year, li.family_contact_public) == ("zh", 162, 2009, False)
    assert [(p.age_years, p.kind, p.is_primary, p.face_status) for p in li_photos] == [
        (14.5, "original", True, "pending"), (None, "age_progressed", False, "pending")]
    assert all(media_path(settings.media_dir, p.sha256).exists() for p in li_photos)
    assert (ana.birth_year, ana.missing_since_has_time, ana.external_id) == (2015, False, "9")
    assert sorted(audit) == sorted((None, "case.import", code) for code in (li.code, ana.code))

    status, again, _ = await run_import(settings, path)
    assert status == 0
    assert [r for r in again if "code" in r] == [
        {"line": 1, "code": li.code, "existing": True}, {"line": 7, "code": li.code, "existing": True},
        {"line": 10, "code": ana.code, "existing": True}]


async def test_csv_with_bom_and_a_file_where_every_line_fails(settings, tmp_path):
    folder = photo_folder(tmp_path)
    rows = [
        "name,missing_since,last_seen_place,circumstances,photos,external_id",
        'Zhang Min,2023-06-01 08:00,"Station, north exit","Went out\nfor bread",'
        f"face.jpg|7|original;{folder}/face.jpg||,Z-1",
        "",
        "Bad Row,2023-06-01,Somewhere,,face.jpg,Z-2,extra cell",
        "No Photos,2023-06-01,Somewhere,,,Z-3",
    ]
    path = folder / "cases.csv"
    path.write_bytes("\ufeff".encode() + "\r\n".join(rows).encode())

    status, results, err = await run_import(settings, path)
    assert status == 0, err
    assert [r["line"] for r in results] == [1, 2, 3]
    assert "code" in results[0] and "more cells" in results[1]["error"] and "photos is required" in results[2]["error"]
    (case, photos), = (await imported_cases(settings))[0]
    assert case.circumstances == "Went out\nfor bread" and case.last_seen_place == "Station, north exit"
    assert [p.age_years for p in photos] == [7.0, None]

    hopeless = tmp_path / "hopeless.jsonl"
    hopeless.write_text('{"name": "x"}\nnot json\n', encoding="utf-8")
    status, results, _ = await run_import(settings, hopeless)
    assert status == 1 and all("error" in r for r in results) and len(results) == 2
