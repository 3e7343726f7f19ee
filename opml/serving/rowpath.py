"""One row through every member of a compiled model: plain Python floats and one C call for all its trees.

On a one-row request numpy costs more than the trees: every member's featurize, kernel call and link is a
handful of numpy calls of a microsecond or more each on a 1-row array. `RowPath` takes the row as the
feature blocks' row-path lists and

1. featurizes it once per distinct featurizer (members fitted to the same state with equal scalers share a
   row), in plain Python floats with the float64 operations of the array path (CompiledFeaturizer.row); a row
   from the C record reader (`matrix_probabilities`) is written instead by the C featurizer (cfeaturize, the
   same doubles) straight into the buffer the kernels read, no Python float per value;
2. packs those rows into one buffer and walks every member's trees in ONE C call (csrc/rowpath.c, built in
   one unit with treekernel.c and catboost.c: the members' own tables and walkers, so the same margins; a
   forest with the compact walker's tables, CompiledForest.compact, takes that walker, the same doubles);
3. turns margins into class probabilities with the array path's operations: one numpy exp over all
   members with a double sigmoid (binary LightGBM, CatBoost) and one float32 sigmoid over all binary
   XGBoost members, sklearn forests' mean in floats, any other link (multiclass) on a 1-row margins
   array; a member without a tree kernel (a library's predict, LogisticRegression) through its own predict.

`probabilities` gives each member's class probabilities as floats: the same doubles as the array path
(tests/test_ensemble_rowpath.py). The scorers combine them with `vote` (the weighted sum in member order, as
VotingScorer.proba) or `stack` (the meta logistic regression over clipped log-odds in plain floats, within
a few ulps of opml.automl.ensemble.meta_proba, whose matrix product may sum in another order).
"""

from __future__ import annotations

import ctypes
import math
import pickle
import struct
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from opml.serving.cbuild import CannotCompile, Library, address, build, source
from opml.serving.treecompile import CompiledOblivious

SIGMOID, SIGMOID32, MEAN, OTHER = "sigmoid", "sigmoid32", "mean", "other"
_CLIP = (1e-6, 1 - 1e-6)  # opml.automl.ensemble._stack_features' clip of member probabilities
_EXP_CAP = float(np.float32(88.7))  # XGBoost's sigmoid: exp(min(-m, 88.7f))
_FLOAT32 = struct.Struct("f")


def _f32(x: float) -> float:
    """x rounded to float32 (to nearest). A float32 +, -, * or / computed in double and rounded so is the float32
    operation's own result: double's 53 bits are at least 2 * 24 + 2 (Figueroa, "When is double rounding
    innocuous?", 1995)."""
    return _FLOAT32.unpack(_FLOAT32.pack(x))[0]


class RowKernel(NamedTuple):
    """How a member's C kernel scores one row: its tables (treecompile's CompiledForest or CompiledOblivious)
    and its link: SIGMOID (binary LightGBM or CatBoost, in double), SIGMOID32 (binary XGBoost, in float32),
    MEAN (sklearn forests: sums / trees) or OTHER (`link` on a 1-row array of margins)."""

    forest: Any
    kind: str
    link: Callable[[np.ndarray], np.ndarray]


class _Member(ctypes.Structure):
    _fields_ = [("model", ctypes.c_void_p), ("kind", ctypes.c_int32), ("x_off", ctypes.c_int32),
                ("width", ctypes.c_int32), ("out_off", ctypes.c_int32)]


def _load() -> Any:
    text = "\n".join(source(name) for name in ("treekernel.c", "catboost.c", "rowpath.c"))
    target = build("rowpath", text, what="ensemble row kernel")
    try:
        fn = ctypes.CDLL(str(target)).opml_members_predict
    except (OSError, AttributeError) as exc:
        raise CannotCompile(f"cannot load the ensemble row kernel: {exc}") from exc
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = None
    return fn


_library = Library(_load)


