"""Tree ensembles (LightGBM, XGBoost, sklearn forests) flattened into node tables and walked by one small C kernel.

The kernel (`_KERNEL` below) is generic: it knows nothing about a particular model, so it is compiled
once per machine with gcc (cached by the hash of its source) and every model is just arrays handed to
it. Each library's exact decision rule is reproduced per forest ("mode"):

- LightGBM: double feature vs double threshold, `x <= t` goes left; NaN goes to the default side
  (missing type NaN) or is read as 0.0 (missing type None); categorical splits send the category
  (`(int)x`, NaN/negative -> right) left when its bit is set; leaf values summed in double in tree order.
- XGBoost: `(float)x < (float)t` goes left; NaN -> default side; categorical splits send a category in
  the set right, any other (or an invalid one) left; margins summed in float32 in tree order.
- sklearn trees: `(double)(float)x <= t` goes left (sklearn predicts on float32 input); NaN follows
  `missing_go_to_left`; each tree's leaf holds its normalised class distribution, summed in double.

Anything else (dart boosters, linear trees, LightGBM zero-as-missing, unknown objectives) raises
NotImplementedError and the caller keeps the library's own predict. No compiler: `kernel()` raises
NotImplementedError too (with the reason).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

MODE_LGBM, MODE_SKLEARN, MODE_XGB = 0, 1, 2
F_NAN_LEFT, F_CAT, F_CAT_INVERT = 1, 2, 4

_KERNEL = r"""
#include <stdint.h>
#include <math.h>

/* ---- any forest: one (tree, row) at a time down the node table ---- */
typedef struct { double thr; int32_t feat, left, right, flags, cat_off, cat_len; } node_t;
typedef struct {
    const node_t *nodes;
    const int32_t *roots;     /* per tree: node index, or ~leaf when the tree is a single leaf */
    const int32_t *group;     /* per tree: the output column it adds to */
    const uint32_t *cats;     /* category bitsets */
    const double *leaves;     /* per leaf: `width` values */
    int32_t n_trees, width, n_out, mode;
} forest_t;
static inline int in_set(const forest_t *f, const node_t *nd, int32_t c) {
    if (c < 0 || (c >> 5) >= nd->cat_len) return 0;
    return (f->cats[nd->cat_off + (c >> 5)] >> (c & 31)) & 1u;
}
static inline int32_t leaf_of(const forest_t *f, const double *x, int32_t nd, const int mode) {
    const node_t *nodes = f->nodes;
    while (nd >= 0) {
        const node_t *n = nodes + nd;
        double v = x[n->feat];
        int left;
        if (v != v) left = n->flags & 1;
        else if (n->flags & 2) {
            int32_t c;
            if (mode == 2) {
                float fv = (float)v;
                c = (fv < 0.0f || fv >= 2147483520.0f) ? -1 : (int32_t)fv;
            } else {
                c = (v <= -2147483648.0 || v >= 2147483648.0) ? -1 : (int32_t)v;
            }
            left = in_set(f, n, c) ^ ((n->flags >> 2) & 1);
        } else if (mode == 0) left = v <= n->thr;
        else if (mode == 1) left = (double)(float)v <= n->thr;
        else left = (float)v < (float)n->thr;
        nd = left ? n->left : n->right;
    }
    return ~nd;
}
void opml_forest_predict(const forest_t *f, const double *X, int64_t n, int64_t stride, double *out) {
    const int32_t w = f->width, n_out = f->n_out;
    for (int32_t t = 0; t < f->n_trees; ++t) {
        const int32_t root = f->roots[t], g = f->group[t];
        for (int64_t i = 0; i < n; ++i) {
            const double *x = X + i * stride;
            int32_t lf = f->mode == 0 ? leaf_of(f, x, root, 0)
                       : f->mode == 1 ? leaf_of(f, x, root, 1) : leaf_of(f, x, root, 2);
            const double *leaf = f->leaves + (int64_t)lf * w;
            double *o = out + i * n_out + g;
            if (f->mode == 2) { for (int32_t k = 0; k < w; ++k) o[k] = (double)((float)o[k] + (float)leaf[k]); }
            else { for (int32_t k = 0; k < w; ++k) o[k] += leaf[k]; }
        }
    }
}

/* ---- boosted trees of at most 64 leaves: QuickScorer-style leaf bitmasks, rows side by side ----
   Every internal node is evaluated for a block of rows (no data-dependent branches, so the row loop
   vectorises); a node whose test fails clears the bits of the leaves of its left subtree; the exit
   leaf is the lowest bit left (leaves are numbered left to right). */
