"""A batch of JSON records read into a column matrix in one C pass (checks, transposition, category codes).

For a 100-row request this replaces ~2,000 Python-level steps (dict lookups, type checks, category
lookups, float conversions) with one call through the CPython API. The library is built by
opml.serving.cbuild from opml/serving/csrc/reader.c against Python.h and loaded with ctypes.PyDLL,
so the GIL is held while it reads the (borrowed) objects. It enforces exactly the rules of
opml.serving.requests.columnar; on the first record that breaks one, the row-by-row check in Python
names the problem. `RecordReader.parse` reads a plain {"data": [...]} body's bytes into the same matrix
(opml_parse_json: no JSON objects at all), value for value what orjson then `read` give; any other body
returns None and takes that usual path.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from opml.serving.cbuild import CannotCompile, Library, address, build, source
from opml.serving.requests import Column, RequestError, explain


def _load() -> Any:
    try:
        lib = ctypes.PyDLL(str(build("records", source("reader.c"), what="record reader", python=True)))
        fn, parse = lib.opml_read_records, lib.opml_parse_json
    except (OSError, AttributeError) as exc:
        raise CannotCompile(f"cannot load the record reader: {exc}") from exc
    fn.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p]
    fn.restype = ctypes.c_ssize_t
    parse.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
    parse.restype = ctypes.c_int64
    return fn, parse


_library = Library(_load)


def library() -> Any:
    """The C functions (opml_read_records, opml_parse_json; built on first use, cached on disk); CannotCompile
    with the reason when impossible."""
    return _library.get()


class _JsonSchema(ctypes.Structure):
    _fields_ = [("m", ctypes.c_int32)] + [(name, ctypes.c_void_p) for name in (
        "names", "name_off", "kinds", "levels", "level_off", "level_code", "slot_off", "slot_mask", "slots",
        "name_plain", "name_words", "level_words")]


_MASK64 = (1 << 64) - 1


def text_words(data: bytes) -> tuple[int, int]:
    """(head, tail): the words opml_parse_json compares and hashes a text by: the first 8 bytes when there are
    more than 8 (else 0) and the last (up to) 8, little-endian."""
    return int.from_bytes(data[:8], "little") if len(data) > 8 else 0, int.from_bytes(data[-8:], "little")


def text_hash(data: bytes) -> int:
    """The hash opml_parse_json looks category levels up by (text_hash in reader.c)."""
    head, tail = text_words(data)
    h = (tail * 0x9E3779B97F4A7C15 & _MASK64) ^ (head * 0xC2B2AE3D27D4EB4F & _MASK64) ^ \
        (len(data) * 0x165667B19E3779F9 & _MASK64)
    return h >> 32


class JsonSchema:
    """The tables opml_parse_json reads: column names, kinds, and per categorical column an open-addressing
    hash table of its levels (level -> code, as `lookups`). Keeps the arrays alive; `ptr` is the struct."""

    def __init__(self, columns: list[Column], kinds: np.ndarray, lookups: tuple[Any, ...]) -> None:
        names = [c.name.encode() for c in columns]
        levels: list[bytes] = []
        codes: list[int] = []
        slot_off, slot_mask, slots = [], [], []
        for table in lookups:
            table = table or {}
            size = 1
            while size < 2 * len(table):
                size *= 2
            mine = [-1] * size
            for level, code in table.items():
                b = level.encode()
                h = text_hash(b) & (size - 1)
                while mine[h] >= 0:
                    h = (h + 1) & (size - 1)
                mine[h] = len(levels)
                levels.append(b)
                codes.append(int(code))
            slot_off.append(len(slots))
            slot_mask.append(size - 1)
            slots.extend(mine)
        i32 = np.int32
        self._keep = {
            "names": np.frombuffer(b"".join(names) + b"\0", dtype=np.uint8),
            "name_off": np.asarray(np.cumsum([0, *map(len, names)]), dtype=i32),
            "kinds": np.ascontiguousarray(kinds, dtype=i32),
            "levels": np.frombuffer(b"".join(levels) + b"\0", dtype=np.uint8),
            "level_off": np.asarray(np.cumsum([0, *map(len, levels)]), dtype=i32),
            "level_code": np.asarray(codes or [0], dtype=i32),
            "slot_off": np.asarray(slot_off, dtype=i32),
            "slot_mask": np.asarray(slot_mask, dtype=i32),
            "slots": np.asarray(slots, dtype=i32),
            # a plain name's JSON text is the name itself: the C matches it without scanning the key first
            "name_plain": np.asarray([all(0x20 <= b < 0x80 and b not in b'"\\' for b in n) for n in names], dtype=i32),
            "name_words": np.asarray([w for n in names for w in text_words(n)] or [0], dtype=np.uint64),
            "level_words": np.asarray([w for b in levels for w in text_words(b)] or [0], dtype=np.uint64),
        }
        self.struct = _JsonSchema(len(columns), *(a.ctypes.data for a in self._keep.values()))
        self.ptr = ctypes.addressof(self.struct)
        # no record is shorter than {"name":0,...}: a bound on the records a body can hold
        self.min_record = sum(len(n) + 4 for n in names) + 1


class RecordReader:
    """`read(records)` -> (len(columns) x n) float64: numbers (NaN for null) and category codes (-1: null or
    unseen) under `lookups` (column -> {level: code}; a categorical column without one reads every value as
    unseen). Raises RequestError naming the first bad record, like opml.serving.requests.columnar."""

    def __init__(self, columns: list[Column], lookups: Mapping[str, Mapping[str, int]]) -> None:
        self._fn, self._parse = library()
        self.columns = columns
        self.index = {c.name: j for j, c in enumerate(columns)}
        self._names = tuple(sys.intern(c.name) for c in columns)
        self._kinds = np.asarray([0 if c.kind == "numeric" else 1 for c in columns], dtype=np.int32)
        self._lookups = tuple(None if c.kind == "numeric" else dict(lookups.get(c.name, {})) for c in columns)
        self._json = JsonSchema(columns, self._kinds, self._lookups) if 0 < len(columns) <= 64 else None

    def read(self, records: list[Any]) -> np.ndarray:
        if type(records) is not list:
            raise RequestError(422, '"data" must be a list of records (objects)')
        out = np.empty((len(self._names), len(records)))
        bad = self._fn(records, self._names, self._kinds.ctypes.data, self._lookups, out.ctypes.data)
        if bad >= 0:
            explain(records, self.columns)
            raise RequestError(422, f"record {bad} does not match the input schema")
        return out

    def parse(self, raw: bytes) -> np.ndarray | None:
        """A plain {"data": [records]} body read straight into the matrix `read` returns (a view of its first n
        columns), with no Python object per value; None for any other body -- another form, a problem, text
        with escapes or beyond ASCII -- which the caller then parses the usual way (naming any problem)."""
        schema = self._json
        if schema is None:
            return None
        cap = len(raw) // schema.min_record  # a bound on the records it can hold (no pass over the body for it)
        if cap < 1:
            return None
        out = np.empty((len(self._names), cap))
        n = self._parse(schema.ptr, raw, len(raw), address(out), cap)
        if n < 1:
            return None
        return out if n == cap else out[:, :n]
