"""A fitted OpmlClassifier compiled for per-request scoring: no pandas, no sklearn validation per request.

Featurization is re-expressed from the Featurizer's fitted state (medians, category tables, frequency
tables, scaler statistics) with the same float64 operations in the same order. Its unscaled part is a
`FeatureBlock` shared by every ensemble member fitted to the same state (they differ only in scaler
or in how unseen codes are written), so it is computed once per request: row by row in plain Python
for small requests (scaled in Python too, one array per request), column by column for larger ones. A
record-reader matrix of two rows or more instead goes to each featurizer's C pass (opml.serving.cfeaturize:
the same operations, scaler and codes included); without that library, the numpy path. A
single row goes from the record matrix through Python floats into one C call over every member's trees
(opml.serving.rowpath), with the same float64 operations as the array path. Tree models go through the C kernel of
opml.serving.treecompile (checked against the library on split-probing rows when compiled); without
a compiler, or for a layout the kernel does not express, the library's own predict is kept and
`inference` says why. LogisticRegression is its predict_proba's numpy operations. CatBoost goes
through its oblivious-tree kernel or not at all: a CatBoost model the kernel cannot express raises
CannotCompile, so the endpoint serves the plain model and says why.

Probabilities match the trained model's predict_proba within 1e-6 (tests/test_compiled.py). Pipelines
this cannot express raise CannotCompile with the reason, and the caller falls back to the plain
model. `compile_model` returns a SingleScorer, VotingScorer or StackScorer (one CompiledScorer subclass
per estimator kind); its `read` returns a Batch saying which reader filled it (C or Python), and
`labels` applies opml.automl.threshold.decide, the rule of OpmlClassifier.predict. A calibrated model's map
is applied to the combined probabilities by opml.automl.model.calibrated, the function predict_proba uses.
A bag of cross-validation fold models (opml.automl.ensemble.fold_bag) is a VotingModel: a VotingScorer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from opml.automl.ensemble import StackModel, VotingModel, _stack_features, meta_proba
from opml.automl.featurize import level_codes, onehot
from opml.automl.model import calibrated
from opml.automl.pipeline import CandidatePipeline
from opml.automl.threshold import decide, decision_of
from opml.serving.cbuild import CannotCompile
from opml.serving.cfeaturize import (
    SCALE_DIV,
    SCALE_MUL_ADD,
    SCALE_NONE,
    SCALE_SUB,
    SCALE_SUB_DIV,
    CFeaturizer,
    block_spec,
    library,
)
from opml.serving.requests import Column, columnar
from opml.serving.rowpath import MEAN, OTHER, SIGMOID, SIGMOID32, RowKernel, RowPath, stack, vote

_EXACT_SCALERS = ("MaxAbsScaler", "StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer")


SMALL_BATCH = 12  # up to this many rows, featurize row by row in plain Python (no per-column numpy calls)
C_FEATURIZE_ROWS = 2  # from this many rows, a record-reader matrix is featurized in one C pass (when built)


class MatrixBlock:
    """FeatureBlock.from_matrix's answer when the block has a C form: the record-reader matrix itself, which each
    featurizer turns into its features (scaled, codes included) in one C pass; `arrays()` is the numpy path's
    (dense, codes) for a featurizer without one, computed once."""

    __slots__ = ("_arrays", "block", "index", "matrix")

    def __init__(self, block: FeatureBlock, matrix: np.ndarray, index: dict[str, int]) -> None:
        self.block, self.matrix, self.index = block, matrix, index
        self._arrays: tuple[np.ndarray, np.ndarray | None] | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self._arrays is None:
            self._arrays = self.block.assemble_matrix(self.matrix, self.index)
        return self._arrays


class FeatureBlock:
    """The unscaled part of a Featurizer.transform, shared by featurizers fitted to the same state.

    `compute(cols, n)` -> (dense, codes): the unscaled dense block (imputed numbers, indicators,
    frequency encodings, one-hot blocks) and, for ordinal encodings, the category codes (-1 unseen).
    Up to SMALL_BATCH rows they are lists of rows (plain Python floats and ints, no numpy call per row),
    beyond that arrays. Ensemble members that differ only in scaler (or in how unseen codes are written)
    share one block, computed once per request.
    """

    def __init__(self, f: Any) -> None:
        self.numeric = list(f.numeric_)
        self.medians = np.asarray(f.medians_, dtype=np.float64)
        self.median_list = [float(m) for m in self.medians]
        self.indicators = [self.numeric.index(c) for c in f.indicators_]
        self.freq = [(self.numeric.index(c), f.freq_tables_[c][0], np.append(f.freq_tables_[c][1], 0.0))
                     for c in f.freq_columns_]
        # dict forms for the row path: float keys match by == like searchsorted + equality does
        self.freq_dicts = [(i, {float(v): float(q) for v, q in zip(values, freq[:-1], strict=True)},
                            {float(v): j for j, v in enumerate(values)}, len(values))
                           for i, values, freq in self.freq]
        self.joint = None
        self.joint_dict: dict[int, float] | None = None
        if f.joint_freq_ is not None:
            uniq, freq, radices = f.joint_freq_
            self.joint = (np.asarray(uniq), np.asarray(freq), list(radices))
            self.joint_dict = {int(k): float(q) for k, q in zip(uniq, freq, strict=True)}
        self.onehot = f.encoding == "onehot"
        self.max_onehot = int(f.max_onehot)
        self.categorical = list(f.categorical_)
        self.lookup = {c: {level: i for i, level in enumerate(f.categories_[c])} for c in self.categorical}
        self.n_levels = {c: len(f.categories_[c]) for c in self.categorical}
        self.n_dense = int(f.n_dense_)
        if any(not isinstance(level, str) for c in self.categorical for level in f.categories_[c]):
            raise CannotCompile("non-text category levels are not compiled")
        # the C featurizer's arrays (opml.serving.cfeaturize), or None and why (the numpy path then serves)
        self.c_spec: dict[str, Any] | None = None
        self.c_why = ""
        try:
            library()
            self.c_spec = block_spec(self)
        except CannotCompile as why:
            self.c_why = str(why)

    @staticmethod
    def key(f: Any) -> tuple:
        """Equal keys: equal fitted state, so equal unscaled blocks."""
        joint = None
        if f.joint_freq_ is not None:
            uniq, freq, radices = f.joint_freq_
            joint = (np.asarray(uniq).tobytes(), np.asarray(freq).tobytes(), tuple(radices))
        return (tuple(f.numeric_), np.asarray(f.medians_, dtype=np.float64).tobytes(), tuple(f.indicators_),
                tuple((c, np.asarray(f.freq_tables_[c][0]).tobytes(), np.asarray(f.freq_tables_[c][1]).tobytes())
                      for c in f.freq_columns_), joint, f.encoding, int(f.max_onehot), tuple(f.categorical_),
                tuple(tuple(f.categories_[c]) for c in f.categorical_), int(f.n_dense_))

    def compute(self, cols: dict[str, Sequence[Any]], n: int) -> tuple[Any, Any]:
        if n <= SMALL_BATCH:
            return self._rows(cols, n)
        return self._columns(cols, n)

    # ---- row by row (small requests) --------------------------------------------------------------
    def _rows(self, cols: dict[str, Sequence[Any]], n: int) -> tuple[list[list[float]], list[list[int]] | None]:
        nan = float("nan")
        numcols = [cols[c] for c in self.numeric]
        catcols = [(cols[c], self.lookup[c]) for c in self.categorical]
        values = [[nan if (v := col[r]) is None else float(v) for col in numcols] for r in range(n)]
        codes = [[lookup.get(col[r], -1) for col, lookup in catcols] for r in range(n)]
        return self._assemble_rows(values, codes, n)

    def _assemble_rows(self, values: list[list[float]], codes: list[list[int]],
                       n: int) -> tuple[list[list[float]], list[list[int]] | None]:
        """The block row by row in plain Python from raw numbers (NaN: missing) and category codes per row:
        (dense rows, code rows or None), with the float64 operations of _assemble."""
        medians, indicators, freq, joint = self.median_list, self.indicators, self.freq_dicts, self.joint_dict
        radices = self.joint[2] if self.joint is not None else None
        onehot, max_onehot = self.onehot, self.max_onehot
        n_levels = [self.n_levels[c] for c in self.categorical]
        dense_rows: list[list[float]] = []
        for vals, row_codes in zip(values, codes, strict=True):
            row = [m if v != v else v for v, m in zip(vals, medians, strict=True)]
            for i in indicators:
                row.append(1.0 if vals[i] != vals[i] else 0.0)
            for i, table, _, _ in freq:
                row.append(table.get(vals[i], 0.0))
            if joint is not None:
                key = 0
                for (i, _, index, missing), radix in zip(freq, radices, strict=True):
                    key = key * radix + index.get(vals[i], missing)
                row.append(joint.get(key, 0.0))
            if onehot:
                for code, levels in zip(row_codes, n_levels, strict=True):
                    k = min(levels, max_onehot)
                    block = [0.0] * (k + (1 if levels > max_onehot else 0))
                    if 0 <= code < k:
                        block[code] = 1.0
                    elif code >= k:
                        block[k] = 1.0
                    row.extend(block)
            dense_rows.append(row)
        return dense_rows, None if onehot or not self.categorical else codes

    # ---- column by column (larger requests) ------------------------------------------------------
    def _columns(self, cols: dict[str, Sequence[Any]], n: int) -> tuple[np.ndarray, np.ndarray | None]:
        num = np.empty((len(self.numeric), n))
        for j, c in enumerate(self.numeric):
            num[j] = np.array(cols[c], dtype=np.float64)  # None reads as NaN
        codes = np.empty((n, len(self.categorical)))
        for j, c in enumerate(self.categorical):
            codes[:, j] = np.fromiter(map(self.lookup[c].get, cols[c], repeat(-1)), np.float64, n)
        return self._assemble(num, codes, n)

    def from_matrix(self, M: np.ndarray, index: dict[str, int]) -> Any:
        """compute() over a RecordReader matrix (columns x rows; categorical rows hold codes under `lookup`); from
        C_FEATURIZE_ROWS rows, when the block has a C form, a MatrixBlock that CompiledFeaturizer.transform
        featurizes in one C pass."""
        n = M.shape[1]
        if n >= C_FEATURIZE_ROWS and self.c_spec is not None:
            return MatrixBlock(self, M, index)
        if n <= SMALL_BATCH:  # row by row, as compute() does: no per-column numpy calls
            values = M[[index[c] for c in self.numeric]].T.tolist() if self.numeric else [[]] * n
            codes = M[[index[c] for c in self.categorical]].T.astype(np.int64).tolist() if self.categorical \
                else [[]] * n
            return self._assemble_rows(values, codes, n)
        return self.assemble_matrix(M, index)

    def assemble_matrix(self, M: np.ndarray, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """(dense, codes) arrays from a RecordReader matrix with numpy (the path without the C featurizer)."""
        n = M.shape[1]
        num = M[[index[c] for c in self.numeric]] if self.numeric else np.empty((0, n))
        codes = M[[index[c] for c in self.categorical]].T if self.categorical else np.empty((n, 0))
        return self._assemble(num, codes, n)

    def _assemble(self, num: np.ndarray, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The block from raw numbers (numeric columns x rows, NaN: missing) and category codes (rows x columns)."""
        dense = np.empty((n, self.n_dense))
        nn = len(self.numeric)
        missing = np.isnan(num)
        if nn:
            dense[:, :nn] = np.where(missing, self.medians[:, None], num).T
        at = nn
        for i in self.indicators:
            dense[:, at] = missing[i]
            at += 1
        # frequency tables: the Featurizer's own searchsorted + equality on the raw values (NaN: unseen)
        level_list = []
        for i, values, freq in self.freq:
            levels = level_codes(num[i], values)
            dense[:, at] = freq[levels]
            level_list.append(levels)
            at += 1
        if self.joint is not None:
            uniq, freq, radices = self.joint
            key = np.zeros(n, dtype=np.int64)
            for levels, radix in zip(level_list, radices, strict=True):
                key = key * radix + levels
            pos = np.searchsorted(uniq, key)
            np.minimum(pos, len(uniq) - 1, out=pos)
            dense[:, at] = np.where(uniq[pos] == key, freq[pos], 0.0)
            at += 1
        if not self.categorical:
            return dense, None
        if not self.onehot:
            return dense, codes
        for j, c in enumerate(self.categorical):
            block = self._onehot(codes[:, j].astype(np.int64), self.n_levels[c])
            dense[:, at: at + block.shape[1]] = block
            at += block.shape[1]
        return dense, None

    def _onehot(self, codes: np.ndarray, n_levels: int) -> np.ndarray:
        return onehot(codes, n_levels, self.max_onehot)


