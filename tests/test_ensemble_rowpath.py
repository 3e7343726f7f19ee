"""One row through an ensemble (opml/serving/rowpath.py): plain floats and one C call for every member's trees.

Voting and stack ensembles of every member kind (LightGBM, XGBoost, sklearn forests, CatBoost, and members on
their own predict: LogisticRegression, a Normalizer-scaled member) are trained on 5,000 rows; single rows (also
with missing values and unseen categories) must match the trained model's predict_proba within 1e-6 and its
labels exactly, on every way a row reaches the scorer (the C reader's matrix, the Python reader's columns,
predict_proba). Against the array path (the same rows inside a larger batch) every tree member gives the same
doubles, and the ensembles agree within 1e-12 (numpy's matrix products -- LogisticRegression's, the stack's
meta learner -- may sum in another order for one row than for many). Several rows keep the array path.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from opml.automl.ensemble import StackModel, VotingModel, _stack_features, meta_proba
from opml.automl.model import OpmlClassifier
from opml.automl.pipeline import CandidatePipeline
from opml.serving import rowpath
from opml.serving.cbuild import CannotCompile, Library
from opml.serving.compiled import StackScorer, VotingScorer, compile_model
from opml.serving.scorer import schema_columns
from tests.test_compiled import CATBOOST, CATBOOST_CTR, FOREST, LGBM, LGBM_WIDE, LR, XGB, _cols, _fit, _odd_rows

pytestmark = pytest.mark.timeout(600)

TOL = 1e-6


@pytest.fixture(scope="module")
def data(bank_csv):
    df = pd.read_csv(bank_csv)
    y = df.pop("response").astype(str).to_numpy()
    full = pd.concat([df.sample(300, random_state=3), _odd_rows(df)], ignore_index=True)
    train = df.sample(5000, random_state=0).index
    return df.loc[train].reset_index(drop=True), y[train], full


def _members() -> list[CandidatePipeline]:
    return [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
            CandidatePipeline("LightGBM", LGBM_WIDE, scaler="StandardScalerWrapper", n_jobs=1),
            CandidatePipeline("XGBoostClassifier", XGB, scaler="StandardScalerWrapper", n_jobs=1),
            CandidatePipeline("ExtremeRandomTrees", FOREST, scaler="MaxAbsScaler", n_jobs=1),
            CandidatePipeline("CatBoostClassifier", CATBOOST_CTR, scaler="MaxAbsScaler", n_jobs=1),
            CandidatePipeline("LogisticRegression", LR, scaler="StandardScalerWrapper", n_jobs=1),
            CandidatePipeline("RandomForest", FOREST, scaler="SparseNormalizer", n_jobs=1)]


@pytest.fixture(scope="module")
def voting(data):
    members = _members()
    return _fit(VotingModel(members, [0.25, 0.1, 0.2, 0.1, 0.15, 0.1, 0.1]), data)


@pytest.fixture(scope="module")
def stack(data):
    return _fit(StackModel(_members(), coef=[[0.9, 0.3, 0.6, 0.2, 0.5, 0.1, 0.2]], intercept=[-0.3]), data)


def _scorer(model: OpmlClassifier):
    columns, example = schema_columns(model)
    return compile_model(model, "test:1", columns, example), columns


def _single_rows(model: OpmlClassifier, data) -> None:
    """Every row of `full` alone: the model's probabilities within 1e-6 and its labels, by every way in; the array
    path's within 1e-12."""
    _, _, full = data
    scorer, columns = _scorer(model)
    assert scorer._rows is not None, scorer.inference
    cols = _cols(full, columns)
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    ref = model.predict_proba(full)
    ref_labels = [str(v) for v in model.predict(full)]
    batched = scorer.predict_batch(scorer.read_json(orjson.dumps({"data": records})))  # the array path
    assert np.abs(batched - ref).max() < TOL
    for i, record in enumerate(records):
        from_c = scorer.predict_batch(scorer.read_json(orjson.dumps({"data": [record]})))
        from_python = scorer.predict_batch(scorer.read([record]))
        direct = scorer.predict_proba({k: [v[i]] for k, v in cols.items()})
        assert from_c.shape == (1, 2)
        assert np.abs(from_c - ref[i]).max() < TOL, (i, from_c, ref[i])
        assert np.array_equal(from_c, from_python) and np.array_equal(from_c, direct)
        assert scorer.labels(from_c) == [ref_labels[i]]
        assert np.abs(from_c[0] - batched[i]).max() < 1e-12, (i, from_c, batched[i])


