"""Detached helper processes (endpoints, the control plane, pipeline runs): start, wait until ready, probe, stop.

A process is started in its own session, so stopping its group stops every worker it forked; it is
recognised by its command line as well as its PID, which guards against PID reuse.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Exited(Exception):
    """The process ended before it was ready."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def spawn(module: str, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run `python -m module args...` detached (own session), output appended to `log`.

    The child gets this environment (with `env` as defaults) minus the OPML_CLIENT_* credentials.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    environ = (env or {}) | {k: v for k, v in os.environ.items() if not k.startswith("OPML_CLIENT")}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, env=environ, start_new_session=True, close_fds=True)


def wait_ready(proc: subprocess.Popen, ready: Callable[[], T], host: str, port: int, timeout: float) -> T:
    """Poll until `ready()` gives a true value and host:port accepts connections; return that value.

    Raises Exited if the process ends first, TimeoutError after `timeout` seconds (the process is then stopped).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value and _connects(host, port):
            return value
        if proc.poll() is not None:
            raise Exited(proc.returncode)
        time.sleep(0.05)
    stop(proc.pid)
    raise TimeoutError(f"not ready within {timeout:.0f} s")


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def log_tail(log: Path) -> str:
    """The last error line of a process's log (else its last line), for a one-line failure message."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["no output"])[-1].strip()[:300]


def alive(pid: int | None, *marks: str) -> bool:
    """True if `pid` runs (not a zombie) and each of `marks` is one of its command-line arguments."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie has exited
        return False
    args = cmdline.split(b"\0")
    return all(m.encode() in args for m in marks)


def stop(pid: int | None, *marks: str, timeout: float = 10.0) -> bool:
    """SIGTERM the process group (all workers), then SIGKILL after `timeout`. True if it was running.

    `marks` as for alive(): a process whose command line lacks them is not ours and is left alone.
    """
    if not alive(pid, *marks):
        return False
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


PF_EXITING = 0x4  # /proc/PID/stat field 9 (flags): the process has begun to exit
SIGKILL_MASK = 1 << (signal.SIGKILL - 1)  # its bit in /proc/PID/status SigPnd and ShdPnd


def start_ticks(pid: int | None) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/PID/stat field 22); None if it is not running.

    Recorded with a pid, it tells the process apart from a later one that is given the same pid. A dying process
    is not running: one with a SIGKILL pending (from the moment kill() returns) or already exiting (PF_EXITING:
    after kill -9 it stays in state R while the kernel frees its memory, tens of milliseconds for a few hundred
    MB, longer on a loaded machine), as well as a zombie. It never runs its own code again, so what it owns
    (a run, a step) has no owner now.
    """
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()  # fields[0] is field 3
        if fields[0] in ("Z", "X") or int(fields[6]) & PF_EXITING:  # exited (not yet reaped) or exiting
            return None
        if _kill_pending(Path(f"/proc/{pid}/status").read_text()):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _kill_pending(status: str) -> bool:
    """A SIGKILL waits for the process (/proc/PID/status text): for this thread (SigPnd) or the process (ShdPnd)."""
    return any(line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & SIGKILL_MASK
               for line in status.splitlines())


def same_process(pid: int | None, ticks: int | None) -> bool:
    """True while the process recorded as (`pid`, start_ticks(pid) == `ticks`) still runs (and is not dying)."""
    return ticks is not None and start_ticks(pid) == ticks


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid` (an endpoint's supervisor and its workers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids
