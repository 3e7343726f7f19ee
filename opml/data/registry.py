"""Register datasets as name:version in the workspace; a new version only when the content changes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opml.data.profile import check_label, profile, read_csv
from opml.data.source import sha256_file
from opml.errors import DataError, NotFoundError, OpmlError
from opml.naming import check_name
from opml.workspace import store
from opml.workspace.workspace import Workspace, now_iso


@dataclass(frozen=True)
class Dataset:
    name: str
    version: int
    sha256: str
    source: str
    path: str
    label: str
    profile: dict[str, Any]
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ref": self.ref}

    def load(self):  # -> pandas.DataFrame
        return read_csv(Path(self.path))


def _row(row: sqlite3.Row) -> Dataset:
    d = dict(row)
    d["profile"] = json.loads(d["profile"])
    return Dataset(**d)


def register(ws: Workspace, name: str, file: Path, *, label: str, source: str | None = None,
             shown: str | None = None) -> tuple[Dataset, bool]:
    """Validate, profile and store `file` as the next version of `name`.

    Returns (dataset, created); `created` is False when identical content is already registered.
    Nothing is left behind when any step fails. Errors name `shown` (e.g. the URL), else `file`.
    """
    check_name(name, "dataset")  # it names a folder under datasets/
    where = shown or file
    try:
        digest = sha256_file(file)
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}", "check --path or OPML_DATA") from None
    existing = _by_hash(ws, name, digest)
    if existing:
        return existing, False
    df = read_csv(file, where)
    check_label(df, label, where)
    if df[label].nunique(dropna=True) < 1:
        raise DataError(f"label column {label!r} in {where} has no values", "fill the label column")
    prof = profile(df, label) | {"sha256": digest, "bytes": file.stat().st_size}

    target = ws.datasets_dir / name / f"{digest}.csv"
    placed = not target.exists()
    if placed:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(file, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            raise DataError(f"cannot store {where} in {target.parent}: {exc.strerror or exc}",
                            "free some disk space or check the workspace's permissions") from None
        finally:
            tmp.unlink(missing_ok=True)
    try:
        with store.transaction(ws.db) as db:
            row = db.execute("SELECT * FROM datasets WHERE name = ? AND sha256 = ?", (name, digest)).fetchone()
            if row is not None:  # a concurrent process registered the same content first
                return _row(row), False
            version = db.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM datasets WHERE name = ?", (name,)
            ).fetchone()[0]
            ds = Dataset(name=name, version=version, sha256=digest, source=source or str(file),
                         path=str(target), label=label, profile=prof, created_at=now_iso())
            db.execute(
                "INSERT INTO datasets (name, version, sha256, source, path, label, profile, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ds.name, ds.version, ds.sha256, ds.source, ds.path, ds.label, json.dumps(prof), ds.created_at),
            )
    except BaseException:
        if placed:
            target.unlink(missing_ok=True)
        raise
    return ds, True


def _by_hash(ws: Workspace, name: str, digest: str) -> Dataset | None:
    row = ws.db.execute("SELECT * FROM datasets WHERE name = ? AND sha256 = ?", (name, digest)).fetchone()
    return _row(row) if row else None


def list_datasets(ws: Workspace) -> list[Dataset]:
    """Every registered version, newest version of each name first within name order."""
    rows = ws.db.execute("SELECT * FROM datasets ORDER BY name, version DESC")
    return [_row(r) for r in rows]


def parse_ref(ref: str, kind: str = "dataset") -> tuple[str, int | None]:
    """'name' or 'name:version' -> (name, version or None for latest); the name must be a valid `kind` name."""
    name, _, version = ref.partition(":")
    check_name(name, kind)
    if version and not version.isdigit():
        raise OpmlError(f"invalid version in {ref!r}", "write NAME or NAME:VERSION, e.g. bankmarketing:2")
    return name, int(version) if version else None


def latest(ws: Workspace, name: str) -> Dataset | None:
    """The newest registered version of `name`, if any."""
    row = ws.db.execute("SELECT * FROM datasets WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    return _row(row) if row else None


def get_dataset(ws: Workspace, ref: str) -> Dataset:
    name, version = parse_ref(ref)
    if version is None:
        found = latest(ws, name)
    else:
        row = ws.db.execute("SELECT * FROM datasets WHERE name = ? AND version = ?", (name, version)).fetchone()
        found = _row(row) if row else None
    if found is None:
        raise NotFoundError(f"no dataset {ref!r} in the workspace", "see `opml data list` or run `opml data register`")
    return found