def _featurizer_key(featurizer: Any, pipeline: Any) -> tuple:
    """Equal keys: equal feature rows (the same block, the same fitted scaler, unseen codes written alike)."""
    scaler = pipeline.featurizer_.scaler_
    return (id(featurizer.block), featurizer.unknown_nan, featurizer.width,
            None if scaler is None else pickle.dumps(scaler))


class RowPath:
    """`probabilities(blocks)`: each member's class probabilities (floats) of one row, from the feature blocks'
    one-row answers (FeatureBlock.compute / from_matrix, keyed by id(block)). `members`: the CompiledPipelines;
    `pipelines`: the fitted CandidatePipelines they were compiled from. CannotCompile: no row path."""

    _compact = True  # False (set on a copy, before _plan): every forest on the node walker, to compare against

    def __init__(self, members: Sequence[Any], pipelines: Sequence[Any]) -> None:
        keys: dict[tuple, int] = {}
        self._featurizers: list[Any] = []
        self._members: list[tuple[int, Any, RowKernel | None]] = []  # (row, CompiledPipeline, kernel or None)
        for m, p in zip(members, pipelines, strict=True):
            key = _featurizer_key(m.featurizer, p)
            if key not in keys:
                keys[key] = len(self._featurizers)
                self._featurizers.append(m.featurizer)
            kernel = getattr(m.predict, "kernel", None)
            self._members.append((keys[key], m, kernel if isinstance(kernel, RowKernel) else None))
        self._plan(self._members)
        self._plan_c()

    def _plan(self, members: list[tuple[int, Any, RowKernel | None]]) -> None:
        """The C call's member table, row buffer layout and initial margins; the links' member lists."""
        x_rows: list[int] = []  # distinct rows the kernels read, in buffer order
        x_off: dict[int, int] = {}
        entries, init = [], []
        self._sigmoid: list[tuple[int, int, tuple[float, float] | None]] = []  # (member, margin, CatBoost affine)
        self._sigmoid32: list[tuple[int, int]] = []
        self._other: list[tuple[int, int, int, RowKernel]] = []  # (member, margin, n_out, kernel): MEAN / OTHER
        self._library: list[tuple[int, int, Any]] = []  # (member, row, CompiledPipeline) on their own predict
        for i, (row, m, kernel) in enumerate(members):
            if kernel is None:
                self._library.append((i, row, m))
                continue
            if row not in x_off:
                x_off[row] = sum(self._featurizers[r].width for r in x_rows)
                x_rows.append(row)
            forest = kernel.forest
            oblivious = isinstance(forest, CompiledOblivious)
            n_out = forest.dim if oblivious else len(forest.init)
            at = len(init)
            init.extend([0.0] * n_out if oblivious else forest.init.tolist())
            compact = None if oblivious or not self._compact else forest.compact
            table, kind = (forest._ptr, int(oblivious)) if compact is None else (compact, 2)
            entries.append((table, kind, x_off[row], self._featurizers[row].width, at))
            affine = (forest.scale, float(forest.bias[0])) if oblivious else None
            if kernel.kind == SIGMOID and n_out == 1:
                self._sigmoid.append((i, at, affine))
            elif kernel.kind == SIGMOID32 and n_out == 1:
                self._sigmoid32.append((i, at))
            else:
                self._other.append((i, at, n_out, kernel))
        self._n = len(members)
        self._x_rows = x_rows
        self._kernels = [k for _, _, k in members if k is not None]  # keeps the tables the plan points to alive
        self._fn = _library.get() if entries else None
        self._table = (_Member * max(1, len(entries)))(*entries)
        self._table_ptr = ctypes.addressof(self._table)
        self._n_entries = len(entries)
        self._x = struct.Struct(f"{sum(self._featurizers[r].width for r in x_rows)}d")
        self._out = struct.Struct(f"{len(init)}d")
        self._init = self._out.pack(*init)
        self._out_type = ctypes.c_char * self._out.size

    def _plan_c(self) -> None:
        """The C featurizer's layout: every featurizer's row at its offset in one buffer (the kernels' rows
        first, as the row kernel reads them), when at least one featurizer writes its row in C (one with a
        row-wise scaler, or without the C form, packs its row path's floats there)."""
        self._c_state: tuple[Any, list[tuple[Any, int, int, int, int]], list[tuple[int, int]], int] | None = None
        self._c_offsets: list[tuple[int, int]] = []  # (featurizer, offset in doubles)
        if not any(f.c is not None and f._c_scale is None for f in self._featurizers):
            return
        at = 0
        for r in [*self._x_rows, *(r for r in range(len(self._featurizers)) if r not in self._x_rows)]:
            self._c_offsets.append((r, at))
            at += self._featurizers[r].width
        self._c_offset = dict(self._c_offsets)
        self._c_buffer = ctypes.c_double * max(1, at)

    @property
    def c_featurizes(self) -> bool:
        """True when matrix_probabilities featurizes a reader's row in C (some featurizer has the C form)."""
        return bool(self._c_offsets)

    def matrix_probabilities(self, M: np.ndarray, index: dict[str, int]) -> list[list[float]] | None:
        """probabilities() of the record reader's one-row matrix M (columns x 1, rows named by `index`), each
        featurizer's row written by the C featurizer straight into the buffer the row kernel reads (the same
        doubles as the row path's floats); None without that C form (the caller then takes probabilities())."""
        if not self._c_offsets:
            return None
        state = self._c_state
        if state is None or state[0] is not index:  # the reader's index: the same dict on every request
            calls, python, top = [], [], -1
            for r, at in self._c_offsets:
                f = self._featurizers[r]
                if f.c is None or f._c_scale is not None:
                    python.append((r, at))
                    continue
                num, cat, highest = f.c.columns(index)
                fn, spec = f.c.call()
                calls.append((fn, spec, num, cat, at * 8))
                top = max(top, highest)
            state = self._c_state = (index, calls, python, top)
        _, calls, python, top = state
        if M.ndim != 2 or M.shape[1] != 1 or top >= M.shape[0] or M.dtype != np.float64 or M.strides[0] % 8:
            return None
        buf = self._c_buffer()
        addr = ctypes.addressof(buf)
        m, stride = address(M), M.strides[0] // 8
        for fn, spec, num, cat, at in calls:
            fn(spec, m, stride, 1, num, cat, addr + at)
        if python:  # featurizers without the C form: the row path's floats, packed into their place
            blocks: dict[int, Any] = {}
            for r, at in python:
                f = self._featurizers[r]
                if id(f.block) not in blocks:
                    blocks[id(f.block)] = f.block.from_matrix(M, index)
                struct.pack_into(f"{f.width}d", buf, at * 8, *self._row(f, blocks))

        def row(r: int) -> np.ndarray:
            width = self._featurizers[r].width
            return np.frombuffer(buf, np.float64, width, self._c_offset[r] * 8).reshape(1, width)

        return self._score(addr, row)

    def probabilities(self, blocks: dict[int, Any]) -> list[list[float]]:
        rows = [self._row(f, blocks) for f in self._featurizers]
        x = self._x.pack(*chain.from_iterable(rows[r] for r in self._x_rows)) if self._fn is not None else None
        return self._score(x, lambda r: np.array([rows[r]], dtype=np.float64))

    def _score(self, x: Any, row: Callable[[int], np.ndarray]) -> list[list[float]]:
        """Each member's probabilities from the kernels' rows `x` (bytes or an address) and, for a member on its
        own predict, row(featurizer) as a 1-row array."""
        probs: list[Any] = [None] * self._n
        if self._fn is not None:
            out = self._out_type.from_buffer_copy(self._init)
            self._fn(self._table_ptr, self._n_entries, x, out)
            m = self._out.unpack(out)
            if self._sigmoid:  # LightGBM / CatBoost: 1 / (1 + exp(-m)) with numpy's exp, as the array path
                neg = [-m[at] if affine is None else -(m[at] * affine[0] + affine[1])
                       for _, at, affine in self._sigmoid]
                for (i, _, _), e in zip(self._sigmoid, np.exp(np.array(neg)).tolist(), strict=True):
                    p = 1.0 / (1.0 + e)
                    probs[i] = [1.0 - p, p]
            if self._sigmoid32:  # XGBoost's float32 sigmoid, as the array path
                for (i, _), p in zip(self._sigmoid32, sigmoid32([m[at] for _, at in self._sigmoid32]), strict=True):
                    probs[i] = [_f32(1.0 - p), p]
            for i, at, n_out, kernel in self._other:
                margins = m[at: at + n_out]
                if kernel.kind == MEAN:
                    n_trees = kernel.forest.n_trees
                    probs[i] = [v / n_trees for v in margins]
                    continue
                if isinstance(kernel.forest, CompiledOblivious):
                    scale = kernel.forest.scale
                    margins = [v * scale + b for v, b in zip(margins, kernel.forest.bias.tolist(), strict=True)]
                probs[i] = kernel.link(np.array([margins], dtype=np.float64))[0].tolist()
        for i, r, member in self._library:
            probs[i] = member.predict(row(r))[0].tolist()
        return probs

    @staticmethod
    def _row(featurizer: Any, blocks: dict[int, Any]) -> list[float]:
        """The featurizer's row as floats: its row form from the block's lists, else its transform's."""
        got = blocks[id(featurizer.block)]
        if type(got) is tuple and type(got[0]) is list:
            dense, codes = got
            z = featurizer.row(dense[0], None if codes is None else codes[0])
            if z is not None:
                return z
        return featurizer.transform(None, 1, blocks)[0].tolist()