typedef struct {
    const int32_t *feat, *kind, *cat_off, *cat_len, *node_start, *leaf_start, *group;
    const double *thr, *leaves;
    const uint64_t *mask, *bits;
    const uint32_t *cats;
    int32_t n_trees, width, n_out, mode;
} qs_t;

#define QB 128
/* kind bits: 1 NaN goes left, 2 categorical, 4 categories in the set go right (XGBoost), 8 wide set */

#define QS_BLOCK(NAME, MODE)                                                                        \
static void NAME(const qs_t *f, const double *XT, int64_t n, int64_t r0, int nb, double *out) {     \
    uint64_t m[QB];                                                                                 \
    for (int32_t t = 0; t < f->n_trees; ++t) {                                                      \
        for (int r = 0; r < nb; ++r) m[r] = ~0ull;                                                  \
        for (int32_t j = f->node_start[t]; j < f->node_start[t + 1]; ++j) {                         \
            const double *col = XT + (int64_t)f->feat[j] * n + r0;                                  \
            const uint64_t mk = f->mask[j];                                                         \
            const int k = f->kind[j];                                                               \
            const uint64_t nan_keep = (k & 1) ? ~0ull : mk;                                         \
            if (!(k & 2)) {                                                                         \
                const double th = f->thr[j];                                                        \
                const float thf = (float)th;                                                        \
                if (k & 1) {                                                                        \
                    for (int r = 0; r < nb; ++r) {                                                  \
                        const double v = col[r];                                                    \
                        int right = (MODE == 2) ? ((float)v >= thf) : (v > th);                     \
                        m[r] &= right ? mk : ~0ull;                                                 \
                    }                                                                               \
                } else {                                                                            \
                    for (int r = 0; r < nb; ++r) {                                                  \
                        const double v = col[r];                                                    \
                        int left = (MODE == 2) ? ((float)v < thf) : (v <= th);                      \
                        m[r] &= left ? ~0ull : mk;                                                  \
                    }                                                                               \
                }                                                                                   \
            } else if (!(k & 8)) {                                                                  \
                const uint64_t bits = f->bits[j];                                                   \
                const int inv = (k >> 2) & 1;                                                       \
                for (int r = 0; r < nb; ++r) {                                                      \
                    const double v = col[r];                                                        \
                    double w;                                                                       \
                    if (MODE == 2) { float fv = (float)v; w = (v != v || fv < 0.0f) ? -1.0 : (double)fv; } \
                    else w = (v != v) ? -1.0 : v;                                                   \
                    w = w < -1.0 ? -1.0 : (w > 64.0 ? 64.0 : w);                                    \
                    const int32_t c = (int32_t)w;                                                   \
                    const uint64_t ins = (c >= 0 && c < 64) ? ((bits >> (c & 63)) & 1ull) : 0ull;   \
                    uint64_t keep = ((int)ins ^ inv) ? ~0ull : mk;                                  \
                    m[r] &= (v != v) ? nan_keep : keep;                                             \
                }                                                                                   \
            } else {                                                                                \
                node_t nd = {0.0, 0, 0, 0, k & 7, f->cat_off[j], f->cat_len[j]};                    \
                forest_t shim = {0, 0, 0, f->cats, 0, 0, 0, 0, MODE};                               \
                for (int r = 0; r < nb; ++r) {                                                      \
                    const double v = col[r];                                                        \
                    int left;                                                                       \
                    if (v != v) left = k & 1;                                                       \
                    else {                                                                          \
                        int32_t c;                                                                  \
                        const float fv = (float)v;                                                  \
                        if (MODE == 2) c = (fv < 0.0f || fv >= 2147483520.0f) ? -1 : (int32_t)fv;   \
                        else c = (v <= -2147483648.0 || v >= 2147483648.0) ? -1 : (int32_t)v;     \
                        left = in_set(&shim, &nd, c) ^ ((k >> 2) & 1);                              \
                    }                                                                               \
                    m[r] &= left ? ~0ull : mk;                                                      \
                }                                                                                   \
            }                                                                                       \
        }                                                                                           \
        const int32_t g = f->group[t], l0 = f->leaf_start[t], w = f->width, n_out = f->n_out;      \
        for (int r = 0; r < nb; ++r) {                                                              \
            const double *lv = f->leaves + (int64_t)(l0 + __builtin_ctzll(m[r])) * w;              \
            double *o = out + (r0 + r) * n_out + g;                                                 \
            if (MODE == 2) { for (int32_t q = 0; q < w; ++q) o[q] = (double)((float)o[q] + (float)lv[q]); } \
            else { for (int32_t q = 0; q < w; ++q) o[q] += lv[q]; }                                 \
        }                                                                                           \
    }                                                                                               \
}
QS_BLOCK(qs_lgbm, 0)
QS_BLOCK(qs_xgb, 2)

