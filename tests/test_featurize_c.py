"""The C featurizer (opml/serving/cfeaturize.py, csrc/featurize.c): a record-reader matrix straight into a model's
feature matrix. It must give the very doubles of the numpy path (FeatureBlock.assemble_matrix + the scaler) and
of Featurizer.transform, for every encoding, unknown-code rule and scaler, on rows with missing values, unseen
categories, numbers equal to (and one ulp off) frequency-table keys, from 2 to 500 rows; without its library the
numpy path serves."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from opml.automl.featurize import Featurizer
from opml.automl.model import OpmlClassifier
from opml.automl.pipeline import CandidatePipeline
from opml.serving import cfeaturize
from opml.serving.cbuild import CannotCompile, Library
from opml.serving.compiled import CompiledFeaturizer, FeatureBlock, MatrixBlock, compile_model
from opml.serving.requests import Column
from opml.serving.scorer import schema_columns

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def c_library():
    try:
        cfeaturize.library()
    except CannotCompile as why:
        pytest.skip(f"no C featurizer here: {why}")


@pytest.fixture(scope="module")
def frames(bank_csv, c_library):
    """(train, test): 3,000 training rows with gaps in two numeric and one categorical column (so there are
    missing indicators); 500 test rows holding missing values, unseen categories, and numbers equal to,
    and one ulp off, frequency-table keys."""
    df = pd.read_csv(bank_csv).drop(columns=["response"])
    train = df.sample(3000, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    for c in ("age", "euribor3m"):
        train.loc[rng.random(len(train)) < 0.05, c] = np.nan
    train.loc[rng.random(len(train)) < 0.05, "job"] = None
    test = df.sample(500, random_state=1).reset_index(drop=True).astype(object)
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    keys = {c: np.unique(train[c].dropna().to_numpy(dtype=np.float64)) for c in numeric}
    for i in range(len(test)):
        for c in df.columns:
            r = rng.random()
            if r < 0.1:
                test.at[i, c] = None
            elif c in numeric and r < 0.3:
                v = float(rng.choice(keys[c]))
                up, down = (np.nextafter(v, math.inf), np.nextafter(v, -math.inf)) if v else (1e-9, -1e-9)
                test.at[i, c] = [v, up, down, v + 0.5][i % 4]  # (no subnormal: the JSON reader leaves those)
            elif c not in numeric and r < 0.2:
                test.at[i, c] = f"never-seen-{i}"
    test.loc[0, :] = None  # an all-missing row
    test.loc[1, "euribor3m"] = -0.0
    return train, test


def _records(frame: pd.DataFrame, columns: list[Column]) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
        rec = {}
        for c in columns:
            v = row[c.name]
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            rec[c.name] = None if missing else (float(v) if c.kind == "numeric" else str(v))
        out.append(rec)
    return out


def _setup(f: Featurizer, train: pd.DataFrame):
    columns = [Column(c, "numeric" if f.kinds_[c] == "numeric" else "categorical") for c in train.columns]
    block = FeatureBlock(f)
    featurizer = CompiledFeaturizer(f, {FeatureBlock.key(f): block})
    from opml.serving.reader import RecordReader

    try:
        reader = RecordReader(columns, block.lookup)
    except CannotCompile as why:
        pytest.skip(f"no C record reader here: {why}")
    return columns, block, featurizer, reader


def _both(featurizer: CompiledFeaturizer, block: FeatureBlock, M: np.ndarray, index: dict) -> tuple:
    n = M.shape[1]
    deferred = block.from_matrix(M, index)
    assert type(deferred) is MatrixBlock  # the C path, not the numpy one
    fast = featurizer.transform(None, n, {id(block): deferred})
    slow = featurizer.transform(None, n, {id(block): block.assemble_matrix(M, index)})
    return fast, slow


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True), np.nanmax(np.abs(a - b))
    assert np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize(("encoding", "unknown", "scaler", "max_onehot"), [
    ("ordinal", "nan", "MaxAbsScaler", 50),
    ("ordinal", "code", "StandardScalerWrapper", 50),
    ("ordinal", "nan", "RobustScaler", 50),
    ("ordinal", "code", "SparseNormalizer", 50),
    ("onehot", "nan", "MinMaxScaler", 5),
    ("onehot", "code", "RobustScaler", 50),
    ("onehot", "nan", "SparseNormalizer", 3),
    ("onehot", "nan", None, 3),
    ("ordinal", "nan", None, 50),
])
def test_the_c_featurizer_gives_the_numpy_paths_doubles(frames, encoding, unknown, scaler, max_onehot):
    train, test = frames
    f = Featurizer(encoding=encoding, unknown=unknown, scaler=scaler, max_onehot=max_onehot).fit(train)
    assert f.indicators_ and f.freq_columns_ and f.joint_freq_ is not None  # every part of the block is exercised
    columns, block, featurizer, reader = _setup(f, train)
    assert featurizer.c is not None, block.c_why
    records = _records(test, columns)
    want = f.transform(pd.DataFrame(records, columns=list(train.columns)))
    for n in (2, 5, 12, 13, 64, 100, 500):
        M = reader.read(records[:n])  # a contiguous matrix
        fast, slow = _both(featurizer, block, M, reader.index)
        _same(fast, slow)
        assert np.allclose(fast, want[:n], rtol=1e-12, atol=1e-12, equal_nan=True)
        parsed = reader.parse(orjson.dumps({"data": records[:n]}))  # the JSON reader's view (rows strided)
        assert parsed is not None
        _same(featurizer.transform(None, n, {id(block): block.from_matrix(parsed, reader.index)}), fast)


@pytest.mark.parametrize("scaler", [
    StandardScaler(with_mean=False), StandardScaler(with_std=False), StandardScaler(with_mean=False, with_std=False),
    RobustScaler(with_centering=False), RobustScaler(with_scaling=False), MinMaxScaler(feature_range=(-2, 3)),
])
def test_every_affine_scaler_form_takes_the_c_path_exactly(frames, scaler):
    train, test = frames
    f = Featurizer(scaler=None).fit(train)
    f.scaler_ = scaler.fit(f.transform(train)[:, : f.n_dense_])
    columns, block, featurizer, reader = _setup(f, train)
    assert featurizer.c is not None and featurizer._c_scale is None  # the scaler is done in C
    records = _records(test, columns)
    fast, slow = _both(featurizer, block, reader.read(records), reader.index)
    _same(fast, slow)
    want = f.transform(pd.DataFrame(records, columns=list(train.columns)))
    assert np.allclose(fast, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_frequency_keys_match_exactly_and_one_ulp_off_does_not(frames):
    train, _ = frames
    f = Featurizer(scaler=None).fit(train)
    columns, block, featurizer, reader = _setup(f, train)
    c = f.freq_columns_[0]
    values, shares = f.freq_tables_[c]
    at = list(f.feature_names_out_).index(f"{c}__freq")
    probes = [float(values[0]), float(values[-1]), float(np.nextafter(values[0], -math.inf)),
              float(np.nextafter(values[-1], math.inf)), float(values[len(values) // 2]) + 1e-9, None]
    base = _records(train.head(1), columns)[0]
    records = [base | {c: v} for v in probes]
    fast, slow = _both(featurizer, block, reader.read(records), reader.index)
    _same(fast, slow)
    assert fast[:, at].tolist() == [shares[0], shares[-1], 0.0, 0.0, 0.0, 0.0]


def test_without_the_library_the_numpy_path_serves(frames, monkeypatch):
    train, test = frames
    f = Featurizer().fit(train)
    columns, block, featurizer, reader = _setup(f, train)
    records = _records(test, columns)
    M = reader.read(records)
    want = featurizer.transform(None, len(records), {id(block): block.from_matrix(M, reader.index)})

    def fail():
        raise CannotCompile("no C compiler (gcc) to build the featurizer")

    monkeypatch.setattr(cfeaturize, "_library", Library(fail))
    plain_block = FeatureBlock(f)
    assert plain_block.c_spec is None and plain_block.c_why == "no C compiler (gcc) to build the featurizer"
    plain = CompiledFeaturizer(f, {FeatureBlock.key(f): plain_block})
    assert plain.c is None
    got = plain_block.from_matrix(M, reader.index)
    assert type(got) is tuple  # (dense, codes) arrays: the numpy path
    _same(plain.transform(None, len(records), {id(plain_block): got}), want)


def test_the_c_source_ships_with_the_package():
    from opml.serving.cbuild import source

    assert "opml_featurize" in source("featurize.c")


def test_a_table_the_c_cannot_express_keeps_the_numpy_path(frames):
    train, _ = frames
    f = Featurizer().fit(train)
    c = f.freq_columns_[0]
    values, shares = f.freq_tables_[c]
    f.freq_tables_[c] = (values[::-1].copy(), shares[::-1].copy())  # not sorted
    block = FeatureBlock(f)
    assert block.c_spec is None and "frequency table" in block.c_why
    assert CompiledFeaturizer(f, {FeatureBlock.key(f): block}).c is None
    with pytest.raises(CannotCompile, match="over the C featurizer's limits"):
        cfeaturize.block_spec(type("Wide", (), {"numeric": ["x"] * 300, "freq": []})())


def test_a_matrix_without_the_featurizers_columns_is_refused(frames):
    train, test = frames
    f = Featurizer().fit(train)
    columns, _, featurizer, reader = _setup(f, train)
    M = reader.read(_records(test.head(20), columns))
    with pytest.raises(ValueError, match="lacks the featurizer's columns"):
        featurizer.c(M[:3], reader.index)


def test_scorer_batches_from_json_match_the_model_and_the_numpy_path(frames, monkeypatch):
    train, test = frames
    y = np.where(train["duration"].fillna(0) > 300, "yes", "no")
    pipe = CandidatePipeline("LightGBM", {"n_estimators": 20, "num_leaves": 15, "min_child_samples": 10},
                             scaler="MaxAbsScaler", n_jobs=1)
    model = OpmlClassifier(pipe, threshold=0.4).fit(train, y)
    columns, example = schema_columns(model)
    fast = compile_model(model, "test:1", columns, example)
    monkeypatch.setattr(cfeaturize, "_library", Library(lambda: (_ for _ in ()).throw(CannotCompile("off"))))
    slow = compile_model(model, "test:1", columns, example)
    assert fast._blocks[0].c_spec is not None and slow._blocks[0].c_spec is None
    records = _records(test, columns)
    ref = model.predict_proba(pd.DataFrame(records, columns=list(train.columns)))
    for n in (2, 7, 13, 100, 257, 500):
        body = orjson.dumps({"data": records[:n]})
        got = fast.predict_batch(fast.read_json(body))
        assert np.abs(got - ref[:n]).max() < 1e-6
        assert np.array_equal(got, slow.predict_batch(slow.read_json(body)))
        assert fast.labels(got) == [str(v) for v in model.predict(pd.DataFrame(records[:n],
                                                                               columns=list(train.columns)))]


def test_the_json_reader_matches_levels_and_names_of_every_length():
    """The JSON reader compares and hashes texts by their first and last 8 bytes (the middle past 16): levels that
    differ only in the middle, share a head or a tail, or are empty are told apart; names of any length match."""
    from opml.serving.reader import RecordReader

    base = "abcdefghijklmnopqrstuvwxyz0123456789"
    levels = [base[:k] for k in range(0, 37)]
    levels += [s[:8] + "X" + s[9:] for s in levels if len(s) > 16]  # differs from its twin only in the middle
    levels += ["Z" + s[1:] for s in levels if len(s) > 1] + [s[:-1] + "Z" for s in levels if len(s) > 1]
    levels = list(dict.fromkeys(levels))
    lookup = {level: i for i, level in enumerate(levels)}
    columns = [Column("a", "numeric"), Column("c", "categorical"), Column("c" * 17, "numeric"),
               Column("name.with.16char", "categorical"), Column("x" * 8, "numeric")]
    try:
        reader = RecordReader(columns, {"c": lookup, "name.with.16char": lookup})
    except CannotCompile as why:
        pytest.skip(f"no C record reader here: {why}")
    probes = [*levels, "unseen", "abcdefghijklmnopqrstuvwxyz012345678", base + "!", "abcdefgh", "abcdefghX", None]
    records = [{"a": i, "c": v, "c" * 17: -i, "name.with.16char": probes[-1 - i], "x" * 8: 0.5}
               for i, v in enumerate(probes)]
    got = reader.parse(orjson.dumps({"data": records}))
    assert got is not None
    assert np.array_equal(got, reader.read(records), equal_nan=True)
    assert got[1].tolist() == [float(lookup.get(v, -1)) if v is not None else -1.0 for v in probes]
    odd = [Column("a", "numeric"), Column('q"uote', "categorical")]  # a name that is not plain text
    reader = RecordReader(odd, {'q"uote': {"x": 0}})
    assert reader.parse(orjson.dumps({"data": [{"a": 1, 'q"uote': "x"}]})) is None  # left to orjson


@pytest.mark.parametrize("levels", [(2, 3), (7, 64), (255, 256), (1000, 17)])
def test_frequency_and_joint_lookups_over_tables_of_any_size(c_library, levels):
    """Frequency tables of 2 to 1,000 levels and their joint keys: every key, every midpoint, beyond both ends and
    NaN give the numpy path's (searchsorted + equality) doubles."""
    rng = np.random.default_rng(sum(levels))
    n = 25_000
    keys = [np.sort(rng.choice(np.arange(1, 100_000) / 64.0, size=k, replace=False)) for k in levels]
    train = pd.DataFrame({"x1": rng.choice(keys[0], n), "x2": rng.choice(keys[1], n),
                          "c": rng.choice(["a", "b", "c"], n)})
    f = Featurizer(scaler="MaxAbsScaler").fit(train)
    assert f.freq_columns_ == ["x1", "x2"] and f.joint_freq_ is not None
    _, block, featurizer, reader = _setup(f, train)
    probes = []
    for k in keys:
        mids = (k[:-1] + k[1:]) / 2
        probes.append(np.concatenate([k, mids, [k[0] - 1.0, k[-1] + 1.0, np.nan, -0.0]]))
    m = max(map(len, probes))
    x1, x2 = (np.resize(p, m) for p in probes)
    x2 = np.roll(x2, 1)  # other pairs than the fitted ones too
    records = [{"x1": None if math.isnan(a) else float(a), "x2": None if math.isnan(b) else float(b), "c": "a"}
               for a, b in zip(x1, x2, strict=True)]
    fast, slow = _both(featurizer, block, reader.read(records), reader.index)
    _same(fast, slow)
    assert (fast[:, 2:5] != 0).any(axis=0).all()  # each table and the joint one found keys, not only zeros
