"""The compact walker (treekernel.c's opml_forest_predict_compact): one row through a forest by ranks and 8-byte nodes.

It must land on the leaves the libraries' rules give (tests/test_ensemble_rowpath.py's `_reference_leaf`) and sum
them to the node walker's doubles, for every mode (LightGBM, sklearn, XGBoost) on rows with NaN, infinities, values
at and beside the thresholds, and category codes in, out of and beyond the sets (unseen ones, negative, fractional,
huge); NaN going left or right, inverted sets, one-leaf trees, deep trees, several outputs, more trees than one
CHUNK. Where its rule would not be the library's (a category set reaching code 62, a NaN threshold, -inf in
XGBoost) a forest keeps the node walker. Trained models: one row through the row path gives the same doubles as
with every forest on the node walker, and the model's own probabilities. XGBoost's float32 sigmoid in Python
floats gives numpy's float32 results.
"""

from __future__ import annotations

import copy

import numpy as np
import orjson
import pandas as pd
import pytest

from opml.automl.ensemble import VotingModel
from opml.automl.model import OpmlClassifier
from opml.automl.pipeline import CandidatePipeline
from opml.serving import rowpath
from opml.serving import treecompile as tc
from opml.serving.compiled import compile_model
from opml.serving.scorer import schema_columns
from tests.test_compiled import FOREST, LGBM, XGB, _cols, _odd_rows
from tests.test_ensemble_rowpath import _reference_leaf

pytestmark = pytest.mark.timeout(600)

MODES = (tc.MODE_LGBM, tc.MODE_SKLEARN, tc.MODE_XGB)
CODES = [-3.0, -1.0, -0.5, -0.0, 0.0, 0.7, 5.0, 31.9, 61.0, 61.5, 62.0, 63.0, 63.5, 64.0, 130.0, 1e12, np.inf, np.nan]


def _forest(mode: int, width: int, seed: int, *, n_trees: int = 60, n_out: int = 1, leaf_width: int = 1,
            high: int = 62, extra: tuple[float, ...] = ()) -> tuple[tc._Builder, list[int]]:
    """Random trees: numeric nodes (NaN left or right, thresholds float32 in XGBoost, any `extra` ones) and category
    nodes over codes below `high` (LightGBM / XGBoost: inverted, NaN left or right), some a chain 20 deep, some one
    leaf; tree t adds to output t % n_out. -> (builder, category columns)."""
    rng = np.random.default_rng(seed)
    b = tc._Builder(leaf_width)
    cat_features = [1, 3, width - 1]

    def grow(depth: int, chain: bool) -> int:
        if depth == 0 or (not chain and rng.random() < 0.15):
            return b.leaf([float(v) for v in rng.normal(size=leaf_width)])
        idx = b.node()
        if mode != tc.MODE_SKLEARN and rng.random() < 0.35:
            feat = int(rng.choice(cat_features))
            off, n = b.bitset(sorted({int(c) for c in rng.integers(0, high, rng.integers(0, 6))}))
            flags = tc.F_CAT
            if mode == tc.MODE_XGB:
                flags |= tc.F_CAT_INVERT | int(rng.random() < 0.5)
            thr = 0.0
        else:
            feat = int(rng.integers(0, width))
            thr = float(rng.choice(extra)) if extra and rng.random() < 0.1 else float(rng.normal())
            thr = float(np.float32(thr)) if mode == tc.MODE_XGB else thr
            off, n, flags = 0, 0, int(rng.random() < 0.5)
        if chain:  # a leaf-wise grown branch: one side a leaf, the other deeper
            left, right = (grow(0, False), grow(depth - 1, True)) if rng.random() < 0.5 else \
                (grow(depth - 1, True), grow(0, False))
        else:
            left, right = grow(depth - 1, False), grow(depth - 1, False)
        b.nodes[idx] = (thr, feat, left, right, flags, off, n)
        return idx

    for t in range(n_trees):
        b.group.append(t % n_out)
        kind = rng.random()
        b.roots.append(b.leaf([1.5] * leaf_width) if kind < 0.05 else grow(20, True) if kind < 0.15
                       else grow(int(rng.integers(1, 9)), False))
    return b, cat_features


