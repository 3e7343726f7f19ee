"""The C sources shipped as package data and their build cache (opml/serving/cbuild.py)."""

from __future__ import annotations

import pytest

from opml.serving import cbuild
from opml.serving.cbuild import CannotCompile, Library, build, source


def test_the_c_sources_ship_with_the_package():
    assert "opml_forest_predict_qsv" in source("treekernel.c")
    assert "opml_read_records" in source("reader.c")
    with pytest.raises(CannotCompile, match=r"cannot read the C source nothing\.c"):
        source("nothing.c")


def test_the_cache_key_holds_the_source_text(monkeypatch, tmp_path):
    monkeypatch.setenv("OPML_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv("OPML_NO_CC", raising=False)
    one = build("probe", "int probe(void) { return 1; }\n", what="probe")
    built = one.stat().st_mtime_ns
    again = build("probe", "int probe(void) { return 1; }\n", what="probe")  # cached: not rebuilt
    assert again.stat().st_mtime_ns == built
    two = build("probe", "int probe(void) { return 2; }\n", what="probe")
    assert one == again and one != two and one.is_file() and two.is_file()
    monkeypatch.setenv("OPML_NO_CC", "1")
    with pytest.raises(CannotCompile, match="no C compiler"):
        build("probe", "int probe(void) { return 3; }\n", what="probe")


def test_a_library_that_cannot_load_says_why_every_time():
    calls = []

    def load():
        calls.append(1)
        raise CannotCompile("no C compiler (gcc) to build the probe")

    lib = Library(load)
    for _ in range(2):
        with pytest.raises(CannotCompile, match="no C compiler"):
            lib.get()
    assert len(calls) == 1 and cbuild.CannotCompile is CannotCompile


def test_address_is_the_arrays_data_pointer_for_every_layout():
    """cbuild.address, the request path's cheap a.ctypes.data: the same address whatever the array's layout."""
    import numpy as np

    from opml.serving.cbuild import address

    a = np.arange(60.0).reshape(6, 10)
    ro = a.copy()
    ro.setflags(write=False)
    for arr in (a, a[2:], a[:, :1], a[:, 3:], a.T, np.asfortranarray(a), ro, np.empty((20, 0)), np.empty(0),
                np.empty((20, 1)), a[::2]):
        assert address(arr) == arr.ctypes.data
