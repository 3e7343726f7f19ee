"""The record reader's matrix straight into a model's feature matrix in one C pass (opml/serving/csrc/featurize.c).

For a 100-row request this replaces some forty numpy calls (where, isnan, searchsorted per frequency table,
the joint key, one-hot blocks, the scaler, the code columns) with one ctypes call. The C does the float64
operations of opml.serving.compiled.FeatureBlock._assemble and CompiledFeaturizer.transform in the same order,
so the features are the same doubles. `block_spec` describes a FeatureBlock's fitted state (CannotCompile when
the C cannot express it: a frequency table that is not sorted, distinct, finite float64 values, or more numeric
or frequency columns than the C keeps per row); `CFeaturizer` adds a featurizer's scaler when it is a
per-column affine map (MaxAbsScaler, StandardScaler, RobustScaler, MinMaxScaler without clip). A row-wise
scaler (Normalizer) is applied by the caller with numpy on the unscaled features the C writes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any

import numpy as np

from opml.serving.cbuild import CannotCompile, Library, address, build, source

MAX_NUMERIC = 256  # the C keeps one row's numbers on the stack
MAX_FREQ = 64

# scale ops of opml_featurize: none, x / a, x - a, (x - a) / b, x * a + b (two roundings)
SCALE_NONE, SCALE_DIV, SCALE_SUB, SCALE_SUB_DIV, SCALE_MUL_ADD = range(5)


def _load() -> Any:
    target = build("featurize", source("featurize.c"), what="featurizer")
    try:
        fn = ctypes.PyDLL(str(target)).opml_featurize  # PyDLL: no GIL release around a call of microseconds
    except (OSError, AttributeError) as exc:
        raise CannotCompile(f"cannot load the featurizer: {exc}") from exc
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = None
    return fn


_library = Library(_load)


def library() -> Any:
    """opml_featurize (built on first use, cached on disk); CannotCompile with the reason when impossible."""
    return _library.get()


class _Spec(ctypes.Structure):
    _fields_ = [("nn", ctypes.c_int32), ("median", ctypes.c_void_p), ("n_ind", ctypes.c_int32),
                ("ind", ctypes.c_void_p), ("n_freq", ctypes.c_int32), ("freq_num", ctypes.c_void_p),
                ("freq_off", ctypes.c_void_p), ("freq_value", ctypes.c_void_p), ("freq_share", ctypes.c_void_p),
                ("joint", ctypes.c_int32), ("radix", ctypes.c_void_p), ("n_uniq", ctypes.c_int64),
                ("uniq", ctypes.c_void_p), ("joint_share", ctypes.c_void_p), ("nc", ctypes.c_int32),
                ("onehot", ctypes.c_int32), ("levels", ctypes.c_void_p), ("max_onehot", ctypes.c_int64),
                ("unknown_nan", ctypes.c_int32), ("n_dense", ctypes.c_int32), ("width", ctypes.c_int32),
                ("scale_op", ctypes.c_int32), ("scale_a", ctypes.c_void_p), ("scale_b", ctypes.c_void_p)]


def _array(values: Any, dtype: Any) -> np.ndarray:
    a = np.ascontiguousarray(values, dtype=dtype)
    return a if a.size else np.zeros(1, dtype=dtype)  # a valid pointer even when empty


def block_spec(block: Any) -> dict[str, Any]:
    """The C's arrays for a FeatureBlock's fitted state (numeric, medians, indicators, freq, joint, categorical,
    n_levels, onehot, max_onehot, n_dense); CannotCompile when the C cannot express it."""
    try:
        return _block_spec(block)
    except (TypeError, ValueError, OverflowError) as exc:  # fitted state of an unexpected type
        raise CannotCompile(f"the C featurizer cannot read the fitted state: {exc}") from exc


def _block_spec(block: Any) -> dict[str, Any]:
    nn = len(block.numeric)
    if nn > MAX_NUMERIC or len(block.freq) > MAX_FREQ:
        raise CannotCompile(f"{nn} numeric and {len(block.freq)} frequency columns: over the C featurizer's limits")
    values, shares, off = [], [], [0]
    for _, table, share in block.freq:
        table = np.asarray(table)
        as_float = table.astype(np.float64)
        if (table.ndim != 1 or not len(table) or not np.all(np.isfinite(as_float))
                or not np.array_equal(as_float, table) or not np.all(as_float[:-1] < as_float[1:])):
            raise CannotCompile("a frequency table that is not sorted, distinct, finite numbers")
        values.append(as_float)
        shares.append(np.asarray(share[:-1], dtype=np.float64))
        off.append(off[-1] + len(table))
    spec: dict[str, Any] = {
        "nn": nn, "median": _array(block.medians, np.float64),
        "n_ind": len(block.indicators), "ind": _array(block.indicators, np.int32),
        "n_freq": len(block.freq), "freq_num": _array([i for i, _, _ in block.freq], np.int32),
        "freq_off": _array(off, np.int32),
        "freq_value": _array(np.concatenate(values) if values else [], np.float64),
        "freq_share": _array(np.concatenate(shares) if shares else [], np.float64),
        "joint": 0, "radix": _array([], np.int64), "n_uniq": 0, "uniq": _array([], np.int64),
        "joint_share": _array([], np.float64),
        "nc": len(block.categorical), "onehot": int(block.onehot),
        "levels": _array([block.n_levels[c] for c in block.categorical], np.int64),
        "max_onehot": int(block.max_onehot), "n_dense": int(block.n_dense),
    }
    if block.joint is not None:
        uniq, share, radices = block.joint
        if uniq.dtype != np.int64 or not np.all(uniq[:-1] < uniq[1:]) or len(uniq) < 1:
            raise CannotCompile("a joint frequency table that is not sorted, distinct int64 keys")
        spec.update(joint=1, radix=_array(radices, np.int64), n_uniq=len(uniq), uniq=_array(uniq, np.int64),
                    joint_share=_array(share, np.float64))
    return spec


class CFeaturizer:
    """`(M, index)` -> the (rows x width) feature matrix from a record-reader matrix M (columns x rows, unit
    stride along rows) whose column names `index` maps to its rows. `scale`: (op, a, b) of the featurizer's
    per-column affine scaler (SCALE_*), or SCALE_NONE for none or one the caller applies."""

    def __init__(self, spec: Mapping[str, Any], numeric: list[str], categorical: list[str], *, width: int,
                 unknown_nan: bool, scale: tuple[int, Any, Any]) -> None:
        self._fn = library()
        op, a, b = scale
        n_dense = int(spec["n_dense"])
        self._keep = dict(spec) | {"scale_a": _array(a if a is not None else [], np.float64),
                                   "scale_b": _array(b if b is not None else [], np.float64)}
        for name in ("scale_a", "scale_b"):
            used = (name == "scale_a" and op != SCALE_NONE) or (name == "scale_b" and op in (SCALE_SUB_DIV,
                                                                                            SCALE_MUL_ADD))
            if used and self._keep[name].shape != (n_dense,):
                raise CannotCompile(f"scaler statistics of shape {self._keep[name].shape}, not ({n_dense},)")
        fields = {name: (v.ctypes.data if isinstance(v, np.ndarray) else v) for name, v in self._keep.items()}
        self._spec = _Spec(**fields, unknown_nan=int(unknown_nan), width=int(width), scale_op=int(op))
        self._ptr = ctypes.addressof(self._spec)
        self.width = int(width)
        self._names = (list(numeric), list(categorical))
        self._index: Mapping[str, int] | None = None
        self._rows: tuple[int, int, int, tuple[np.ndarray, np.ndarray]] | None = None

    def __call__(self, M: np.ndarray, index: Mapping[str, int]) -> np.ndarray:
        num_ptr, cat_ptr, top = self.columns(index)
        if M.ndim != 2 or top >= M.shape[0]:
            raise ValueError(f"a record matrix of shape {M.shape} lacks the featurizer's columns")
        if M.dtype != np.float64 or M.strides[1] != 8 or M.strides[0] % 8:
            M = np.ascontiguousarray(M, dtype=np.float64)
        n = M.shape[1]
        Z = np.empty((n, self.width))
        self._fn(self._ptr, address(M), M.strides[0] // 8, n, num_ptr, cat_ptr, address(Z))
        return Z

    def columns(self, index: Mapping[str, int]) -> tuple[int, int, int]:
        """(numeric rows, categorical rows, highest row) of the matrix under `index`: the C's row arrays (kept
        while `index` is the one last seen: the reader's index, the same dict on every request)."""
        if index is not self._index:
            numeric, categorical = self._names
            num, cat = _array([index[c] for c in numeric], np.int32), _array([index[c] for c in categorical],
                                                                              np.int32)
            top = max([-1, *num.tolist()[: len(numeric)], *cat.tolist()[: len(categorical)]])
            self._rows = (num.ctypes.data, cat.ctypes.data, top, (num, cat))
            self._index = index
        return self._rows[:3]  # type: ignore[index]

    def call(self) -> tuple[Any, int]:
        """(opml_featurize, this featurizer's spec pointer): for a caller that writes one row straight into its
        own buffer: fn(spec, M, M's row stride in doubles, 1, *columns(index)[:2], out)."""
        return self._fn, self._ptr