def test_voting_one_row_matches_the_model(voting, data):
    scorer, _ = _scorer(voting)
    assert type(scorer) is VotingScorer
    # six members walk their trees in the one C call; LogisticRegression takes its own predict, the
    # Normalizer-scaled forest its featurizer's array form (its trees still go through the C call)
    assert scorer._rows._n_entries == 6
    assert scorer.engines == ["kernel"] * 5 + ["numpy", "kernel"], scorer.inference
    _single_rows(voting, data)


def test_tree_members_give_the_array_paths_doubles(voting, data):
    _, _, full = data
    scorer, columns = _scorer(voting)
    cols = _cols(full, columns)
    n = len(full)
    memo: dict = {}
    batched = [m.predict_proba(cols, n, memo) for _, m in scorer._pairs]
    for i in range(n):
        one = {k: [v[i]] for k, v in cols.items()}
        probs = scorer._rows.probabilities({id(b): b.compute(one, 1) for b in scorer._blocks})
        for engine, p, many in zip(scorer.engines, probs, batched, strict=True):
            if engine == "kernel":
                assert p == many[i].tolist(), (i, engine, p, many[i])
            else:  # LogisticRegression: numpy's product of one row may sum in another order than of many
                assert np.abs(np.array(p) - many[i]).max() < 1e-15


def test_stack_one_row_matches_the_model(stack, data):
    scorer, _ = _scorer(stack)
    assert type(scorer) is StackScorer
    _single_rows(stack, data)


@pytest.fixture(scope="module")
def single(data):
    return _fit(CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1), data)


@pytest.mark.parametrize("which", ["single", "voting", "stack"])
def test_one_row_from_the_reader_is_featurized_in_c(which, request, data, monkeypatch):
    """The C reader's one-row matrix: every featurizer with the C form writes its row straight into the row
    kernel's buffer (the Normalizer-scaled member packs its row path's floats); each member's probabilities
    are the Python row path's doubles, for plain rows, missing values and unseen categories alike."""
    model = request.getfixturevalue(which)
    _, _, full = data
    scorer, columns = _scorer(model)
    rows = scorer._rows
    assert rows is not None and rows.c_featurizes, scorer.inference
    with_c = [f for f in rows._featurizers if f.c is not None and f._c_scale is None]
    assert with_c and (which == "single") == (len(with_c) == len(rows._featurizers))
    cols = _cols(full, columns)
    records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    index = scorer._index
    from_c = []
    for record in records:
        M = scorer.read_json(orjson.dumps({"data": [record]})).matrix
        got = rows.matrix_probabilities(M, index)
        assert got is not None
        assert got == rows.probabilities({id(b): b.from_matrix(M, index) for b in scorer._blocks}), record
        from_c.append(scorer.predict_batch(scorer.read_json(orjson.dumps({"data": [record]}))))

    def python_row_path(blocks):  # the scorer must not take it for the reader's one-row matrix
        raise AssertionError("the Python row path featurized a reader's row")

    monkeypatch.setattr(rows, "probabilities", python_row_path)
    for record, want in zip(records, from_c, strict=True):
        got = scorer.predict_batch(scorer.read_json(orjson.dumps({"data": [record]})))
        assert np.array_equal(got, want)
    monkeypatch.undo()
    monkeypatch.setattr(rows, "_c_offsets", [])  # without the C form: the Python row path, the same doubles
    for record, want in zip(records, from_c, strict=True):
        assert np.array_equal(scorer.predict_batch(scorer.read_json(orjson.dumps({"data": [record]}))), want)


