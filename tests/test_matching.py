"""Face matching end to end (DESIGN.md flow 2, flow 8, privacy rules 1 and 4), through the stand-in
on SQLite and PostgreSQL, with the real models and the sample photos of the installed wheels.

The face of Yao Ming in ``yaoming.jpg`` is also in ``players.jpg`` (the tallest player): a case
whose photo is yaoming.jpg is a strong lead for a tip showing players.jpg.
"""

from __future__ import annotations

import functools
import io
import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image
from sqlalchemy import func, select, update

from bot.db.models import (
    MATCH_CONFIRMED,
    MATCH_PENDING,
    MATCH_REJECTED,
    AuditEvent,
    Case,
    CasePhoto,
    Face,
    MatchCandidate,
    TipMedia,
)
from bot.faces import get_face_engine
from bot.services import cases, leads, match_alerts, matching, media, retention, users
from bot.services.match_alerts import GAP_PX, NUMBER_COLUMN_PX, TILE_PX
from bot.services.matching import FaceCrop
from tests.conftest import COORDINATOR_ID, packaged_image, settle
from tests.helpers import jpeg_bytes, reference_in, until

YAO_MING_SAME_PHOTO = 0.55  # his face in players.jpg against yaoming.jpg measured 0.627 (bench/FACES.md)


# -- helpers ----------------------------------------------------------------------------------------


def image_bytes(name: str) -> bytes:
    return packaged_image(name).read_bytes()


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


@functools.cache
def faces_in(name: str) -> list:
    return get_face_engine().analyse_case_photo(image_bytes(name), with_crops=False)


def player_face(index: int) -> bytes:
    """A tight crop around one face of players.jpg (largest first), as a family's case photo."""
    x1, y1, x2, y2 = faces_in("players.jpg")[index].bbox
    margin = (x2 - x1) * 0.6
    return jpeg(Image.open(packaged_image("players.jpg")).crop((x1 - margin, y1 - margin, x2 + margin, y2 + margin)))


async def add_case(reunite, name: str, photos: list[bytes], *, status: str = cases.STATUS_ACTIVE,
                   family_id: int | None = None) -> Case:
    """A case with its photos stored in the media store (face_status pending), as /report would leave it."""
    now = datetime.now(UTC)
    stored = [media.store_image(photo, reunite.settings.media_dir) for photo in photos]
    async with reunite.sessionmaker() as session:
        if family_id is not None:
            await users.get_or_create(session, family_id, "en", frozenset())
        case = await cases.create_case(session, name=name, status=status, reported_by=family_id)
        await cases.add_photos(session, case, [cases.NewPhoto(image.sha256, image.width, image.height)
                                               for image in stored], family_id, now)
        await session.commit()
    reunite.face_worker.wake()
    return case


async def scalar(reunite, statement):
    async with reunite.sessionmaker() as session:
        return await session.scalar(statement)


async def rows(reunite, statement):
    async with reunite.sessionmaker() as session:
        return list(await session.scalars(statement))


async def faces_done(reunite) -> None:
    """Until no tip image or case photo waits for the face worker, and what it queued is sent."""
    async def idle():
        pending = await scalar(reunite, select(func.count()).select_from(TipMedia)
                               .where(TipMedia.face_status == matching.FACES_PENDING))
        pending += await scalar(reunite, select(func.count()).select_from(CasePhoto)
                                .where(CasePhoto.face_status == matching.FACES_PENDING))
        return pending == 0

    async def watched_since_idle():
        return reunite.face_worker.watched_at >= idle_since

    await settle(reunite)
    await until(idle, what="the face worker")
    idle_since = time.monotonic()
    # a look at the reference faces begun since: faces of new photos indexed, retro-matching done
    await until(watched_since_idle, what="a look at the reference faces")
    await reunite.sender.wait_until_drained()


async def noticed(reunite, case_id: int) -> bool:
    """The face worker has seen the case active and indexed its faces."""
    return case_id in reunite.face_worker.watcher.active


def is_match_alert(message: dict) -> bool:
    return "photo" in message and "Face match" in (message.get("caption") or "")


