"""Face search: exact cosine similarity over L2-normalised float32 embeddings.

:class:`FaceIndex` is the interface the matching service uses; :class:`InProcessIndex`
implements it with NumPy in the bot's memory (about 9 ms per probe over 100,000
faces on two cores: the scan is memory-bound). A pgvector backend (HNSW, cosine)
can implement the same Protocol for PostgreSQL deployments.

The methods are synchronous and CPU- or I/O-bound: the matching service calls
them through ``run_in_face_executor``, where a pgvector backend can use a
synchronous connection of its own.

Vocabulary: a *face* is one embedding with its own id (the ``faces`` row id); its
*owner* is what it belongs to (a case for reference faces, a tip for tip faces).
A case's score against a tip is its best photo's score: :meth:`best_per_owner`.
"""

from __future__ import annotations

import threading
from typing import Iterable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from bot.faces.models import EMBEDDING_SIZE

# Rows per block when several probes are scored at once: one pass over memory,
# with each block reused from cache for every probe (a plain matrix product
# with few probes is slower than one matrix-vector product per probe here).
_BLOCK_ROWS = 2048


class SearchHit(NamedTuple):
    face_id: int
    owner_id: int
    score: float  # cosine similarity


class OwnerMatch(NamedTuple):
    """An owner's (case's) best face against the probes."""

    owner_id: int
    score: float  # the best similarity over the owner's faces and the probes
    face_id: int  # the owner's face that scored it
    probe_index: int  # which probe (row of ``probes``) scored it


