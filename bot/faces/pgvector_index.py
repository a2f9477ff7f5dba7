"""Face search in PostgreSQL with pgvector: HNSW over the ``faces`` table.

Reference faces (``case_id`` set) and tip faces (``tip_media_id`` set) each have a partial HNSW
index, so a search names the same condition to use it. Reference faces are searched by normalised
score (migration 0005): their ``normalised`` vector ``[v / std, -mean / std]`` has inner product
``(v.q - mean) / std`` with ``[q, 1]`` (:mod:`bot.faces.normalisation`), so the index ranks by the
score the floor applies to, not by cosine (a child's photo can score high at a cosine thousands
of adult faces beat). Tip faces are searched by cosine (migration 0002): for one reference face the
normalised score grows with the cosine, so retro-matching ranks them the same either way. Reference searches keep
to active cases and to the current model; such a filter on an HNSW scan would otherwise return
fewer rows than asked (the graph walk stops after ``hnsw.ef_search`` candidates, filtered or not),
so they use pgvector's iterative scan: with ``relaxed_order`` the index keeps producing candidates
until the LIMIT is filled after the filter. Relaxed order means results may come slightly out of
order, so each query sorts them again outside the scan (a MATERIALIZED CTE, as pgvector advises).

Reference searches return normalised scores (``<#>`` is the negative inner product); tip face
searches cosine similarities (``<=>`` is ``1 - similarity``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from bot.faces.index import OwnerMatch, SearchHit
from bot.faces.models import EMBEDDING_SIZE
from bot.faces.normalisation import augmented_probes

#: HNSW candidates kept per step of the graph walk (pgvector's default is 40; at most 1,000). At
#: 1,000,000 reference faces a probe of the person across ages (far from the stored photo in
#: cosine) had its case among the top 5 as often as exact search in 0.94 of the probes at 400 and
#: 0.99 at 800 (p50 30 and 47 ms on two cores): weak, real leads are what the index must not lose
#: (bench/pgvector_bench.py, bench/RESULTS.md).
EF_SEARCH = 800
#: Faces fetched per probe when ranking cases, so a case with many photos cannot crowd others out.
FACES_PER_CASE = 4

_REFERENCE_FACES = text("""
    WITH nearest AS MATERIALIZED (
        SELECT f.id, f.case_id, f.normalised <#> :probe AS distance
        FROM faces f
        WHERE f.case_id IS NOT NULL AND f.model_id = :model_id AND f.normalised IS NOT NULL
          AND f.case_id IN (SELECT c.id FROM cases c WHERE c.status = 'active')
        ORDER BY f.normalised <#> :probe
        LIMIT :limit)
    SELECT id, case_id, -distance AS score FROM nearest ORDER BY distance
""").bindparams(bindparam("probe", type_=VECTOR(EMBEDDING_SIZE + 1)))

_TIP_FACES = text("""
    WITH nearest AS MATERIALIZED (
        SELECT f.id, f.tip_media_id, f.embedding <=> :probe AS distance
        FROM faces f
        WHERE f.tip_media_id IS NOT NULL AND f.model_id = :model_id
        ORDER BY f.embedding <=> :probe
        LIMIT :limit)
    SELECT n.id, m.tip_id, 1 - n.distance AS similarity
    FROM nearest n JOIN tip_media m ON m.id = n.tip_media_id
    ORDER BY n.distance
""").bindparams(bindparam("probe", type_=VECTOR(EMBEDDING_SIZE)))


@dataclass(frozen=True)
class PgvectorIndex:
    """HNSW searches over the faces table, in the caller's session (and transaction)."""

    model_id: str
    ef_search: int = EF_SEARCH

    async def _tune(self, session: AsyncSession, limit: int) -> None:
        # SET LOCAL lasts until the transaction ends: it cannot leak into other work on the connection
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(self.ef_search, limit):d}"))

    async def _nearest(self, session: AsyncSession, query, probe: np.ndarray, limit: int) -> list[SearchHit]:
        rows = await session.execute(query, {"probe": np.asarray(probe, dtype=np.float32),
                                             "model_id": self.model_id, "limit": limit})
        return [SearchHit(int(face_id), int(owner_id), float(similarity)) for face_id, owner_id, similarity in rows]

    async def reference_faces(self, session: AsyncSession, probe: np.ndarray, k: int) -> list[SearchHit]:
        """The ``k`` reference faces of active cases that score highest (normalised) against ``probe``;
        owner = case id."""
        await self._tune(session, k)
        unit = np.asarray(probe, dtype=np.float32) / max(float(np.linalg.norm(probe)), 1e-12)
        return await self._nearest(session, _REFERENCE_FACES, augmented_probes(unit)[0], k)

    async def tip_faces(self, session: AsyncSession, probe: np.ndarray, k: int) -> list[SearchHit]:
        """The ``k`` stored tip faces nearest to ``probe``; owner = tip id."""
        await self._tune(session, k)
        return await self._nearest(session, _TIP_FACES, probe, k)

    async def best_per_owner(self, session: AsyncSession, probes: np.ndarray, k_owners: int,
                             min_score: float | None = None) -> list[OwnerMatch]:
        """Active cases ranked by their best reference face's normalised score against any probe (as
        :meth:`InProcessIndex.best_per_owner`, within HNSW's recall)."""
        matrix = np.asarray(probes, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        best: dict[int, OwnerMatch] = {}
        for probe_index, probe in enumerate(matrix):
            for hit in await self.reference_faces(session, probe, k_owners * FACES_PER_CASE):
                if min_score is not None and hit.score < min_score:
                    break  # best first: the rest are lower
                known = best.get(hit.owner_id)
                if known is None or hit.score > known.score:
                    best[hit.owner_id] = OwnerMatch(hit.owner_id, hit.score, hit.face_id, probe_index)
        return sorted(best.values(), key=lambda match: match.score, reverse=True)[:k_owners]
