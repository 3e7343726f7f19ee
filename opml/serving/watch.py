"""Whether a file may have changed since it was last read, without a stat per request.

An endpoint worker re-reads its keys file and its telemetry switch when they change, and must see a change from
the next request on. A stat per request and per file costs two syscalls on the hot path. Instead, once
`FileWatch.attach` has run in the worker's event loop, inotify (the inotify_simple library) watches the files'
folders and the loop reads its events, which mark the files stale. The kernel queues an event when the file is
written or replaced, before the writer (a CLI command, an editor) has returned, and the loop handles ready
descriptors in the order they became ready, so the event is read before a request sent after the change.
Each file is still re-read at least every RECHECK_S seconds, which covers what inotify cannot see (a change made
on another machine on a network file system) and a full event queue. Without inotify (not Linux, the library
missing, a folder that cannot be watched) a file is stale on every call, as with a stat per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECHECK_S = 1.0  # a watched file is re-read at least this often, whatever inotify says
log = logging.getLogger("opml.endpoint")


class Watched:
    """One watched file: `stale()` says whether to re-read it now."""

    __slots__ = ("changed", "due", "path", "watching")

    def __init__(self, path: str) -> None:
        self.path = path
        self.watching = False  # inotify watches its folder
        self.changed = True  # an event came since the last re-read
        self.due = 0.0  # when it is re-read anyway

    def stale(self) -> bool:
        """True when the file may have changed since the last time this returned True (the caller re-reads it)."""
        if not self.watching:
            return True
        now = time.monotonic()
        if self.changed or now >= self.due:
            self.changed, self.due = False, now + RECHECK_S
            return True
        return False


class FileWatch:
    """The files one process watches, and the inotify descriptor its event loop reads."""

    def __init__(self) -> None:
        self.files: dict[str, Watched] = {}
        self._inotify: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirs: dict[int, str] = {}  # watch descriptor -> folder

    def watch(self, path: Path | str) -> Watched:
        """The Watched for `path` (stale on every call until attach() watches its folder)."""
        key = os.path.abspath(path)
        return self.files.setdefault(key, Watched(key))

    def attach(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Watch the files' folders with inotify, read by `loop` (the worker's, once it runs); False when not
        possible, and the files stay stale on every call."""
        try:
            from inotify_simple import INotify, flags
        except ImportError:
            return False
        try:
            inotify = INotify(nonblocking=True)
        except OSError as exc:
            log.warning("cannot watch the keys and telemetry files (%s); they are checked on every request", exc)
            return False
        mask = (flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM | flags.MOVED_TO | flags.CREATE
                | flags.DELETE | flags.DELETE_SELF | flags.MOVE_SELF)
        for folder in sorted({os.path.dirname(p) for p in self.files}):
            try:
                self._dirs[inotify.add_watch(folder, mask)] = folder
            except OSError:  # a missing or unreadable folder: its files are checked on every call
                continue
        self._inotify, self._loop = inotify, loop
        loop.add_reader(inotify.fileno(), self._read)
        for w in self.files.values():
            if os.path.dirname(w.path) in self._dirs.values():
                w.changed, w.watching = True, True
        return True

    def _read(self) -> None:
        from inotify_simple import flags

        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            events = []
            self._stop_watching(lambda w: True)
        for event in events:
            if event.mask & flags.Q_OVERFLOW:  # events were lost: re-read everything
                for w in self.files.values():
                    w.changed = True
                continue
            folder = self._dirs.get(event.wd)
            if folder is None:
                continue
            if event.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF):  # the folder itself went away
                self._stop_watching(lambda w, d=folder: os.path.dirname(w.path) == d)
                continue
            w = self.files.get(os.path.join(folder, event.name))
            if w is not None:
                w.changed = True

    def _stop_watching(self, which: Callable[[Watched], bool]) -> None:
        for w in self.files.values():
            if which(w):
                w.watching, w.changed = False, True

    def close(self) -> None:
        if self._inotify is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
        self._inotify = None
        self._stop_watching(lambda w: True)