async def match_alert(person, timeout: float = 30.0) -> dict:
    """The next match alert ``person`` gets (coordinators also get the tip's own photo alert)."""
    messages = await person.wait(1, timeout=timeout, predicate=is_match_alert)
    return [m for m in messages if is_match_alert(m)][-1]


def buttons(message: dict) -> list[str]:
    return [button["text"] for row in message["reply_markup"]["inline_keyboard"] for button in row]


def similarity_to(image: bytes, reference: bytes) -> float:
    """Best similarity of any face in ``image`` to the largest face of ``reference``."""
    engine = get_face_engine()
    probe = engine.analyse_case_photo(reference, with_crops=False)[0].embedding
    return max(float(face.embedding @ probe) for face in engine.analyse_case_photo(image, with_crops=False))


def composite_tile(stand_in, message: dict, row: int, column: int) -> bytes:
    """A face tile (column 0: the tip's face, 1: the case's) of a match alert's composite image."""
    composite = Image.open(io.BytesIO(stand_in.file_bytes(message["photo"][-1]["file_id"])))
    left = NUMBER_COLUMN_PX + GAP_PX + column * (TILE_PX + GAP_PX)
    top = GAP_PX + row * (TILE_PX + GAP_PX)
    return jpeg(composite.crop((left, top, left + TILE_PX, top + TILE_PX)))


def test_a_fresh_tips_face_tile_looks_as_one_cut_from_the_stored_photo(tmp_path):
    """A new tip's alert shows the face worker's crop, an old tip's (retro-matching) a square cut from
    the stored photo: the two are the same picture, faces at the photo's edge too."""
    at_the_edge = 0
    for name in ("players.jpg", "gdp.jpg"):
        stored = media.store_image(image_bytes(name), tmp_path)
        faces = get_face_engine().analyse_tip_image(stored.path).faces
        at_the_edge += sum(face.bbox[0] < 10 for face in faces)
        for face in faces:
            from_crop = match_alerts.face_tile(tmp_path, FaceCrop(stored.sha256, face.bbox, face.crop_jpeg))
            from_photo = match_alerts.face_tile(tmp_path, FaceCrop(stored.sha256, face.bbox))
            assert from_crop.size == from_photo.size == (TILE_PX, TILE_PX)
            difference = np.abs(np.asarray(from_crop, float) - np.asarray(from_photo, float))
            assert difference.mean() < 3, (name, face.bbox)
    assert at_the_edge  # gdp.jpg has one: its tile runs off the photo, black in both


# -- a tip matches a case --------------------------------------------------------------------------


async def test_players_photo_tip_alerts_coordinators_with_the_yao_ming_case_and_tells_the_tipster_nothing(
        reunite, people, coordinator, stand_in):
    case = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    await faces_done(reunite)
    tipster = people(7001, "Tina")
    tipster.user.send_photo(image_bytes("players.jpg"), caption="Basketball players at the stadium")
    reference = reference_in(await tipster.next_text())

    alert = await match_alert(coordinator)
    caption = alert["caption"]
    assert reference in caption and case.code in caption and "Yao Ming" in caption
    assert "strong lead" in caption and "needs verification" in caption
    assert "found" not in caption.lower()
    assert buttons(alert) == [f"✅ Confirm lead {case.code}", f"✖ Reject {case.code}"]
    # the composite: his face from the tip on the left, the case photo's face on the right
    assert similarity_to(composite_tile(stand_in, alert, 0, 0), image_bytes("yaoming.jpg")) > YAO_MING_SAME_PHOTO
    assert similarity_to(composite_tile(stand_in, alert, 0, 1), image_bytes("yaoming.jpg")) > 0.8

    candidates = await rows(reunite, select(MatchCandidate))
    assert [(c.case_id, c.status, c.rank) for c in candidates] == [(case.id, MATCH_PENDING, 1)]
    assert candidates[0].similarity > YAO_MING_SAME_PHOTO
    tip_faces = await scalar(reunite, select(func.count()).select_from(Face).where(Face.tip_media_id.is_not(None)))
    assert tip_faces >= 15  # every comparable face of the 18 players is kept for retro-matching

    # privacy rule 1: the tipster got the acknowledgement and nothing else
    await faces_done(reunite)
    assert len(tipster.received()) == 1 and "match" not in tipster.texts()[0].lower()


