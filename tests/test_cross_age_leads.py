"""Leads across ages (issue 13, DESIGN.md "Face leads across ages"), end to end through the stand-in on
SQLite and PostgreSQL, with the real models and the sample photos of the installed wheels.

No real child's photo is packaged: yaoming.jpg stands in for a case photo declared at age 3, and his
face among the 18 of players.jpg for the tip of the same person as an adult. The other active cases
are the faces of t1.jpg and gdp.jpg, each cut out as a case photo of its own. The scores are
normalised against the cohort (the wheels' sample photos at first, then tip faces too), and the
floor follows the review load set by REUNITE_WRONG_LEADS_PER_FACE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from PIL import Image, ImageOps
from sqlalchemy import func, select

from bot.db.models import Case, CohortFace, Face, MatchCandidate, Tip, TipMedia
from bot.faces.normalisation import case_score, normalised_score
from bot.services import cases, cohort, match_alerts, matching, media, retention
from tests.conftest import packaged_image
from tests.helpers import reference_in
from tests.test_matching import (
    faces_done,
    faces_in,
    image_bytes,
    is_match_alert,
    jpeg,
    match_alert,
    rows,
    scalar,
    until,
)

WRONG_LEADS = 0.1  # expected wrong candidates per tip face the floor allows here


@pytest.fixture
def settings(settings):
    return settings.with_overrides(wrong_leads_per_face=WRONG_LEADS)


def cut_out_faces(name: str) -> list[bytes]:
    """Each face of a sample photo cut out (with some margin) as a photo of its own."""
    photo = Image.open(packaged_image(name))
    crops = []
    for face in faces_in(name):
        x1, y1, x2, y2 = face.bbox
        margin = (x2 - x1) * 0.6
        crops.append(jpeg(photo.crop((x1 - margin, y1 - margin, x2 + margin, y2 + margin))))
    return crops


async def add_case(reunite, name: str, photo: bytes, age: float) -> Case:
    """An active case with one photo of the person at ``age``, waiting for the face worker."""
    stored = media.store_image(photo, reunite.settings.media_dir)
    async with reunite.sessionmaker() as session:
        case = await cases.create_case(session, name=name, status=cases.STATUS_ACTIVE)
        await cases.add_photos(session, case, [cases.NewPhoto(stored.sha256, stored.width, stored.height, age)],
                               None, datetime.now(UTC))
        await session.commit()
    reunite.face_worker.wake()
    return case


async def _counted(worker, at_least: int) -> int:
    return worker.search.reference_count() if worker.search.reference_count() >= at_least else 0


async def brute_force_candidates(reunite, tip_face_ids: list[int], floor: float) -> list[tuple[int, float]]:
    """(case, score) of the best five active cases for these tip faces, straight from the stored faces:
    each case's photos fused per tip face, no index, no HNSW."""
    async with reunite.sessionmaker() as session:
        probes = np.stack(list(await session.scalars(select(Face.embedding).where(Face.id.in_(tip_face_ids)))))
        references = (await session.execute(
            select(Face.case_id, Face.case_photo_id, Face.embedding, Face.cohort_mean, Face.cohort_std)
            .join(Case, Case.id == Face.case_id).where(Case.status == cases.STATUS_ACTIVE))).all()
    best: dict[int, float] = {}
    for case_id in {row[0] for row in references}:
        photos: dict[int, np.ndarray] = {}
        for _, photo_id, vector, mean, std in (row for row in references if row[0] == case_id):
            z = normalised_score(probes @ vector, mean, std)
            photos[photo_id] = np.maximum(photos.get(photo_id, z), z)
        per_probe = [case_score([scores[p] for scores in photos.values()]) for p in range(len(probes))]
        best[case_id] = max(per_probe)
    ranked = sorted(((case_id, score) for case_id, score in best.items() if score >= floor),
                    key=lambda item: item[1], reverse=True)
    return ranked[:matching.MAX_CANDIDATES_PER_TIP]