class CompiledFeaturizer:
    """opml.automl.featurize.Featurizer.transform over request columns (lists of values).

    `transform(cols, n, memo)`: `memo` (a dict per request) lets featurizers sharing a FeatureBlock
    compute it once.
    """

    def __init__(self, f: Any, blocks: dict[tuple, FeatureBlock] | None = None) -> None:
        key = FeatureBlock.key(f)
        blocks = {} if blocks is None else blocks
        if key not in blocks:
            blocks[key] = FeatureBlock(f)
        self.block = blocks[key]
        self.unknown_nan = f.unknown == "nan"
        self.scale = _compile_scaler(f.scaler_)
        self.scale_row = _row_scaler(f.scaler_)
        self.n_dense = int(f.n_dense_)
        self.width = len(f.feature_names_out_)
        self.n_codes = self.width - self.n_dense
        # a MatrixBlock in one C pass: the scaler too when it is a per-column affine map, else (Normalizer)
        # numpy's scale on the unscaled dense part the C writes
        self.c: CFeaturizer | None = None
        self._c_scale: Callable[[np.ndarray], np.ndarray] | None = None
        if self.block.c_spec is not None:
            affine = _affine_scaler(f.scaler_)
            try:
                self.c = CFeaturizer(self.block.c_spec, self.block.numeric, self.block.categorical, width=self.width,
                                     unknown_nan=self.unknown_nan, scale=affine or (SCALE_NONE, None, None))
                self._c_scale = None if affine is not None else self.scale
            except CannotCompile:
                self.c = None

    def transform(self, cols: dict[str, Sequence[Any]] | None, n: int, memo: dict | None = None) -> np.ndarray:
        block = self.block
        if memo is None:
            dense, codes = block.compute(cols, n)  # type: ignore[arg-type]
        else:
            got = memo.get(id(block))
            if got is None:
                got = memo[id(block)] = block.compute(cols, n)  # type: ignore[arg-type]
            if type(got) is MatrixBlock:
                if self.c is not None:
                    return self._from_c(got)
                got = got.arrays()
            dense, codes = got
        if type(dense) is list:
            return self._transform_rows(dense, codes, n)
        if self.scale is not None and dense.shape[1]:
            dense = self.scale(dense)
        if codes is None:
            return dense if memo is None or self.scale is not None else dense.copy()
        out = np.empty((n, self.width))
        out[:, : self.n_dense] = dense
        out[:, self.n_dense:] = codes
        if self.unknown_nan:
            tail = out[:, self.n_dense:]
            tail[tail < 0] = np.nan
        return out

    def _from_c(self, got: MatrixBlock) -> np.ndarray:
        """transform() of a MatrixBlock in one C pass (a row-wise scaler then applied with numpy, in place)."""
        Z = self.c(got.matrix, got.index)  # type: ignore[misc]
        if self._c_scale is not None and self.n_dense:
            Z[:, : self.n_dense] = self._c_scale(np.ascontiguousarray(Z[:, : self.n_dense]))
        return Z

    def _transform_rows(self, dense: list[list[float]], codes: list[list[int]] | None, n: int) -> np.ndarray:
        """transform() of the row path's lists, scaled in plain Python (the same float64 operations) and made
        into one array; a scaler without a row form (Normalizer) goes through the array path."""
        scale = self.scale_row
        if scale is None and self.scale is not None:
            arrays = (np.array(dense, dtype=np.float64).reshape(n, self.n_dense),
                      None if codes is None else np.array(codes, dtype=np.float64).reshape(n, self.n_codes))
            return self.transform(None, n, {id(self.block): arrays})
        rows = dense if scale is None else [scale(r) for r in dense]
        if codes is not None:
            rows = [r + self._code_row(cr) for r, cr in zip(rows, codes, strict=True)]
        return np.array(rows, dtype=np.float64).reshape(n, self.width)

    def _code_row(self, codes: list[int]) -> list[float]:
        if self.unknown_nan:
            nan = float("nan")
            return [nan if c < 0 else float(c) for c in codes]
        return [float(c) for c in codes]

    def row(self, dense: list[float], codes: list[int] | None) -> list[float] | None:
        """One row of transform() as floats, from the row path's lists; None when the scaler has no row form."""
        scale = self.scale_row
        if scale is None and self.scale is not None:
            return None
        z = dense if scale is None else scale(dense)
        return z if codes is None else z + self._code_row(codes)