async def test_a_case_activated_after_an_old_tip_retro_matches_it(reunite, people, coordinator):
    tipster = people(7002, "Omar")
    tipster.user.send_photo(image_bytes("players.jpg"))
    reference = reference_in(await tipster.next_text())
    await faces_done(reunite)
    case = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")], status=cases.STATUS_PENDING)
    await faces_done(reunite)
    assert await rows(reunite, select(MatchCandidate)) == []  # a case in review is never searched

    async with reunite.sessionmaker() as session:
        cases.verify(session, await session.get(Case, case.id), COORDINATOR_ID, datetime.now(UTC))
        await session.commit()
    alert = await match_alert(coordinator)
    assert "earlier tip" in alert["caption"] and reference in alert["caption"] and case.code in alert["caption"]
    assert "strong lead" in alert["caption"]
    # a photo added later is compared too, without a second alert for the same tip and case
    async with reunite.sessionmaker() as session:
        await cases.add_photos(session, await session.get(Case, case.id),
                               [cases.NewPhoto(*_stored(reunite, player_face(0)))], COORDINATOR_ID,
                               datetime.now(UTC))
        await session.commit()
    await faces_done(reunite)
    assert len([m for m in coordinator.received() if is_match_alert(m)]) == 1
    assert len(await rows(reunite, select(MatchCandidate))) == 1


def _stored(reunite, photo: bytes) -> tuple[str, int, int]:
    image = media.store_image(photo, reunite.settings.media_dir)
    return image.sha256, image.width, image.height


async def test_faces_written_by_another_process_are_searched_within_seconds(reunite, people, coordinator):
    """``reunite cases import`` (or another worker) writes a case with embedded faces directly."""
    engine = get_face_engine()
    faces = engine.analyse_case_photo(image_bytes("yaoming.jpg"), with_crops=False)
    sha, width, height = _stored(reunite, image_bytes("yaoming.jpg"))
    now = datetime.now(UTC)
    async with reunite.sessionmaker() as session:
        case = await cases.create_case(session, name="Imported Case", status=cases.STATUS_ACTIVE)
        photo = CasePhoto(case_id=case.id, sha256=sha, width=width, height=height, face_status="done",
                          created_at=now)
        session.add(photo)
        await session.flush()
        session.add_all(Face(case_photo_id=photo.id, case_id=case.id, x1=f.bbox[0], y1=f.bbox[1], x2=f.bbox[2],
                             y2=f.bbox[3], det_score=f.score, embedding=f.embedding, model_id=f.model_id,
                             created_at=now) for f in faces)
        await session.commit()
    await until(lambda: noticed(reunite, case.id), timeout=10, what="the worker to notice on its own")
    tipster = people(7003, "Ivy")
    tipster.user.send_photo(image_bytes("players.jpg"))
    alert = await match_alert(coordinator)
    assert case.code in alert["caption"] and "earlier tip" not in alert["caption"]


async def test_the_watcher_sees_what_changed_since_its_last_look_however_long_ago(reunite):
    """The face worker looks at the reference faces between rounds, and a round can outlast the
    look-back (a batch of photos on a busy machine): a case activated since the last look is still
    seen, not left out of the search until the next full check."""
    first_look = datetime.now(UTC)
    watcher = matching.ReferenceWatcher(reunite.face_worker.watcher.model_id)
    async with reunite.sessionmaker() as session:
        await watcher.prime(session, first_look)
        case = await cases.create_case(session, name="Activated Meanwhile", status=cases.STATUS_ACTIVE)
        await session.commit()
    async with reunite.sessionmaker() as session:
        changes = await watcher.poll(session, first_look + 3 * matching.WATCH_LOOKBACK)
    assert 3 * matching.WATCH_LOOKBACK < matching.FULL_CHECK_INTERVAL  # not found by a full check
    assert case.id in changes.activated


# -- bad input ----------------------------------------------------------------------------------------


