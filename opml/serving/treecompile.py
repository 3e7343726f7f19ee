"""Tree ensembles (LightGBM, XGBoost, sklearn forests, CatBoost) flattened into tables and scored by small C kernels.

The C source (opml/serving/csrc/treekernel.c, package data) knows nothing about a particular model: it
is compiled once per machine with gcc by opml.serving.cbuild (-O3 -march=native, cached on disk) and
every model is just arrays handed to it. Three entry points:

- `opml_forest_predict_compact`: one row at a time (the endpoint's one-row path, and 1-2 rows here): the row
  becomes small integers (each value's rank among the forest's thresholds on its feature, each category
  test's answer), then 8-byte nodes are walked a fixed number of steps per tree (leaves loop to themselves),
  twelve trees side by side, with no branch per node. Built where its rule is the library's exactly
  (`_compact_tables`); other forests keep the node walker.
- `opml_forest_predict`: walks each row down the node table, eight trees side by side with no branch per
  node (a node's side comes from an answer table in its flags).
- `opml_forest_predict_qs`: boosted trees of at most 64 leaves, QuickScorer-style: every node is
  tested for a block of rows at once (branch-free, vectorised), a failed test clears the leaves of
  its left subtree from a 64-bit mask, the exit leaf is the lowest bit left. Best from ~3 rows on.
  LightGBM categorical nodes over codes < 64 test a bit row (1 << code per row, made once per call),
  and binary models keep a block's sums in registers across trees (same order: same doubles).

Each library's exact decision rule is reproduced per forest ("mode"):

- LightGBM: double feature vs double threshold, `x <= t` goes left; NaN goes to the default side
  (missing type NaN) or is read as 0.0 (missing type None); categorical splits send the category
  (`(int)x`, NaN/negative -> right) left when its bit is set; leaf values summed in double in tree order.
- XGBoost: `(float)x < (float)t` goes left; NaN -> default side; categorical splits send a category in
  the set right, any other (or an invalid one) left; margins summed in float32 in tree order.
- sklearn trees: `(double)(float)x <= t` goes left (sklearn predicts on float32 input); NaN follows
  `missing_go_to_left`; each leaf holds the tree's stored class fractions, summed in double.
- CatBoost (its own kernel, opml/serving/csrc/catboost.c): oblivious trees, one split per level, the leaf
  index made of the levels' bits; float splits are `(float)x > border`, category splits (one-hot, or
  target statistics over one column) a table over the column's codes read from the model's own leaf
  indexes; leaf values summed in double, then CatBoost's scale and bias. Target statistics over feature
  combinations raise CannotCompile.

Anything else (dart boosters, linear trees, LightGBM zero-as-missing, unknown objectives) raises
CannotCompile and the caller keeps the library's own predict; so does a machine without a C
compiler (`kernel()` raises CannotCompile with the reason).
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from typing import Any

import numpy as np

from opml.serving.cbuild import CannotCompile, Library, address, build, source

MODE_LGBM, MODE_SKLEARN, MODE_XGB = 0, 1, 2
F_NAN_LEFT, F_CAT, F_CAT_INVERT, F_CAT64 = 1, 2, 4, 8  # F_CAT64: a category set within codes 0..63, kept in thr

_NODE = np.dtype([("thr", "<f8"), ("feat", "<i4"), ("left", "<i4"), ("right", "<i4"), ("flags", "<i4"),
                  ("cat_off", "<i4"), ("cat_len", "<i4")])


_QS_ARRAYS = ("feat", "kind", "cat_off", "cat_len", "node_start", "leaf_start", "group", "thr", "leaves", "mask",
              "bits", "cats", "bit_feat")


class _QS(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in _QS_ARRAYS] + \
               [(name, ctypes.c_int32) for name in ("n_trees", "width", "n_out", "mode", "n_bit_feat", "n_features")]


QS_MIN_ROWS = 3  # from this many rows on, boosted forests use the bitmask kernel (the walker below it);
# measured: at 4 rows a 1,500-tree ensemble takes 168 us walked, 83 us bitmasked; at 1 row, 44 vs 80 us


_COMPACT_ARRAYS = ("nodes", "start", "depth", "order", "leaf_base", "group", "leaves", "cuts", "cut_feat", "cut_start",
                   "cat_col", "cat_start", "cat_set")


class _Compact(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in _COMPACT_ARRAYS] + \
               [(name, ctypes.c_int32) for name in ("n_trees", "width", "n_out", "mode", "n_num", "n_cat", "n_cat_col")]


_CNODE = np.dtype([("slot", "<u2"), ("thr", "<u2"), ("right", "<i2"), ("left", "<i2")])
CMAX_SLOTS = 16384  # treekernel.c's: slots of the compact walker's row, at most
_CODE_NAN, _CODE_OTHER = 1 << 62, 1 << 63  # the compact walker's category bits for NaN and any other non-code


class _Forest(ctypes.Structure):
    _fields_ = [("nodes", ctypes.c_void_p), ("roots", ctypes.c_void_p), ("group", ctypes.c_void_p),
                ("cats", ctypes.c_void_p), ("leaves", ctypes.c_void_p), ("n_trees", ctypes.c_int32),
                ("width", ctypes.c_int32), ("n_out", ctypes.c_int32), ("mode", ctypes.c_int32)]


# ---- the compiled kernel ------------------------------------------------------------------------------
def kernel() -> Any:
    """The loaded C kernel (compiled on first use, then cached on disk); CannotCompile when impossible."""
    return _library.get()


def _predictors(name: str, file: str, what: str, *symbols: str) -> tuple[Any, ...]:
    """Build (or reuse) and load the C library `file`; its `symbols` as (model, X, rows, width, out) -> void."""
    target = build(name, source(file), what=what)
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        raise CannotCompile(f"cannot load the {what}: {exc}") from exc
    fns = []
    for symbol in symbols:
        fn = getattr(lib, symbol)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        fn.restype = None
        fns.append(fn)
    return tuple(fns)


def _load() -> Any:
    return _predictors("forest", "treekernel.c", "tree kernel", "opml_forest_predict", "opml_forest_predict_qsv",
                       "opml_forest_predict_compact")


_library = Library(_load)


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
            raise CannotCompile("categorical split over an out-of-range category")
        words = [0] * (max(categories) // 32 + 1)
        for c in categories:
            words[c // 32] |= 1 << (c % 32)
        off = len(self.cats)
        self.cats.extend(words)
        return off, len(words)


class CompiledForest:
    """Raw sums of a flattened forest: `margins(Z)` -> (n, n_out) float64 (init values + tree outputs)."""

    def __init__(self, b: _Builder, n_out: int, mode: int, init: np.ndarray, n_features: int) -> None:
        self._fn, self._qs_fn, self._compact_fn = kernel()
        self.n_features = n_features
        self.nodes = np.zeros(len(b.nodes) + 1, dtype=_NODE)  # + a dummy node idle lanes read
        if b.nodes:
            self.nodes[: len(b.nodes)] = b.nodes
            _walker_fields(self.nodes[: len(b.nodes)], b.cats)
        self.roots = np.asarray(b.roots, dtype=np.int32)
        self.group = np.asarray(b.group, dtype=np.int32)
        self.cats = np.asarray(b.cats or [0], dtype=np.uint32)
        self.leaves = np.ascontiguousarray(np.asarray(b.leaves, dtype=np.float64).reshape(len(b.leaves), b.width))
        self.init = np.asarray(init, dtype=np.float64).reshape(n_out)
        self._struct = _Forest(self.nodes.ctypes.data, self.roots.ctypes.data, self.group.ctypes.data,
                               self.cats.ctypes.data, self.leaves.ctypes.data, len(self.roots), b.width, n_out, mode)
        self._ptr = ctypes.addressof(self._struct)
        self.n_trees = len(self.roots)
        self._qs = _bitmask_tables(b, n_out, mode, n_features) if mode in (MODE_LGBM, MODE_XGB) else None
        self._qs_ptr = ctypes.addressof(self._qs[0]) if self._qs is not None else None  # _qs[1] keeps arrays alive
        self._compact = _compact_tables(b, n_out, mode, n_features, self.leaves)  # (struct, arrays) or None
        # the compact walker's tables (opml_forest_predict_compact), or None: the node walker scores one row
        self.compact = ctypes.addressof(self._compact[0]) if self._compact is not None else None

    def margins(self, Z: np.ndarray) -> np.ndarray:
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {Z.shape}")
        n = Z.shape[0]
        out = np.empty((n, len(self.init)))
        out[:] = self.init
        if self._qs_ptr is not None and n >= QS_MIN_ROWS:
            n8 = -(-n // 8) * 8  # the bitmask kernel takes rows 8 at a time: pad with zero rows
            XT = np.zeros((Z.shape[1] + self._qs[0].n_bit_feat, n8))  # + the bit rows the kernel fills
            XT[: Z.shape[1], :n] = Z.T
            out8 = np.empty((n8, len(self.init)))
            out8[:] = self.init
            self._qs_fn(self._qs_ptr, address(XT), n8, n8, address(out8))
            return out8[:n]
        elif self.compact is not None and n < QS_MIN_ROWS:
            self._compact_fn(self.compact, address(Z), n, Z.shape[1], address(out))
        else:
            self._fn(self._ptr, address(Z), n, Z.shape[1], address(out))
        return out


    def probe_rows(self, n: int = 256, seed: int = 0) -> np.ndarray:
        """Rows that exercise the splits: values at, just around and between the thresholds, NaN,
        category codes in and out of every set (for checking the kernel against the library)."""
        rng = np.random.default_rng(seed)
        nodes = self.nodes[:-1]
        Z = rng.normal(size=(n, self.n_features))
        for j in range(self.n_features):
            mine = nodes[nodes["feat"] == j]
            numeric = mine["thr"][(mine["flags"] & F_CAT) == 0]
            if len(numeric):
                pick = numeric[rng.integers(0, len(numeric), n)]
                nudge = rng.choice([0.0, 1.0, -1.0, 1e-9, -1e-9, 1e-3], size=n)
                near = np.nextafter(pick, pick + nudge)  # the float just above / below the threshold
                Z[:, j] = np.where(np.abs(nudge) == 1.0, near, pick + nudge * (1 + np.abs(pick)))
            if ((mine["flags"] & F_CAT) != 0).any():
                Z[:, j] = rng.integers(-2, 70, n).astype(np.float64)
            tiny = rng.random(n) < 0.05  # values LightGBM reads as 0.0 (|x| <= 1e-35f) and their neighbours
            edge = np.array([0.0, -0.0, 1e-36, -1e-36, _LGB_ZERO, -_LGB_ZERO, np.nextafter(_LGB_ZERO, 1.0),
                             np.nextafter(-_LGB_ZERO, -1.0)])
            Z[tiny, j] = edge[rng.integers(0, len(edge), int(tiny.sum()))]
            Z[rng.random(n) < 0.1, j] = np.nan
        return Z


def _walker_fields(nodes: np.ndarray, cats: list[int]) -> None:
    """What the walker (opml_forest_predict) reads beyond the node itself: a categorical node whose set lies within
    codes 0..63 carries it as a 64-bit mask in place of its (unused) threshold, flag F_CAT64 (one AND against the
    row's code bit); every node carries in flags bits 8..15 its answer (1: left) for each combination of
    (value is NaN, code in the set, threshold test holds) at bit NaN + 2 * in + 4 * test."""
    thr_bits = nodes["thr"].view(np.uint64)
    flags = nodes["flags"]
    for i in np.flatnonzero((flags & F_CAT) != 0):
        off, n = int(nodes["cat_off"][i]), int(nodes["cat_len"][i])
        if n <= 2:
            thr_bits[i] = sum(int(w) << (32 * k) for k, w in enumerate(cats[off: off + n]))
            flags[i] |= F_CAT64
    nan_left, cat, invert = flags & F_NAN_LEFT, (flags & F_CAT) != 0, (flags & F_CAT_INVERT) >> 2
    answers = np.zeros(len(nodes), dtype=np.int32)
    for at in range(8):
        nan, in_set, test = at & 1, (at >> 1) & 1, (at >> 2) & 1
        left = nan_left if nan else np.where(cat, in_set ^ invert, test)
        answers |= left.astype(np.int32) << at
    flags |= answers << 8


def _compact_tables(b: _Builder, n_out: int, mode: int, n_features: int,
                    leaves: np.ndarray) -> tuple[_Compact, dict[str, np.ndarray]] | None:
    """Tables of the compact walker (opml_forest_predict_compact, see treekernel.c) over the forest's `leaves`
    (n_leaves x width, C order); None where its rule would not be the library's exactly -- a NaN threshold (or
    -inf in mode 2), a category set reaching code 62, a feature outside the row -- or would not fit: more than
    CMAX_SLOTS slots, more than 65,535 thresholds on a feature or leaves in a tree, a tree of more than 32,767
    nodes and leaves."""
    cut_of: dict[int, list[float]] = {}  # numeric feature -> its thresholds (as the walker compares)
    cat_of: dict[tuple[int, int], int] = {}  # (column, set going left) -> category test
    tests: list[tuple[int, int, Any]] = []  # per node: (kind 0 numeric / 1 category, NaN left, value)
    for thr, feat, _, _, flags, off, n in b.nodes:
        if not 0 <= feat < n_features:
            return None
        if flags & F_CAT:
            words = b.cats[off: off + n]
            if n > 2 or (n == 2 and words[1] >> 30):
                return None
            members = sum(int(w) << (32 * k) for k, w in enumerate(words))
            if flags & F_CAT_INVERT:
                members = (~members & (_CODE_NAN - 1)) | _CODE_OTHER
            key = (feat, members | (_CODE_NAN if flags & F_NAN_LEFT else 0))
            tests.append((1, 0, cat_of.setdefault(key, len(cat_of))))
        else:
            if thr != thr or (mode == MODE_XGB and thr == -np.inf):  # no cut below -inf ("x < -inf" is never)
                return None
            t = float(np.nextafter(thr, -np.inf)) if mode == MODE_XGB else thr  # "x < t" as "x <= t'"
            cut_of.setdefault(feat, []).append(t)
            tests.append((0, flags & F_NAN_LEFT, t))
    cut_feat = sorted(cut_of)
    by_column = sorted(cat_of, key=lambda key: (key[0], cat_of[key]))  # category tests, column by column
    renumber = {cat_of[key]: i for i, key in enumerate(by_column)}
    cat_col = sorted({f for f, _ in by_column})
    cuts = {f: np.unique(np.asarray(cut_of[f], dtype=np.float64)) for f in cut_feat}
    if any(len(c) > 65535 for c in cuts.values()) or 1 + 2 * len(cut_feat) + len(cat_of) > CMAX_SLOTS:
        return None
    num_slot = {f: 1 + 2 * i for i, f in enumerate(cut_feat)}
    cat_base = 1 + 2 * len(cut_feat)
    head: list[tuple[int, int]] = []  # per node: (slot, thr)
    numeric: dict[int, list[int]] = {f: [] for f in cut_feat}
    for ref, (kind, nan_left, value) in enumerate(tests):
        if kind:  # the category test's slot is 0 when the row goes left
            head.append((cat_base + renumber[value], 0))
        else:  # thr: the threshold's index among its feature's cuts (filled in below)
            numeric[b.nodes[ref][1]].append(ref)
            head.append((num_slot[b.nodes[ref][1]] + (0 if nan_left else 1), -1))
    for f, refs in numeric.items():  # every numeric node's index, one search per feature
        where = np.searchsorted(cuts[f], [tests[ref][2] for ref in refs]).tolist()
        for ref, i in zip(refs, where, strict=True):
            head[ref] = (head[ref][0], i)

    nodes: list[tuple[int, int, int, int]] = []  # (slot, thr, right, left); a leaf: (0, its number in the tree, 0, 0)
    start: list[int] = []
    depth: list[int] = []
    leaf_base: list[int] = []
    for root in b.roots:
        first = len(nodes)
        start.append(first)
        deepest = 0
        stack = [(root, 0, -1, 0)]  # (ref, depth, parent's position, 1: its left child); depth first, left first
        while stack:
            ref, d, parent, is_left = stack.pop()
            at = len(nodes)
            if at - first > 32767:
                return None
            if parent >= 0:
                slot, thr, right, left = nodes[parent]
                nodes[parent] = (slot, thr, at - parent if not is_left else right, at - parent if is_left else left)
            if ref < 0:
                nodes.append((0, ~ref, 0, 0))  # made relative to the tree's first leaf below
                deepest = max(deepest, d)
                continue
            nodes.append((*head[ref], 0, 0))
            stack.append((b.nodes[ref][3], d + 1, at, 0))
            stack.append((b.nodes[ref][2], d + 1, at, 1))
        depth.append(deepest)
        mine = [i for i in range(first, len(nodes)) if nodes[i][2:] == (0, 0)]
        base = min(nodes[i][1] for i in mine)
        if max(nodes[i][1] for i in mine) - base > 65535:
            return None
        for i in mine:
            nodes[i] = (0, nodes[i][1] - base, 0, 0)
        leaf_base.append(base)
    chunk = 512  # treekernel.c's CHUNK: trees are walked by depth within each
    order = [t0 + int(i) for t0 in range(0, len(depth), chunk)
             for i in np.argsort(depth[t0: t0 + chunk], kind="stable")]
    i32 = {"start": start, "depth": depth, "order": order, "leaf_base": leaf_base, "group": b.group,
           "cut_feat": cut_feat, "cut_start": np.cumsum([0, *(len(cuts[f]) for f in cut_feat)]).tolist(),
           "cat_col": cat_col, "cat_start": np.searchsorted([f for f, _ in by_column], [*cat_col, n_features]).tolist()}
    arrays = {name: np.asarray([*v, 0], dtype=np.int32) for name, v in i32.items()}  # + padding: never empty
    arrays |= {
        "nodes": np.asarray(nodes or [(0, 0, 0, 0)], dtype=_CNODE),
        "leaves": leaves,
        "cuts": np.concatenate([*(cuts[f] for f in cut_feat), [0.0]]),
        "cat_set": np.asarray([*(members for _, members in by_column), 0], dtype=np.uint64),
    }
    table = _Compact(*(arrays[name].ctypes.data for name in _COMPACT_ARRAYS), len(b.roots), b.width, n_out, mode,
                     len(cut_feat), len(cat_of), len(cat_col))
    return table, arrays


def _bitmask_tables(b: _Builder, n_out: int, mode: int, n_features: int) -> tuple[_QS, dict[str, np.ndarray]] | None:
    """Tables of the bitmask kernel, or None when a tree has more than 64 leaves."""
    feat, kind, cat_off, cat_len, thr, mask, bits = [], [], [], [], [], [], []
    node_start, leaf_start = [0], []  # node_start: 4 group boundaries per tree

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
        tree: list[tuple] = []
        while stack:
            ref = stack.pop()
            t, f, lo, hi, flags, off, n = b.nodes[ref]
            a, z = span(lo)
            width = z - a + 1
            left_bits = ((1 << width) - 1) << (a - first)
            k = flags & (F_NAN_LEFT | F_CAT | F_CAT_INVERT)
            word = 0
            if flags & F_CAT:
                if n <= 2:
                    for i in range(n):
                        word |= b.cats[off + i] << (32 * i)
                    group = 2
                else:
                    k |= 8
                    group = 3
            else:
                group = k & F_NAN_LEFT
            tree.append((group, f, t, ~left_bits & 0xFFFFFFFFFFFFFFFF, word, k, off, n))
            stack.extend(c for c in (lo, hi) if c >= 0)
        tree.sort(key=lambda node: node[0])  # AND-ing masks commutes: any order within a tree
        for _, f, t, mk, word, k, off, n in tree:
            feat.append(f)
            thr.append(t)
            mask.append(mk)
            bits.append(word)
            kind.append(k)
            cat_off.append(off)
            cat_len.append(n)
        counts = [sum(1 for node in tree if node[0] == g) for g in range(4)]
        for c in counts:
            node_start.append(node_start[-1] + c)
    bit_feat: list[int] = []
    if mode == MODE_LGBM:  # categorical nodes over codes < 64 read the feature's bit row (see the kernel)
        for j, k in enumerate(kind):
            if k & F_CAT and not k & 8:
                if k & (F_NAN_LEFT | F_CAT_INVERT):
                    raise CannotCompile("LightGBM categorical split sending NaN left is not compiled")
                if feat[j] not in bit_feat:
                    bit_feat.append(feat[j])
                feat[j] = n_features + bit_feat.index(feat[j])
    i32 = {"feat": feat, "kind": kind, "cat_off": cat_off, "cat_len": cat_len, "leaf_start": leaf_start,
           "group": b.group, "bit_feat": bit_feat}
    arrays = {name: np.asarray([*v, 0], dtype=np.int32) for name, v in i32.items()}  # + padding: never empty
    arrays |= {
        "node_start": np.asarray(node_start, dtype=np.int32), "thr": np.asarray([*thr, 0.0], dtype=np.float64),
        "leaves": np.ascontiguousarray(np.asarray(b.leaves, dtype=np.float64).reshape(len(b.leaves), b.width)),
        "mask": np.asarray([*mask, 0], dtype=np.uint64), "bits": np.asarray([*bits, 0], dtype=np.uint64),
        "cats": np.asarray(b.cats or [0], dtype=np.uint32),
    }
    qs = _QS(*(arrays[name].ctypes.data for name in _QS_ARRAYS), len(b.roots), b.width, n_out, mode,
             len(bit_feat), n_features)
    return qs, arrays


# ---- LightGBM --------------------------------------------------------------------------------------------
def lightgbm_forest(booster: Any, n_features: int) -> tuple[CompiledForest, str, int]:
    """(forest, objective kind "binary"|"multiclass", n_classes) of a LightGBM Booster."""
    if booster.params.get("linear_tree"):
        raise CannotCompile("LightGBM linear trees are not compiled")
    d = booster.dump_model()
    objective = str(d.get("objective", "")).split()
    k = int(d["num_tree_per_iteration"])
    if d.get("average_output"):
        raise CannotCompile("LightGBM random-forest mode (average_output) is not compiled")
    if objective[:1] == ["binary"] and k == 1:
        kind = "binary"
        sig = [o for o in objective if o.startswith("sigmoid:")]
        if sig and float(sig[0].split(":")[1]) != 1.0:
            raise CannotCompile("LightGBM binary objective with sigmoid != 1 is not compiled")
    elif objective[:1] == ["multiclass"] and k == int(d["num_class"]):
        kind = "multiclass"
    else:
        raise CannotCompile(f"LightGBM objective {' '.join(objective)!r} is not compiled")
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
            raise CannotCompile(f"LightGBM missing type {missing} is not compiled")
        thr = _lgb_zero_threshold(thr)
        flags, off, n = (F_NAN_LEFT if nan_left else 0), 0, 0
    else:
        raise CannotCompile(f"LightGBM decision type {t['decision_type']} is not compiled")
    left = _lgb_node(b, t["left_child"])
    right = _lgb_node(b, t["right_child"])
    b.nodes[idx] = (thr, feat, left, right, flags, off, n)
    return idx


_LGB_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: |x| <= it is read as 0.0 when predicting


def _lgb_zero_threshold(thr: float) -> float:
    """The threshold t' with `x <= t'` == `z(x) <= thr`, z(x) = 0.0 when |x| <= kZeroThreshold else x.

    LightGBM drops such tiny values from the row it predicts on (they become 0.0); folding that
    into the threshold keeps the kernel's comparison a plain `x <= t`.
    """
    if 0.0 <= thr < _LGB_ZERO:
        return _LGB_ZERO
    if -_LGB_ZERO <= thr < 0.0:
        return float(np.nextafter(-_LGB_ZERO, -np.inf))
    return thr


# ---- XGBoost ---------------------------------------------------------------------------------------------
def xgboost_forest(booster: Any, n_features: int, best_iteration: int | None) -> tuple[CompiledForest, str, int]:
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    obj = learner["objective"]["name"]
    gb = learner["gradient_booster"]
    if gb["name"] != "gbtree":
        raise CannotCompile(f"XGBoost booster {gb['name']} is not compiled")
    params = learner["learner_model_param"]
    n_class = int(params.get("num_class", "0") or 0)
    n_targets = int(params.get("num_target", "1") or 1)
    if n_targets != 1:
        raise CannotCompile("multi-target XGBoost is not compiled")
    base = _xgb_floats(params["base_score"])
    if obj == "binary:logistic":
        kind, k = "binary", 1
        init = [_xgb_logit(base[0])]
    elif obj == "multi:softprob" and n_class >= 2:
        kind, k = "multiclass", n_class
        init = base * k if len(base) == 1 else base
        init = [float(np.float32(v)) for v in init]
    else:
        raise CannotCompile(f"XGBoost objective {obj} is not compiled")
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
        raise CannotCompile("multi-output forests are not compiled")
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


# ---- CatBoost (oblivious trees) ------------------------------------------------------------------------------
class _Oblivious(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in ("feat", "kind", "border", "table_off", "table_len", "tables",
                                                      "depth", "tree_split", "leaf_off", "leaves")] + \
               [("n_splits", ctypes.c_int32), ("n_trees", ctypes.c_int32), ("dim", ctypes.c_int32)]


def _load_oblivious() -> Any:
    return _predictors("oblivious", "catboost.c", "CatBoost kernel", "opml_oblivious_predict")[0]


_oblivious_library = Library(_load_oblivious)


class CompiledOblivious:
    """Raw sums of CatBoost's oblivious trees: `margins(Z)` -> (n, dim) float64, scale * sum + bias."""

    def __init__(self, splits: list[tuple[int, int, float, bytes]], trees: list[tuple[list[int], list[float]]],
                 dim: int, scale: float, bias: np.ndarray, n_features: int, cat_levels: dict[int, int]) -> None:
        self._fn = _oblivious_library.get()
        self.n_features = n_features
        self.cat_levels = cat_levels  # categorical column -> codes 0..n-1 the model saw (for probe rows)
        self.dim = dim
        self.scale = float(scale)
        self.bias = np.asarray(bias, dtype=np.float64).reshape(dim)
        tables = b"".join(t for *_, t in splits)
        offsets = np.cumsum([0, *(len(t) for *_, t in splits)])[:-1]
        self._arrays = {
            "feat": np.asarray([f for f, *_ in splits] or [0], dtype=np.int32),
            "kind": np.asarray([k for _, k, *_ in splits] or [0], dtype=np.int32),
            "border": np.asarray([b for _, _, b, _ in splits] or [0.0], dtype=np.float32),
            "table_off": np.asarray([*offsets, 0], dtype=np.int32),
            "table_len": np.asarray([len(t) for *_, t in splits] or [0], dtype=np.int32),
            "tables": np.frombuffer(tables or b"\0", dtype=np.uint8).copy(),
            "depth": np.asarray([len(s) for s, _ in trees] or [0], dtype=np.int32),
            "tree_split": np.asarray([i for s, _ in trees for i in s] or [0], dtype=np.int32),
            "leaf_off": np.asarray(np.cumsum([0, *(len(v) for _, v in trees)])[:-1].tolist() or [0], dtype=np.int64),
            "leaves": np.asarray([v for _, values in trees for v in values] or [0.0], dtype=np.float64),
        }
        a = self._arrays
        self._struct = _Oblivious(*(a[name].ctypes.data for name in ("feat", "kind", "border", "table_off",
                                                                       "table_len", "tables", "depth", "tree_split",
                                                                       "leaf_off", "leaves")),
                                  len(splits), len(trees), dim)
        self._ptr = ctypes.addressof(self._struct)
        self.n_trees = len(trees)
        self.float_splits = [(f, b) for f, k, b, _ in splits if k != 2]

    def margins(self, Z: np.ndarray) -> np.ndarray:
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {Z.shape}")
        out = np.zeros((Z.shape[0], self.dim))
        self._fn(self._ptr, address(Z), Z.shape[0], Z.shape[1], address(out))
        out *= self.scale
        out += self.bias
        return out

    def probe_rows(self, n: int = 256, seed: int = 0) -> np.ndarray:
        """Rows that exercise the splits: float values at, just around and between the borders (in float32),
        NaN, and every category code the model saw, -1 and codes it never saw."""
        rng = np.random.default_rng(seed)
        Z = rng.normal(size=(n, self.n_features))
        for j in range(self.n_features):
            if j in self.cat_levels:
                Z[:, j] = rng.integers(-3, self.cat_levels[j] + 3, n).astype(np.float64)
                continue
            borders = np.asarray([b for f, b in self.float_splits if f == j], dtype=np.float32)
            if len(borders):
                pick = borders[rng.integers(0, len(borders), n)]
                up = np.nextafter(pick, np.float32(np.inf))
                down = np.nextafter(pick, np.float32(-np.inf))
                choice = rng.integers(0, 5, n)
                spread = pick.astype(np.float64) + rng.normal(size=n) * (1 + np.abs(pick))
                Z[:, j] = np.select([choice == 0, choice == 1, choice == 2, choice == 3],
                                    [pick, up, down, np.nextafter(pick.astype(np.float64), np.inf)], spread)
            Z[rng.random(n) < 0.05, j] = np.nan
        return Z


def catboost_forest(model: Any, n_features: int) -> tuple[CompiledOblivious, str]:
    """(oblivious forest, objective kind "binary"|"multiclass") of a fitted opml CatBoostModel.

    Float splits are kept as borders. Category splits (one-hot, and target statistics over a single
    categorical column) depend on that column's code alone, so each becomes a table over the codes,
    read from the model itself: CatBoost's leaf indexes on rows that vary one categorical column.
    Target statistics over feature combinations raise CannotCompile.
    """
    booster = model.catboost_
    with tempfile.TemporaryDirectory(prefix="opml-catboost-") as tmp:
        path = os.path.join(tmp, "model.json")
        booster.save_model(path, format="json")
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    if "oblivious_trees" not in d:
        raise CannotCompile("CatBoost non-symmetric trees are not compiled")
    info = d.get("features_info", {})
    if info.get("text_features") or info.get("embedding_features"):
        raise CannotCompile("CatBoost text or embedding features are not compiled")
    for ctr in info.get("ctrs", []):
        elements = ctr.get("elements", [])
        if len(elements) != 1 or elements[0].get("combination_element") != "cat_feature_value":
            raise CannotCompile("CatBoost target statistics over feature combinations are not compiled")
    loss = str(d.get("model_info", {}).get("params", {}).get("loss_function", {}).get("type", ""))
    trees_json = d["oblivious_trees"]
    scale, bias = d.get("scale_and_bias", [1.0, [0.0]])
    bias = np.atleast_1d(np.asarray(bias, dtype=np.float64))
    dim = len(bias)
    if loss == "Logloss" and dim == 1:
        kind = "binary"
    elif loss == "MultiClass" and dim >= 2:
        kind = "multiclass"
    else:
        raise CannotCompile(f"CatBoost loss {loss or 'unknown'} is not compiled")
    floats = {int(f["feature_index"]): (int(f["flat_feature_index"]), str(f.get("nan_value_treatment", "AsIs")))
              for f in info.get("float_features", [])}
    cat_flat = {int(c["feature_index"]): int(c["flat_feature_index"]) for c in info.get("categorical_features", [])}
    cat_levels = {int(j): int(n) for j, n in zip(model.cat_features, model.cat_levels_, strict=True)}

    split_id: dict[int, int] = {}
    splits: list[tuple[int, int, float, bytes]] = []
    cat_splits: dict[int, list[tuple[int, int]]] = {}  # split -> [(tree, level)] where it is tested
    trees: list[tuple[list[int], list[float]]] = []
    for t, tree in enumerate(trees_json):
        ids = []
        for level, s in enumerate(tree["splits"]):
            key = int(s["split_index"])
            if key not in split_id:
                split_id[key] = len(splits)
                if s["split_type"] == "FloatFeature":
                    flat, nan = floats[int(s["float_feature_index"])]
                    splits.append((flat, 1 if nan == "AsTrue" else 0, float(s["border"]), b""))
                elif s["split_type"] in ("OneHotFeature", "OnlineCtr"):
                    flat = cat_flat[int(s["cat_feature_index"])] if "cat_feature_index" in s else -1
                    splits.append((flat, 2, 0.0, b""))
                else:
                    raise CannotCompile(f"CatBoost {s['split_type']} splits are not compiled")
            ids.append(split_id[key])
            if splits[split_id[key]][1] == 2:
                cat_splits.setdefault(split_id[key], []).append((t, level))
        values = [float(v) for v in tree["leaf_values"]]
        if len(values) != (1 << len(ids)) * dim:
            raise CannotCompile("CatBoost tree with an unexpected number of leaf values")
        trees.append((ids, values))
    if cat_splits:
        _category_tables(model, splits, cat_splits, cat_levels, n_features)
    return CompiledOblivious(splits, trees, dim, float(scale), bias, n_features, cat_levels), kind


def _category_tables(model: Any, splits: list[tuple[int, int, float, bytes]],
                     cat_splits: dict[int, list[tuple[int, int]]], cat_levels: dict[int, int], n_features: int) -> None:
    """Fill each category split's table (entry 0: a code never seen, c + 2: code c) from CatBoost's own leaf
    indexes on rows that vary one categorical column at a time (others fixed): a one-hot or single-column
    target-statistic split depends on its column alone."""
    columns = sorted(cat_levels)
    blocks, starts = [], {}
    at = 0
    for j in columns:
        codes = np.arange(-2, cat_levels[j], dtype=np.float64)  # -2: never produced by the featurizer, so unseen
        block = np.zeros((len(codes), n_features))
        block[:, j] = codes
        blocks.append(block)
        starts[j] = at
        at += len(codes)
    if not blocks:
        raise CannotCompile("CatBoost category split without categorical columns")
    rows = np.vstack(blocks)
    leaf = np.asarray(model.catboost_.calc_leaf_indexes(model._frame(rows), thread_count=1), dtype=np.int64)
    for s, places in cat_splits.items():
        t, level = places[0]
        bits = (leaf[:, t] >> level) & 1
        owner = [j for j in columns if np.ptp(bits[starts[j]: starts[j] + cat_levels[j] + 2]) > 0]
        flat = splits[s][0]
        if len(owner) > 1 or (flat >= 0 and owner and owner != [flat]):
            raise CannotCompile("CatBoost category split depending on several columns is not compiled")
        j = owner[0] if owner else (flat if flat >= 0 else columns[0])
        table = bits[starts[j]: starts[j] + cat_levels[j] + 2].astype(np.uint8)
        for t2, level2 in places[1:]:  # the same split tested elsewhere must read the same
            if not np.array_equal((leaf[starts[j]: starts[j] + len(table), t2] >> level2) & 1, table):
                raise CannotCompile("CatBoost category split reads differently in two trees")
        splits[s] = (j, 2, 0.0, table.tobytes())