/* XT: the feature matrix transposed (n_features x n, C order). */
void opml_forest_predict_qs(const qs_t *f, const double *XT, int64_t n, double *out) {
    for (int64_t r0 = 0; r0 < n; r0 += QB) {
        int nb = (int)(n - r0 < QB ? n - r0 : QB);
        if (f->mode == 2) qs_xgb(f, XT, n, r0, nb, out);
        else qs_lgbm(f, XT, n, r0, nb, out);
    }
}
"""

_NODE = np.dtype([("thr", "<f8"), ("feat", "<i4"), ("left", "<i4"), ("right", "<i4"), ("flags", "<i4"),
                  ("cat_off", "<i4"), ("cat_len", "<i4")])


class _QS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("feat", "kind", "cat_off", "cat_len", "node_start", "leaf_start",
                                                     "group", "thr", "leaves", "mask", "bits", "cats")] + \
               [("n_trees", ctypes.c_int32), ("width", ctypes.c_int32), ("n_out", ctypes.c_int32),
                ("mode", ctypes.c_int32)]


QS_MIN_ROWS = 8  # from this many rows on, boosted forests use the bitmask kernel (the walker below it)


class _Forest(ctypes.Structure):
    _fields_ = [("nodes", ctypes.c_void_p), ("roots", ctypes.c_void_p), ("group", ctypes.c_void_p),
                ("cats", ctypes.c_void_p), ("leaves", ctypes.c_void_p), ("n_trees", ctypes.c_int32),
                ("width", ctypes.c_int32), ("n_out", ctypes.c_int32), ("mode", ctypes.c_int32)]


# ---- the compiled kernel ------------------------------------------------------------------------------
_lock = threading.Lock()
_lib: Any = None
_lib_error: str | None = None


def cache_dir() -> Path:
    base = os.environ.get("OPML_KERNEL_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opml" / "kernels"


def kernel() -> Any:
    """The loaded C kernel (compiled on first use, then cached on disk); NotImplementedError when impossible."""
    global _lib, _lib_error
    with _lock:
        if _lib is None and _lib_error is None:
            try:
                _lib = _load()
            except NotImplementedError as why:
                _lib_error = str(why)
        if _lib is None:
            raise NotImplementedError(_lib_error)
        return _lib


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return ""


# No -ffast-math: comparisons and sums must stay IEEE-exact (and no FMA contraction either).
_FLAGS = (["-O3", "-march=native", "-ffp-contract=off"], ["-O2", "-ffp-contract=off"])


def _load() -> Any:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if os.environ.get("OPML_NO_CC"):
        cc = None
    # the cache key covers the source, the compiler and this CPU (-march=native code is CPU-specific)
    digest = hashlib.sha256("\0".join([_KERNEL, str(cc), _cpu_flags(), repr(_FLAGS)]).encode()).hexdigest()[:16]
    target = cache_dir() / f"forest-{digest}.so"
    if not target.is_file():
        if cc is None:
            raise NotImplementedError("no C compiler (gcc) to build the tree kernel")
        errors = []
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp, "forest.c")
                src.write_text(_KERNEL)
                so = Path(tmp, "forest.so")
                for flags in _FLAGS:
                    done = subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", str(so), str(src)],
                                          capture_output=True, text=True, timeout=120)
                    if done.returncode == 0:
                        break
                    errors.append(done.stderr.strip()[:300])
                else:
                    raise NotImplementedError(f"{cc} failed to build the tree kernel: {errors[-1]}")
                os.replace(so, target)  # atomic: concurrent workers see a whole file or none
        except (OSError, subprocess.SubprocessError) as exc:
            raise NotImplementedError(f"cannot build the tree kernel: {exc}") from exc
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise NotImplementedError(f"cannot load the tree kernel: {exc}") from exc
    walk = lib.opml_forest_predict
    walk.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    walk.restype = None
    qs = lib.opml_forest_predict_qs
    qs.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    qs.restype = None
    return walk, qs


# ---- flattening -----------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, width: int) -> None:
        self.width = width
        self.nodes: list[tuple] = []
        self.cats: list[int] = []
        self.leaves: list[Any] = []
        self.roots: list[int] = []
        self.group: list[int] = []

    def leaf(self, values: Any) -> int:
        self.leaves.append(values)
        return ~(len(self.leaves) - 1)

    def node(self) -> int:
        self.nodes.append(None)
        return len(self.nodes) - 1

    def bitset(self, categories: list[int]) -> tuple[int, int]:
        if not categories:
            return len(self.cats), 0
        if min(categories) < 0 or max(categories) >= 1 << 20:
            raise NotImplementedError("categorical split over an out-of-range category")
        words = [0] * (max(categories) // 32 + 1)
        for c in categories:
            words[c // 32] |= 1 << (c % 32)
        off = len(self.cats)
        self.cats.extend(words)
        return off, len(words)


class CompiledForest:
    """Raw sums of a flattened forest: `margins(Z)` -> (n, n_out) float64 (init values + tree outputs)."""

    def __init__(self, b: _Builder, n_out: int, mode: int, init: np.ndarray, n_features: int) -> None:
        self._fn, self._qs_fn = kernel()
        self.n_features = n_features
        self.nodes = np.zeros(len(b.nodes) + 1, dtype=_NODE)  # + a dummy node idle lanes read
        if b.nodes:
            self.nodes[: len(b.nodes)] = b.nodes
        self.roots = np.asarray(b.roots, dtype=np.int32)
        self.group = np.asarray(b.group, dtype=np.int32)
        self.cats = np.asarray(b.cats or [0], dtype=np.uint32)
        self.leaves = np.ascontiguousarray(np.asarray(b.leaves, dtype=np.float64).reshape(len(b.leaves), b.width))
        self.init = np.asarray(init, dtype=np.float64).reshape(n_out)
        self._struct = _Forest(self.nodes.ctypes.data, self.roots.ctypes.data, self.group.ctypes.data,
                               self.cats.ctypes.data, self.leaves.ctypes.data, len(self.roots), b.width, n_out, mode)
        self._ptr = ctypes.addressof(self._struct)
        self.n_trees = len(self.roots)
        self._qs = _bitmask_tables(b, n_out, mode) if mode in (MODE_LGBM, MODE_XGB) else None
        self._qs_ptr = ctypes.addressof(self._qs[0]) if self._qs is not None else None  # _qs[1] keeps arrays alive

    def margins(self, Z: np.ndarray) -> np.ndarray:
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {Z.shape}")
        n = Z.shape[0]
        out = np.empty((n, len(self.init)))
        out[:] = self.init
        if self._qs_ptr is not None and n >= QS_MIN_ROWS:
            XT = np.ascontiguousarray(Z.T)
            self._qs_fn(self._qs_ptr, XT.ctypes.data, n, out.ctypes.data)
        else:
            self._fn(self._ptr, Z.ctypes.data, n, Z.shape[1], out.ctypes.data)
        return out


def _bitmask_tables(b: _Builder, n_out: int, mode: int) -> tuple[_QS, dict[str, np.ndarray]] | None:
    """Tables of the bitmask kernel, or None when a tree has more than 64 leaves."""
    feat, kind, cat_off, cat_len, thr, mask, bits = [], [], [], [], [], [], []
    node_start, leaf_start = [0], []

    def span(ref: int) -> tuple[int, int]:  # [first, last] leaf ids under ref
        if ref < 0:
            return ~ref, ~ref
        return span(b.nodes[ref][2])[0], span(b.nodes[ref][3])[1]

    for root in b.roots:
        first, last = span(root)
        if last - first + 1 > 64:
            return None
        leaf_start.append(first)
        stack = [root] if root >= 0 else []
        while stack:
            ref = stack.pop()
            t, f, lo, hi, flags, off, n = b.nodes[ref]
            a, z = span(lo)
            width = z - a + 1
            left_bits = ((1 << width) - 1) << (a - first)
            mask.append(~left_bits & 0xFFFFFFFFFFFFFFFF)
            feat.append(f)
            thr.append(t)
            k = flags & (F_NAN_LEFT | F_CAT | F_CAT_INVERT)
            word = 0
            if flags & F_CAT:
                if n <= 2:
                    for i in range(n):
                        word |= b.cats[off + i] << (32 * i)
                else:
                    k |= 8
            bits.append(word)
            kind.append(k)
            cat_off.append(off)
            cat_len.append(n)
            stack.extend(c for c in (lo, hi) if c >= 0)
        node_start.append(len(feat))
    i32 = {"feat": feat, "kind": kind, "cat_off": cat_off, "cat_len": cat_len, "leaf_start": leaf_start,
           "group": b.group}
    arrays = {name: np.asarray([*v, 0], dtype=np.int32) for name, v in i32.items()}  # + padding: never empty
    arrays |= {
        "node_start": np.asarray(node_start, dtype=np.int32), "thr": np.asarray([*thr, 0.0], dtype=np.float64),
        "leaves": np.ascontiguousarray(np.asarray(b.leaves, dtype=np.float64).reshape(len(b.leaves), b.width)),
        "mask": np.asarray([*mask, 0], dtype=np.uint64), "bits": np.asarray([*bits, 0], dtype=np.uint64),
        "cats": np.asarray(b.cats or [0], dtype=np.uint32),
    }
    qs = _QS(*(arrays[name].ctypes.data for name, _ in _QS._fields_[:12]), len(b.roots), b.width, n_out, mode)
    return qs, arrays


# ---- LightGBM --------------------------------------------------------------------------------------------
def lightgbm_forest(booster: Any, n_features: int) -> tuple[CompiledForest, str, int]:
    """(forest, objective kind "binary"|"multiclass", n_classes) of a LightGBM Booster."""
    if booster.params.get("linear_tree"):
        raise NotImplementedError("LightGBM linear trees are not compiled")
    d = booster.dump_model()
    objective = str(d.get("objective", "")).split()
    k = int(d["num_tree_per_iteration"])
    if d.get("average_output"):
        raise NotImplementedError("LightGBM random-forest mode (average_output) is not compiled")
    if objective[:1] == ["binary"] and k == 1:
        kind = "binary"
        sig = [o for o in objective if o.startswith("sigmoid:")]
        if sig and float(sig[0].split(":")[1]) != 1.0:
            raise NotImplementedError("LightGBM binary objective with sigmoid != 1 is not compiled")
    elif objective[:1] == ["multiclass"] and k == int(d["num_class"]):
        kind = "multiclass"
    else:
        raise NotImplementedError(f"LightGBM objective {' '.join(objective)!r} is not compiled")
    trees = d["tree_info"]
    best = int(getattr(booster, "best_iteration", 0) or 0)
    if best > 0:
        trees = trees[: best * k]
    b = _Builder(1)
    for i, info in enumerate(trees):
        b.group.append(i % k)
        b.roots.append(_lgb_node(b, info["tree_structure"]))
    return CompiledForest(b, k, MODE_LGBM, np.zeros(k), n_features), kind, max(k, 2)


def _lgb_node(b: _Builder, t: dict[str, Any]) -> int:
    if "leaf_value" in t:
        return b.leaf([float(t["leaf_value"])])
    idx = b.node()
    missing = t.get("missing_type", "None")
    feat = int(t["split_feature"])
    if t["decision_type"] == "==":
        cats = [int(c) for c in str(t["threshold"]).split("||") if c != ""]
        off, n = b.bitset(cats)
        flags, thr = F_CAT, 0.0  # NaN -> right (LightGBM), whatever default_left says
    elif t["decision_type"] == "<=":
        thr = float(t["threshold"])
        if missing == "NaN":
            nan_left = bool(t["default_left"])
        elif missing == "None":
            nan_left = thr >= 0.0  # LightGBM reads NaN as 0.0 here
        else:
            raise NotImplementedError(f"LightGBM missing type {missing} is not compiled")
        flags, off, n = (F_NAN_LEFT if nan_left else 0), 0, 0
    else:
        raise NotImplementedError(f"LightGBM decision type {t['decision_type']} is not compiled")
    left = _lgb_node(b, t["left_child"])
    right = _lgb_node(b, t["right_child"])
    b.nodes[idx] = (thr, feat, left, right, flags, off, n)
    return idx


# ---- XGBoost ---------------------------------------------------------------------------------------------
def xgboost_forest(booster: Any, n_features: int, best_iteration: int | None) -> tuple[CompiledForest, str, int]:
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    obj = learner["objective"]["name"]
    gb = learner["gradient_booster"]
    if gb["name"] != "gbtree":
        raise NotImplementedError(f"XGBoost booster {gb['name']} is not compiled")
    params = learner["learner_model_param"]
    n_class = int(params.get("num_class", "0") or 0)
    n_targets = int(params.get("num_target", "1") or 1)
    if n_targets != 1:
        raise NotImplementedError("multi-target XGBoost is not compiled")
    base = _xgb_floats(params["base_score"])
    if obj == "binary:logistic":
        kind, k = "binary", 1
        init = [_xgb_logit(base[0])]
    elif obj == "multi:softprob" and n_class >= 2:
        kind, k = "multiclass", n_class
        init = base * k if len(base) == 1 else base
        init = [float(np.float32(v)) for v in init]
    else:
        raise NotImplementedError(f"XGBoost objective {obj} is not compiled")
    trees = gb["model"]["trees"]
    info = gb["model"]["tree_info"]
    indptr = gb["model"].get("iteration_indptr")
    if best_iteration is not None:
        stop = indptr[best_iteration + 1] if indptr else (best_iteration + 1) * k
        trees, info = trees[:stop], info[:stop]
    b = _Builder(1)
    for tree, g in zip(trees, info, strict=True):
        b.group.append(int(g))
        b.roots.append(_xgb_tree(b, tree))
    return CompiledForest(b, k, MODE_XGB, np.asarray(init), n_features), kind, max(k, 2)


def _xgb_floats(s: Any) -> list[float]:
    s = str(s).strip().strip("[]")
    return [float(np.float32(float(v))) for v in s.split(",") if v.strip()]


def _xgb_logit(p: float) -> float:
    """XGBoost's ProbToMargin for binary:logistic in float32: -log(1/p - 1)."""
    p32 = np.float32(p)
    with np.errstate(all="ignore"):
        return float(np.float32(-np.log(np.float32(np.float32(1.0) / p32 - np.float32(1.0)))))


