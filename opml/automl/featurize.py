"""Featurization: a raw pandas frame -> a numeric matrix, as an sklearn transformer.

Steps (featurization "auto"): numeric columns are median-imputed (plus a missing-indicator column
for each column that had gaps at fit time); categorical columns are encoded as frequency-ordered
ordinal codes (tree models) or one-hot (linear models); unseen or missing categories map to a
code of their own (NaN or -1) or to an all-zero one-hot row, never to an error. Optionally,
"repeated-value" numeric columns (non-integer values, few distinct levels: shared context such as
a daily rate) get frequency encodings, one per column and one for their joint combination.
Finally a scaler (named as Azure names them) is applied to every non-code column.

Featurization "off": numeric columns only, median-imputed and scaled; anything else is a DataError.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from opml.automl.columns import infer_kinds, to_categorical, to_numeric
from opml.errors import DataError

SCALERS: tuple[str, ...] = (
    "MaxAbsScaler",
    "StandardScalerWrapper",
    "MinMaxScaler",
    "RobustScaler",
    "SparseNormalizer",
)
FREQ_MAX_LEVEL_SHARE = 0.05  # a repeated-value column has at most this many levels per row
FREQ_MAX_COLUMNS = 12


def make_scaler(name: str | None) -> Any:
    """The sklearn object behind an Azure scaler name (None: no scaling)."""
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, Normalizer, RobustScaler, StandardScaler

    table = {
        "MaxAbsScaler": MaxAbsScaler,
        "StandardScalerWrapper": StandardScaler,
        "MinMaxScaler": MinMaxScaler,
        "RobustScaler": RobustScaler,
        "SparseNormalizer": Normalizer,
    }
    if name is None:
        return None
    if name not in table:
        raise ValueError(f"unknown scaler {name!r}; known: {', '.join(table)}")
    return table[name]()


def check_columns(X: pd.DataFrame, expected: Any) -> None:
    """DataError naming every expected column that `X` lacks."""
    if not isinstance(X, pd.DataFrame):
        raise DataError(
            f"expected a pandas DataFrame of the feature columns, got {type(X).__name__}",
            "pass a DataFrame with the training columns",
        )
    missing = [str(c) for c in expected if c not in X.columns]
    if missing:
        raise DataError(
            f"missing feature column(s): {', '.join(missing)}", "send every column the model was trained on"
        )


def level_codes(col: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of each value among the sorted fitted `values` (len(values) when unseen or missing)."""
    pos = np.searchsorted(values, col)
    np.minimum(pos, len(values) - 1, out=pos)  # (searchsorted is never negative; .clip costs more per call)
    return np.where(values[pos] == col, pos, len(values))


def onehot(codes: np.ndarray, n_levels: int, max_onehot: int) -> np.ndarray:
    """One-hot rows for category codes (-1: unseen or missing -> all zeros); levels past max_onehot share a column."""
    k = min(n_levels, max_onehot)
    width = k + (1 if n_levels > max_onehot else 0)
    out = np.zeros((len(codes), width))
    rows = np.flatnonzero((codes >= 0) & (codes < k))
    out[rows, codes[rows]] = 1.0
    if width > k:
        out[codes >= k, k] = 1.0
    return out


