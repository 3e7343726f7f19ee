"""The C JSON reader (opml_parse_json via RecordReader.parse): a plain {"data": [...]} body straight into the
record matrix, value for value what orjson and the record reader give; any other body is left to them."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import orjson
import pytest

from opml.serving.cbuild import CannotCompile
from opml.serving.requests import Column

COLUMNS = [Column("age", "numeric"), Column("job", "categorical"), Column("rate", "numeric"),
           Column("month", "categorical"), Column("n", "numeric")]
LOOKUPS = {"job": {"admin.": 0, "blue-collar": 1, "": 2, "café": 3}, "month": {f"m{i}": i for i in range(40)}}
ROW = {"age": 41, "job": "admin.", "rate": 1.25, "month": "m3", "n": None}


@pytest.fixture(scope="module")
def reader():
    from opml.serving.reader import RecordReader

    try:
        return RecordReader(COLUMNS, LOOKUPS)
    except CannotCompile as why:
        pytest.skip(f"no C record reader here: {why}")


def _usual(reader, body: bytes) -> np.ndarray:
    return reader.read(orjson.loads(body)["data"])


def test_plain_bodies_read_exactly_like_orjson_then_the_record_reader(reader):
    rng = random.Random(7)
    numbers = [lambda: None, lambda: rng.randint(-10**18 + 1, 10**18 - 1), lambda: rng.uniform(-1e6, 1e6),
               lambda: rng.random() * 10.0 ** rng.randint(-300, 300), lambda: -0.0, lambda: 0, lambda: -5,
               lambda: float(rng.randint(-10**6, 10**6)) / 1000, lambda: 2.2250738585072014e-308]
    texts = [None, "admin.", "blue-collar", "", "never seen", "m3", "m39", "m40", "ADMIN."]
    for _ in range(400):
        records = []
        for _row in range(rng.choice([1, 1, 2, 13, 40])):
            rec = {"age": rng.choice(numbers)(), "job": rng.choice(texts), "rate": rng.choice(numbers)(),
                   "month": rng.choice(texts), "n": rng.choice(numbers)()}
            if rng.random() < 0.3:  # key order is free
                rec = dict(rng.sample(list(rec.items()), len(rec)))
            records.append(rec)
        doc = {"data": records}
        body = rng.choice([orjson.dumps(doc), json.dumps(doc).encode(), json.dumps(doc, indent=2).encode(),
                           b" \r\n\t" + json.dumps(doc, separators=(" , ", " : ")).encode() + b"\n"])
        got = reader.parse(body)
        assert got is not None, body[:200]
        want = _usual(reader, body)
        assert got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True), body[:200]
        assert np.array_equal(np.signbit(got), np.signbit(want)), body[:200]  # -0.0 as orjson reads it


@pytest.mark.parametrize("body", [
    b"", b"[]", b"{}", b'{"data": []}', b'{"data": [{}]}', b'{"data": [1]}', b'{"data": {}}',
    b'\xef\xbb\xbf' + orjson.dumps({"data": [ROW]}),  # BOM
    orjson.dumps({"data": [ROW]}) + b" x", orjson.dumps({"data": [ROW]})[:-2],
    orjson.dumps({"data": [ROW]}).replace(b"]", b",]"), orjson.dumps({"data": [ROW], "more": 1}),
    orjson.dumps({"Inputs": {"data": [ROW]}}), orjson.dumps({"data": [ROW]})[:-1] + b',"data":[]}',
    orjson.dumps({"data": [ROW | {"age": True}]}), orjson.dumps({"data": [ROW | {"age": "41"}]}),
    orjson.dumps({"data": [ROW | {"job": 1}]}), orjson.dumps({"data": [ROW | {"job": ["a"]}]}),
    orjson.dumps({"data": [ROW | {"job": "café"}]}),  # beyond ASCII: the usual path
    orjson.dumps({"data": [ROW | {"job": 'a"b'}]}), orjson.dumps({"data": [ROW | {"extra": 1}]}),
    orjson.dumps({"data": [{k: v for k, v in ROW.items() if k != "age"}]}),
    orjson.dumps({"data": [ROW]}).replace(b'"age":41', b'"age":41,"age":41'),  # duplicate key
    orjson.dumps({"data": [ROW]}).replace(b"41", b"041"), orjson.dumps({"data": [ROW]}).replace(b"41", b"NaN"),
    orjson.dumps({"data": [ROW]}).replace(b"41", b"4."), orjson.dumps({"data": [ROW]}).replace(b"41", b"1e400"),
    orjson.dumps({"data": [ROW]}).replace(b"41", b"1e-400"), orjson.dumps({"data": [ROW]}).replace(b"41", b"+41"),
    orjson.dumps({"data": [ROW]}).replace(b"41", b"1234567890123456789"),  # 19 digits: left to orjson
    orjson.dumps({"data": [ROW]}).replace(b"null", b"nul"),
])
def test_other_bodies_are_left_to_the_usual_path(reader, body):
    assert reader.parse(body) is None


def test_a_body_of_braces_costs_no_more_than_its_size(reader):
    t0 = time.perf_counter()
    assert reader.parse(b"{" * 1_000_000) is None
    assert reader.parse(b'{"data": [' + b"{" * 1_000_000) is None
    assert time.perf_counter() - t0 < 1.0


def test_number_texts_read_as_orjson_reads_them(reader):
    """Decimals of every shape (short ones take the exact fast path, long ones strtod) equal orjson's floats."""
    rng = random.Random(11)
    texts = []
    for _ in range(20_000):
        mant = str(rng.randint(0, 10 ** rng.randint(1, 20)))
        point = rng.randint(0, len(mant))
        text = (mant[:point] or "0") + ("." + mant[point:] if point < len(mant) else "")
        text = text.lstrip("0") or "0"
        if text.startswith("."):
            text = "0" + text
        if rng.random() < 0.4:
            text += rng.choice(["e", "E"]) + rng.choice(["", "+", "-"]) + str(rng.randint(0, 40))
        if "." not in text and "e" not in text.lower():
            text += ".0"
        texts.append(rng.choice(["", "-"]) + text)
    for chunk in range(0, len(texts), 500):
        part = texts[chunk:chunk + 500]
        records = ",".join(f'{{"age": {t}, "job": null, "rate": 0.5, "month": "m1", "n": null}}' for t in part)
        body = ('{"data": [' + records + "]}").encode()
        got = reader.parse(body)
        assert got is not None
        want = np.array([orjson.loads(t) for t in part])
        assert np.array_equal(got[0], want), [t for t, g, w in zip(part, got[0], want, strict=True) if g != w][:5]
        assert np.array_equal(np.signbit(got[0]), np.signbit(want))
