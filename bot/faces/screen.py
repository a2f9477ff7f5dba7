"""A fast first pass over every face: int8 copies scored by onnxruntime, with certified error bounds.

Scanning 100,000 float32 embeddings for one probe reads 200 MB and takes 8-10 ms on two cores
(memory-bound), 25-35 ms when the cores are shared. The same scan over int8 copies reads a quarter
of that through onnxruntime's integer matrix product (MLAS) and took 1.6 ms (6-8 ms shared) here.

The int8 scores are approximate, so each comes with a bound on its error:

    v ~ s_v * v8 (per-row scale),  q ~ s_q * q8 (per-probe scale)
    |v.q - s_v s_q (v8.q8)| <= ||v - s_v v8|| * ||q|| + ||s_v v8|| * ||q - s_q q8||

(Cauchy-Schwarz on ``(v - v~).q + v~.(q - q~)``). The index then computes exact scores only for
rows whose upper bound could still reach the result, so the final answer is the exact one.

Rows are stored as columns of ``(dim, block)`` int8 blocks: onnxruntime needs a contiguous matrix,
and fixed blocks grow without copying what is already there. Blocks start small (tests, small
deployments) and double up to :data:`MAX_BLOCK_COLUMNS`.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from bot.faces.models import make_session_options

FIRST_BLOCK_COLUMNS = 1024
MAX_BLOCK_COLUMNS = 65536
# uint8 probes: q8 + 128 (onnxruntime's fast kernels take uint8 x int8 without a zero point)
_PROBE_OFFSET = 128
# float32 arithmetic on the scores themselves (products of exact int32 values and scales)
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


def quantise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """int8 codes, scale, ``||v - v~||`` and ``||v~||`` of each row (float32 input)."""
    scale = np.abs(rows).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    codes = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    approximation = codes.astype(np.float32) * scale[:, None]
    residual = np.linalg.norm(rows - approximation, axis=1)
    length = np.linalg.norm(approximation, axis=1)
    return codes, scale.astype(np.float32), residual.astype(np.float32), length.astype(np.float32)


class Int8Screen:
    """int8 copies of an index's rows (by position) and their approximate scores with error bounds.

    Not thread-safe on its own: :class:`~bot.faces.index.InProcessIndex` holds its lock around it.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._blocks: list[np.ndarray] = []  # (dim, columns) int8
        self._starts = np.zeros(1, dtype=np.int64)  # first position of each block, plus the end
        self._scale = np.empty(0, dtype=np.float32)
        self._code_sum = np.empty(0, dtype=np.int32)  # sum of a row's codes (undoes the probe offset)
        self._residual = np.empty(0, dtype=np.float32)
        self._length = np.empty(0, dtype=np.float32)

    @property
    def capacity(self) -> int:
        return int(self._starts[-1])

    @property
    def nbytes(self) -> int:
        per_row = self._scale.nbytes + self._code_sum.nbytes + self._residual.nbytes + self._length.nbytes
        return sum(block.nbytes for block in self._blocks) + per_row

    def reserve(self, capacity: int) -> None:
        while self.capacity < capacity:
            columns = min(MAX_BLOCK_COLUMNS, FIRST_BLOCK_COLUMNS << len(self._blocks))
            self._blocks.append(np.zeros((self.dim, columns), dtype=np.int8))
            self._starts = np.append(self._starts, self.capacity + columns)
        if len(self._scale) < self.capacity:
            grow = self.capacity - len(self._scale)
            self._scale = np.concatenate([self._scale, np.ones(grow, dtype=np.float32)])
            self._code_sum = np.concatenate([self._code_sum, np.zeros(grow, dtype=np.int32)])
            self._residual = np.concatenate([self._residual, np.zeros(grow, dtype=np.float32)])
            self._length = np.concatenate([self._length, np.zeros(grow, dtype=np.float32)])

    def _by_block(self, positions: np.ndarray):
        """(block, columns in it, which of ``positions`` they are) for each block ``positions`` touch."""
        blocks = np.searchsorted(self._starts, positions, side="right") - 1
        for block in np.unique(blocks):
            which = np.flatnonzero(blocks == block)
            yield self._blocks[block], positions[which] - self._starts[block], which

    def set_rows(self, positions: np.ndarray, rows: np.ndarray) -> None:
        """Store the rows (float32, as the index keeps them) at ``positions``."""
        codes, scale, residual, length = quantise(rows)
        self._scale[positions] = scale
        self._code_sum[positions] = codes.sum(axis=1, dtype=np.int32)
        self._residual[positions] = residual
        self._length[positions] = length
        for block, columns, which in self._by_block(positions):
            block[:, columns] = codes[which].T

    def move_rows(self, destinations: np.ndarray, sources: np.ndarray) -> None:
        """Copy rows from ``sources`` to ``destinations`` (the index filling holes after removal)."""
        codes = np.empty((len(sources), self.dim), dtype=np.int8)
        for block, columns, which in self._by_block(sources):
            codes[which] = block[:, columns].T
        for block, columns, which in self._by_block(destinations):
            block[:, columns] = codes[which].T
        for values in (self._scale, self._code_sum, self._residual, self._length):
            values[destinations] = values[sources]

    def scores(self, probes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate scores of the first ``size`` rows against unit ``probes`` (m, dim), and their
        error bounds: ``|exact - approximate| <= bound``. Both (m, size) float32."""
        codes, probe_scale, probe_residual, _ = quantise(probes)
        shifted = (codes.astype(np.int16) + _PROBE_OFFSET).astype(np.uint8)
        raw = np.empty((len(probes), size), dtype=np.int32)
        session = _integer_matmul_session()
        for block, start in zip(self._blocks, self._starts[:-1].tolist()):
            if start >= size:
                break
            end = min(size, start + block.shape[1])
            scored = session.run(None, {"probes": shifted, "rows": block})[0]
            raw[:, start:end] = scored[:, : end - start]
        raw -= _PROBE_OFFSET * self._code_sum[:size]
        approximate = raw.astype(np.float32)
        approximate *= probe_scale[:, None]
        approximate *= self._scale[:size]
        bound = probe_residual[:, None] * self._length[:size]
        bound += self._residual[:size] + _ROUNDING_SLACK
        return approximate, bound