@runtime_checkable
class FaceIndex(Protocol):
    """Exact or approximate nearest-face search; all vectors are L2-normalised float32."""

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, owner_ids: np.ndarray | int, vectors: np.ndarray) -> None:
        """Insert faces (an id already present is replaced)."""

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
    """Exact cosine search in process memory (rows are kept L2-normalised, float32).

    Storage grows by doubling (amortised O(1) appends; reserve() when the final
    size is known). Removal moves the last rows into the holes, so it costs the
    number of removed rows, not the index size. Thread-safe: one lock serialises
    mutations and searches (searches run in the face executor).
    """

    def __init__(self, dim: int = EMBEDDING_SIZE, initial_capacity: int = 1024) -> None:
        self.dim = dim
        self._size = 0
        self._vectors = np.empty((max(1, initial_capacity), dim), dtype=np.float32)
        self._ids = np.empty(max(1, initial_capacity), dtype=np.int64)
        self._owners = np.empty(max(1, initial_capacity), dtype=np.int64)
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
        return self._vectors.nbytes + self._ids.nbytes + self._owners.nbytes

    def reserve(self, capacity: int) -> None:
        """Allocate room for ``capacity`` faces at once (e.g. before loading all from the database)."""
        with self._lock:
            if capacity > self.capacity:
                self._resize(capacity)

    def _resize(self, capacity: int) -> None:
        size = self._size
        vectors = np.empty((capacity, self.dim), dtype=np.float32)
        ids = np.empty(capacity, dtype=np.int64)
        owners = np.empty(capacity, dtype=np.int64)
        vectors[:size] = self._vectors[:size]
        ids[:size] = self._ids[:size]
        owners[:size] = self._owners[:size]
        self._vectors, self._ids, self._owners = vectors, ids, owners

    def add(self, ids: np.ndarray, owner_ids: np.ndarray | int, vectors: np.ndarray) -> None:
        """Insert faces. ``owner_ids`` may be one owner for all; vectors are renormalised."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        owners = np.broadcast_to(np.asarray(owner_ids, dtype=np.int64), ids.shape)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(vectors)} vectors")
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
            np.divide(vectors, norms, out=self._vectors[start:end])
            self._ids[start:end] = ids
            self._owners[start:end] = owners
            self._position_of.update(zip(ids.tolist(), range(start, end)))
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
        self._vectors[holes] = self._vectors[movers]
        self._ids[holes] = self._ids[movers]
        self._owners[holes] = self._owners[movers]
        self._position_of.update(zip(self._ids[holes].tolist(), holes.tolist()))
        self._size = new_size
        return count

    def __contains__(self, face_id: int) -> bool:
        return int(face_id) in self._position_of

    def owner_of(self, face_id: int) -> int | None:
        with self._lock:
            row = self._position_of.get(int(face_id))
            return None if row is None else int(self._owners[row])

    # -- search -------------------------------------------------------------------

    def search(
        self,
        probes: np.ndarray,
        k: int,
        allowed_owner: int | Iterable[int] | None = None,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """Top-``k`` faces by cosine similarity, best first.

        ``probes`` of shape (512,) gives one list; (m, 512) gives m lists.
        ``allowed_owner`` (an owner id or several) restricts the search to
        those owners' faces, e.g. the photos of one case.
        """
        single = np.ndim(probes) == 1
        matrix = _as_probe_matrix(probes, self.dim)
        with self._lock:
            positions = None
            if allowed_owner is not None:
                allowed = _owner_array(allowed_owner)
                positions = np.flatnonzero(np.isin(self._owners[: self._size], allowed))
                vectors = self._vectors[positions]
            else:
                vectors = self._vectors[: self._size]
            scores = _similarities(vectors, matrix)  # (m, n)
            results = []
            for row in scores:
                top = _top_k(row, k)
                rows = top if positions is None else positions[top]
                results.append(
                    [
                        SearchHit(int(self._ids[r]), int(self._owners[r]), float(row[t]))
                        for r, t in zip(rows, top)
                    ]
                )
        return results[0] if single else results

    def best_per_owner(
        self, probes: np.ndarray, k_owners: int, min_score: float | None = None
    ) -> list[OwnerMatch]:
        """Owners ranked by their best face's similarity to any probe (a case scores as its best photo).

        Exact: it looks at the best-scoring faces in growing batches until they
        contain ``k_owners`` distinct owners (or all faces), so an owner with
        many photos cannot crowd the others out.
        """
        matrix = _as_probe_matrix(probes, self.dim)
        with self._lock:
            size = self._size
            if size == 0 or k_owners <= 0:
                return []
            scores = _similarities(self._vectors[:size], matrix)  # (m, n)
            best = scores[0] if len(scores) == 1 else scores.max(axis=0)
            candidates = np.arange(size) if min_score is None else np.flatnonzero(best >= min_score)
            if len(candidates) == 0:
                return []
            batch = min(len(candidates), max(4 * k_owners, 64))
            while True:
                top = candidates[_top_k(best[candidates], batch)]  # best first
                # First occurrence of each owner in score order = that owner's best face.
                _, first = np.unique(self._owners[top], return_index=True)
                if len(first) >= k_owners or batch == len(candidates):
                    break
                batch = min(len(candidates), batch * 4)
            winners = top[np.sort(first)[:k_owners]]
            return [
                OwnerMatch(
                    owner_id=int(self._owners[w]),
                    score=float(best[w]),
                    face_id=int(self._ids[w]),
                    probe_index=int(np.argmax(scores[:, w])),
                )
                for w in winners
            ]


def _owner_array(owners: int | Iterable[int]) -> np.ndarray:
    if isinstance(owners, (int, np.integer)):
        return np.array([owners], dtype=np.int64)
    return np.asarray(list(owners), dtype=np.int64).reshape(-1)


def _as_probe_matrix(probes: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.asarray(probes, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _similarities(vectors: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Cosine similarities, shape (len(probes), len(vectors))."""
    if len(probes) == 1:
        return (vectors @ probes[0])[None, :]  # matrix-vector: one pass, both cores
    out = np.empty((len(vectors), len(probes)), dtype=np.float32)
    probes_t = np.ascontiguousarray(probes.T)
    for start in range(0, len(vectors), _BLOCK_ROWS):
        np.matmul(vectors[start : start + _BLOCK_ROWS], probes_t, out=out[start : start + _BLOCK_ROWS])
    return out.T


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
