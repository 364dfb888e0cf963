"""Exact top-k inner-product search over N x D unit templates, made fast by a certified int8 pre-scan.

Stage 1 scores every row with int8 codes, x~ = rint(x * sx), and an int8 query q~ = rint(q * sq): Y = q~ . x~,
exact in int32 (onnxruntime's MatMulInteger), so s^ = Y / (sq sx) = q^ . x^ with x^ = x~/sx, q^ = q~/sq.
Bound: |q.x - q^.x^| <= |(q - q^).x| + |q^.(x - x^)| <= ||q - q^|| max||x|| + ||q^|| E =: B, where E is the largest
reconstruction error ||x - x^|| of any stored row, measured when its codes are made (plus a float-rounding EPS).
Proof of exactness: let t be the k-th largest s^. The k rows with s^ >= t have true scores >= t - B, so the true
k-th score is >= t - B, and a true top-k row y has s^(y) >= s(y) - B >= t - 2B. Hence every true top-k row is among
the candidates {s^ >= t - 2B}; stage 2 rescores those with the float32 templates and returns the exact top-k.
Stage 1 keeps the best K' rows of each block; when a block's K'-th row is not below t - 2B, that block's full
score vector is thresholded instead, so the answer is exact for any data (near-duplicates cost a little time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_MAX = 127  # symmetric int8 codes in [-127, 127]: no -128, so the code range is the same on both sides
QUERY_ZERO_POINT = 128  # MatMulInteger's fast path wants a uint8 query; (A - 128) is the signed query code
EPS = 1e-4  # covers float32 rounding of a <= 512-term dot product of unit vectors (<= 512 * 2^-24 = 3e-5) 3x over
ROW_CHUNK = 65536  # rows quantized at a time: bounds the float64 scratch memory to ~64 MB at D = 128
TAIL_MIN = 65536  # rows added after the main block stay in a small tail block until it passes this ...
TAIL_FRACTION = 8  # ... or 1/8 of the main block; then everything is re-coded into one main block


@dataclass
class TopRows:
    """The exact top-k rows of one query, best first, and how many candidates stage 2 rescored."""

    rows: np.ndarray  # k int64 row positions in the float32 store
    scores: np.ndarray  # k float32 exact inner products
    candidates: int


class _Block:
    """int8 codes of rows [start, start + n) inside one onnxruntime session: top-K' and full scores per query."""

    def __init__(self, codes: np.ndarray, start: int, threads: int) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper

        n, dim = codes.shape  # codes: n x D int8
        self.start, self.n = start, n
        inits = [numpy_helper.from_array(np.ascontiguousarray(codes.T), "B"),  # D x n
                 numpy_helper.from_array(np.array(QUERY_ZERO_POINT, np.uint8), "zp")]
        nodes = [helper.make_node("MatMulInteger", ["A", "B", "zp"], ["Y"]),
                 helper.make_node("TopK", ["Y", "k"], ["V", "I"], axis=1)]
        outputs = [helper.make_tensor_value_info("V", TensorProto.INT32, [1, None]),
                   helper.make_tensor_value_info("I", TensorProto.INT64, [1, None]),
                   helper.make_tensor_value_info("Y", TensorProto.INT32, [1, n])]
        inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, dim]),
                  helper.make_tensor_value_info("k", TensorProto.INT64, [1])]
        graph = helper.make_graph(nodes, "int8_scan", inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9  # what onnxruntime 1.x reads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def scores(self, query_code: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keep best int32 scores, their keep global rows, best first; all n int32 scores) of one 1 x D query code.

        The full score vector comes with the top-K' at ~no cost, so an uncertified block needs no second scan."""
        values, rows, scores = self.session.run(None, {"A": query_code, "k": np.array([keep], np.int64)})
        return values[0], rows[0] + self.start, scores[0]


class CertifiedSearch:
    """The int8 copy of a float32 template store, kept in sync by `rebuild`/`extend`, and its exact top-k search."""

    def __init__(self, candidates: int = 256, threads: int = 1) -> None:
        self.candidates = candidates  # K': rows stage 1 keeps per block before the certificate is checked
        self.threads = threads
        self.scale = 1.0  # sx: codes = rint(x * sx)
        self.error = 0.0  # E: max ||x - x^|| over the coded rows (float64)
        self.max_norm = 0.0  # max ||x|| over the coded rows (1 for unit rows, measured anyway)
        self._main: _Block | None = None
        self._tail: _Block | None = None
        self.rows = 0  # rows coded so far (the store's first `rows` rows)

    def rebuild(self, store: np.ndarray) -> None:
        """Re-code every row of the N x D float32 store into one block, with the scale fitted to it."""
        self.scale = INT8_MAX / max(float(np.abs(store).max()), 1e-12)
        self.error = self.max_norm = 0.0
        codes = self._codes(store)
        self._main, self._tail = _Block(codes, 0, self.threads), None
        self.rows = len(store)

    def extend(self, store: np.ndarray) -> None:
        """Code rows appended to the store since the last call (a small tail block; re-codes all when it grows)."""
        main_rows = self._main.n if self._main is not None else 0
        new = store[self.rows:]
        tail_rows = len(store) - main_rows
        if (not main_rows or float(np.abs(new).max(initial=0.0)) * self.scale > INT8_MAX
                or tail_rows > max(TAIL_MIN, main_rows // TAIL_FRACTION)):
            self.rebuild(store)  # no main block, values outside the code range, or a tail too big to scan cheaply
            return
        codes = self._codes(store[main_rows:])
        self._tail = _Block(codes, main_rows, self.threads)
        self.rows = len(store)

    def _codes(self, rows: np.ndarray) -> np.ndarray:
        """n x D int8 codes of the rows; raises self.error / self.max_norm to cover them (measured exactly)."""
        codes = np.empty(rows.shape, np.int8)
        for start in range(0, len(rows), ROW_CHUNK):
            x = rows[start:start + ROW_CHUNK].astype(np.float64)
            code = np.clip(np.rint(x * self.scale), -INT8_MAX, INT8_MAX)
            codes[start:start + ROW_CHUNK] = code
            self.error = max(self.error, float(np.linalg.norm(x - code / self.scale, axis=1).max()))
            self.max_norm = max(self.max_norm, float(np.linalg.norm(x, axis=1).max()))
        return codes

    def search(self, store: np.ndarray, query: np.ndarray, k: int) -> TopRows:
        """The exact top-k rows of the store for one D query (k <= the store's rows)."""
        blocks = [b for b in (self._main, self._tail) if b is not None]
        q = query.astype(np.float64)
        query_scale = INT8_MAX / max(float(np.abs(q).max()), 1e-12)  # sq
        q_code = np.clip(np.rint(q * query_scale), -INT8_MAX, INT8_MAX)
        q_hat = q_code / query_scale
        bound = np.linalg.norm(q - q_hat) * self.max_norm + np.linalg.norm(q_hat) * self.error + EPS  # B
        margin = 2.0 * bound * query_scale * self.scale  # 2B in the int32 score units of stage 1
        a = (q_code + QUERY_ZERO_POINT).astype(np.uint8)[None]  # 1 x D
        keeps = [min(b.n, max(self.candidates, k)) for b in blocks]  # K' >= k: each block's top-k is in its list
        tops = [b.scores(a, keep) for b, keep in zip(blocks, keeps)]
        values = np.concatenate([v for v, _, _ in tops])
        kth = np.partition(values, len(values) - k)[len(values) - k]  # t, in int32 units
        threshold = np.floor(kth - margin)
        rows = []
        for block, keep, (v, r, all_scores) in zip(blocks, keeps, tops):
            certified = keep == block.n or v[-1] < threshold  # no row outside the block's top-K' reaches t - 2B
            rows.append(r[v >= threshold] if certified else np.flatnonzero(all_scores >= threshold) + block.start)
        candidates = np.concatenate(rows)
        scores = store[candidates] @ query.astype(np.float32)  # exact float32 inner products
        best = np.argsort(-scores, kind="stable")[:k]
        return TopRows(candidates[best], scores[best], len(candidates))