def _xgb_tree(b: _Builder, t: dict[str, Any]) -> int:
    left, right = t["left_children"], t["right_children"]
    feat, cond, dleft = t["split_indices"], t["split_conditions"], t["default_left"]
    stype = t.get("split_type") or [0] * len(left)
    cat_of: dict[int, list[int]] = {}
    if t.get("categories_nodes"):
        cats, segs, sizes = t["categories"], t["categories_segments"], t["categories_sizes"]
        for node, seg, size in zip(t["categories_nodes"], segs, sizes, strict=True):
            cat_of[int(node)] = [int(c) for c in cats[seg: seg + size]]
    index: dict[int, int] = {}

    def build(i: int) -> int:
        if left[i] == -1:
            return b.leaf([float(np.float32(cond[i]))])
        idx = b.node()
        index[i] = idx
        flags = F_NAN_LEFT if dleft[i] else 0
        off = n = 0
        thr = float(np.float32(cond[i]))
        if stype[i] == 1:
            off, n = b.bitset(cat_of.get(i, []))
            flags |= F_CAT | F_CAT_INVERT
            thr = 0.0
        lo, hi = build(left[i]), build(right[i])
        b.nodes[idx] = (thr, int(feat[i]), lo, hi, flags, off, n)
        return idx
    return build(0)