def sigmoid32(margins: list[float]) -> list[float]:
    """XGBoost's float32 sigmoid of float32 margins, as the array path computes it (1 / (exp(min(-m, 88.7f)) + 1)
    in float32): numpy's float32 exp, then the + and / in doubles rounded to float32 (_f32: the same floats)."""
    e = np.exp(np.array([min(-m, _EXP_CAP) for m in margins], dtype=np.float32))
    return [_f32(1.0 / _f32(v + 1.0)) for v in e.tolist()]


def vote(probs: list[list[float]], weights: list[float]) -> list[float]:
    """The weighted sum of the members' probabilities in member order (VotingScorer.proba's operations)."""
    out = [weights[0] * p for p in probs[0]]
    for w, member in zip(weights[1:], probs[1:], strict=True):
        out = [a + w * p for a, p in zip(out, member, strict=True)]
    return out


def stack(probs: list[list[float]], coef: list[list[float]], intercept: list[float]) -> list[float]:
    """The stack's meta logistic regression over its members' clipped log-odds (binary members) or log
    probabilities (multiclass ones), in plain floats: opml.automl.ensemble's _stack_features and meta_proba."""
    lo, hi = _CLIP
    features: list[float] = []
    for p in probs:
        if len(p) == 2:
            a, b = p
            a = lo if a < lo else hi if a > hi else a
            b = lo if b < lo else hi if b > hi else b
            features.append(math.log(b / a))
        else:
            features.extend(math.log(lo if v < lo else hi if v > hi else v) for v in p)
    logits = []
    for weights, b in zip(coef, intercept, strict=True):
        s = 0.0
        for f, w in zip(features, weights, strict=True):
            s += f * w
        logits.append(s + b)
    if len(logits) == 1:
        x = -logits[0]
        p = 1.0 / (1.0 + (math.exp(x) if x < 700.0 else math.inf))  # numpy's exp overflows to inf: p = 0.0
        return [1.0 - p, p]
    top = max(logits)
    e = [math.exp(v - top) for v in logits]
    total = 0.0
    for v in e:
        total += v
    return [v / total for v in e]