def _center_and_scale(scaler: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(center, scale) a fitted StandardScaler or RobustScaler applies, each None when it is switched off."""
    if type(scaler).__name__ == "StandardScaler":
        return scaler.mean_ if scaler.with_mean else None, scaler.scale_ if scaler.with_std else None
    return scaler.center_ if scaler.with_centering else None, scaler.scale_ if scaler.with_scaling else None


def _row_scaler(scaler: Any) -> Callable[[list[float]], list[float]] | None:
    """The fitted scaler's transform of one row (a list of floats) in plain Python, with the float64 operations
    of _compile_scaler in the same order; None when there is no scaler or no exact row form (Normalizer)."""
    if scaler is None:
        return None
    kind = type(scaler).__name__
    if kind == "MaxAbsScaler":
        scale = [float(v) for v in scaler.scale_]
        return lambda r: [x / s for x, s in zip(r, scale, strict=True)]
    if kind in ("StandardScaler", "RobustScaler"):
        center, by = _center_and_scale(scaler)
        c = None if center is None else [float(v) for v in center]
        d = None if by is None else [float(v) for v in by]
        if c is not None and d is not None:
            return lambda r: [(x - a) / b for x, a, b in zip(r, c, d, strict=True)]
        if c is not None:
            return lambda r: [x - a for x, a in zip(r, c, strict=True)]
        if d is not None:
            return lambda r: [x / b for x, b in zip(r, d, strict=True)]
        return lambda r: list(r)
    if kind == "MinMaxScaler" and not scaler.clip:
        mul, add = [float(v) for v in scaler.scale_], [float(v) for v in scaler.min_]
        return lambda r: [x * m + a for x, m, a in zip(r, mul, add, strict=True)]
    return None


def _affine_scaler(scaler: Any) -> tuple[int, np.ndarray | None, np.ndarray | None] | None:
    """The fitted scaler as the C featurizer's (op, a, b): the float64 operations of _compile_scaler, one column at
    a time; None for a row-wise one (Normalizer). No scaler: (SCALE_NONE, None, None)."""
    if scaler is None:
        return SCALE_NONE, None, None
    kind = type(scaler).__name__
    if kind == "MaxAbsScaler":
        return SCALE_DIV, np.asarray(scaler.scale_, dtype=np.float64), None
    if kind in ("StandardScaler", "RobustScaler"):
        center, by = _center_and_scale(scaler)
        if center is not None and by is not None:
            return SCALE_SUB_DIV, np.asarray(center, dtype=np.float64), np.asarray(by, dtype=np.float64)
        if center is not None:
            return SCALE_SUB, np.asarray(center, dtype=np.float64), None
        if by is not None:
            return SCALE_DIV, np.asarray(by, dtype=np.float64), None
        return SCALE_NONE, None, None
    if kind == "MinMaxScaler" and not scaler.clip:
        return SCALE_MUL_ADD, np.asarray(scaler.scale_, dtype=np.float64), np.asarray(scaler.min_, dtype=np.float64)
    return None


def _compile_scaler(scaler: Any):
    """The fitted sklearn scaler's transform as plain numpy, with sklearn's in-place operation order."""
    if scaler is None:
        return None
    kind = type(scaler).__name__
    if kind not in _EXACT_SCALERS:
        raise CannotCompile(f"scaler {kind} is not compiled")
    if kind == "MaxAbsScaler":
        scale = scaler.scale_
        return lambda X: X / scale
    if kind in ("StandardScaler", "RobustScaler"):
        return _center_scale(*_center_and_scale(scaler))
    if kind == "MinMaxScaler":
        if scaler.clip:
            raise CannotCompile("MinMaxScaler(clip=True) is not compiled")
        mul, add = scaler.scale_, scaler.min_

        def minmax(X: np.ndarray) -> np.ndarray:
            X = X * mul
            X += add
            return X
        return minmax
    if scaler.norm != "l2":
        raise CannotCompile(f"Normalizer(norm={scaler.norm!r}) is not compiled")

    def l2(X: np.ndarray) -> np.ndarray:
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        norms[norms == 0.0] = 1.0
        return X / norms[:, None]
    return l2


def _center_scale(center: np.ndarray | None, scale: np.ndarray | None):
    """(X - center) / scale, each part optional: StandardScaler's and RobustScaler's transform, in their order."""

    def transform(X: np.ndarray) -> np.ndarray:
        X = X - center if center is not None else X.copy()
        if scale is not None:
            X /= scale
        return X
    return transform


class CompiledPipeline:
    """One CandidatePipeline: compiled featurizer, then the model on the prepared matrix."""

    def __init__(self, pipeline: Any, blocks: dict[tuple, FeatureBlock] | None = None, *, trees: bool = True) -> None:
        self.featurizer = CompiledFeaturizer(pipeline.featurizer_, blocks)
        self.predict, self.engine = _compile_model(pipeline.model_, self.featurizer.width, trees)

    def predict_proba(self, cols: dict[str, Sequence[Any]], n: int, memo: dict | None = None) -> np.ndarray:
        return self.predict(self.featurizer.transform(cols, n, memo))


def _binary(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 2:
        return p
    return np.column_stack([1.0 - p, p])


def _compile_model(model: Any, width: int, trees: bool = True) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """(Z -> probabilities, engine name): the C tree kernel when it applies, else the library's own predict."""
    kind = type(model).__name__
    why = "tree kernel disabled"
    fallback = _library_predict(model, kind)
    if kind in _TREE_MODELS and trees:
        try:
            fast, probe = _tree_kernel(model, kind, width)
            Z = probe()
            # deploy-time self-check against the library on rows probing every split (XGBoost's float32
            # sigmoid may differ by an ulp, ~1.2e-7)
            diff = float(np.abs(fast(Z) - fallback(Z)).max())
            if not diff < SELF_CHECK_TOL:
                raise CannotCompile(f"tree kernel self-check differs by {diff:.3g}")
            return fast, "kernel"
        except CannotCompile as exc:
            why = str(exc)
        except Exception as exc:  # an unexpected model layout: keep the library's predict, say why
            why = f"tree kernel failed: {type(exc).__name__}: {exc}"
        if kind == "CatBoostModel":  # CatBoost's own predict needs a DataFrame per call: the plain path, saying why
            raise CannotCompile(f"CatBoost model not compiled: {why}")
    if kind == "LogisticRegression":
        return fallback, "numpy"
    if kind == "CatBoostModel":
        return fallback, f"catboost ({why})"
    return fallback, f"{'booster' if kind in ('LGBMClassifier', 'XGBClassifier') else 'sklearn'} ({why})"


def _library_predict(model: Any, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """The model's own prediction on a prepared matrix (LogisticRegression: the same numpy operations)."""
    if kind == "LGBMClassifier":
        booster = model.booster_
        return lambda Z: _binary(booster.predict(Z, num_threads=1))
    if kind == "XGBClassifier":
        booster = model.get_booster()
        booster.set_param({"nthread": 1})
        best = _xgb_best(model)
        rng = (0, best + 1) if best is not None else (0, 0)
        one = np.float32(1.0)

        def xgb(Z: np.ndarray) -> np.ndarray:
            p = booster.inplace_predict(Z, validate_features=False, iteration_range=rng)
            if p.ndim == 2:
                return np.asarray(p, dtype=np.float64)
            return np.column_stack([one - p, p]).astype(np.float64)  # 1 - p in float32, as XGBClassifier
        return xgb
    if kind in ("RandomForestClassifier", "ExtraTreesClassifier"):
        model.set_params(n_jobs=1)
        return lambda Z: np.asarray(model.predict_proba(Z), dtype=np.float64)
    if kind == "LogisticRegression":
        return _logistic(model)
    if kind == "CatBoostModel":
        model.set_params(n_jobs=1)
        return lambda Z: model.predict_proba(Z)
    raise CannotCompile(f"model {kind} is not compiled")


SELF_CHECK_TOL = 5e-7
_TREE_MODELS = ("LGBMClassifier", "XGBClassifier", "RandomForestClassifier", "ExtraTreesClassifier", "CatBoostModel")


def _xgb_best(model: Any) -> int | None:
    best = getattr(model, "best_iteration", None)
    try:
        return int(best) if best is not None else None
    except (TypeError, ValueError):
        return None


def _link64(m: np.ndarray, objective: str) -> np.ndarray:
    """Margins -> class probabilities in double, as LightGBM and CatBoost compute them (sigmoid or softmax)."""
    if objective == "binary":
        p = 1.0 / (1.0 + np.exp(-m[:, 0]))
        out = np.empty((len(p), 2))
        out[:, 0] = 1.0 - p
        out[:, 1] = p
        return out
    m = m - m.max(axis=1, keepdims=True)
    e = np.exp(m)
    return e / e.sum(axis=1, keepdims=True)

def _tree_kernel(model: Any, kind: str, width: int) -> tuple[Callable[[np.ndarray], np.ndarray], Callable]:
    """(Z -> probabilities through the C kernel, () -> rows probing every split). The first carries `kernel`, a
    RowKernel: its tables and link for one row through opml.serving.rowpath (the same operations)."""
    from opml.serving import treecompile as tc

    if kind == "LGBMClassifier":
        forest, objective, _ = tc.lightgbm_forest(model.booster_, width)

        def lgbm_link(m: np.ndarray) -> np.ndarray:
            return _link64(m, objective)

        def lgbm(Z: np.ndarray) -> np.ndarray:
            return lgbm_link(forest.margins(Z))
        lgbm.kernel = RowKernel(forest, SIGMOID if objective == "binary" else OTHER, lgbm_link)  # type: ignore
        return lgbm, forest.probe_rows
    if kind == "XGBClassifier":
        forest, objective, _ = tc.xgboost_forest(model.get_booster(), width, _xgb_best(model))
        one = np.float32(1.0)

        def xgb_link(m: np.ndarray) -> np.ndarray:
            # the kernel casts to float32 like XGBoost; margins are float32 values
            m = m.astype(np.float32)
            if objective == "binary":
                p = one / (np.exp(np.minimum(-m[:, 0], np.float32(88.7))) + one)  # XGBoost's float32 sigmoid
                return np.column_stack([one - p, p]).astype(np.float64)
            m = m - m.max(axis=1, keepdims=True)
            e = np.exp(m)
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float64)

        def xgb(Z: np.ndarray) -> np.ndarray:
            return xgb_link(forest.margins(Z))
        xgb.kernel = RowKernel(forest, SIGMOID32 if objective == "binary" else OTHER, xgb_link)  # type: ignore
        return xgb, forest.probe_rows
    if kind == "CatBoostModel":
        oblivious, objective = tc.catboost_forest(model, width)

        def catboost_link(m: np.ndarray) -> np.ndarray:
            return _link64(m, objective)

        def catboost(Z: np.ndarray) -> np.ndarray:
            return catboost_link(oblivious.margins(Z))
        catboost.kernel = RowKernel(oblivious, SIGMOID if objective == "binary" else OTHER,  # type: ignore
                                    catboost_link)
        return catboost, oblivious.probe_rows
    forest = tc.sklearn_forest(model, width)
    n_trees = len(model.estimators_)

    def sk_link(m: np.ndarray) -> np.ndarray:
        m /= n_trees
        return m

    def sk(Z: np.ndarray) -> np.ndarray:
        return sk_link(forest.margins(Z))
    sk.kernel = RowKernel(forest, MEAN, sk_link)  # type: ignore[attr-defined]
    return sk, forest.probe_rows


def _logistic(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """LogisticRegression.predict_proba without sklearn's input validation (same operations)."""
    from scipy.special import expit
    from sklearn.utils.extmath import softmax

    coef_t = model.coef_.T
    intercept = model.intercept_
    binary = len(model.classes_) <= 2

    def lr(Z: np.ndarray) -> np.ndarray:
        scores = Z @ coef_t + intercept
        if binary:
            p = expit(scores.reshape(-1))
            return np.stack([1 - p, p], axis=1)
        return softmax(scores, copy=False)
    return lr


Blocks = dict[tuple, FeatureBlock]  # FeatureBlock.key -> the block: shared by the pipelines of one scorer


class Batch(NamedTuple):
    """Checked request records, as CompiledScorer.read hands them to predict_batch: `matrix` is the C record
    reader's (columns x rows) numbers and category codes, or None and `columns` holds the Python reader's
    column -> values."""

    rows: int
    matrix: np.ndarray | None
    columns: dict[str, Sequence[Any]] | None


class CompiledScorer(ABC):
    """The endpoint's scorer over a compiled OpmlClassifier; a subclass per estimator kind says how its
    members' probabilities combine (SingleScorer, VotingScorer, StackScorer). Built by compile_model.

    One row (the most common request) takes opml.serving.rowpath: plain Python floats and one C call
    through every member's trees, combined by the subclass's `combine_row`."""

    def __init__(self, model: Any, model_ref: str, columns: list[Column], example: dict[str, Any],
                 *, trees: bool = True) -> None:
        self.model_ref = model_ref
        self.columns = columns
        self.example = example
        self.classes = [str(c) for c in model.classes_]
        self._labels = np.asarray(self.classes, dtype=object)
        blocks: Blocks = {}
        members, what = self._compile(model.estimator_, blocks, trees)
        self._threshold, self._pos = decision_of(model)
        self._calibration = getattr(model, "calibration_", None)  # the model's own map (opml.automl.calibration)
        engines = sorted({m.engine for m in members})
        self.engines = [m.engine for m in members]
        self._blocks = list(blocks.values())
        self._reader, why = _reader(columns, self._blocks)
        self._index = self._reader.index if self._reader is not None else {}
        try:
            self._rows: RowPath | None = RowPath(members, getattr(model.estimator_, "members_", None)
                                                 or [model.estimator_])
        except CannotCompile:  # the C row kernel cannot be built: one row takes the array path
            self._rows = None
        batches = "C record reader" if self._reader is not None else f"Python record reader ({why})"
        c_off = next((b.c_why for b in self._blocks if b.c_spec is None), None)
        features = "C" if c_off is None else f"numpy ({c_off})"
        calibration = f"; calibration: {self._calibration['method']}" if self._calibration else ""
        self.inference = (f"compiled ({what}; models: {', '.join(engines)}; {len(blocks)} shared feature block(s); "
                          f"features: {features}; batches: {batches}{calibration})")

    @abstractmethod
    def _compile(self, inner: Any, blocks: Blocks, trees: bool) -> tuple[list[CompiledPipeline], str]:
        """Compile the fitted estimator's pipelines (sharing `blocks`) -> (members, what the inference line says)."""

    @abstractmethod
    def proba(self, cols: dict[str, Sequence[Any]] | None, n: int, memo: dict | None = None) -> np.ndarray:
        """Class probabilities of n rows (`memo`: the feature blocks already computed for this request)."""

    @abstractmethod
    def combine_row(self, probs: list[list[float]]) -> list[float]:
        """One row's class probabilities from its members' (floats, member order), as `proba` combines them."""

    def predict_proba(self, cols: dict[str, Sequence[Any]]) -> np.ndarray:
        n = len(next(iter(cols.values()))) if cols else 0
        if n == 1 and self._rows is not None:
            return self._one_row(None, cols)
        return calibrated(self.proba(cols, n), self._calibration, self._pos)

    def read(self, records: list[Any]) -> Batch:
        """Checked request records, ready for predict_batch (RequestError names a bad record)."""
        if self._reader is not None and len(records) > SMALL_BATCH:
            return Batch(len(records), self._reader.read(records), None)
        return Batch(len(records), None, columnar(records, self.columns))

    def read_json(self, raw: bytes) -> Batch | None:
        """A plain {"data": [...]} body read by the C reader straight into its matrix (no Python object per
        value); None for any other body, or without the C reader: the caller then parses it the usual way
        (orjson, parse, read), which names any problem."""
        if self._reader is None:
            return None
        matrix = self._reader.parse(raw)
        return None if matrix is None else Batch(matrix.shape[1], matrix, None)

    def predict_batch(self, batch: Batch) -> np.ndarray:
        matrix = batch.matrix
        if batch.rows == 1 and self._rows is not None:
            return self._one_row(matrix, batch.columns)
        if matrix is None:
            return calibrated(self.proba(batch.columns, batch.rows), self._calibration, self._pos)
        index = self._index  # the C reader's matrix: every block computed from it up front
        proba = self.proba(None, batch.rows, {id(b): b.from_matrix(matrix, index) for b in self._blocks})
        return calibrated(proba, self._calibration, self._pos)

    def _one_row(self, matrix: np.ndarray | None, cols: dict[str, Sequence[Any]] | None) -> np.ndarray:
        """Probabilities (1 x classes) of one row, from the C reader's matrix or the Python reader's columns,
        through the row path (no numpy step per member)."""
        rows = self._rows
        probs = None
        if matrix is not None:
            index = self._index
            probs = rows.matrix_probabilities(matrix, index)  # type: ignore[union-attr]  # featurized in C
            if probs is None:
                probs = rows.probabilities({id(b): b.from_matrix(matrix, index)  # type: ignore[union-attr]
                                            for b in self._blocks})
        else:
            probs = rows.probabilities({id(b): b.compute(cols, 1)  # type: ignore[union-attr,arg-type]
                                        for b in self._blocks})
        proba = np.array([self.combine_row(probs)])
        return calibrated(proba, self._calibration, self._pos)

    def labels(self, proba: np.ndarray) -> list[str]:
        if len(proba) == 1 and self._threshold is not None and proba.shape[1] == 2:  # decide() for one row
            pos = self._pos
            return [self.classes[pos if proba[0, pos] >= self._threshold else 1 - pos]]
        return self._labels[decide(proba, self._threshold, self._pos)].tolist()


class SingleScorer(CompiledScorer):
    """One CandidatePipeline."""

    def _compile(self, inner: Any, blocks: Blocks, trees: bool) -> tuple[list[CompiledPipeline], str]:
        self._pipeline = CompiledPipeline(inner, blocks, trees=trees)
        return [self._pipeline], inner.name

    def proba(self, cols: dict[str, Sequence[Any]] | None, n: int, memo: dict | None = None) -> np.ndarray:
        return self._pipeline.predict_proba(cols, n, memo)

    def combine_row(self, probs: list[list[float]]) -> list[float]:
        return probs[0]


class VotingScorer(CompiledScorer):
    """A VotingModel: the weighted sum of its members' probabilities, in member order."""

    def _compile(self, inner: Any, blocks: Blocks, trees: bool) -> tuple[list[CompiledPipeline], str]:
        members = [CompiledPipeline(m, blocks, trees=trees) for m in inner.members_]
        self._weights = [float(w) for w in inner.weights_]
        self._pairs = list(zip(self._weights, members, strict=True))
        return members, f"VotingEnsemble of {len(members)}"

    def proba(self, cols: dict[str, Sequence[Any]] | None, n: int, memo: dict | None = None) -> np.ndarray:
        memo = {} if memo is None else memo
        out = None
        for w, m in self._pairs:
            p = w * m.predict_proba(cols, n, memo)
            out = p if out is None else out + p
        return out

    def combine_row(self, probs: list[list[float]]) -> list[float]:
        return vote(probs, self._weights)


class StackScorer(CompiledScorer):
    """A StackModel: its meta-learner over the members' probabilities."""

    def _compile(self, inner: Any, blocks: Blocks, trees: bool) -> tuple[list[CompiledPipeline], str]:
        self._members = [CompiledPipeline(m, blocks, trees=trees) for m in inner.members_]
        self._coef, self._intercept = inner.coef_, inner.intercept_
        self._meta = (np.asarray(inner.coef_, dtype=np.float64).tolist(),
                      np.asarray(inner.intercept_, dtype=np.float64).tolist())
        return self._members, f"StackEnsemble of {len(self._members)}"

    def proba(self, cols: dict[str, Sequence[Any]] | None, n: int, memo: dict | None = None) -> np.ndarray:
        memo = {} if memo is None else memo
        features = _stack_features([m.predict_proba(cols, n, memo) for m in self._members])
        return meta_proba(features, self._coef, self._intercept)

    def combine_row(self, probs: list[list[float]]) -> list[float]:
        return stack(probs, *self._meta)


def _reader(columns: list[Column], blocks: list[FeatureBlock]) -> tuple[Any, str]:
    """(RecordReader, "") when every feature block codes categories the same way, else (None, why)."""
    lookups: dict[str, dict[str, int]] = {}
    for block in blocks:
        for c, table in block.lookup.items():
            if lookups.setdefault(c, table) != table:
                return None, f"feature blocks code {c!r} differently"
    try:
        from opml.serving.reader import RecordReader

        return RecordReader(columns, lookups), ""
    except CannotCompile as why:
        return None, str(why)


_SCORERS: tuple[tuple[type, type[CompiledScorer]], ...] = (
    (CandidatePipeline, SingleScorer), (VotingModel, VotingScorer), (StackModel, StackScorer))


def compile_model(model: Any, model_ref: str, columns: list[Column], example: dict[str, Any], *,
                  trees: bool = True) -> CompiledScorer:
    """The compiled scorer for the model's estimator kind; `trees=False` keeps the libraries' own tree predict
    (for comparison). CannotCompile says why when the model cannot take the compiled path."""
    if not hasattr(model, "estimator_"):
        raise CannotCompile(f"{type(model).__name__} is not an opml AutoML model")
    inner = model.estimator_
    for kind, scorer in _SCORERS:
        if isinstance(inner, kind):
            return scorer(model, model_ref, columns, example, trees=trees)
    raise CannotCompile(f"estimator {type(inner).__name__} is not compiled")
