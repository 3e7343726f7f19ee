"""Small C sources built once per machine with gcc and cached on disk (the tree kernel, the record reader).

A library is cached under ~/.cache/opml/kernels (or $OPML_KERNEL_CACHE) by the hash of its source, the
compiler, the CPU's flags (-march=native code is CPU-specific) and the build flags. Every failure -- no
compiler ($OPML_NO_CC forces that), a failed build, a library that will not load -- raises
NotImplementedError with the reason, so callers keep their plain-Python path and can say why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# No -ffast-math: comparisons and sums must stay IEEE-exact (and no FMA contraction either).
FLAGS = (["-O3", "-march=native", "-ffp-contract=off"], ["-O2", "-ffp-contract=off"])


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
            raise NotImplementedError(f"no Python.h (Python development headers) to build the {what}")
        extra = [f"-I{include}"]
    key = "\0".join([source, str(cc), _cpu_flags(), repr(FLAGS), *extra])
    target = cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if target.is_file():
        return target
    if cc is None:
        raise NotImplementedError(f"no C compiler (gcc) to build the {what}")
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
                raise NotImplementedError(f"{cc} failed to build the {what}: {errors[-1]}")
            os.replace(so, target)  # atomic: concurrent workers see a whole file or none
    except (OSError, subprocess.SubprocessError) as exc:
        raise NotImplementedError(f"cannot build the {what}: {exc}") from exc
    return target


class Library:
    """A library loaded on first use by `load`, then kept; when `load` raises NotImplementedError, every
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
                except NotImplementedError as why:
                    self._error = str(why)
            if self._value is None:
                raise NotImplementedError(self._error)
            return self._value
