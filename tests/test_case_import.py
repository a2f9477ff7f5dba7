"""`reunite cases import FILE` as DESIGN.md's contract says: JSON Lines or CSV (with or without a BOM),
one JSON result per data line on stdout in order, external_id makes re-imports safe, a bad line is
reported and skipped, a progress bar on stderr, exit 0 unless every line failed. Cases are active,
audited as the shell's admin, their photos stored stripped and their faces embedded by the import
(with the model's name), so the bot's face worker never embeds them again; a photo with no usable
face is kept and named on its line; the running bot matches tips against imported cases."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from datetime import UTC, datetime

from sqlalchemy import select

from bot.db.models import AuditEvent, Case, CasePhoto, Face, MatchCandidate
from bot.db.session import create_engine, create_sessionmaker
from bot.faces import get_face_engine
from bot.services.media import media_path
from tests.conftest import packaged_image
from tests.helpers import jpeg_bytes, reference_in, until
from tests.test_matching import faces_done, image_bytes, match_alert, noticed, rows


async def run_import(settings, path, *options: str) -> tuple[int, list[dict], str]:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REUNITE_DATA_DIR": str(settings.data_dir),
           "REUNITE_TIMEZONE": "Asia/Shanghai"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "cases", "import", *options, str(path), env=env,
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


async def stored_faces(settings) -> list[Face]:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return list(await session.scalars(select(Face).order_by(Face.id)))
    finally:
        await engine.dispose()


def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(packaged_image("yaoming.jpg"), folder / "face.jpg")
    (folder / "notes.jpg").write_text("not an image at all")
    (folder / "wall.jpg").write_bytes(jpeg_bytes(480, 360))  # a real image with nobody in it
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
                   {"path": str(packaged_image("t1.jpg")), "age": None, "kind": "age_progressed"},
                   {"path": "photos/wall.jpg", "age": 15}],
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

    status, results, err = await run_import(settings, path, "--photos-from", str(packaged_image("t1.jpg").parent))
    assert status == 0, err
    assert [r["line"] for r in results] == list(range(1, 11))
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {2, 3, 4, 5, 6, 8, 9}
    assert "at least one photo" in errors[2] and "unknown key 'nmae'" in errors[3] and "sex" in errors[4]
    assert "cannot read photo" in errors[5] and "not an image" in errors[6] and "JSON" in errors[8]
    assert "missing_since" in errors[9] and "future" in errors[9]
    first_code = results[0]["code"]
    # the photo with no usable face is kept, and named on its case's line
    assert results[0] == {"line": 1, "code": first_code, "no_usable_face": [str(tmp_path / "photos/wall.jpg")]}
    assert results[9] == {"line": 10, "code": results[9]["code"]}
    assert results[6] == {"line": 7, "code": first_code, "existing": True}
    assert "10/10" in err  # the progress bar

    found, audit = await imported_cases(settings)
    assert [case.code for case, _ in found] == [first_code, results[9]["code"]]
    (li, li_photos), (ana, _) = found
    assert li.status == "active" and li.reported_by is None and li.external_id == "ORG-1"
    assert li.missing_since == datetime(2024, 3, 14, 7, 30, tzinfo=UTC)  # 15:30 in Shanghai
    assert (li.language, li.height_cm, li.date_of_birth.year, li.family_contact_public) == ("zh", 162, 2009, False)
    assert [(p.age_years, p.kind, p.is_primary, p.face_status) for p in li_photos] == [
        (14.5, "original", True, "done"), (None, "age_progressed", False, "done"), (15, "original", False, "no_face")]
    assert all(media_path(settings.media_dir, p.sha256).exists() for p in li_photos)
    # faces embedded on import, each recording its model: one in yaoming.jpg, the six of t1.jpg
    faces = await stored_faces(settings)
    faces_per_photo = {p.id: sum(f.case_photo_id == p.id for f in faces) for p in li_photos}
    assert list(faces_per_photo.values()) == [1, 6, 0]
    assert {(f.case_id, f.model_id) for f in faces if f.case_photo_id in faces_per_photo} == {
        (li.id, get_face_engine().model_id)}
    assert all(f.embedding.shape == (512,) and abs(float(f.embedding @ f.embedding) - 1) < 1e-4 for f in faces)
    assert (ana.birth_year, ana.missing_since_has_time, ana.external_id) == (2015, False, "9")
    assert sorted(audit) == sorted((None, "case.import", code) for code in (li.code, ana.code))

    status, again, _ = await run_import(settings, path, "--photos-from", str(packaged_image("t1.jpg").parent))
    assert status == 0
    assert [r for r in again if "code" in r] == [
        {"line": 1, "code": li.code, "existing": True}, {"line": 7, "code": li.code, "existing": True},
        {"line": 10, "code": ana.code, "existing": True}]
    assert [f.id for f in await stored_faces(settings)] == [f.id for f in faces]  # no face twice


async def test_csv_with_bom_and_a_file_where_every_line_fails_and_faces_left_to_the_bot(settings, tmp_path):
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

    status, results, err = await run_import(settings, path, "--skip-faces")
    assert status == 0, err
    assert [r["line"] for r in results] == [1, 2, 3]
    assert "code" in results[0] and "more cells" in results[1]["error"] and "photos is required" in results[2]["error"]
    (case, photos), = (await imported_cases(settings))[0]
    assert case.circumstances == "Went out\nfor bread" and case.last_seen_place == "Station, north exit"
    assert [p.age_years for p in photos] == [7.0, None]
    # --skip-faces: stored only, pending for the running bot's face worker
    assert [p.face_status for p in photos] == ["pending", "pending"] and await stored_faces(settings) == []

    hopeless = tmp_path / "hopeless.jsonl"
    hopeless.write_text('{"name": "x"}\nnot json\n', encoding="utf-8")
    status, results, _ = await run_import(settings, hopeless)
    assert status == 1 and all("error" in r for r in results) and len(results) == 2


async def test_a_tip_matching_an_imported_case_alerts_coordinators_and_the_bot_does_not_embed_it_again(
        reunite, settings, people, coordinator, tmp_path):
    """The bot runs while `reunite cases import` (another process) writes a case with its faces; a
    tip showing the same person (Yao Ming among the players) becomes a match alert naming it."""
    photo_folder(tmp_path)
    path = tmp_path / "cases.jsonl"
    path.write_text(json.dumps({"name": "Yao Ming", "missing_since": "2024-03-14", "last_seen_place": "Shanghai",
                                "external_id": "YM-1", "photos": [{"path": "photos/face.jpg", "age": 20}]}) + "\n")
    status, results, err = await run_import(settings, path)
    assert status == 0, err
    code = results[0]["code"]
    faces = await stored_faces(settings)
    imported_faces = [(f.id, f.model_id) for f in faces]
    assert len(imported_faces) == 1

    # no wake-up from another process: the bot's watcher notices the faces within seconds
    await until(lambda: noticed(reunite, faces[0].case_id), timeout=10, what="the bot to notice the case")
    tipster = people(7101, "Tess")
    tipster.user.send_photo(image_bytes("players.jpg"), caption="Is this him?")
    reference = reference_in(await tipster.next_text())
    alert = await match_alert(coordinator)
    assert reference in alert["caption"] and code in alert["caption"] and "strong lead" in alert["caption"]
    assert "earlier tip" not in alert["caption"]
    candidates = await rows(reunite, select(MatchCandidate))
    assert [c.case_face_id for c in candidates] == [imported_faces[0][0]]

    await faces_done(reunite)
    # the face worker left the imported photo alone: the same face row, nothing re-embedded
    case_faces = [(f.id, f.model_id) for f in await rows(reunite, select(Face).where(Face.case_id.is_not(None)))]
    assert case_faces == imported_faces
    assert [p.face_status for p in await rows(reunite, select(CasePhoto))] == ["done"]


async def test_photos_are_regular_files_in_the_import_files_folder_unless_another_is_allowed(settings, tmp_path):
    """/dev/zero never ends and a FIFO blocks until someone writes: neither is read. A photo outside the
    file's folder (also through a symbolic link) fails its line unless its folder is allowed with
    --photos-from; a file over the image size limit fails before it is read. Each is one line's error."""
    folder = photo_folder(tmp_path)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "escape.jpg").symlink_to(packaged_image("t1.jpg"))
    with open(folder / "huge.jpg", "wb") as huge:  # sparse: 21 MB claimed, nothing written
        huge.truncate(21 * 1024 * 1024)
    outside = str(packaged_image("t1.jpg"))
    lines = [{"name": f"Case {n}", "missing_since": "2020-01-01", "last_seen_place": "Lisbon",
              "photos": [{"path": photo}]}
             for n, photo in enumerate(["photos/face.jpg", "/dev/zero", "photos/pipe.jpg", "photos/escape.jpg",
                                        "photos/huge.jpg", outside, "photos/../photos/face.jpg"], start=1)]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    status, results, err = await asyncio.wait_for(run_import(settings, path, "--skip-faces"), 120)
    assert status == 0, err
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {2, 3, 4, 5, 6}
    assert all("outside the import file's folder" in errors[n] and "--photos-from" in errors[n] for n in (2, 4, 6))
    assert "not a regular file" in errors[3] and "too large" in errors[5]

    status, results, err = await asyncio.wait_for(
        run_import(settings, path, "--skip-faces", "--photos-from", "/dev", "--photos-from",
                   str(packaged_image("t1.jpg").parent)), 120)
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert set(errors) == {2, 3, 5}  # allowed now, but still no regular file of a sensible size
    assert "not a regular file" in errors[2] and "not a regular file" in errors[3]
    assert [r["line"] for r in results if "code" in r] == [1, 4, 6, 7]


async def test_an_import_file_that_is_not_a_regular_file_is_refused_at_once(settings, tmp_path):
    os.mkfifo(tmp_path / "cases.jsonl")
    for path in ("/dev/zero", tmp_path / "cases.jsonl", tmp_path):
        status, results, err = await asyncio.wait_for(run_import(settings, path), 60)
        assert status == 2 and results == [] and "not a regular file" in err, (path, err)
