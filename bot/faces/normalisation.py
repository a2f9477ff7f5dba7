"""Normalised face scores: one number that means one false-lead rate whatever the age in a photo.

A reference face (a case photo's face) is scored against every face of a *cohort*: adult faces of
other people, embedded as tip faces are. Its cosine scores against that cohort have a mean and a
spread of their own: a toddler's photo scores low against everyone, an adult's higher. A tip face's
score against the reference is then ``z = (cosine - mean) / std`` (bench/FACES.md, "Normalised
scores"), so one floor gives about the same share of wrong candidates for every reference face.

The statistics are robust to the case's own person being in the cohort (a sampled tip face may
show them; Yao Ming is in players.jpg): each reference's :data:`TRIMMED_SHARE` highest scores (at
least :data:`MIN_TRIMMED`) are left out before the mean and spread are taken. Only the top is
trimmed because a same-person score is only ever too high; the rest are near-Gaussian, so their
mean and spread are steadier than a median and MAD over a small cohort. The same estimator is used
for the impostor tail (:class:`ImpostorTail`), so the trimming's bias cancels in the floor.

A case's score for a tip face fuses its photos: ``0.7 x best photo + 0.3 x mean over its photos``
(:func:`case_score`; measured on held-out child-to-adult data, issue 13).

The floor is set by the coordinators' review load (:meth:`ImpostorTail.floor`): with N open
reference faces, the expected number of wrong candidates per tip face, N x P(z >= floor | another
person), stays under a setting.

Because ``z = v.q / std - mean / std``, it is an inner product of ``[v / std, -mean / std]`` with
``[q, 1]`` (:func:`augmented_references`, :func:`augmented_probes`): what pgvector's inner-product
HNSW index searches on PostgreSQL.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

#: Share of a reference's highest cohort scores left out of its mean and spread ...
TRIMMED_SHARE = 0.01
#: ... and at least this many (the same person may be in the cohort more than once).
MIN_TRIMMED = 2
#: Two faces scoring at or above this cosine are taken for the same person: the cohort keeps the
#: first (:func:`distinct_people`). Different people score 0 +- 0.083 with buffalo_s
#: (bench/FACES.md), so this is over five spreads above them; the same adult in two photos is
#: nearly always above it.
SAME_PERSON_COSINE = 0.45
#: Spreads are never taken below this (a degenerate cohort of identical faces).
MIN_STD = 1e-3
#: Case score: this share of the best photo's score, the rest from the mean over its photos.
BEST_PHOTO_WEIGHT = 0.7
#: The floor never asks for more than this chance per pair (below it the floor would sit under the
#: middle of different people's scores: with one open reference face, every tip face a candidate).
MAX_PAIR_PROBABILITY = 0.5
# Reference rows scored against the cohort at once (bounds memory: rows x cohort float32)
_STATS_CHUNK = 4096


def trimmed_count(cohort_size: int) -> int:
    """How many of a reference's highest cohort scores are left out of its statistics."""
    return min(max(MIN_TRIMMED, math.ceil(TRIMMED_SHARE * cohort_size)), max(0, cohort_size - 2))


def _trimmed_stats(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of each row of ``scores`` without its ``trimmed_count`` highest values."""
    n = scores.shape[1]
    kept = n - trimmed_count(n)
    low = np.partition(scores, kept - 1, axis=1)[:, :kept] if kept < n else scores
    return low.mean(axis=1), np.maximum(low.std(axis=1, ddof=1), MIN_STD)


def reference_stats(references: np.ndarray, cohort: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each reference face's (rows, unit vectors) robust mean and spread of its cosine scores against
    the cohort (rows); float32 arrays. CPU-bound (100,000 x 2,000 in chunks): run it in the face
    executor."""
    references = np.asarray(references, dtype=np.float32).reshape(-1, cohort.shape[1])
    cohort = np.asarray(cohort, dtype=np.float32)
    if len(cohort) < 3:
        raise ValueError(f"a cohort of {len(cohort)} faces cannot give a spread")
    means = np.empty(len(references), dtype=np.float32)
    stds = np.empty(len(references), dtype=np.float32)
    for first in range(0, len(references), _STATS_CHUNK):
        chunk = slice(first, first + _STATS_CHUNK)
        means[chunk], stds[chunk] = _trimmed_stats(references[chunk] @ cohort.T)
    return means, stds


def distinct_people(taken: np.ndarray, candidates: np.ndarray, limit: int) -> list[int]:
    """Which of ``candidates`` (unit rows, in order; at most ``limit``) join a cohort holding ``taken``:
    each one that looks like nobody taken nor any candidate that joined before it (a cosine below
    :data:`SAME_PERSON_COSINE`). CPU-bound for large inputs: run it in the face executor."""
    if limit <= 0 or len(candidates) == 0:
        return []
    candidates = np.asarray(candidates, dtype=np.float32)
    like_taken = (candidates @ np.asarray(taken, dtype=np.float32).T).max(axis=1) >= SAME_PERSON_COSINE \
        if len(taken) else np.zeros(len(candidates), dtype=bool)
    among = candidates @ candidates.T
    joined: list[int] = []
    for index in np.flatnonzero(~like_taken):
        if joined and among[index, joined].max() >= SAME_PERSON_COSINE:
            continue
        joined.append(int(index))
        if len(joined) == limit:
            break
    return joined


def normalised_score(raw, cohort_mean, cohort_std):
    """A tip face's normalised score against a reference face from their cosine similarity ``raw``
    and the reference's cohort statistics (scalars or NumPy arrays)."""
    return (raw - cohort_mean) / cohort_std


def case_score(per_photo_scores) -> float:
    """A case's score for one tip face from its photos' normalised scores (each photo's best face):
    0.7 x the best + 0.3 x the mean."""
    scores = np.asarray(per_photo_scores, dtype=np.float64).reshape(-1)
    if len(scores) == 0:
        raise ValueError("a case score needs at least one photo's score")
    return float(BEST_PHOTO_WEIGHT * scores.max() + (1 - BEST_PHOTO_WEIGHT) * scores.mean())


def augmented_references(vectors: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """``[v / std, -mean / std]`` per reference face: its inner product with :func:`augmented_probes`
    of a tip face is their normalised score."""
    vectors = np.asarray(vectors, dtype=np.float32).reshape(len(means), -1)
    inverse = (1.0 / np.asarray(stds, dtype=np.float32))[:, None]
    return np.hstack([vectors * inverse, -np.asarray(means, dtype=np.float32)[:, None] * inverse])


def augmented_probes(probes: np.ndarray) -> np.ndarray:
    """``[q, 1]`` per tip face (unit vectors)."""
    probes = np.atleast_2d(np.asarray(probes, dtype=np.float32))
    return np.hstack([probes, np.ones((len(probes), 1), dtype=np.float32)])


def _scores_left_out(rows: np.ndarray) -> np.ndarray:
    """Each value of each row normalised by the trimmed statistics of the rest of its row (without
    the value itself): what :func:`reference_stats` gives against a cohort without that face."""
    size = rows.shape[1] - 1  # the cohort each statistic comes from
    kept = size - trimmed_count(size)
    order = np.argsort(rows, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(rows.shape[1])[None, :], axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    # the kept values without a value: the kept + 1 lowest less it, if it is among them; else the kept lowest
    sum_low, square_low = ordered[:, :kept].sum(axis=1), (ordered[:, :kept] ** 2).sum(axis=1)
    sum_more, square_more = sum_low + ordered[:, kept], square_low + ordered[:, kept] ** 2
    among = ranks <= kept
    sums = np.where(among, sum_more[:, None] - rows, sum_low[:, None])
    squares = np.where(among, square_more[:, None] - rows ** 2, square_low[:, None])
    means = sums / kept
    stds = np.maximum(np.sqrt(np.maximum(squares - kept * means ** 2, 0.0) / (kept - 1)), MIN_STD)
    return ((rows - means) / stds).astype(np.float32)


class ImpostorTail:
    """How often a tip face of another person reaches a normalised score, from the cohort itself.

    Each cohort face in turn is taken as a reference, and each other cohort face as a tip face: the
    reference's statistics come from the rest of the cohort (without either face, as for a tip that
    is not in the cohort), and the tip face's normalised score against it is a score of different
    people: the cohort holds each person once (:func:`distinct_people`; a person there many times
    would make the tail far heavier and lift the floor over real leads). P(z >= t) is the larger of
    the empirical share of those scores and a Gaussian fitted to them: the empirical tail where there
    are data (the within-photo tail of team-mates is heavier than a Gaussian), the Gaussian beyond
    the largest score measured.
    """

    def __init__(self, cohort: np.ndarray) -> None:
        cohort = np.asarray(cohort, dtype=np.float32)
        n = len(cohort)
        if n < 4:
            raise ValueError(f"a cohort of {n} faces is too small for an impostor tail")
        scores = cohort @ cohort.T
        others = scores[~np.eye(n, dtype=bool)].reshape(n, n - 1)  # leave each face out of its own row
        z = _scores_left_out(others.astype(np.float64)).reshape(-1)
        self.cohort_size = n
        self.scores = np.sort(z)[::-1]  # highest first
        self.gaussian = NormalDist(float(z.mean()), float(z.std()))

    def probability(self, threshold: float) -> float:
        """P(z >= threshold) for a tip face and a reference face of different people."""
        empirical = np.count_nonzero(self.scores >= threshold) / len(self.scores)
        return max(float(empirical), 1.0 - self.gaussian.cdf(threshold))

    def floor(self, reference_faces: int, wrong_per_face: float) -> float:
        """The lowest normalised score at which ``reference_faces`` x P(z >= floor) stays at or under
        ``wrong_per_face`` (the expected wrong candidates of one tip face)."""
        pair = min(MAX_PAIR_PROBABILITY, wrong_per_face / max(1, reference_faces))
        gaussian = self.gaussian.inv_cdf(1.0 - pair) if pair > 1e-15 else math.inf
        allowed = int(pair * len(self.scores))  # scores that may reach the floor
        if allowed >= len(self.scores):
            return gaussian
        empirical = float(np.nextafter(self.scores[allowed], np.float32(np.inf)))  # just above it
        return max(gaussian, empirical)