async def test_a_case_photo_at_age_3_gets_a_lead_from_the_same_person_as_an_adult_among_other_cases(
        reunite, people, coordinator):
    worker = reunite.face_worker
    # the cohort is there before any tip arrived: the sample photos' faces
    seeded = await scalar(reunite, select(func.count()).select_from(CohortFace))
    assert seeded >= 25 and len(worker.cohort) == seeded

    yao = await add_case(reunite, "Yao Ming", image_bytes("yaoming.jpg"), age=3)
    await faces_done(reunite)
    alone = worker.floor()
    others = [await add_case(reunite, f"Person {number}", photo, age=30)
              for number, photo in enumerate(cut_out_faces("t1.jpg") + cut_out_faces("gdp.jpg"))]
    await faces_done(reunite)
    # more open reference faces, a higher floor: as many wrong candidates per tip face as the setting says
    open_faces = await until(lambda: _counted(worker, len(others) + 1), what="the new cases' faces indexed")
    floor = worker.floor()
    assert floor > alone
    assert open_faces * worker.cohort.tail.probability(floor) <= WRONG_LEADS * 1.0001
    assert 1 * worker.cohort.tail.probability(alone) <= WRONG_LEADS * 1.0001

    tipster = people(7101, "Lin")
    tipster.user.send_photo(image_bytes("players.jpg"), caption="At the game tonight")
    reference = reference_in(await tipster.next_text())
    alert = await match_alert(coordinator)
    candidates = await rows(reunite, select(MatchCandidate).order_by(MatchCandidate.rank))
    assert candidates[0].case_id == yao.id and reference in alert["caption"]
    tip_faces = await rows(reunite, select(Face.id).join(TipMedia, TipMedia.id == Face.tip_media_id))
    assert len(tip_faces) >= 15
    assert len(candidates) - 1 <= WRONG_LEADS * len(tip_faces)  # wrong candidates within the review load
    # labels follow the normalised score: his is far above different people's
    lines = alert["caption"].splitlines()
    for candidate in candidates:
        code = await scalar(reunite, select(Case.code).where(Case.id == candidate.case_id))
        line = next(line for line in lines if code in line)
        assert match_alerts.strength_words("en", candidate.similarity) in line
    assert "strong lead" in next(line for line in lines if yao.code in line)
    # in process and in PostgreSQL: the same candidates as brute force over the stored faces
    expected = await brute_force_candidates(reunite, tip_faces, floor)
    assert [candidate.case_id for candidate in candidates] == [case_id for case_id, _ in expected]
    assert [candidate.similarity for candidate in candidates] == pytest.approx([score for _, score in expected],
                                                                               abs=1e-3)
    # privacy rule 1: the tipster got the acknowledgement and nothing else
    await faces_done(reunite)
    assert len(tipster.received()) == 1 and "match" not in tipster.texts()[0].lower()


