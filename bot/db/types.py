"""Column types that differ by backend."""

from __future__ import annotations

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

EMBEDDING_DIM = 512
# a reference face's embedding scaled by its cohort spread, plus its scaled mean (bot.faces.normalisation)
NORMALISED_DIM = EMBEDDING_DIM + 1


class Embedding(TypeDecorator):
    """A float32 face embedding (512-d unless told): pgvector ``vector(dim)`` on PostgreSQL
    (HNSW-searchable), a BLOB of little-endian float32 on SQLite. Python side: a NumPy float32 array
    either way."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.dim = dim

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Vector(self.dim))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        vector = np.asarray(value, dtype="<f4").reshape(-1)
        if vector.shape[0] != self.dim:
            raise ValueError(f"an embedding has {self.dim} values, not {vector.shape[0]}")
        if dialect.name == "postgresql":
            return vector
        return vector.tobytes()

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return np.frombuffer(bytes(value), dtype="<f4").copy()
        return np.asarray(value, dtype=np.float32)
