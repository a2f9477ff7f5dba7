"""The two face search backends against exact search on the same data: the in-process index (SQLite
deployments; exact up to float16 rounding) and pgvector's HNSW (PostgreSQL; within HNSW's recall),
plus the int8 screen's error bound and the in-process index following changes made elsewhere."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, select

from bot.db.migrate import upgrade_to_head_async
from bot.db.models import Case, CasePhoto, Face, Tip, TipMedia
from bot.db.session import create_engine, create_sessionmaker
from bot.faces.index import InProcessIndex
from bot.faces.normalisation import ImpostorTail
from bot.faces.screen import Int8Screen, integer_products
from bot.services import cases, users
from bot.services.cohort import Cohort
from bot.services.face_search import InProcessSearch, ReferenceChanges, face_search_for

MODEL = "test_pack/test_model"
CASES = 400
ACTIVE_SHARE = 0.75
TIP_FACES = 600


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def test_int8_screen_bounds_hold_and_the_index_stays_exact():
    rng = np.random.default_rng(3)
    rows = unit(rng.standard_normal((3000, 512)))
    probes = unit(np.vstack([rows[:5] + 0.5 * unit(rng.standard_normal((5, 512))), rng.standard_normal((5, 512))]))
    screen = Int8Screen(512)
    screen.reserve(len(rows))
    screen.set_rows(np.arange(len(rows)), rows)
    approximate, bound = screen.scores(probes, len(rows))
    exact = probes @ rows.T
    assert np.all(np.abs(exact - approximate) <= bound[:, None])
    assert float(bound.max()) < 0.05  # tight enough to leave few rows to score exactly

    # float16 rows: the same scores up to float16 rounding (near-ties may swap places)
    index = InProcessIndex(dtype=np.float16)
    index.add(np.arange(len(rows)), np.arange(len(rows)) // 4, rows)
    for number, (probe, truth) in enumerate(zip(probes, exact, strict=False)):
        hits = index.search(probe, 10)
        assert np.allclose([hit.score for hit in hits], np.sort(truth)[::-1][:10], atol=1e-3)
        if number < 5:  # a near-duplicate of row ``number`` finds it first
            assert hits[0].face_id == number


def adversarial_faces(rng: np.random.Generator) -> np.ndarray:
    """Unit vectors that drive the int8 codes to their extremes: all weight on one, two neighbouring
    (same and opposite signs) or four dimensions, weight spread evenly with every code maximal, and
    some ordinary ones."""
    dim = 512
    eye = np.eye(dim, dtype=np.float32)
    few = [eye[0], eye[7], eye[0] + eye[1], eye[2] - eye[3], eye[510] + eye[511], eye[0] + eye[1] + eye[2] + eye[3]]
    even = [np.ones(dim), np.resize([1.0, -1.0], dim), np.resize([1.0, 1.0, -1.0, -1.0], dim)]
    signs = list(rng.choice([-1.0, 1.0], (6, dim)))
    faces = np.array(few + even + signs, dtype=np.float32)
    return unit(np.vstack([faces, -faces, rng.standard_normal((40, dim))]))


def pairwise_saturating_products(probe_codes: np.ndarray, block: np.ndarray) -> np.ndarray:
    """uint8 x int8 products as x86 CPUs without VNNI compute them (vpmaddubsw, AVX2 and AVX-512BW):
    neighbouring products summed in pairs, each pair sum saturated to int16, then added in int32."""
    probes, rows = probe_codes.astype(np.int32), block.astype(np.int32)
    pairs = probes[:, 0::2, None] * rows[None, 0::2, :] + probes[:, 1::2, None] * rows[None, 1::2, :]
    return np.clip(pairs, -2**15, 2**15 - 1).sum(axis=1)


def test_the_int8_screen_is_exact_on_cpus_that_add_products_in_16_bits():
    """On x86 CPUs without VNNI, onnxruntime adds pairs of uint8 x int8 products in 16 bits with
    saturation; the screen's codes must never reach that, or its bound fails (issue 13: AVX2 EPYC)."""
    rng = np.random.default_rng(13)
    faces = adversarial_faces(rng)
    screen = Int8Screen(512)
    screen.reserve(len(faces))
    screen.set_rows(np.arange(len(faces)), faces)
    probe = screen.probe_codes(faces)
    [block] = screen.blocks
    exact = probe.shifted.astype(np.int64) @ block.astype(np.int64)
    clipped = np.count_nonzero(pairwise_saturating_products(probe.shifted, block) != exact)
    assert clipped == 0
    # nor could any other pairing of two products reach int16's limit
    largest_pair_sum = 2 * int(probe.shifted.max()) * int(np.abs(block).max())
    assert largest_pair_sum <= 2**15 - 1
    wrong_here = np.count_nonzero(integer_products(probe.shifted, block) != exact)  # this CPU's kernel
    assert wrong_here == 0

    approximate, bound = screen.scores(faces, len(faces))
    assert np.all(np.abs(faces @ faces.T - approximate) <= bound[:, None])
    index = InProcessIndex()
    index.add(np.arange(len(faces)), 0, faces)
    for face, truth in zip(faces, faces @ faces.T, strict=False):
        assert np.allclose([hit.score for hit in index.search(face, 10)], np.sort(truth)[::-1][:10], atol=1e-6)


def test_the_int8_screen_scans_little_more_than_the_faces_it_holds():
    """Every column of the screen is scored per search: room made for faces not there yet costs time."""
    rng = np.random.default_rng(5)
    rows = unit(rng.standard_normal((20_000, 512)))
    index = InProcessIndex(initial_capacity=len(rows))  # as the bot loads its faces at start
    index.add(np.arange(len(rows)), 0, rows)
    assert index._screen.capacity == len(rows)
    index.add(np.array([len(rows)]), 1, rows[:1])  # a photo added later: an eighth to spare, not double
    assert len(rows) < index._screen.capacity <= len(rows) * 9 // 8 + 1
    assert index.capacity >= len(rows) + 1
    hits = index.search(rows[0], 2)
    assert {hit.face_id for hit in hits} == {0, len(rows)} and hits[0].score > 0.999

    grown = InProcessIndex()  # from empty, one face at a time, then a few at once
    for face_id in range(3000):
        grown.add(np.array([face_id]), face_id, rows[face_id])
    grown.add(np.arange(3000, 9000), 0, rows[3000:9000])
    assert grown._screen.capacity <= 9000 * 9 // 8 + 1024
    assert [hit.face_id for hit in grown.search(rows[8999], 1)] == [8999]


async def migrated(database_url: str):
    await upgrade_to_head_async(database_url)
    return create_engine(database_url)


@pytest.fixture
async def sessionmaker(database_url):
    engine = await migrated(database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def sqlite_sessionmaker(tmp_path):
    engine = await migrated(f"sqlite+aiosqlite:///{tmp_path}/faces.db")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def seed(sessionmaker, rng) -> dict:
    """Cases with one to three photos of the same person (an identity vector plus noise), a quarter
    of them not active, and tip faces, some of them of those people; the reference faces' cohort
    statistics against a cohort of other people."""
    now = datetime.now(UTC)
    identities = unit(rng.standard_normal((CASES, 512)))
    data = {"case_of_face": {}, "active": set(), "vectors": {}, "tip_of_face": {}, "tip_vectors": {}}
    async with sessionmaker() as session:
        await users.get_or_create(session, 1, "en", frozenset())
        for number, identity in enumerate(identities):
            status = cases.STATUS_ACTIVE if number < CASES * ACTIVE_SHARE else cases.STATUS_PENDING
            case = await cases.create_case(session, name=f"case {number}", status=status)
            photo = CasePhoto(case_id=case.id, sha256="0" * 64, width=1, height=1, face_status="done",
                              created_at=now)
            session.add(photo)
            await session.flush()
            vectors = unit(identity + 0.9 * rng.standard_normal((int(rng.integers(1, 4)), 512)) / np.sqrt(512))
            faces = [Face(case_photo_id=photo.id, case_id=case.id, x1=0, y1=0, x2=1, y2=1, det_score=1.0,
                          embedding=vector, model_id=MODEL, created_at=now) for vector in vectors]
            session.add_all(faces)
            await session.flush()
            for face, vector in zip(faces, vectors, strict=False):
                data["case_of_face"][face.id] = case.id
                data["vectors"][face.id] = vector
            if status == cases.STATUS_ACTIVE:
                data["active"].add(case.id)
        tip = Tip(reference="T-0000-0000", alias="Test Alias 10", tipster_id=1, created_at=now, last_message_at=now)
        session.add(tip)
        await session.flush()
        image = TipMedia(tip_id=tip.id, sha256="1" * 64, width=1, height=1, face_status="done", created_at=now)
        session.add(image)
        await session.flush()
        people = rng.integers(0, CASES, TIP_FACES)
        mixed = np.where(rng.random(TIP_FACES)[:, None] < 0.3, identities[people], 0) + \
            rng.standard_normal((TIP_FACES, 512)) / np.sqrt(512)
        faces = [Face(tip_media_id=image.id, x1=0, y1=0, x2=1, y2=1, det_score=1.0, embedding=vector,
                      model_id=MODEL, created_at=now) for vector in unit(mixed)]
        session.add_all(faces)
        await session.flush()
        for face in faces:
            data["tip_of_face"][face.id] = tip.id
            data["tip_vectors"][face.id] = face.embedding
        await session.commit()
        others = unit(rng.standard_normal((200, 512)))
        await Cohort(MODEL, others, ImpostorTail(others)).give_statistics(session)
        data["stats"] = {face_id: (mean, std) for face_id, mean, std in await session.execute(
            select(Face.id, Face.cohort_mean, Face.cohort_std).where(Face.case_id.is_not(None)))}
    data["identities"] = identities
    return data


def exact_best_cases(data, probes: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Active cases by their best face's normalised score, brute force."""
    best: dict[int, float] = {}
    for face_id, vector in data["vectors"].items():
        case_id = data["case_of_face"][face_id]
        if case_id in data["active"]:
            mean, std = data["stats"][face_id]
            best[case_id] = max(best.get(case_id, -np.inf), float(((probes @ vector).max() - mean) / std))
    return sorted(best.items(), key=lambda item: item[1], reverse=True)[:k]


async def test_both_backends_agree_with_exact_search(sessionmaker, database_url):
    rng = np.random.default_rng(11)
    data = await seed(sessionmaker, rng)
    search = face_search_for(database_url, MODEL)
    people = rng.integers(0, CASES, 30)  # some of them not active: their cases must not come back
    probes = unit(data["identities"][people] + rng.standard_normal((30, 512)) / np.sqrt(512))
    found = expected = 0
    async with sessionmaker() as session:
        await search.load(session)
        for probe in list(probes) + [probes[:3]]:
            truth = exact_best_cases(data, np.atleast_2d(probe), 5)
            matches = await search.best_cases(session, probe, 5, min_score=-100.0)
            assert all(match.owner_id in data["active"] for match in matches)
            assert all(data["case_of_face"][match.face_id] == match.owner_id for match in matches)
            found += len({match.owner_id for match in matches} & {case_id for case_id, _ in truth})
            expected += len(truth)
            if isinstance(search, InProcessSearch):  # exact, up to float16 rounding
                assert [match.owner_id for match in matches] == [case_id for case_id, _ in truth]
                assert np.allclose([match.score for match in matches], [score for _, score in truth], atol=0.02)
        assert found / expected >= 0.95  # HNSW recall (the bench measures it at scale)

        # retro-matching: each case face's best tip faces above a floor, against exact
        case_probes = np.stack([data["vectors"][face_id] for face_id in list(data["vectors"])[:40]])
        hits = await search.similar_tip_faces(session, case_probes, 0.3, per_probe=3)
        tip_ids, tip_vectors = list(data["tip_vectors"]), np.stack(list(data["tip_vectors"].values()))
        truth = set()
        for number, scores in enumerate(case_probes @ tip_vectors.T):
            truth |= {(number, tip_ids[row]) for row in np.argsort(-scores)[:3] if scores[row] >= 0.3}
        found = {(hit.probe_index, hit.tip_face_id) for hit in hits}
        assert truth and found <= truth and len(found) >= 0.95 * len(truth)
        assert all(hit.tip_id == data["tip_of_face"][hit.tip_face_id] and hit.similarity >= 0.3 for hit in hits)
        if isinstance(search, InProcessSearch):
            assert found == truth


async def test_in_process_index_follows_changes_made_elsewhere(sqlite_sessionmaker):
    rng = np.random.default_rng(5)
    data = await seed(sqlite_sessionmaker, rng)
    search = InProcessSearch(MODEL)
    async with sqlite_sessionmaker() as session:
        await search.load(session)
        assert len(search.index) == sum(1 for c in data["case_of_face"].values() if c in data["active"])
        assert not await search.reconcile(session)
        gone = next(iter(data["active"]))
        # another process closes a case and deletes its faces: a changed checksum triggers a reload
        await session.execute(delete(Face).where(Face.case_id == gone))
        await session.commit()
        assert await search.reconcile(session)
        assert gone not in {search.index.owner_of(face_id) for face_id in search.index.face_ids().tolist()}
        # a case that becomes inactive leaves the index at once
        other = next(iter(data["active"] - {gone}))
        await search.apply(session, ReferenceChanges(deactivated=frozenset({other})))
        assert other not in {search.index.owner_of(face_id) for face_id in search.index.face_ids().tolist()}
        assert await session.get(Case, other) is not None
