"""Normalised face scores (bot.faces.normalisation): the in-process index stays exact in normalised
scores against a brute-force NumPy reference, the cohort statistics shrug off the case's own person
in the cohort, and the review floor keeps the expected wrong candidates per tip face under the
setting whatever the number of open reference faces."""

from __future__ import annotations

import numpy as np
import pytest

from bot.config import SettingsError, load_settings
from bot.faces.index import InProcessIndex
from bot.faces.normalisation import (
    ImpostorTail,
    augmented_probes,
    augmented_references,
    case_score,
    distinct_people,
    normalised_score,
    reference_stats,
)
from bot.faces.thresholds import POSSIBLE_MATCH_THRESHOLD, STRONG_MATCH_THRESHOLD, match_strength
from bot.services.cohort import Cohort


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def faces_like_people(rng, count: int, people: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors clustered by person (a shared component per person, as embeddings are), with a
    person's id per row."""
    identity = unit(rng.standard_normal((people, 512)))
    shared = unit(rng.standard_normal(512))  # what all faces share (as real embeddings do)
    person = rng.integers(0, people, count)
    rows = unit(0.35 * shared + identity[person] + 1.2 * rng.standard_normal((count, 512)) / np.sqrt(512))
    return rows, person


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_index_returns_exactly_the_normalised_ranking_of_brute_force(dtype):
    """Rows with very different cohort statistics (a child's photo: low mean, small spread): the
    ranking by normalised score differs from the ranking by cosine, and the index returns the former
    exactly, through its int8 screen."""
    rng = np.random.default_rng(13)
    rows, _ = faces_like_people(rng, 6000, 1500)
    cohort, _ = faces_like_people(rng, 400, 400)
    means, stds = reference_stats(rows, cohort)
    # a sixth of the rows as children's photos: their scores against adults run low and narrow
    children = rng.random(len(rows)) < 1 / 6
    means[children] -= 0.15
    stds[children] *= 0.5
    owners = np.arange(len(rows)) // 3
    index = InProcessIndex(dtype=dtype)
    index.add(np.arange(len(rows)), owners, rows, means, stds)
    kept = index._vectors[: len(index)].astype(np.float32)  # the rows as the index keeps them
    probes = unit(np.vstack([rows[:8] + 0.8 * unit(rng.standard_normal((8, 512))), rng.standard_normal((4, 512))]))

    differs = 0
    for probe in probes:
        z = normalised_score(kept @ probe, means, stds)
        truth = np.argsort(-z, kind="stable")[:10]
        hits = index.search(probe, 10)
        assert [hit.face_id for hit in hits] == truth.tolist()
        assert np.allclose([hit.score for hit in hits], z[truth], atol=1e-4)
        differs += set(truth.tolist()) != set(np.argsort(-(kept @ probe))[:10].tolist())

        best: dict[int, float] = {}
        for owner, score in zip(owners.tolist(), z.tolist(), strict=False):
            best[owner] = max(best.get(owner, -np.inf), score)
        ranked = sorted(best, key=best.get, reverse=True)
        assert [match.owner_id for match in index.best_per_owner(probe, 7)] == ranked[:7]
        floor = (best[ranked[3]] + best[ranked[4]]) / 2  # between the 4th and the 5th owner
        above = index.best_per_owner(probe, 7, min_score=floor)
        assert [match.owner_id for match in above] == ranked[:4] and all(m.score >= floor for m in above)
    assert differs  # normalising changed what comes first: the test looks at what it claims to

    # several probes at once: an owner's best over all of them
    many = index.best_per_owner(probes[:3], 5)
    z = np.max([normalised_score(kept @ probe, means, stds) for probe in probes[:3]], axis=0)
    best = {}
    for owner, score in zip(owners.tolist(), z.tolist(), strict=False):
        best[owner] = max(best.get(owner, -np.inf), score)
    assert [match.owner_id for match in many] == sorted(best, key=best.get, reverse=True)[:5]


def test_the_augmented_vectors_give_the_normalised_score_as_an_inner_product():
    rng = np.random.default_rng(2)
    rows, probes = unit(rng.standard_normal((50, 512))), unit(rng.standard_normal((3, 512)))
    means, stds = rng.uniform(-0.1, 0.2, 50).astype(np.float32), rng.uniform(0.03, 0.12, 50).astype(np.float32)
    inner = augmented_references(rows, means, stds) @ augmented_probes(probes).T
    assert np.allclose(inner, normalised_score(rows @ probes.T, means[:, None], stds[:, None]), atol=1e-4)


def test_the_case_s_own_person_in_the_cohort_does_not_distort_its_statistics():
    rng = np.random.default_rng(4)
    cohort, _ = faces_like_people(rng, 300, 300)
    reference = cohort[:1] + 0.0  # a case photo of someone...
    others = cohort[1:]
    clean_mean, clean_std = reference_stats(reference, others)
    # ... who is in the cohort twice (two sampled tips showed them)
    twice = np.vstack([others, unit(reference + 0.3 * unit(rng.standard_normal((2, 512))))])
    mean, std = reference_stats(reference, twice)
    assert abs(mean[0] - clean_mean[0]) < 0.1 * clean_std[0]
    assert abs(std[0] - clean_std[0]) < 0.1 * clean_std[0]


def test_the_cohort_takes_each_new_person_once_and_no_more_than_it_may():
    rng = np.random.default_rng(8)
    # ten photos of each of 40 people: the same person ~0.6 (as two adult photos score), others ~0.05
    person = rng.permutation(np.repeat(np.arange(40), 10))
    shared = unit(rng.standard_normal(512))
    faces = unit(0.35 * shared + unit(rng.standard_normal((40, 512)))[person]
                 + 0.8 * unit(rng.standard_normal((400, 512))))
    taken = faces[person < 10][:30]  # the seed shows people 0-9
    candidates = faces[person >= 5]  # tips of people 5-39, in the order drawn
    joined = distinct_people(taken, candidates, limit=1000)
    shown = person[person >= 5]
    assert sorted(shown[joined]) == list(range(10, 40))  # each person not taken yet, once
    assert joined == [int(np.flatnonzero(shown == someone)[0]) for someone in sorted(set(shown[joined]),
                                                                                   key=list(shown).index)]
    assert distinct_people(taken, candidates, limit=7) == joined[:7]


def test_the_floor_keeps_the_expected_wrong_candidates_per_tip_face_under_the_setting():
    rng = np.random.default_rng(6)
    cohort, _ = faces_like_people(rng, 500, 500)
    tail = ImpostorTail(cohort)
    floors = {}
    for setting in (0.1, 1.0, 3.0):
        for open_faces in (5, 50, 1_000, 100_000, 1_000_000):
            floor = tail.floor(open_faces, setting)
            assert open_faces * tail.probability(floor) <= setting * 1.0001
            floors[setting, open_faces] = floor
    for setting in (0.1, 1.0, 3.0):  # more open reference faces, a higher floor
        assert [floors[setting, n] for n in (5, 50, 1_000, 100_000, 1_000_000)] == \
            sorted(floors[setting, n] for n in (5, 50, 1_000, 100_000, 1_000_000))
    assert floors[0.1, 1_000] > floors[1.0, 1_000] > floors[3.0, 1_000]  # fewer allowed, a higher floor
    # the model against the data it came from: the share of different people's scores at a floor
    for open_faces in (5, 50, 200):
        floor = tail.floor(open_faces, 1.0)
        assert np.mean(tail.scores >= floor) <= 1.0 / open_faces


def test_a_case_score_fuses_its_photos_and_labels_follow_the_normalised_score():
    assert case_score([8.0]) == pytest.approx(8.0)
    assert case_score([8.0, 2.0]) == pytest.approx(0.7 * 8 + 0.3 * 5)
    assert case_score([5.0, 5.0]) > case_score([5.5, 0.0])  # two photos that agree beat one a little better
    floor = 2.5
    assert match_strength(floor - 0.01, floor) is None
    assert match_strength(floor, floor) == "weak"
    assert match_strength(POSSIBLE_MATCH_THRESHOLD, floor) == "possible"
    assert match_strength(STRONG_MATCH_THRESHOLD, floor) == "strong"
    assert match_strength(STRONG_MATCH_THRESHOLD, 7.0) is None  # a floor above the bands


def test_the_settings_choose_the_review_load_or_a_fixed_floor():
    base = {"DATABASE_URL": "sqlite+aiosqlite:///:memory:"}
    default = load_settings(base)
    assert default.wrong_leads_per_face == 1.0 and default.match_threshold is None
    chosen = load_settings({**base, "REUNITE_WRONG_LEADS_PER_FACE": "0.25", "REUNITE_MATCH_THRESHOLD": "4.5"})
    assert chosen.wrong_leads_per_face == 0.25 and chosen.match_threshold == 4.5
    rng = np.random.default_rng(8)
    cohort, _ = faces_like_people(rng, 100, 100)
    tail = ImpostorTail(cohort)
    loaded = Cohort("model", cohort, tail)
    assert loaded.floor(1000, chosen.wrong_leads_per_face, chosen.match_threshold) == 4.5  # fixed: as set
    assert loaded.floor(1000, 0.25) == tail.floor(1000, 0.25)
    for name, value in (("REUNITE_WRONG_LEADS_PER_FACE", "0"), ("REUNITE_MATCH_THRESHOLD", "4x"),
                        ("REUNITE_MATCH_THRESHOLD", "0.29")):  # a cosine from before normalisation
        with pytest.raises(SettingsError, match=name):
            load_settings({**base, name: value})
