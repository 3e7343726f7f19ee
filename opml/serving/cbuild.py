"""Small C sources built once per machine with gcc and cached on disk (the tree kernel, the record reader).

The sources ship as package data in opml/serving/csrc/ (`source(name)` reads one). A library is cached
under ~/.cache/opml/kernels (or $OPML_KERNEL_CACHE) by the hash of its source text, the compiler, the
CPU's flags (-march=native code is CPU-specific) and the build flags. Every failure -- a missing source,
no compiler ($OPML_NO_CC forces that), a failed build, a library that will not load -- raises
CannotCompile with the reason, so callers keep their plain-Python path and can say why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

_char_at = ctypes.c_char.from_buffer


def address(a: Any) -> int:
    """The address of numpy array `a`'s data, as `a.ctypes.data` gives it, in about 0.4 µs instead of 0.9 (that
    builds a helper object on every call); for the C calls on a request's path. Arrays that are not writable and
    C-contiguous (or are empty) take a.ctypes.data."""
    try:
        return ctypes.addressof(_char_at(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


class CannotCompile(Exception):
    """This cannot take the compiled path (the message says why); the caller keeps the plain one."""


# No -ffast-math: comparisons and sums must stay IEEE-exact (and no FMA contraction either).
FLAGS = (["-O3", "-march=native", "-ffp-contract=off"], ["-O2", "-ffp-contract=off"])


def source(name: str) -> str:
    """The text of the C source `name` shipped in opml/serving/csrc/ (CannotCompile when it is missing)."""
    try:
        return (resources.files("opml.serving") / "csrc" / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise CannotCompile(f"cannot read the C source {name}: {exc}") from exc


def cache_dir() -> Path:
    """Where built libraries are kept: $OPML_KERNEL_CACHE, else the user's cache, else the temp folder."""
    if os.environ.get("OPML_KERNEL_CACHE"):
        return Path(os.environ["OPML_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opml" / "kernels"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"opml-kernels-{os.getuid()}"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return ""


def build(name: str, source: str, *, what: str, python: bool = False) -> Path:
    """The path of `source` built as a shared library (cached). `python`: compile against Python.h
    (the library must then be loaded with ctypes.PyDLL, which keeps the GIL held during calls)."""
    cc = None if os.environ.get("OPML_NO_CC") else os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    extra: list[str] = []
    if python:
        include = sysconfig.get_paths().get("include") or ""
        if not Path(include, "Python.h").is_file():
            raise CannotCompile(f"no Python.h (Python development headers) to build the {what}")
        extra = [f"-I{include}"]
    key = "\0".join([source, str(cc), _cpu_flags(), repr(FLAGS), *extra])
    target = cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if target.is_file():
        return target
    if cc is None:
        raise CannotCompile(f"no C compiler (gcc) to build the {what}")
    errors = []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            src = Path(tmp, f"{name}.c")
            src.write_text(source)
            so = Path(tmp, f"{name}.so")
            for flags in FLAGS:
                done = subprocess.run([cc, *flags, *extra, "-shared", "-fPIC", "-o", str(so), str(src)],
                                      capture_output=True, text=True, timeout=120)
                if done.returncode == 0:
                    break
                errors.append(done.stderr.strip()[:300])
            else:
                raise CannotCompile(f"{cc} failed to build the {what}: {errors[-1]}")
            os.replace(so, target)  # atomic: concurrent workers see a whole file or none
    except (OSError, subprocess.SubprocessError) as exc:
        raise CannotCompile(f"cannot build the {what}: {exc}") from exc
    return target


class Library:
    """A library loaded on first use by `load`, then kept; when `load` raises CannotCompile, every
    `get()` raises it again with the same reason (no rebuild attempt per model)."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: Any = None
        self._error: str | None = None

    def get(self) -> Any:
        with self._lock:
            if self._value is None and self._error is None:
                try:
                    self._value = self._load()
                except CannotCompile as why:
                    self._error = str(why)
            if self._value is None:
                raise CannotCompile(self._error)
            return self._value
