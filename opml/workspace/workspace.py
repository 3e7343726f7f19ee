"""The embedded workspace: a folder holding the metadata DB, MLflow store, secrets and caches."""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from opml.config import WorkspaceConfig
from opml.errors import WorkspaceError
from opml.workspace import store
from opml.workspace.secrets import ensure_secret

DB_NAME = "opml.db"
# What only a workspace that was in use holds; the empty folders `opml auth` makes first do not count.
DATA_MARKERS = ("mlflow.db", "secrets", "datasets", "artifacts", "cache", "logs", "run", "benchmarks")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def resolve_root(cfg_dir: Path, config: WorkspaceConfig) -> Path:
    """$OPML_WORKSPACE, else workspace.yaml's local.path (relative to the project folder)."""
    env = os.environ.get("OPML_WORKSPACE")
    if env:
        return Path(env).expanduser().absolute()
    path = Path(config.local.path).expanduser()
    if not path.is_absolute():
        path = cfg_dir.absolute().parent / path
    return path


def _workspace_data(root: Path) -> str | None:
    """The first file (relative to `root`) that shows the workspace was in use, or None."""
    for name in DATA_MARKERS:
        path = root / name
        if path.is_file():
            return name
        for folder, _dirs, files in os.walk(path):
            if files:
                return str((Path(folder) / files[0]).relative_to(root))
    return None


@dataclass
class Workspace:
    root: Path
    backend: str = "local"
    _conn: sqlite3.Connection | None = field(default=None, repr=False)

    # ---- layout -------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking store (SQLite inside the workspace)."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_uri(self) -> str:
        return self.artifacts_dir.as_uri()

    # ---- lifecycle ----------------------------------------------------------
    @classmethod
    def create_or_open(cls, root: Path, backend: str = "local") -> Workspace:
        """Create the workspace folder structure if needed and open it."""
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("cache", "datasets", "artifacts", "logs"):
                (root / sub).mkdir(exist_ok=True)
            (root / "secrets").mkdir(mode=0o700, exist_ok=True)
            os.chmod(root / "secrets", 0o700)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create workspace at {root}: {exc.strerror}",
                "choose a writable folder with OPML_WORKSPACE or workspace.yaml local.path",
            ) from None
        ws = cls(root=root, backend=backend)
        ws.connect()
        ws.signing_key()
        return ws

    @classmethod
    def open(cls, root: Path, backend: str = "local") -> Workspace:
        """Open an existing workspace; a missing one is a user error with the fix."""
        if not (root / DB_NAME).is_file() and _workspace_data(root) is None:
            raise WorkspaceError(f"no workspace at {root}", "run `opml auth` to create it")
        ws = cls(root=root, backend=backend)
        ws.connect()
        return ws

    def connect(self) -> sqlite3.Connection:
        if self._conn is None:
            db = self.db_path
            if not db.is_file() or db.stat().st_size == 0:
                self._refuse_new_db("is missing" if not db.exists() else "is empty")
            self._conn = store.connect(db, on_new=lambda: self._refuse_new_db("has no opml tables"))
            try:
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()
                if row is None:
                    with store.transaction(self._conn) as c:
                        c.execute(
                            "INSERT OR IGNORE INTO meta (key, value) VALUES ('id', ?), ('created_at', ?)",
                            (uuid.uuid4().hex, now_iso()),
                        )
            except sqlite3.DatabaseError as exc:
                self.close()
                raise WorkspaceError(
                    f"workspace database {db} is unreadable ({exc})",
                    "restore it from a backup or point OPML_WORKSPACE at another folder",
                ) from None
        return self._conn

    def _refuse_new_db(self, state: str) -> None:
        """Creating the database is for a new folder: refuse when the workspace already holds data."""
        found = _workspace_data(self.root)
        if found is not None:
            raise WorkspaceError(
                f"workspace database {self.db_path} {state} but the workspace at {self.root} holds data ({found})",
                f"restore {DB_NAME} from a backup, or move {self.root} away to start a new workspace",
            )

    @property
    def db(self) -> sqlite3.Connection:
        return self.connect()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def id(self) -> str:
        return self.db.execute("SELECT value FROM meta WHERE key = 'id'").fetchone()[0]

    def signing_key(self) -> bytes:
        """Key that signs bearer tokens for this workspace's REST endpoints."""
        return ensure_secret(self.secrets_dir / "token-signing.key")

    def summary(self) -> dict[str, object]:
        db = self.db
        return {
            "path": str(self.root),
            "backend": self.backend,
            "id": self.id,
            "schema_version": store.schema_version(db),
            "tracking_uri": self.tracking_uri,
            "service_principals": db.execute("SELECT COUNT(*) FROM identities").fetchone()[0],
            "datasets": db.execute("SELECT COUNT(DISTINCT name) FROM datasets").fetchone()[0],
            "dataset_versions": db.execute("SELECT COUNT(*) FROM datasets").fetchone()[0],
        }
