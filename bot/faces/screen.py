"""A fast first pass over every face: int8 copies scored by onnxruntime, with certified error bounds.

Scanning 100,000 float32 embeddings for one probe reads 200 MB and takes 8-10 ms on two cores
(memory-bound), 25-35 ms when the cores are shared. The same scan over int8 copies reads a quarter
of that through onnxruntime's integer matrix product (MLAS) and took 1.6 ms (6-8 ms shared) here.

The int8 scores are approximate, so each comes with a bound on its error:

    v ~ s_v * v8 (per-row scale),  q ~ s_q * q8 (per-probe scale)
    |v.q - s_v s_q (v8.q8)| <= ||v - s_v v8|| * ||q|| + ||s_v v8|| * ||q - s_q q8||

(Cauchy-Schwarz on ``(v - v~).q + v~.(q - q~)``). The index then computes exact scores only for
rows whose upper bound could still reach the result, so the final answer is the exact one.

The bound assumes the integer products are exact, and on some CPUs they are only for small enough
codes. Rows are stored as int8 codes in [-127, 127]; probes are quantised to [-64, 64] (7 bits) and
handed over as uint8 ``code + 64``, in [0, 128], since onnxruntime's fast kernels take uint8 x int8.
x86 CPUs with AVX2 or AVX-512 but without VNNI multiply those with ``vpmaddubsw``, which adds each
two neighbouring products into 16 bits *with saturation*: with 8-bit probes (up to 255) and rows
(up to 127), 2 x 255 x 127 = 64,770 > 32,767 and sums were clipped (the bound then failed on an
AVX2 EPYC, issue 13). Now 2 x 128 x 127 = 32,512 always fits; VNNI, AMX, ARM and the older SSE
kernels add in 32 bits anyway. The bit is taken from the probe, not the rows: measured at
100,000 faces, 7-bit probes left 181 rows (median) to score exactly, 7-bit rows 288, full 8 bits
91, at the same search time (bench/RESULTS.md). tests/test_face_index.py checks the codes against
a NumPy model of the saturating kernel, so any CPU catches a change that breaks this; the README
says how to run the tests on an emulated AVX2 CPU (``scripts/check-avx2.sh``).

Rows are stored as columns of ``(dim, block)`` int8 blocks: onnxruntime needs a contiguous matrix,
and fixed blocks grow without copying what is already there. Every column of a block is scored
(a block's first columns are not contiguous on their own), so blocks are sized to what is stored:
:meth:`Int8Screen.reserve` makes exactly the room asked for (the index reserves what it loads at
start), and rows stored beyond it add a block of an eighth of the rows held (at least
:data:`FIRST_BLOCK_COLUMNS`, at most :data:`MAX_BLOCK_COLUMNS`). Blocks that doubled with the
index's capacity would scan up to 65 % more than is held (100,000 faces loaded plus one added:
195,584 columns; measured in bench/history/2026-11.md).
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np

from bot.faces.models import make_session_options

FIRST_BLOCK_COLUMNS = 1024
MAX_BLOCK_COLUMNS = 65536
# float32 arithmetic on the scores themselves (exact integer products times two scales)
_ROUNDING_SLACK = 1e-5

_session = None
_session_lock = threading.Lock()


def _integer_matmul_session():
    """One tiny onnxruntime graph, ``MatMulInteger(uint8 [m, d], int8 [d, n]) -> int32 [m, n]``."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                import onnxruntime
                from onnx import TensorProto, helper

                graph = helper.make_graph(
                    [helper.make_node("MatMulInteger", ["probes", "rows"], ["scores"])],
                    "int8_screen",
                    [helper.make_tensor_value_info("probes", TensorProto.UINT8, [None, None]),
                     helper.make_tensor_value_info("rows", TensorProto.INT8, [None, None])],
                    [helper.make_tensor_value_info("scores", TensorProto.INT32, [None, None])],
                )
                model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
                model.ir_version = 8
                # every core: a scan is a short burst over memory, unlike an inference
                _session = onnxruntime.InferenceSession(
                    model.SerializeToString(), make_session_options(min(os.cpu_count() or 1, 4)),
                    providers=["CPUExecutionProvider"])
    return _session


