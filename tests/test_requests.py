"""Request checking: requests.columnar (Python) and reader.RecordReader (C), and the row-by-row errors both defer to."""

from __future__ import annotations

import numpy as np
import pytest

from opml.serving.reader import RecordReader
from opml.serving.requests import Column, RequestError, columnar

COLUMNS = [Column("age", "numeric"), Column("job", "categorical"), Column("euribor3m", "numeric")]
LOOKUPS = {"job": {"admin.": 0, "technician": 1}}


def _records(n: int) -> list[dict]:
    return [{"age": 20 + i, "job": ["admin.", "technician", None][i % 3], "euribor3m": None if i % 7 == 0 else 4.5 + i}
            for i in range(n)]


def test_valid_batch_is_transposed_in_schema_order():
    recs = _records(100)
    cols = columnar(recs, COLUMNS)
    assert list(cols) == ["age", "job", "euribor3m"]
    for c in COLUMNS:
        assert list(cols[c.name]) == [r[c.name] for r in recs]
    reordered = [{"euribor3m": r["euribor3m"], "job": r["job"], "age": r["age"]} for r in recs]
    assert {k: list(v) for k, v in columnar(reordered, COLUMNS).items()} == {k: list(v) for k, v in cols.items()}


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r | {"age": True}, "record 57: column 'age' must be a number, got a boolean"),
    (lambda r: r | {"age": "41"}, "record 57: column 'age' must be a number, got a string"),
    (lambda r: r | {"job": 7}, "record 57: column 'job' must be a string, got int"),
    (lambda r: r | {"job": ["a"]}, "record 57: column 'job' must be a string, got a list"),
    (lambda r: {"age": r["age"], "job": r["job"], "euribor": 1.0}, "record 57: missing column(s): euribor3m; "
                                                                   "unknown column(s): euribor"),
    (lambda r: {"age": r["age"], "job": r["job"]}, "record 57: missing column(s): euribor3m"),
    (lambda r: r | {"extra": 1}, "record 57: unknown column(s): extra"),
    (lambda r: [r["age"], r["job"], r["euribor3m"]], "record 57 is not an object of column: value pairs"),
    (lambda r: "age=41", "record 57 is not an object of column: value pairs"),
])
@pytest.mark.parametrize("check", ["columnar", "reader"])
def test_a_bad_record_deep_in_a_batch_is_named(change, message, check):
    recs = _records(100)
    recs[57] = change(recs[57])
    read = (lambda r: columnar(r, COLUMNS)) if check == "columnar" else RecordReader(COLUMNS, LOOKUPS).read
    with pytest.raises(RequestError) as err:
        read(recs)
    assert err.value.status == 422 and err.value.message == message


def test_the_c_reader_reads_numbers_nulls_and_category_codes():
    recs = _records(100)
    recs[3]["job"] = "astronaut"  # unseen: -1, like null
    recs[4]["age"] = 2**62 + 1  # a big int reads as float() reads it
    M = RecordReader(COLUMNS, LOOKUPS).read(recs)
    assert M.shape == (3, 100)
    assert M[0].tolist() == [float(r["age"]) for r in recs]
    assert M[1].tolist() == [float(LOOKUPS["job"].get(r["job"], -1)) for r in recs]
    expected = [np.nan if r["euribor3m"] is None else r["euribor3m"] for r in recs]
    assert np.array_equal(M[2], np.array(expected), equal_nan=True)
    assert RecordReader(COLUMNS, {}).read(recs)[1].tolist() == [-1.0] * 100  # no table: every level unseen
    with pytest.raises(RequestError, match="list of records"):
        RecordReader(COLUMNS, LOOKUPS).read(tuple(recs))


def test_single_column_schema():
    cols = columnar([{"age": 1}, {"age": 2.5}, {"age": None}], [Column("age", "numeric")])
    assert list(cols["age"]) == [1, 2.5, None]
    with pytest.raises(RequestError, match="record 1: unknown column"):
        columnar([{"age": 1}, {"age": 2, "x": 1}], [Column("age", "numeric")])


def test_the_c_reader_survives_a_key_that_mutates_the_batch():
    """Parsed JSON never does this, but an in-process caller's str subclass could run code mid-read."""
    recs: list[dict] = []

    class Key(str):
        def __eq__(self, other):
            recs.clear()
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    recs.extend({Key("age"): 1} for _ in range(50))
    with pytest.raises(RequestError) as err:
        RecordReader([Column("age", "numeric")], {}).read(recs)
    assert err.value.status == 422