class Featurizer(TransformerMixin, BaseEstimator):
    """Raw DataFrame -> float64 matrix. Fitted state ends in `_`; see the module docstring."""

    def __init__(
        self,
        *,
        kinds: dict[str, str] | None = None,
        mode: str = "auto",
        encoding: str = "ordinal",
        unknown: str = "nan",
        frequency: bool = True,
        scaler: str | None = "MaxAbsScaler",
        max_onehot: int = 50,
    ) -> None:
        self.kinds = kinds
        self.mode = mode  # auto | off
        self.encoding = encoding  # ordinal | onehot
        self.unknown = unknown  # ordinal codes of unseen/missing levels: nan | code (-1)
        self.frequency = frequency
        self.scaler = scaler
        self.max_onehot = max_onehot

    # ---- fit -------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None) -> Featurizer:
        check_columns(X, list(X.columns) if isinstance(X, pd.DataFrame) else [])
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        kinds = dict(self.kinds) if self.kinds is not None else infer_kinds(X)
        self.kinds_ = {str(c): kinds.get(c, kinds.get(str(c), "categorical")) for c in X.columns}
        self.numeric_ = [c for c in self.feature_names_in_ if self.kinds_[c] == "numeric"]
        self.categorical_ = [c for c in self.feature_names_in_ if self.kinds_[c] != "numeric"]
        if self.mode == "off" and self.categorical_:
            raise DataError(
                f"featurization is off but column(s) {', '.join(self.categorical_[:10])} are not numeric",
                "set featurization: auto",
            )
        num = self._numeric_block(X)
        with np.errstate(all="ignore"):
            med = np.nanmedian(num, axis=0) if num.shape[1] else np.zeros(0)
        self.medians_ = np.where(np.isnan(med), 0.0, med)
        self.indicators_ = [c for i, c in enumerate(self.numeric_) if np.isnan(num[:, i]).any()]
        self.categories_: dict[str, list[str]] = {}
        for c in self.categorical_:
            counts = to_categorical(X[c]).value_counts(dropna=True)
            order = sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))
            self.categories_[c] = [str(k) for k, _ in order]
        self._fit_frequency(num)
        dense = self._dense_block(X, num)
        self.scaler_ = make_scaler(self.scaler)
        if self.scaler_ is not None and dense.shape[1]:
            dense = self.scaler_.fit(dense).transform(dense)
        self._describe_output()
        std = np.full(len(self.feature_names_out_), np.nan)
        std[: dense.shape[1]] = dense.std(axis=0) if len(dense) else 0.0
        self.output_std_ = std  # spread of each output column on the fit data (NaN for codes)
        return self

    def _fit_frequency(self, num: np.ndarray) -> None:
        self.freq_columns_: list[str] = []
        self.freq_tables_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.joint_freq_: tuple[np.ndarray, np.ndarray, list[int]] | None = None
        if self.mode == "off" or not self.frequency or num.shape[0] == 0:
            return
        n = num.shape[0]
        for i, c in enumerate(self.numeric_):
            col = num[:, i]
            col = col[~np.isnan(col)]
            values, counts = np.unique(col, return_counts=True)
            repeated = 2 <= len(values) <= max(2, FREQ_MAX_LEVEL_SHARE * n)
            if repeated and np.any(values != np.round(values)):
                self.freq_columns_.append(c)
                self.freq_tables_[c] = (values, counts / n)
        self.freq_columns_ = self.freq_columns_[:FREQ_MAX_COLUMNS]
        if len(self.freq_columns_) >= 2:
            radices = [len(self.freq_tables_[c][0]) + 1 for c in self.freq_columns_]
            if float(np.prod(np.asarray(radices, dtype=float))) < 2.0**62:
                keys = self._joint_keys(num, radices)
                uniq, counts = np.unique(keys, return_counts=True)
                self.joint_freq_ = (uniq, counts / n, radices)

    def _level_codes(self, num: np.ndarray, c: str) -> np.ndarray:
        return level_codes(num[:, self.numeric_.index(c)], self.freq_tables_[c][0])

    def _joint_keys(self, num: np.ndarray, radices: list[int]) -> np.ndarray:
        key = np.zeros(num.shape[0], dtype=np.int64)
        for c, r in zip(self.freq_columns_, radices, strict=True):
            key = key * r + self._level_codes(num, c)
        return key

    def _describe_output(self) -> None:
        names: list[str] = []
        sources: list[tuple[str, ...]] = []
        for c in self.numeric_:
            names.append(c)
            sources.append((c,))
        for c in self.indicators_:
            names.append(f"{c}__missing")
            sources.append((c,))
        for c in self.freq_columns_:
            names.append(f"{c}__freq")
            sources.append((c,))
        if self.joint_freq_ is not None:
            names.append("__joint_freq")
            sources.append(tuple(self.freq_columns_))
        n_dense = len(names)
        cat_idx: list[int] = []
        for c in self.categorical_:
            if self.encoding == "onehot":
                for level in self.categories_[c][: self.max_onehot]:
                    names.append(f"{c}={level}")
                    sources.append((c,))
                if len(self.categories_[c]) > self.max_onehot:
                    names.append(f"{c}=__other")
                    sources.append((c,))
            else:
                cat_idx.append(len(names))
                names.append(c)
                sources.append((c,))
        if self.encoding == "onehot":
            n_dense = len(names)
        self.n_dense_ = n_dense
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_sources_ = sources
        self.categorical_indices_ = cat_idx

    # ---- transform ---------------------------------------------------------------------------
    def _numeric_block(self, X: pd.DataFrame) -> np.ndarray:
        if not self.numeric_:
            return np.zeros((len(X), 0))
        cols = [to_numeric(X[c], c).to_numpy(dtype=np.float64, na_value=np.nan) for c in self.numeric_]
        return np.column_stack(cols)

    def _dense_block(self, X: pd.DataFrame, num: np.ndarray) -> np.ndarray:
        parts = [np.where(np.isnan(num), self.medians_, num)] if num.shape[1] else []
        for c in self.indicators_:
            parts.append(np.isnan(num[:, self.numeric_.index(c)]).astype(np.float64)[:, None])
        for c in self.freq_columns_:
            freq = np.append(self.freq_tables_[c][1], 0.0)
            parts.append(freq[self._level_codes(num, c)][:, None])
        if self.joint_freq_ is not None:
            uniq, freq, radices = self.joint_freq_
            keys = self._joint_keys(num, radices)
            pos = np.searchsorted(uniq, keys).clip(0, len(uniq) - 1)
            parts.append(np.where(uniq[pos] == keys, freq[pos], 0.0)[:, None])
        if self.encoding == "onehot":
            for c in self.categorical_:
                parts.append(self._onehot(X[c], c))
        return np.hstack(parts) if parts else np.zeros((len(X), 0))

    def _codes(self, s: pd.Series, c: str) -> np.ndarray:
        return pd.Index(self.categories_[c]).get_indexer(to_categorical(s))

    def _onehot(self, s: pd.Series, c: str) -> np.ndarray:
        return onehot(self._codes(s, c), len(self.categories_[c]), self.max_onehot)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Numeric matrix with columns `feature_names_out_`."""
        check_columns(X, self.feature_names_in_)
        num = self._numeric_block(X)
        dense = self._dense_block(X, num)
        if self.scaler_ is not None and dense.shape[1]:
            dense = self.scaler_.transform(dense)
        parts = [dense]
        if self.encoding != "onehot":
            for c in self.categorical_:
                codes = self._codes(X[c], c).astype(np.float64)
                if self.unknown == "nan":
                    codes[codes < 0] = np.nan
                parts.append(codes[:, None])
        return np.hstack(parts) if len(parts) > 1 else np.asarray(dense, dtype=np.float64)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_out_

    def example_row(self) -> dict[str, Any]:
        """A typical input record: medians of numeric columns, most frequent level of categorical ones."""
        row: dict[str, Any] = {}
        for i, c in enumerate(self.numeric_):
            row[c] = float(self.medians_[i])
        for c in self.categorical_:
            row[c] = self.categories_[c][0] if self.categories_[c] else None
        return {c: row[c] for c in self.feature_names_in_}