async def test_photos_with_no_face_fifty_faces_or_corrupt_data_are_handled(reunite, people, coordinator):
    family = people(7010, "Mei", language_code="en")
    yao = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    no_face = await add_case(reunite, "Blank Photo", [jpeg_bytes(800, 600)], family_id=family.id)
    await faces_done(reunite)
    assert (await rows(reunite, select(CasePhoto.face_status).where(CasePhoto.case_id == no_face.id))) == ["no_face"]
    asked = await family.next_text()
    assert "could not find a clear face" in asked and no_face.code in asked and "/addphoto" in asked

    # a case photo whose stored file is damaged: kept as failed, and the family is asked again
    sha, width, height = _stored(reunite, jpeg_bytes(700, 500))
    path = media.media_path(reunite.settings.media_dir, sha)
    path.write_bytes(path.read_bytes()[:300])
    async with reunite.sessionmaker() as session:
        await cases.add_photos(session, await session.get(Case, no_face.id), [cases.NewPhoto(sha, width, height)],
                               family.id, datetime.now(UTC))
        await session.commit()
    reunite.face_worker.wake()
    assert "could not open it" in await family.next_text()
    assert sorted(await rows(reunite, select(CasePhoto.face_status).where(CasePhoto.case_id == no_face.id))) == [
        "failed", "no_face"]

    # a tip photo with no face: kept, acknowledged, no match alert
    tipster = people(7011, "Ned")
    tipster.user.send_photo(jpeg_bytes(1000, 700))
    reference_in(await tipster.next_text())
    # 50 faces in one photo: the 20 largest are compared (his is the largest), the rest counted
    crowd = _fifty_faces()
    tipster.user.send_photo(crowd)
    alert = await match_alert(coordinator)
    assert yao.code in alert["caption"]
    assert int(re.search(r"(\d+) more face", alert["caption"]).group(1)) >= 25  # 50 found, 20 compared
    await faces_done(reunite)
    statuses = sorted(await rows(reunite, select(TipMedia.face_status)))
    assert statuses == ["done", "no_face"]
    assert await scalar(reunite, select(func.count()).select_from(Face).where(Face.tip_media_id.is_not(None))) == 20
    assert len([m for m in coordinator.received() if is_match_alert(m)]) == 1

    # a tip image whose stored file is damaged (a disk error, another process): failed, nothing else
    damaged = await scalar(reunite, select(TipMedia).where(TipMedia.face_status == "no_face"))
    media.media_path(reunite.settings.media_dir, damaged.sha256).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    async with reunite.sessionmaker() as session:
        await session.execute(update(TipMedia).where(TipMedia.id == damaged.id).values(face_status="pending"))
        await session.commit()
    reunite.face_worker.wake()
    await faces_done(reunite)
    assert await scalar(reunite, select(TipMedia.face_status).where(TipMedia.id == damaged.id)) == "failed"


def face_tile(name: str, index: int, side: int) -> Image.Image:
    """The ``index``-th largest face of a sample photo with some margin, ``side`` px square."""
    x1, y1, x2, y2 = faces_in(name)[index].bbox
    half = max(x2 - x1, y2 - y1) * 0.8
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    box = (centre_x - half, centre_y - half, centre_x + half, centre_y + half)
    return Image.open(packaged_image(name)).convert("RGB").crop(box).resize((side, side))