async def test_the_cohort_grows_with_new_people_s_tip_faces_retro_matches_alike_and_loses_purged_faces(
        reunite, people, coordinator):
    worker = reunite.face_worker
    seeded = len(worker.cohort)
    tipster = people(7102, "Ada")
    photos = [Image.open(packaged_image(name)) for name in ("players.jpg", "t1.jpg", "gdp.jpg")]
    for photo in photos + [ImageOps.mirror(photos[1])]:  # at least as many faces as the seed
        tipster.user.send_photo(jpeg(photo))
        await tipster.next_text()
    await faces_done(reunite)
    tip_faces = await rows(reunite, select(Face.id).where(Face.tip_media_id.is_not(None)))
    assert len(tip_faces) >= seeded

    # a case opened later is searched against the old tips with the same score and floor (retro-matching)
    yao = await add_case(reunite, "Yao Ming", image_bytes("yaoming.jpg"), age=3)
    alert = await match_alert(coordinator)
    assert "earlier tip" in alert["caption"] and yao.code in alert["caption"]
    candidates = await rows(reunite, select(MatchCandidate))
    assert [candidate.case_id for candidate in candidates] == [yao.id]
    assert candidates[0].similarity == pytest.approx(
        (await brute_force_candidates(reunite, [candidates[0].tip_face_id], worker.floor()))[0][1], abs=1e-3)
    assert await scalar(reunite, select(Face.cohort_size).where(Face.case_id == yao.id)) == seeded

    # these photos show the seed's own people: each is in the cohort once already, and stays once
    await worker.follow_the_cohort()
    assert len(worker.cohort) == seeded
    # faces of people it has none of join it (no photo of others is packaged: their embeddings are
    # stored as faces of the tip's image); it doubled, so the statistics were computed again
    newcomers = np.random.default_rng(13).standard_normal((seeded + 1, 512)).astype(np.float32)
    newcomers /= np.linalg.norm(newcomers, axis=1, keepdims=True)
    async with reunite.sessionmaker() as session:
        image = await session.scalar(select(TipMedia).order_by(TipMedia.id))
        session.add_all(Face(tip_media_id=image.id, x1=0.0, y1=0.0, x2=100.0, y2=100.0, det_score=0.9,
                             embedding=vector, model_id=worker.search.model_id, created_at=datetime.now(UTC),
                             cohort_key=cohort.new_cohort_key()) for vector in newcomers)
        await session.commit()
    await worker.follow_the_cohort()
    assert len(worker.cohort) == seeded + len(newcomers)
    assert await scalar(reunite, select(Face.cohort_size).where(Face.case_id == yao.id)) == len(worker.cohort)

    # past the retention period, tip faces leave the cohort with their rows
    async with reunite.sessionmaker() as session:
        later = datetime.now(UTC) + timedelta(days=reunite.settings.tip_retention_days + 1)
        await retention.purge_expired_tips(session, reunite.settings.media_dir,
                                           reunite.settings.tip_retention_days, later)
    await worker.follow_the_cohort()
    assert len(worker.cohort) == seeded
    assert len([m for m in tipster.received() if is_match_alert(m)]) == 0


async def test_a_burst_of_tips_showing_the_same_people_leaves_the_cohort_and_the_leads_as_they_were(
        reunite, people, coordinator):
    """A viral sighting or an album: the same few people in tip after tip. Were their faces all drawn
    into the cohort, one person's faces would count as different people's there: the floor would rise
    past every real lead, and nobody would get one any more."""
    worker = reunite.face_worker
    seeded = len(worker.cohort)
    yao = await add_case(reunite, "Yao Ming", image_bytes("yaoming.jpg"), age=3)
    for number, photo in enumerate(cut_out_faces("gdp.jpg")):
        await add_case(reunite, f"Person {number}", photo, age=30)
    await faces_done(reunite)
    floor = worker.floor()
    # the six people of t1.jpg (in the cohort's seed already), until their faces outnumber the seed
    for number in range(seeded // 6 + 1):
        fan = people(7200 + number, f"Fan {number}")
        photo = Image.open(packaged_image("t1.jpg"))
        fan.user.send_photo(jpeg(ImageOps.mirror(photo) if number % 2 else photo))
        await fan.next_text()
    await faces_done(reunite)
    assert await scalar(reunite, select(func.count()).select_from(Face).where(Face.tip_media_id.is_not(None))) \
        >= seeded
    await worker.follow_the_cohort()
    assert len(worker.cohort) == seeded  # each person once
    assert worker.floor() == pytest.approx(floor)

    tipster = people(7300, "Lin")
    tipster.user.send_photo(image_bytes("players.jpg"))
    reference = reference_in(await tipster.next_text())
    await faces_done(reunite)
    leads = await rows(reunite, select(MatchCandidate.case_id).join(Tip, Tip.id == MatchCandidate.tip_id)
                       .where(Tip.reference == reference))
    assert leads[:1] == [yao.id]