def integer_products(probe_codes: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``probe_codes @ block`` (uint8 (m, dim) x int8 (dim, n) -> int32 (m, n)) by onnxruntime."""
    return _integer_matmul_session().run(None, {"probes": probe_codes, "rows": block})[0]


def quantise(rows: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Codes in ``[-limit, limit]`` (int8), scale, ``||v - v~||`` and ``||v~||`` of each row (float32 input)."""
    scale = np.abs(rows).max(axis=1) / float(limit)
    scale[scale == 0] = 1.0
    codes = np.clip(np.rint(rows / scale[:, None]), -limit, limit).astype(np.int8)
    approximation = codes.astype(np.float32) * scale[:, None]
    residual = np.linalg.norm(rows - approximation, axis=1)
    length = np.linalg.norm(approximation, axis=1)
    return codes, scale.astype(np.float32), residual.astype(np.float32), length.astype(np.float32)


class ProbeCodes(NamedTuple):
    """Probes as :meth:`Int8Screen.scores` hands them to onnxruntime, with what the bound needs."""

    shifted: np.ndarray  # uint8 (m, dim): code + probe_limit, in [0, 2 * probe_limit]
    scale: np.ndarray  # float32 (m,)
    residual: np.ndarray  # float32 (m,): ||q - q~||


class Int8Screen:
    """int8 copies of an index's rows (by position) and their approximate scores with an error bound.

    The bound uses the largest row error and length ever stored (removing rows never lowers them):
    one number per probe instead of one per row, a little looser and much cheaper to apply.
    Not thread-safe on its own: :class:`~bot.faces.index.InProcessIndex` holds its lock around it.
    """

    #: stored rows' codes are in [-row_limit, row_limit]
    row_limit = 127
    #: probes' codes are in [-probe_limit, probe_limit], shifted by probe_limit into uint8: any two
    #: products then add up to at most 2 * (2 * probe_limit) * row_limit <= 32,767 (module docstring)
    probe_limit = 64

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._blocks: list[np.ndarray] = []  # (dim, columns) int8
        self._starts = np.zeros(1, dtype=np.int64)  # first position of each block, plus the end
        self._scale = np.empty(0, dtype=np.float32)
        self._offset = np.empty(0, dtype=np.int32)  # what the probes' shift adds to a row's product
        self._max_residual = 0.0  # largest ||v - v~|| stored
        self._max_length = 0.0  # largest ||v~|| stored

    @property
    def capacity(self) -> int:
        return int(self._starts[-1])

    @property
    def blocks(self) -> tuple[np.ndarray, ...]:
        """The int8 blocks (dim, columns) of row codes that :meth:`scores` hands to onnxruntime."""
        return tuple(self._blocks)

    @property
    def nbytes(self) -> int:
        return sum(block.nbytes for block in self._blocks) + self._scale.nbytes + self._offset.nbytes

    def reserve(self, capacity: int) -> None:
        """Room for exactly ``capacity`` rows (in blocks of at most MAX_BLOCK_COLUMNS)."""
        while self.capacity < capacity:
            self._add_block(min(MAX_BLOCK_COLUMNS, capacity - self.capacity))

    def _grow_to(self, rows: int) -> None:
        """Room for ``rows`` rows, with a little to spare (an eighth of what is held) for the next ones."""
        while self.capacity < rows:
            spare = max(FIRST_BLOCK_COLUMNS, self.capacity // 8)
            self._add_block(min(MAX_BLOCK_COLUMNS, max(spare, rows - self.capacity)))

    def _add_block(self, columns: int) -> None:
        self._blocks.append(np.zeros((self.dim, columns), dtype=np.int8))
        self._starts = np.append(self._starts, self.capacity + columns)
        if len(self._scale) < self.capacity:
            grow = self.capacity - len(self._scale)
            self._scale = np.concatenate([self._scale, np.zeros(grow, dtype=np.float32)])
            self._offset = np.concatenate([self._offset, np.zeros(grow, dtype=np.int32)])

    def _by_block(self, positions: np.ndarray):
        """(block, columns in it, which of ``positions`` they are) for each block ``positions`` touch."""
        blocks = np.searchsorted(self._starts, positions, side="right") - 1
        for block in np.unique(blocks):
            which = np.flatnonzero(blocks == block)
            yield self._blocks[block], positions[which] - self._starts[block], which

    def set_rows(self, positions: np.ndarray, rows: np.ndarray) -> None:
        """Store the rows (float32, as the index keeps them) at ``positions``."""
        if len(positions):
            self._grow_to(int(positions.max()) + 1)
        codes, scale, residual, length = quantise(rows, self.row_limit)
        self._scale[positions] = scale
        self._offset[positions] = self.probe_limit * codes.sum(axis=1, dtype=np.int32)
        self._max_residual = max(self._max_residual, float(residual.max(initial=0.0)))
        self._max_length = max(self._max_length, float(length.max(initial=0.0)))
        for block, columns, which in self._by_block(positions):
            block[:, columns] = codes[which].T

    def move_rows(self, destinations: np.ndarray, sources: np.ndarray) -> None:
        """Copy rows from ``sources`` to ``destinations`` (the index filling holes after removal)."""
        codes = np.empty((len(sources), self.dim), dtype=np.int8)
        for block, columns, which in self._by_block(sources):
            codes[which] = block[:, columns].T
        for block, columns, which in self._by_block(destinations):
            block[:, columns] = codes[which].T
        for values in (self._scale, self._offset):
            values[destinations] = values[sources]

    def probe_codes(self, probes: np.ndarray) -> ProbeCodes:
        """``probes`` (m, dim) quantised as :meth:`scores` hands them to onnxruntime."""
        codes, scale, residual, _ = quantise(probes, self.probe_limit)
        return ProbeCodes((codes.astype(np.int16) + self.probe_limit).astype(np.uint8), scale, residual)

    def scores(self, probes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate scores (m, size) of the first ``size`` rows against unit ``probes`` (m, dim),
        and for each probe a bound (m,): ``|exact - approximate| <= bound`` for every row."""
        probe = self.probe_codes(probes)
        approximate = np.empty((len(probes), size), dtype=np.float32)
        for block, start in zip(self._blocks, self._starts[:-1].tolist(), strict=False):
            if start >= size:
                break
            end = min(size, start + block.shape[1])
            products = integer_products(probe.shifted, block)[:, : end - start]
            # the shift's share, taken off in integers: the codes' own product, exact in float32
            approximate[:, start:end] = products - self._offset[start:end]
        approximate *= self._scale[:size]
        approximate *= probe.scale[:, None]
        bound = self._max_residual + self._max_length * probe.residual + _ROUNDING_SLACK
        return approximate, bound.astype(np.float32)