def _fifty_faces() -> bytes:
    """A 10 x 5 grid: 49 faces from t1.jpg and, a little larger, Yao Ming's."""
    tiles = [face_tile("t1.jpg", index, 100) for index in range(6)]
    grid = Image.new("RGB", (10 * 128, 5 * 128), (200, 200, 200))
    for cell in range(49):
        grid.paste(tiles[cell % len(tiles)], ((cell % 10) * 128 + 14, (cell // 10) * 128 + 14))
    grid.paste(face_tile("yaoming.jpg", 0, 126), (9 * 128 + 1, 4 * 128 + 1))
    return jpeg(grid)


# -- review ----------------------------------------------------------------------------------------


async def test_confirm_and_reject_are_role_checked_signed_audited_and_double_press_safe(
        reunite, people, coordinator, admin, stand_in):
    yao = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    other = await add_case(reunite, "Another Player", [player_face(3)])
    await faces_done(reunite)
    tipster = people(7020, "Uma")
    tipster.user.send_photo(image_bytes("players.jpg"))
    alert = await match_alert(coordinator)
    ranked = sorted(await rows(reunite, select(MatchCandidate)), key=lambda c: c.rank)
    assert [c.similarity for c in ranked] == sorted((c.similarity for c in ranked), reverse=True)
    codes = {yao.id: yao.code, other.id: other.code}
    positions = [alert["caption"].index(codes[c.case_id]) for c in ranked]
    assert positions == sorted(positions)  # best first
    assert {f"✅ Confirm lead {yao.code}", f"✖ Reject {other.code}"} <= set(buttons(alert))

    coordinator.cursor = len(coordinator.received())
    coordinator.user.press(alert, f"✅ Confirm lead {yao.code}")
    confirmed = await coordinator.next_text()
    assert "Confirmed as a lead" in confirmed and yao.code in confirmed and "needs verification" in confirmed
    coordinator.user.press(alert, f"✖ Reject {other.code}")
    assert "Rejected" in await coordinator.next_text()

    # pressed again (or by another coordinator): nothing changes, a short notice instead
    coordinator.user.press(alert, f"✖ Reject {yao.code}")
    await settle(reunite)
    statuses = {c.case_id: c.status for c in await rows(reunite, select(MatchCandidate))}
    assert statuses == {yao.id: MATCH_CONFIRMED, other.id: MATCH_REJECTED}
    answers = [m for m in stand_in.messages(COORDINATOR_ID) if m.get("_callback_answer")]
    assert any("Already confirmed as a lead" in (m["_callback_answer"].get("text") or "") for m in answers)
    assert len(coordinator.received()) == coordinator.cursor

    # forged data does nothing; a member of the public pressing a (copied) button is refused
    candidate_id = (await rows(reunite, select(MatchCandidate.id).where(MatchCandidate.case_id == yao.id)))[0]
    coordinator.user.press_forged(alert, f"mr|{candidate_id}|0000000000")
    stranger = people(7021, "Sly")
    reference_in(await stranger.say("hello"))
    stranger.user.press_forged(stranger.received()[0], alert["reply_markup"]["inline_keyboard"][0][1]["callback_data"])
    await settle(reunite)
    assert "for coordinators" in stranger.texts()[-1]
    assert {c.case_id: c.status for c in await rows(reunite, select(MatchCandidate))} == statuses

    audit = await rows(reunite, select(AuditEvent).where(AuditEvent.action.like("match.%")))
    assert sorted((e.action, e.actor_id) for e in audit) == [("match.confirm", COORDINATOR_ID),
                                                              ("match.reject", COORDINATOR_ID)]
    assert all(e.object_ref.startswith("T-") and "C-" in e.object_ref for e in audit)


async def test_matches_lists_pending_leads_paged_with_at_most_five_per_tip(reunite, people, coordinator):
    for index in range(7):
        await add_case(reunite, f"Player {index}", [player_face(index)])
    await faces_done(reunite)
    for number in range(3):
        people(7030 + number, f"Tipster{number}").user.send_photo(image_bytes("players.jpg"))
    await faces_done(reunite)
    per_tip = await rows(reunite, select(func.count()).select_from(MatchCandidate).group_by(MatchCandidate.tip_id))
    assert per_tip == [5, 5, 5]

    before = len(coordinator.received())
    listing = await coordinator.say("/matches")
    assert "1–10 of 15" in listing and "strong lead" in listing
    coordinator.user.press(coordinator.received()[before], "More ›")
    assert "11–15 of 15" in await coordinator.next_text()

    some_case = await scalar(reunite, select(Case).join(MatchCandidate, MatchCandidate.case_id == Case.id).limit(1))
    listing = await coordinator.say(f"/matches {some_case.code.lower()}")
    async with reunite.sessionmaker() as session:
        count = await leads.pending_lead_count(session, some_case.id)
    assert count > 0 and listing.count(some_case.code) == count and f"of {count}" in listing


# -- purging ----------------------------------------------------------------------------------------


async def test_closing_a_case_purges_its_biometrics_but_keeps_tip_faces_another_case_needs(
        reunite, people, coordinator):
    mirrored = jpeg(Image.open(packaged_image("yaoming.jpg")).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    first = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    second = await add_case(reunite, "Yao Ming (second report)", [mirrored])
    await faces_done(reunite)
    people(7050, "Pia").user.send_photo(image_bytes("players.jpg"))
    await match_alert(coordinator)
    await faces_done(reunite)
    candidates = await rows(reunite, select(MatchCandidate))
    assert {c.case_id for c in candidates} == {first.id, second.id}
    shared_face = candidates[0].tip_face_id
    assert {c.tip_face_id for c in candidates} == {shared_face}

    async def close(case):
        async with reunite.sessionmaker() as session:
            cases.close(session, await session.get(Case, case.id), COORDINATOR_ID, cases.STATUS_FOUND,
                        datetime.now(UTC))
            await session.commit()

    async def purged(case):
        async def done():
            faces = await scalar(reunite, select(func.count()).select_from(Face).where(Face.case_id == case.id))
            leads = await scalar(reunite, select(func.count()).select_from(MatchCandidate)
                                 .where(MatchCandidate.case_id == case.id))
            return faces == leads == 0
        await until(done, timeout=10, what=f"{case.code} purged")

    await close(first)
    await purged(first)
    assert await scalar(reunite, select(Face.id).where(Face.id == shared_face)) == shared_face
    await close(second)
    await purged(second)
    assert await scalar(reunite, select(Face.id).where(Face.id == shared_face)) is None
    # other tip faces (players nobody looks for) stay until the retention period ends
    assert await scalar(reunite, select(func.count()).select_from(Face).where(Face.tip_media_id.is_not(None))) > 10
    assert await scalar(reunite, select(func.count()).select_from(Face).where(Face.case_id.is_not(None))) == 0


async def test_tip_images_past_retention_are_purged_with_their_faces_and_files(reunite, people, coordinator):
    old, recent = people(7060, "Olga"), people(7061, "Rita")
    old.user.send_photo(image_bytes("players.jpg"), caption="long ago")
    reference_in(await old.next_text())
    recent.user.send_photo(image_bytes("gdp.jpg"))
    reference_in(await recent.next_text())
    await faces_done(reunite)
    images = await rows(reunite, select(TipMedia).order_by(TipMedia.id))
    now = datetime.now(UTC)
    async with reunite.sessionmaker() as session:
        # the old photo is past the period, its tip is not (the tipster wrote again lately)
        await session.execute(update(TipMedia).where(TipMedia.id == images[0].id)
                              .values(created_at=now - timedelta(days=31)))
        await session.commit()
        purged = await retention.purge_expired_tips(session, reunite.settings.media_dir, 30, now)
    assert (purged.tips, purged.images) == (0, 1)
    assert [m.id for m in await rows(reunite, select(TipMedia))] == [images[1].id]
    assert not media.media_path(reunite.settings.media_dir, images[0].sha256).exists()
    assert media.media_path(reunite.settings.media_dir, images[1].sha256).exists()
    face_images = await rows(reunite, select(Face.tip_media_id).where(Face.tip_media_id.is_not(None)).distinct())
    assert face_images == [images[1].id]
    # the message that came with it is younger: it stays with its tip
    assert "long ago" in await coordinator.say(f"/tip {reference_in(old.texts()[0])}")


async def test_faces_of_another_model_are_embedded_again(reunite, people, coordinator):
    case = await add_case(reunite, "Yao Ming", [image_bytes("yaoming.jpg")])
    await faces_done(reunite)
    async with reunite.sessionmaker() as session:
        await session.execute(update(Face).values(model_id="older_pack/w600k_r50",
                                                  embedding=np.ones(512, dtype=np.float32) / np.sqrt(512)))
        requeued = await matching.requeue_other_models(session, get_face_engine().model_id)
        await session.commit()
    assert requeued == (0, 1)
    reunite.face_worker.wake()
    await faces_done(reunite)
    models = await rows(reunite, select(Face.model_id).where(Face.case_id == case.id))
    assert models and set(models) == {get_face_engine().model_id}
    people(7070, "Vera").user.send_photo(image_bytes("players.jpg"))
    assert case.code in (await match_alert(coordinator))["caption"]
