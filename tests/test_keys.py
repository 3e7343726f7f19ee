"""Endpoint keys: concurrent rotation never revives a replaced key; a corrupt keys file never breaks scoring."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from opml.serving.keys import SLOTS, KeyChecker, ensure_keys, key_file, read_keys, regenerate

ROUNDS = 20


def _rotate(secrets_dir: str, slot: str, start, done, results) -> None:
    """Worker: each round, wait for the others, regenerate `slot`, report what the call returned."""
    for _ in range(ROUNDS):
        start.wait()
        results.put((slot, regenerate(Path(secrets_dir), "ep", slot)))
        done.wait()


def test_concurrent_regenerations_keep_both_new_keys(tmp_path):
    """Primary and secondary rotated at the same instant, ROUNDS times: each round both slots hold the new keys."""
    secrets_dir = tmp_path / "secrets"
    before = ensure_keys(secrets_dir, "ep")
    ctx = mp.get_context("spawn")
    start, done, results = ctx.Barrier(len(SLOTS) + 1), ctx.Barrier(len(SLOTS) + 1), ctx.Queue()
    workers = [ctx.Process(target=_rotate, args=(str(secrets_dir), slot, start, done, results)) for slot in SLOTS]
    for w in workers:
        w.start()
    lost = []
    try:
        for i in range(ROUNDS):
            start.wait(timeout=60)
            returned = dict(results.get(timeout=60) for _ in SLOTS)
            done.wait(timeout=60)
            on_disk = read_keys(key_file(secrets_dir, "ep"))
            for slot in SLOTS:
                # The caller's new key is the one on disk, and the previous key of that slot is gone.
                if on_disk[slot] != returned[slot][slot] or on_disk[slot] == before[slot]:
                    lost.append((i, slot))
            before = on_disk
    finally:
        for w in workers:
            w.join(timeout=60)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)
    assert not lost, f"a regenerated key was overwritten by a concurrent rotation (round, slot): {lost}"
    assert not [p for p in key_file(secrets_dir, "ep").parent.iterdir() if p.name.endswith(".tmp")]


def _first_use(secrets_dir: str, start, results) -> None:
    start.wait()
    results.put(ensure_keys(Path(secrets_dir), "ep"))


def test_concurrent_first_use_creates_one_set_of_keys(tmp_path):
    """Several processes asking for a new endpoint's keys at the same instant all get the same pair."""
    ctx = mp.get_context("spawn")
    n = 4
    for i in range(5):
        secrets_dir = tmp_path / f"secrets{i}"
        start, results = ctx.Barrier(n), ctx.Queue()
        workers = [ctx.Process(target=_first_use, args=(str(secrets_dir), start, results)) for _ in range(n)]
        for w in workers:
            w.start()
        got = [results.get(timeout=60) for _ in range(n)]
        for w in workers:
            w.join(timeout=60)
        assert all(keys == got[0] for keys in got), f"round {i}: callers got different keys"
        assert read_keys(key_file(secrets_dir, "ep")) == got[0]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def key_log():
    handler = _Records()
    logger = logging.getLogger("opml.serving.keys")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def _rewrite(path: Path, data: bytes) -> None:
    """Replace the file's bytes and move its mtime on, as a later write would."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[1, 2]", b'{"primary": 7}', b"\xff\xfe"])
def test_corrupt_keys_file_keeps_the_last_good_keys(tmp_path, key_log, garbage):
    secrets_dir = tmp_path / "secrets"
    keys = ensure_keys(secrets_dir, "ep")
    path = key_file(secrets_dir, "ep")
    checker = KeyChecker(path)
    bearer = f"Bearer {keys['primary']}".encode()
    assert checker.check(bearer) and checker.error is None

    _rewrite(path, garbage)
    assert checker.check(bearer), "a corrupt keys file must not lock out the last good key"
    assert checker.check(f"Bearer {keys['secondary']}".encode())
    assert not checker.check(b"Bearer wrong")
    assert checker.error and str(path) in checker.error
    assert len(key_log) == 1 and str(path) in key_log[0], key_log  # logged once, not on every request

    _rewrite(path, json.dumps({"primary": "new-primary", "secondary": keys["secondary"]}).encode())
    assert checker.check(b"Bearer new-primary") and not checker.check(bearer)
    assert checker.error is None
    assert len(key_log) == 2 and "readable again" in key_log[1]


def test_keys_file_corrupt_from_the_start_refuses_everything(tmp_path, key_log):
    path = key_file(tmp_path / "secrets", "ep")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 10)
    checker = KeyChecker(path)
    assert not checker.check(b"Bearer anything") and not checker.check(None)
    assert checker.error and len(key_log) == 1