@pytest.mark.parametrize("n", [2, 3, 7, 13, 40])
def test_several_rows_keep_the_array_path(voting, stack, data, n):
    _, _, full = data
    for model in (voting, stack):
        scorer, columns = _scorer(model)
        cols = _cols(full, columns)
        records = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
        ref = model.predict_proba(full)
        for start in (0, len(records) - n):  # plain rows, then the odd ones (missing values, unseen levels)
            rows = records[start: start + n]
            for batch in (scorer.read_json(orjson.dumps({"data": rows})), scorer.read(rows)):
                got = scorer.predict_batch(batch)
                assert got.shape == (n, 2)
                assert np.abs(got - ref[start: start + n]).max() < TOL


def test_multiclass_ensembles_one_row(bank_csv):
    df = pd.read_csv(bank_csv).sample(3000, random_state=2).reset_index(drop=True)
    y = df.pop("marital").astype(str).to_numpy()
    df = df.drop(columns=["response"])
    members = [CandidatePipeline("LightGBM", LGBM, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("XGBoostClassifier", XGB, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("RandomForest", FOREST, scaler="MaxAbsScaler", n_jobs=1),
               CandidatePipeline("CatBoostClassifier", CATBOOST, scaler="MaxAbsScaler", n_jobs=1)]
    k = len(set(y))
    coef = np.random.default_rng(0).normal(size=(k, k * len(members))) * 0.3
    for estimator in (VotingModel(members, [0.4, 0.3, 0.2, 0.1]), StackModel(members, coef=coef, intercept=[0.1] * k)):
        model = OpmlClassifier(estimator).fit(df, y)
        scorer, columns = _scorer(model)
        cols = _cols(df.head(60), columns)
        ref = model.predict_proba(df.head(60))
        batched = scorer.predict_proba(cols)
        for i in range(60):
            one = scorer.predict_proba({c: [v[i]] for c, v in cols.items()})
            assert one.shape == (1, k)
            assert np.abs(one - ref[i]).max() < TOL
            assert np.abs(one[0] - batched[i]).max() < 1e-12


def test_meta_learner_in_floats_matches_numpy():
    rng = np.random.default_rng(1)
    for classes in (2, 3):
        for _ in range(200):
            probs = rng.dirichlet(np.ones(classes) * 0.3, size=4)
            probs[rng.random(probs.shape) < 0.1] = 0.0  # clipped at 1e-6 like _stack_features
            width = 4 if classes == 2 else 4 * classes
            coef = rng.normal(size=(1 if classes == 2 else classes, width)) * 3
            intercept = rng.normal(size=len(coef))
            want = meta_proba(_stack_features([p[None, :] for p in probs]), coef, intercept)[0]
            got = rowpath.stack([p.tolist() for p in probs], coef.tolist(), intercept.tolist())
            assert np.abs(np.array(got) - want).max() < 1e-12, (got, want)
    for p, w in (([1.0, 0.0], 800.0), ([0.0, 1.0], -800.0), ([0.0, 1.0], 800.0)):  # exp overflows: 0, not an error
        with np.errstate(over="ignore"):
            want = meta_proba(_stack_features([np.array([p])]), np.array([[w]]), np.array([0.0]))[0]
        assert rowpath.stack([p], [[w]], [0.0]) == want.tolist()
    probs = rng.dirichlet(np.ones(2), size=3)
    weights = [0.5, 0.3, 0.2]
    want = sum(w * p[None, :] for w, p in zip(weights, probs, strict=True))[0]
    assert rowpath.vote([p.tolist() for p in probs], weights) == want.tolist()


def test_without_the_row_kernel_one_row_takes_the_array_path(voting, data, monkeypatch):
    def cannot():
        raise CannotCompile("no C compiler (gcc) to build the ensemble row kernel")

    monkeypatch.setattr(rowpath, "_library", Library(cannot))
    scorer, columns = _scorer(voting)
    assert scorer._rows is None
    _, _, full = data
    cols = _cols(full.head(20), columns)
    ref = voting.predict_proba(full.head(20))
    for i in range(20):
        assert np.abs(scorer.predict_proba({c: [v[i]] for c, v in cols.items()}) - ref[i]).max() < TOL


def _reference_leaf(nodes: list[tuple], cats: list[int], x: np.ndarray, ref: int, mode: int) -> int:
    """The libraries' decision rules, one node at a time (treecompile's docstring): the walker's specification."""
    while ref >= 0:
        thr, feat, left, right, flags, off, n = nodes[ref]
        v = float(x[feat])
        if v != v:
            go = flags & 1
        elif flags & 2:
            if mode == 2:
                fv = float(np.float32(v))
                c = -1 if fv < 0.0 or fv >= 2147483520.0 else int(fv)
            else:
                c = -1 if v <= -2147483648.0 or v >= 2147483648.0 else int(v)
            in_set = c >= 0 and (c >> 5) < n and (cats[off + (c >> 5)] >> (c & 31)) & 1
            go = int(in_set) ^ ((flags >> 2) & 1)
        elif mode == 0:
            go = v <= thr
        elif mode == 1:
            go = float(np.float32(v)) <= thr
        else:
            go = np.float32(v) < np.float32(thr)
        ref = left if go else right
    return ~ref


@pytest.mark.parametrize(("mode", "width"), [(0, 12), (0, 300), (1, 12), (2, 12), (2, 300)])
def test_walker_follows_the_libraries_rules(mode, width):
    """Random trees with numeric and category nodes (sets within codes 0..63 and wider ones, inverted, NaN sides)
    on rows with NaN, negative, fractional, large and exact-threshold values: the walker (one row and several,
    rows narrower and wider than its code-bit buffer) lands on the leaves the rules give."""
    from opml.serving import treecompile as tc

    rng = np.random.default_rng(mode * 1000 + width)
    b = tc._Builder(1)
    cat_features = [1, 3, width - 1]

    def grow(depth: int) -> int:
        if depth == 0 or rng.random() < 0.15:
            return b.leaf([float(rng.normal())])
        idx = b.node()
        if mode != 1 and rng.random() < 0.4:
            feat = int(rng.choice(cat_features))
            high = 64 if rng.random() < 0.7 else 200  # a set within 0..63, or a wide one
            off, n = b.bitset(sorted({int(c) for c in rng.integers(0, high, rng.integers(0, 6))}))
            flags = tc.F_CAT | (tc.F_CAT_INVERT | int(rng.random() < 0.5) if mode == 2 else 0)
            thr = 0.0
        else:
            feat = int(rng.integers(0, width))
            thr = float(np.float32(rng.normal())) if mode == 2 else float(rng.normal())
            off, n, flags = 0, 0, int(rng.random() < 0.5)
        left, right = grow(depth - 1), grow(depth - 1)
        b.nodes[idx] = (thr, feat, left, right, flags, off, n)
        return idx

    for _ in range(40):
        b.group.append(0)
        b.roots.append(grow(int(rng.integers(0, 9))))
    forest = tc.CompiledForest(b, 1, [tc.MODE_LGBM, tc.MODE_SKLEARN, tc.MODE_XGB][mode], np.zeros(1), width)
    rows = rng.normal(size=(64, width))
    for j in cat_features:
        rows[:, j] = rng.choice([-3.0, -1.0, -0.5, -0.0, 0.0, 0.7, 5.0, 31.9, 63.0, 63.5, 64.0, 130.0, 199.0, 1e12,
                                 np.nan], 64)
    rows[rng.random(rows.shape) < 0.1] = np.nan
    thresholds = [node[0] for node in b.nodes if not node[4] & tc.F_CAT]
    at = rng.random(rows.shape) < 0.1  # values exactly at a threshold
    rows[at] = rng.choice(thresholds, int(at.sum()))
    leaves = np.asarray(b.leaves, dtype=np.float64)[:, 0]
    want = np.zeros(len(rows))
    for i, x in enumerate(rows):
        for root in b.roots:
            leaf = leaves[_reference_leaf(b.nodes, b.cats, x, root, mode)]
            want[i] = float(np.float32(np.float32(want[i]) + np.float32(leaf))) if mode == 2 else want[i] + leaf
    for n in (1, 2, len(rows)):
        for start in range(0, len(rows), n):
            Z = np.ascontiguousarray(rows[start: start + n])
            out = np.zeros((len(Z), 1))
            forest._fn(forest._ptr, Z.ctypes.data, len(Z), width, out.ctypes.data)  # the walker itself
            assert out[:, 0].tolist() == want[start: start + n].tolist(), (n, start)