# ---- sklearn forests ---------------------------------------------------------------------------------------
def sklearn_forest(model: Any, n_features: int) -> CompiledForest:
    classes = len(model.classes_) if np.ndim(model.classes_) == 1 else None
    if classes is None or getattr(model, "n_outputs_", 1) != 1:
        raise NotImplementedError("multi-output forests are not compiled")
    b = _Builder(classes)
    for est in model.estimators_:
        tree = est.tree_
        proba = tree.value[:, 0, :classes]  # DecisionTreeClassifier.predict_proba: the leaf's stored fractions
        missing_left = getattr(tree, "missing_go_to_left", None)
        lc, rc, feat, thr = tree.children_left, tree.children_right, tree.feature, tree.threshold
        base_leaf = len(b.leaves)
        base_node = len(b.nodes)
        # number internal nodes and leaves in order (no recursion: deep trees)
        is_leaf = lc == -1
        node_id = np.cumsum(~is_leaf) - 1 + base_node
        leaf_id = np.cumsum(is_leaf) - 1 + base_leaf
        ref = np.where(is_leaf, ~leaf_id, node_id)
        for i in np.flatnonzero(is_leaf):
            b.leaves.append(proba[i])
        for i in np.flatnonzero(~is_leaf):
            nan_left = bool(missing_left[i]) if missing_left is not None else False
            b.nodes.append((float(thr[i]), int(feat[i]), int(ref[lc[i]]), int(ref[rc[i]]),
                            F_NAN_LEFT if nan_left else 0, 0, 0))
        b.roots.append(int(ref[0]))
        b.group.append(0)
    return CompiledForest(b, classes, MODE_SKLEARN, np.zeros(classes), n_features)
