from __future__ import annotations

import json
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from opml.config import WorkspaceConfig
from opml.errors import WorkspaceError
from opml.workspace import store
from opml.workspace.secrets import ensure_secret, write_secret
from opml.workspace.workspace import Workspace, resolve_root
from tests.conftest import run_opml


def test_root_resolution_env_then_config_relative_to_project(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "proj" / "configs"
    monkeypatch.delenv("OPML_WORKSPACE", raising=False)
    assert resolve_root(cfg_dir, WorkspaceConfig()) == tmp_path / "proj" / ".opml"
    assert resolve_root(cfg_dir, WorkspaceConfig(local={"path": "/abs/ws"})).as_posix() == "/abs/ws"
    monkeypatch.setenv("OPML_WORKSPACE", str(tmp_path / "env-ws"))
    assert resolve_root(cfg_dir, WorkspaceConfig(local={"path": "/abs/ws"})) == tmp_path / "env-ws"


def test_auth_creates_layout_with_private_secrets(project, cli):
    out = json.loads(cli.ok("auth", "--json").output)
    root = project / ".opml"
    assert out["path"] == str(root) and out["backend"] == "local"
    assert out["tracking_uri"] == f"sqlite:///{root / 'mlflow.db'}"
    for sub in ("cache", "datasets", "artifacts", "logs", "secrets"):
        assert (root / sub).is_dir()
    assert stat.S_IMODE((root / "secrets").stat().st_mode) == 0o700
    key = root / "secrets" / "token-signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    db = sqlite3.connect(root / "opml.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
    # Re-running opens the same workspace (same id), it does not recreate it.
    assert json.loads(cli.ok("auth", "--json").output)["id"] == out["id"]


def test_workspace_from_env_var(project, cli, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("ws")
    cli.ok("auth", env={"OPML_WORKSPACE": str(elsewhere)})
    assert (elsewhere / "opml.db").is_file() and not (project / ".opml").exists()


def test_commands_need_a_workspace_first(project, cli):
    assert "run `opml auth` to create it" in cli.fails("data", "list")


def test_forward_migration_keeps_data(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    v1 = ["CREATE TABLE t (a INTEGER)"]
    assert store.migrate(conn, v1) == 1
    conn.execute("INSERT INTO t VALUES (7)")
    v2 = [*v1, "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x'; CREATE TABLE u (c INTEGER)"]
    assert store.migrate(conn, v2) == 2
    assert conn.execute("SELECT a, b FROM t").fetchall() == [(7, "x")]
    assert store.schema_version(conn) == 2
    with pytest.raises(WorkspaceError, match="newer than this opml"):
        store.migrate(conn, v1)


def test_failed_migration_rolls_back(tmp_path):
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        store.migrate(conn, ["CREATE TABLE ok (a INTEGER); CREATE TABLE broken (;"])
    assert store.schema_version(conn) == 0
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'ok'").fetchone() is None


def test_corrupt_database_is_a_one_line_error(project):
    # Separate processes: an in-process CLI call may leave its SQLite connection to be closed by the
    # garbage collector later, and that close checkpoints the WAL back over the corrupted file.
    assert run_opml("auth", cwd=project).returncode == 0
    (project / ".opml" / "opml.db").write_bytes(b"this is not sqlite" * 100)
    for suffix in ("-wal", "-shm"):
        (project / ".opml" / f"opml.db{suffix}").unlink(missing_ok=True)
    line = _one_line_error(run_opml("data", "list", cwd=project))
    assert "unreadable" in line and "OPML_WORKSPACE" in line


def test_concurrent_cli_processes_create_and_write_safely(project):
    """Four processes race to create the workspace and each adds principals; nothing is lost."""
    def work(i: int) -> list[int]:
        codes = [run_opml("auth", cwd=project).returncode]
        codes += [run_opml("auth", "sp", "create", f"sp{i}-{j}", cwd=project).returncode for j in range(3)]
        return codes

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert all(code == 0 for codes in results for code in codes), results
    db = sqlite3.connect(project / ".opml" / "opml.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM identities").fetchone()[0] == 12
    assert db.execute("SELECT COUNT(*) FROM meta WHERE key = 'id'").fetchone()[0] == 1


def test_concurrent_writers_in_threads(tmp_path):
    Workspace.create_or_open(tmp_path / "ws").close()

    def insert(i: int) -> None:
        ws = Workspace.open(tmp_path / "ws")
        for j in range(25):
            with store.transaction(ws.db) as db:
                n = db.execute("SELECT COUNT(*) FROM meta").fetchone()[0]
                db.execute("INSERT INTO meta VALUES (?, ?)", (f"k{i}-{j}", str(n)))
        ws.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(insert, range(4)))
    ws = Workspace.open(tmp_path / "ws")
    values = sorted(int(r[0]) for r in ws.db.execute("SELECT value FROM meta WHERE key LIKE 'k%'"))
    # Each writer saw a distinct count: the transactions were serialised, none interleaved.
    assert len(values) == 100 and len(set(values)) == 100


def test_secret_files_are_0600_and_atomic(tmp_path):
    p = tmp_path / "s" / "key"
    write_secret(p, b"abc")
    assert p.read_bytes() == b"abc" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert not [f for f in p.parent.iterdir() if f.name != "key"]
    first = ensure_secret(tmp_path / "s" / "k2")
    assert ensure_secret(tmp_path / "s" / "k2") == first and len(first) == 32


# ---- a damaged workspace is never silently re-initialised --------------------


def _auth(ws_root, *args: str):
    return run_opml("auth", *args, cwd=ws_root.parent, env={"OPML_WORKSPACE": str(ws_root)})


def _snapshot(root) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), proc.stderr
    return lines[0]


@pytest.fixture
def used_workspace(tmp_path):
    """A workspace made by `opml auth`, holding a service principal, a dataset file and an MLflow store."""
    root = tmp_path / "ws"
    assert _auth(root).returncode == 0
    assert run_opml("auth", "sp", "create", "bot", cwd=tmp_path, env={"OPML_WORKSPACE": str(root)}).returncode == 0
    (root / "datasets" / "bank").mkdir()
    (root / "datasets" / "bank" / "1.csv").write_text("a,b\n1,2\n")
    (root / "mlflow.db").write_bytes(b"SQLite format 3\0" + b"\0" * 100)
    for suffix in ("-wal", "-shm"):
        assert not (root / f"opml.db{suffix}").exists()  # the last connection checkpointed and removed them
    return root


@pytest.mark.parametrize(("damage", "what"), [
    (b"", "empty"),
    (b"this is not sqlite" * 100, "unreadable"),
    (None, "missing"),
])
def test_damaged_database_is_an_error_not_a_new_workspace(used_workspace, damage, what):
    root = used_workspace
    db = root / "opml.db"
    if damage is None:
        db.unlink()
    else:
        db.write_bytes(damage)
    before = _snapshot(root)
    for args in (("auth",), ("auth", "--json"), ("auth", "sp", "list")):
        proc = run_opml(*args, cwd=root.parent, env={"OPML_WORKSPACE": str(root)})
        line = _one_line_error(proc)
        assert what in line and "opml.db" in line, line
        assert "backup" in line, line
    assert _snapshot(root) == before, "a failed open changed the workspace's files"
    assert db.exists() == (damage is not None)


def test_database_without_opml_schema_is_an_error(used_workspace):
    root = used_workspace
    (root / "opml.db").unlink()
    empty = sqlite3.connect(root / "opml.db", isolation_level=None)  # a valid SQLite file without tables
    empty.execute("CREATE TABLE t (a)")
    empty.execute("DROP TABLE t")
    empty.close()
    assert (root / "opml.db").stat().st_size > 0
    line = _one_line_error(_auth(root))
    assert "opml.db" in line and "backup" in line, line
    assert not [r for r in sqlite3.connect(root / "opml.db").execute("SELECT name FROM sqlite_master")]


def test_another_apps_database_is_not_migrated(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    other = sqlite3.connect(root / "opml.db")
    other.execute("CREATE TABLE notes (body TEXT)")
    other.commit()
    other.close()
    line = _one_line_error(_auth(root))
    assert "not an opml workspace database" in line, line
    tables = [r[0] for r in sqlite3.connect(root / "opml.db").execute("SELECT name FROM sqlite_master")]
    assert tables == ["notes"]


def test_new_or_empty_folder_still_initialises(tmp_path):
    for root in (tmp_path / "absent", tmp_path / "empty", tmp_path / "crashed"):
        if root.name != "absent":
            root.mkdir()
        if root.name == "crashed":  # an earlier `opml auth` died right after creating the folders and the DB file
            for sub in ("cache", "datasets", "artifacts", "logs", "secrets"):
                (root / sub).mkdir()
            (root / "opml.db").touch()
        proc = _auth(root, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["dataset_versions"] == 0
        assert store.schema_version(sqlite3.connect(root / "opml.db")) == len(store.MIGRATIONS)