def _rows(b: tc._Builder, mode: int, width: int, cat_features: list[int], seed: int, n: int = 96) -> np.ndarray:
    """Rows at, just beside (in double and in float32) and between the thresholds, NaN, infinities, huge values,
    signed zeros, and category codes in and out of every set."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, width))
    thresholds = np.asarray([node[0] for node in b.nodes if not node[4] & tc.F_CAT and np.isfinite(node[0])])
    picked = rng.choice(thresholds, rows.shape)
    near = np.stack([picked, np.nextafter(picked, np.inf), np.nextafter(picked, -np.inf),
                     np.nextafter(picked.astype(np.float32), np.float32(np.inf)).astype(np.float64),
                     np.nextafter(picked.astype(np.float32), np.float32(-np.inf)).astype(np.float64)])
    at = rng.random(rows.shape) < 0.4
    rows[at] = near[rng.integers(0, len(near), rows.shape), np.arange(n)[:, None], np.arange(width)][at]
    odd = rng.random(rows.shape) < 0.12
    rows[odd] = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0, -0.0, 1e-40], int(odd.sum()))
    for j in cat_features:
        rows[:, j] = rng.choice(CODES, n)
    return rows


def _want(b: tc._Builder, rows: np.ndarray, mode: int, n_out: int) -> np.ndarray:
    leaves = np.asarray(b.leaves, dtype=np.float64)
    want = np.zeros((len(rows), n_out * leaves.shape[1] if n_out > 1 else leaves.shape[1]))
    for i, x in enumerate(rows):
        for root, g in zip(b.roots, b.group, strict=True):
            with np.errstate(over="ignore"):  # 1e300 as float32: inf, as the libraries read it
                leaf = leaves[_reference_leaf(b.nodes, b.cats, x, root, mode) if root >= 0 else ~root]
            for p, v in enumerate(leaf):
                o = g + p
                want[i, o] = float(np.float32(np.float32(want[i, o]) + np.float32(v))) if mode == tc.MODE_XGB \
                    else want[i, o] + v
    return want


def _both(forest: tc.CompiledForest, rows: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(compact walker, node walker) sums of rows, one row per call and all in one call."""
    compact = np.zeros((len(rows), n_cols))
    walker = np.zeros((len(rows), n_cols))
    for i in range(len(rows)):
        x = np.ascontiguousarray(rows[i: i + 1])
        forest._compact_fn(forest.compact, x.ctypes.data, 1, x.shape[1], compact[i:].ctypes.data)
        forest._fn(forest._ptr, x.ctypes.data, 1, x.shape[1], walker[i:].ctypes.data)
    together = np.zeros((len(rows), n_cols))
    Z = np.ascontiguousarray(rows)
    forest._compact_fn(forest.compact, Z.ctypes.data, len(Z), Z.shape[1], together.ctypes.data)
    assert together.tolist() == compact.tolist()
    return compact, walker


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("width", "n_trees", "n_out", "leaf_width"),
                         [(12, 60, 1, 1), (300, 40, 1, 1), (12, 1100, 1, 1), (12, 90, 3, 1), (12, 50, 1, 3)])
def test_compact_walker_follows_the_libraries_rules(mode, width, n_trees, n_out, leaf_width):
    extra = (np.inf,) if mode == tc.MODE_XGB else (np.inf, -np.inf)  # sklearn's "NaN apart" splits: t = inf
    b, cats = _forest(mode, width, mode * 7 + width + n_trees, n_trees=n_trees, n_out=n_out, leaf_width=leaf_width,
                      extra=extra)
    n_cols = n_out if leaf_width == 1 else leaf_width
    forest = tc.CompiledForest(b, n_cols, mode, np.zeros(n_cols), width)
    assert forest.compact is not None
    rows = _rows(b, mode, width, cats, seed=n_trees)
    want = _want(b, rows, mode, n_out)
    compact, walker = _both(forest, rows, n_cols)
    assert compact.tolist() == want.tolist()
    assert compact.tolist() == walker.tolist()
    assert forest.margins(rows[:2]).tolist() == want[:2].tolist()  # 1-2 rows: the array path takes it too


@pytest.mark.parametrize(("mode", "why"), [(tc.MODE_LGBM, "code 62"), (tc.MODE_XGB, "code 63"),
                                           (tc.MODE_LGBM, "wide set"), (tc.MODE_LGBM, "NaN threshold"),
                                           (tc.MODE_XGB, "-inf threshold")])
