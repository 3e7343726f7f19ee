"""Process identity (opml.processes): a process killed -9 stops owning anything the moment kill() returns.

A run records its owner as pid + start time; reads compare them with /proc. After kill -9 a process stays in
/proc (state R, its command line already empty) while the kernel frees its memory, and under load that takes
long enough for a read to land in between: such a read used to see the owner alive and leave its run Running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from opml import processes

# a child whose address space takes the kernel a while to free after kill -9 (tens of milliseconds)
BIG = ("import sys, time\nb = bytearray(256 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
       "print('ready', flush=True)\ntime.sleep(600)\n")


def _big_child() -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", BIG], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_a_killed_process_is_gone_as_soon_as_kill_returns():
    proc = _big_child()
    try:
        ticks = processes.start_ticks(proc.pid)
        assert ticks is not None and processes.same_process(proc.pid, ticks)
        os.kill(proc.pid, signal.SIGKILL)
        # at once, with no wait: the process may not even have been scheduled to die yet
        assert processes.start_ticks(proc.pid) is None
        assert not processes.same_process(proc.pid, ticks)
        assert Path(f"/proc/{proc.pid}").exists()  # the kernel is still tearing it down (or it is unreaped)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_a_process_being_torn_down_is_not_its_owner_any_more():
    """Every moment after kill -9 (state R with an empty command line, then zombie, then gone), it is not running."""
    for _ in range(3):
        proc = _big_child()
        try:
            ticks = processes.start_ticks(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            seen = set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    empty = not Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                except OSError:
                    break
                seen.add((state, empty))
                assert not processes.same_process(proc.pid, ticks), (state, empty)
                if state == "Z":
                    break
            assert seen, "never saw the process after the kill"
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
    assert processes.start_ticks(proc.pid) is None  # reaped


def test_a_live_process_and_a_stopped_one_are_running():
    """Only death counts: a process that is stopped (SIGSTOP) or has other signals pending still owns its runs."""
    proc = subprocess.Popen([sys.executable, "-c", "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, "
                             "{signal.SIGUSR1})\nprint('ready', flush=True)\ntime.sleep(600)\n"],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline() == b"ready\n"
        ticks = processes.start_ticks(proc.pid)
        assert ticks is not None and ticks == processes.start_ticks(proc.pid)
        os.kill(proc.pid, signal.SIGSTOP)
        os.kill(proc.pid, signal.SIGUSR1)  # blocked: it stays pending
        deadline = time.monotonic() + 10
        while "T (stopped)" not in (status := Path(f"/proc/{proc.pid}/status").read_text()):
            assert time.monotonic() < deadline, status
            time.sleep(0.01)
        pending = next(int(ln.split()[1], 16) for ln in status.splitlines() if ln.startswith("ShdPnd:"))
        assert pending & 1 << (signal.SIGUSR1 - 1)
        assert processes.same_process(proc.pid, ticks)
        assert not processes.same_process(proc.pid, ticks - 1)  # a recycled pid: another start time
        os.kill(proc.pid, signal.SIGCONT)
        assert processes.same_process(proc.pid, ticks)
        assert processes.same_process(os.getpid(), processes.start_ticks(os.getpid()))
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert processes.start_ticks(proc.pid) is None
