"""Face search: exact cosine similarity over L2-normalised embeddings, in process.

:class:`FaceIndex` is the interface; :class:`InProcessIndex` implements it in the
bot's memory. Every search first scans int8 copies of all rows with
onnxruntime's integer matrix product (:mod:`bot.faces.screen`: a quarter of the
memory traffic of float32, with a certified error bound per score), then scores
exactly only the rows that can still be in the result. Over 100,000 faces on two
cores that took 1.6-2 ms per probe instead of 8-10 ms for a float32 scan
(bench/face_search_bench.py). PostgreSQL deployments search with pgvector's HNSW
instead (:mod:`bot.faces.pgvector_index`, asynchronous, in the database).

The methods are synchronous and CPU-bound: the matching service calls them
through ``run_in_face_executor``.

Vocabulary: a *face* is one embedding with its own id (the ``faces`` row id); its
*owner* is what it belongs to (a case for reference faces, a tip for tip faces).

Scores are normalised per face when the face comes with its cohort statistics
(:mod:`bot.faces.normalisation`): ``(cosine - mean) / std``; without them, the cosine itself.
The screen's bound on a cosine becomes ``bound / std`` on a normalised score, so the search stays
exact in normalised scores: a child's photo (low mean, small spread) is not lost behind thousands
of adult faces with higher cosines.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from bot.faces.models import EMBEDDING_SIZE
from bot.faces.screen import Int8Screen

# float32 rounding of a normalised score (up to ~50) and of its bounds: far above both
_SCORE_SLACK = 1e-4


class SearchHit(NamedTuple):
    face_id: int
    owner_id: int
    score: float  # normalised score (cosine similarity for a face without cohort statistics)


class OwnerMatch(NamedTuple):
    """An owner's (case's) best face against the probes."""

    owner_id: int
    score: float  # the best score over the owner's faces and the probes
    face_id: int  # the owner's face that scored it
    probe_index: int  # which probe (row of ``probes``) scored it


@runtime_checkable
class FaceIndex(Protocol):
    """Exact or approximate nearest-face search; all vectors are L2-normalised float32."""

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, owner_ids: np.ndarray | int, vectors: np.ndarray,
            means: np.ndarray | None = None, stds: np.ndarray | None = None) -> None:
        """Insert faces (an id already present is replaced), with their cohort statistics if any."""

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove faces by id; returns how many were present."""

    def remove_owner(self, owner_id: int) -> int:
        """Remove every face of an owner (a closed case); returns how many."""

    def search(
        self, probes: np.ndarray, k: int, allowed_owner: int | Iterable[int] | None = None
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """The ``k`` most similar faces, best first: a list for one probe (1-D), a list per probe (2-D)."""

    def best_per_owner(
        self, probes: np.ndarray, k_owners: int, min_score: float | None = None
    ) -> list[OwnerMatch]:
        """The ``k_owners`` owners whose best face is most similar to any probe, best first."""


class InProcessIndex:
    """Exact cosine search in process memory (rows are kept L2-normalised).

    Each search first scores every row through an int8 copy (:mod:`bot.faces.screen`: a quarter of
    the memory traffic, with a certified bound on each approximate score), then computes exact
    scores only for the rows that could still be in the result; the answer is the exact one.

    ``dtype`` is how rows are kept for those exact scores: float32 (default), or float16 to halve
    the memory (100,000 faces: 100 MB instead of 200 MB, plus 51 MB of int8 copies) at a cost of
    at most 5e-4 on a score (float16 keeps 11 bits; scores of unit vectors are below 1).

    Storage grows by doubling (amortised O(1) appends; reserve() when the final
    size is known). Removal moves the last rows into the holes, so it costs the
    number of removed rows, not the index size. Thread-safe: one lock serialises
    mutations and searches (searches run in the face executor).
    """

    def __init__(self, dim: int = EMBEDDING_SIZE, initial_capacity: int = 1024,
                 dtype: np.dtype | type = np.float32) -> None:
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self._size = 0
        self._vectors = np.empty((max(1, initial_capacity), dim), dtype=self.dtype)
        self._ids = np.empty(max(1, initial_capacity), dtype=np.int64)
        self._owners = np.empty(max(1, initial_capacity), dtype=np.int64)
        self._means = np.empty(max(1, initial_capacity), dtype=np.float32)
        self._inverse_stds = np.empty(max(1, initial_capacity), dtype=np.float32)
        self._screen = Int8Screen(dim)
        self._screen.reserve(len(self._ids))  # exactly: the bot asks for what it is about to load
        self._position_of: dict[int, int] = {}  # face id -> row
        self._lock = threading.RLock()

    # -- storage ------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return len(self._ids)

    @property
    def nbytes(self) -> int:
        """Bytes allocated for storage (pages are only resident once written)."""
        return sum(array.nbytes for array in self._columns()) + self._screen.nbytes

    def _columns(self) -> tuple[np.ndarray, ...]:
        return self._vectors, self._ids, self._owners, self._means, self._inverse_stds

    def reserve(self, capacity: int) -> None:
        """Allocate room for ``capacity`` faces at once (e.g. before loading all from the database)."""
        with self._lock:
            if capacity > self.capacity:
                self._resize(capacity)
                self._screen.reserve(capacity)

    def _resize(self, capacity: int) -> None:
        size = self._size
        grown = []
        for array in self._columns():
            bigger = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
            bigger[:size] = array[:size]
            grown.append(bigger)
        self._vectors, self._ids, self._owners, self._means, self._inverse_stds = grown
        # the screen is not grown with the rest: it scores every column it has, so it grows only as
        # rows arrive (Int8Screen._grow_to)

    def add(self, ids: np.ndarray, owner_ids: np.ndarray | int, vectors: np.ndarray,
            means: np.ndarray | None = None, stds: np.ndarray | None = None) -> None:
        """Insert faces. ``owner_ids`` may be one owner for all; vectors are renormalised. With
        ``means`` and ``stds`` (cohort statistics, one per face) they score normalised."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        owners = np.broadcast_to(np.asarray(owner_ids, dtype=np.int64), ids.shape)
        means = np.zeros(len(ids), np.float32) if means is None else np.asarray(means, np.float32).reshape(-1)
        stds = np.ones(len(ids), np.float32) if stds is None else np.asarray(stds, np.float32).reshape(-1)
        if len(vectors) != len(ids) or len(means) != len(ids) or len(stds) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors, {len(means)} means, {len(stds)} stds")
        if not (np.all(np.isfinite(means)) and np.all(stds > 0)):
            raise ValueError("cohort statistics must be finite with a positive spread")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate face ids in one add()")
        if not np.all(np.isfinite(vectors)):
            raise ValueError("vectors contain NaN or infinity")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("zero vector")
        with self._lock:
            known = [face_id for face_id in ids.tolist() if face_id in self._position_of]
            if known:
                self.remove(known)  # re-adding a face replaces it
            needed = self._size + len(ids)
            if needed > self.capacity:
                self._resize(max(needed, 2 * self.capacity))
            start, end = self._size, needed
            self._vectors[start:end] = vectors / norms
            # the screen's error bound holds for the rows as kept (float16 ones included)
            self._screen.set_rows(np.arange(start, end), self._vectors[start:end].astype(np.float32))
            self._ids[start:end] = ids
            self._owners[start:end] = owners
            self._means[start:end] = means
            self._inverse_stds[start:end] = 1.0 / stds
            self._position_of.update(zip(ids.tolist(), range(start, end), strict=False))
            self._size = end

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        wanted = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        with self._lock:
            rows = [self._position_of[i] for i in wanted.reshape(-1).tolist() if i in self._position_of]
            return self._remove_rows(np.unique(np.asarray(rows, dtype=np.int64)))

    def remove_owner(self, owner_id: int) -> int:
        with self._lock:
            return self._remove_rows(np.flatnonzero(self._owners[: self._size] == owner_id))

    def _remove_rows(self, rows: np.ndarray) -> int:
        """Remove the rows at ``rows`` (sorted, unique) by moving surviving tail rows into the holes."""
        count = len(rows)
        if count == 0:
            return 0
        for face_id in self._ids[rows].tolist():
            del self._position_of[face_id]
        new_size = self._size - count
        removed_in_tail = np.zeros(count, dtype=bool)
        removed_in_tail[rows[rows >= new_size] - new_size] = True
        holes = rows[rows < new_size]
        movers = new_size + np.flatnonzero(~removed_in_tail)  # as many as there are holes
        for array in self._columns():
            array[holes] = array[movers]
        self._screen.move_rows(holes, movers)
        self._position_of.update(zip(self._ids[holes].tolist(), holes.tolist(), strict=False))
        self._size = new_size
        return count

    def __contains__(self, face_id: int) -> bool:
        return int(face_id) in self._position_of

    def owner_of(self, face_id: int) -> int | None:
        with self._lock:
            row = self._position_of.get(int(face_id))
            return None if row is None else int(self._owners[row])

    def face_ids(self) -> np.ndarray:
        """The ids of every face here (a copy), in no particular order."""
        with self._lock:
            return self._ids[: self._size].copy()

    # -- search -------------------------------------------------------------------

    def _exact(self, rows: np.ndarray, probes: np.ndarray) -> np.ndarray:
        """Exact scores of the rows at ``rows`` to ``probes``, shape (len(rows), m).

        einsum rather than a BLAS product: each score is then summed the same way whichever other
        rows come along, so two searches give bit-identical scores for the same face.
        """
        cosines = np.einsum("nd,md->nm", self._vectors[rows].astype(np.float32), probes)
        return (cosines - self._means[rows, None]) * self._inverse_stds[rows, None]

    def _bounds(self, probes: np.ndarray, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds, each (m, rows), on the scores of the rows at ``positions`` (all
        rows by default) from the int8 screen: its bound on a cosine, divided by the row's spread."""
        approximate, errors = self._screen.scores(probes, self._size)
        means, inverse = self._means[: self._size], self._inverse_stds[: self._size]
        if positions is not None:
            approximate, means, inverse = approximate[:, positions], means[positions], inverse[positions]
        # in place, on the screen's fresh array: a scan is memory-bound, each extra array costs
        approximate -= means
        approximate *= inverse
        radius = errors[:, None] * inverse
        radius += _SCORE_SLACK
        lower = approximate - radius
        approximate += radius
        return lower, approximate

    def search(
        self,
        probes: np.ndarray,
        k: int,
        allowed_owner: int | Iterable[int] | None = None,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Top-``k`` faces by score, best first.

        ``probes`` of shape (512,) gives one list; (m, 512) gives m lists.
        ``allowed_owner`` (an owner id or several) restricts the search to
        those owners' faces, e.g. the photos of one case.
        """
        single = np.ndim(probes) == 1
        matrix = _as_probe_matrix(probes, self.dim)
        with self._lock:
            positions = None
            if allowed_owner is not None:
                positions = np.flatnonzero(np.isin(self._owners[: self._size], _owner_array(allowed_owner)))
            lower, upper = self._bounds(matrix, positions)
            results = []
            for low, high, probe in zip(lower, upper, matrix, strict=False):
                # k rows score at least the k-th best lower bound: only rows that may reach it can be in the top k
                rows = np.flatnonzero(high >= _kth_largest(low, k))
                if positions is not None:
                    rows = positions[rows]
                exact = self._exact(rows, probe[None])[:, 0]
                top = _top_k(exact, k)
                results.append([SearchHit(int(self._ids[r]), int(self._owners[r]), float(exact[t]))
                                for r, t in zip(rows[top], top, strict=False)])
        return results[0] if single else results

    def best_per_owner(
        self, probes: np.ndarray, k_owners: int, min_score: float | None = None
    ) -> list[OwnerMatch]:
        """Owners ranked by their best face's score against any probe.

        Exact: the screen's bounds give a score that ``k_owners`` owners surely reach; only rows
        that may reach it (and ``min_score``) are scored exactly, and ranked.
        """
        matrix = _as_probe_matrix(probes, self.dim)
        with self._lock:
            size = self._size
            if size == 0 or k_owners <= 0:
                return []
            lower, upper = self._bounds(matrix)
            lower, upper = lower.max(axis=0), upper.max(axis=0)  # a row's score is its best over the probes
            candidates = np.arange(size) if min_score is None else np.flatnonzero(upper >= min_score)
            floor = self._owner_floor(candidates, lower[candidates], k_owners)
            rows = candidates[upper[candidates] >= floor]
            exact = self._exact(rows, matrix)  # (rows, m)
            best = exact.max(axis=1)
            if min_score is not None:
                rows, exact, best = rows[best >= min_score], exact[best >= min_score], best[best >= min_score]
            order = _top_k(best, len(best))  # best first
            # First occurrence of each owner in score order = that owner's best face.
            _, first = np.unique(self._owners[rows[order]], return_index=True)
            winners = order[np.sort(first)[:k_owners]]
            return [
                OwnerMatch(
                    owner_id=int(self._owners[rows[w]]),
                    score=float(best[w]),
                    face_id=int(self._ids[rows[w]]),
                    probe_index=int(np.argmax(exact[w])),
                )
                for w in winners
            ]

    def _owner_floor(self, rows: np.ndarray, scores: np.ndarray, k_owners: int) -> float:
        """The ``k_owners``-th best owner's best score among ``rows`` (scored ``scores``, lower
        bounds here), or -inf.

        Looks at the best scores in growing batches until they hold ``k_owners`` owners, so an
        owner with many photos cannot crowd the others out.
        """
        batch = min(len(rows), max(4 * k_owners, 64))
        while True:
            top = _top_k(scores, batch)  # best first
            _, first = np.unique(self._owners[rows[top]], return_index=True)
            if len(first) >= k_owners:
                return float(scores[top[np.sort(first)[k_owners - 1]]])
            if batch == len(rows):
                return float("-inf")
            batch = min(len(rows), batch * 4)


def _owner_array(owners: int | Iterable[int]) -> np.ndarray:
    if isinstance(owners, (int, np.integer)):
        return np.array([owners], dtype=np.int64)
    return np.asarray(list(owners), dtype=np.int64).reshape(-1)


def _as_probe_matrix(probes: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.asarray(probes, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The ``k``-th largest value (the smallest, if there are fewer; -inf for none)."""
    if len(values) == 0:
        return float("-inf")
    if k >= len(values):
        return float(values.min())
    return float(np.partition(values, len(values) - k)[len(values) - k])


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, highest first."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
    else:
        part = np.arange(n)
    return part[np.argsort(-scores[part], kind="stable")]