def test_forests_it_cannot_decide_exactly_keep_the_node_walker(mode, why):
    b, cats = _forest(mode, 12, 5, n_trees=30)
    tree = b.node()
    if why.startswith("code") or why == "wide set":
        code = {"code 62": 62, "code 63": 63, "wide set": 100}[why]
        off, n = b.bitset([2, code])
        flags = tc.F_CAT | (tc.F_CAT_INVERT if mode == tc.MODE_XGB else 0)
        b.nodes[tree] = (0.0, cats[0], b.leaf([1.0]), b.leaf([-1.0]), flags, off, n)
    else:
        thr = np.nan if why == "NaN threshold" else -np.inf
        b.nodes[tree] = (thr, 0, b.leaf([1.0]), b.leaf([-1.0]), 0, 0, 0)
    b.roots.append(tree)
    b.group.append(0)
    forest = tc.CompiledForest(b, 1, mode, np.zeros(1), 12)
    assert forest.compact is None
    rows = _rows(b, mode, 12, cats, seed=1, n=40)
    if why == "NaN threshold":  # the walker's own rule: a NaN threshold sends every value right
        return
    for i in range(len(rows)):
        assert forest.margins(rows[i: i + 1]).tolist() == _want(b, rows[i: i + 1], mode, 1).tolist()


def test_float32_sigmoid_in_python_floats_matches_numpy():
    """rowpath.sigmoid32 (numpy's float32 exp, then + and / rounded from doubles) against the array path's float32
    operations, and 1 - p likewise, over float32 margins of every scale, the exp cap and its neighbours."""
    rng = np.random.default_rng(3)
    m = np.concatenate([rng.normal(size=20000) * 4, rng.normal(size=5000) * 60, rng.uniform(-1e-6, 1e-6, 2000),
                        [0.0, -0.0, 88.7, -88.7, 88.8, -88.8, 104.0, -104.0, 200.0, -200.0, 3e38, -3e38]])
    m = np.concatenate([m, np.nextafter(np.float32(-88.7), np.float32(-np.inf)),
                        np.nextafter(np.float32(-88.7), np.float32(np.inf))], axis=None).astype(np.float32)
    one = np.float32(1.0)
    p = one / (np.exp(np.minimum(-m, np.float32(88.7))) + one)  # compiled.py's xgb_link
    got = rowpath.sigmoid32(m.astype(np.float64).tolist())
    assert got == p.astype(np.float64).tolist()
    assert [rowpath._f32(1.0 - v) for v in got] == (one - p).astype(np.float64).tolist()


@pytest.fixture(scope="module")
def voting(bank_csv):
    df = pd.read_csv(bank_csv)
    y = df.pop("response").astype(str).to_numpy()
    train = df.sample(3000, random_state=4).index
    members = [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("XGBoostClassifier", XGB, scaler="StandardScalerWrapper", n_jobs=1),
               CandidatePipeline("ExtremeRandomTrees", FOREST, scaler="MaxAbsScaler", n_jobs=1)]
    model = OpmlClassifier(VotingModel(members, [0.5, 0.3, 0.2]), threshold=0.3)
    model.fit(df.loc[train].reset_index(drop=True), y[train])
    full = pd.concat([df.sample(150, random_state=5), _odd_rows(df)], ignore_index=True)
    return model, full


def _old_walker(scorer):
    """A copy of the scorer whose row path walks every forest with the node walker (the path before)."""
    rows = copy.copy(scorer._rows)
    rows._compact = False
    rows._plan(rows._members)
    rows._plan_c()
    old = copy.copy(scorer)
    old._rows = rows
    return old


def test_trained_forests_one_row_gives_the_same_doubles(voting):
    """LightGBM (with category splits), XGBoost (category splits, float32) and ExtraTrees on the compact walker: every
    row alone (missing values, unseen categories) gives the node walker's doubles and the model's probabilities."""
    model, full = voting
    columns, example = schema_columns(model)
    scorer = compile_model(model, "test:1", columns, example)
    assert [entry.kind for entry in scorer._rows._table] == [2, 2, 2]
    forests = [kernel.forest for _, _, kernel in scorer._rows._members]
    assert any((f.nodes["flags"] & tc.F_CAT).any() for f in forests[:2])  # category splits are exercised
    old = _old_walker(scorer)
    assert [entry.kind for entry in old._rows._table] == [0, 0, 0]
    cols = _cols(full, columns)
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    ref = model.predict_proba(full)
    labels = [str(v) for v in model.predict(full)]
    for i, record in enumerate(records):
        body = orjson.dumps({"data": [record]})
        got = scorer.predict_batch(scorer.read_json(body))
        assert np.array_equal(got, old.predict_batch(old.read_json(body))), i
        assert np.array_equal(got, scorer.predict_batch(scorer.read([record])))
        assert np.abs(got - ref[i]).max() < 1e-6
        assert scorer.labels(got) == [labels[i]]
