from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import threading
import time
import typing
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from opml.data.reference import reference_csv
from opml.data.registry import get_dataset, list_datasets
from opml.data.source import sha256_file
from opml.errors import DataError, OpmlError
from tests.conftest import DATA_SHA256, REPO


def register_json(cli, *args: str, **kw) -> dict:
    return json.loads(cli.ok("data", "register", *args, "--json", **kw).stdout)


def test_register_profiles_the_real_dataset(cli, workspace, bank_csv):
    ds = register_json(cli, "--path", str(bank_csv))
    assert (ds["name"], ds["version"], ds["created"]) == ("bankmarketing", 1, True)
    assert ds["sha256"] == DATA_SHA256 and ds["label"] == "response"
    p = ds["profile"]
    assert (p["rows"], p["columns"]) == (32950, 21)
    dist = p["label"]["distribution"]
    assert dist["yes"]["count"] == 3692 and dist["no"]["count"] == 29258
    assert dist["yes"]["share"] == pytest.approx(0.1120, abs=1e-4)
    types = {c["name"]: c["type"] for c in p["schema"]}
    assert types["age"] == "integer" and types["euribor3m"] == "float" and types["job"] == "categorical"
    assert all(c["missing"] == 0 for c in p["schema"])
    stored = Path(ds["path"])
    assert stored.is_relative_to(workspace.root) and stored.read_bytes() == bank_csv.read_bytes()


def test_same_content_keeps_version_new_content_bumps_it(cli, workspace, bank_csv, tmp_path):
    assert register_json(cli, "--path", str(bank_csv))["version"] == 1
    again = register_json(cli, "--path", str(bank_csv))
    assert (again["version"], again["created"]) == (1, False)
    smaller = tmp_path / "smaller.csv"
    smaller.write_text("".join(bank_csv.read_text().splitlines(keepends=True)[:1001]))
    v2 = register_json(cli, "--path", str(smaller))
    assert (v2["version"], v2["profile"]["rows"]) == (2, 1000)
    assert get_dataset(workspace, "bankmarketing").version == 2
    assert get_dataset(workspace, "bankmarketing:1").profile["rows"] == 32950
    listed = json.loads(cli.ok("data", "list", "--json").stdout)
    assert [d["ref"] for d in listed] == ["bankmarketing:2", "bankmarketing:1"]
    shown = cli.ok("data", "show", "bankmarketing:1").output
    assert "32950 rows x 21 columns" in shown and "yes" in shown and "11.2%" in shown


def test_opml_data_env_and_name_label_flags(cli, workspace, bank_csv):
    ds = register_json(cli, env={"OPML_DATA": str(bank_csv)})
    assert ds["source"] == str(bank_csv.absolute())
    other = register_json(cli, "--name", "bank-marital", "--label", "marital", env={"OPML_DATA": str(bank_csv)})
    assert other["label"] == "marital" and other["profile"]["label"]["classes"] == 4


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\0\0\0binary", "binary content"),
        (b'{"not": "csv"}\n', "does not look like CSV"),
        (b"age,job,response\n", "header but no rows"),
        (b"age,job\n1,a\n2,b\n", "label column 'response' not found"),
        (b"age,age,response\n1,2,no\n", "repeats column names (age)"),
        (b'a,b,response\n1,"unterminated,no\n', "not valid CSV"),
    ],
)
def test_bad_files_are_one_line_errors_and_leave_nothing(cli, workspace, tmp_path, content, expected):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    line = cli.fails("data", "register", "--path", str(bad))
    assert expected in line, line
    assert list_datasets(workspace) == []
    assert not any(workspace.datasets_dir.rglob("*.csv"))


def test_missing_file_and_bad_refs(cli, workspace, tmp_path):
    assert "not found" in cli.fails("data", "register", "--path", str(tmp_path / "nope.csv"))
    assert "no dataset 'ghost'" in cli.fails("data", "show", "ghost")
    assert "invalid version" in cli.fails("data", "show", "bankmarketing:latest")
    assert "mutually exclusive" in cli.fails("data", "register", "--path", "a", "--url", "http://x/y.csv")


# ---- URL sources, against a real http.server on 127.0.0.1 -------------------


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits: typing.ClassVar[list[str]] = []

    def do_GET(self):
        CountingHandler.hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(root: Path, handler: type | None = None) -> Iterator[str]:
    """A real http.server on 127.0.0.1 serving `root` from a thread (CountingHandler by default); yields its URL."""
    if handler is None:
        handler = CountingHandler
        CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_root(tmp_path, bank_csv):
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(bank_csv, root / "bankmarketing_train.csv")
    with serving(root) as url:
        yield url


@pytest.fixture
def small_http(tmp_path) -> Iterator[tuple[str, str]]:
    """A small CSV under the dataset's file name, served locally (no real dataset needed): (url, sha256)."""
    root = tmp_path / "www-small"
    root.mkdir()
    csv = root / "bankmarketing_train.csv"
    csv.write_text("age,job,response\n" + "".join(f"{20 + i},admin.,{'yes' if i % 3 else 'no'}\n" for i in range(50)))
    with serving(root) as url:
        yield f"{url}/bankmarketing_train.csv", sha256_file(csv)


def point_config_at(project: Path, url: str, sha: str) -> None:
    path = project / "configs" / "automl.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["dataset"].update(url=url, sha256=sha)
    path.write_text(yaml.safe_dump(cfg))


def test_url_download_is_verified_and_cached(project, cli, workspace, http_root):
    url = f"{http_root}/bankmarketing_train.csv"
    point_config_at(project, url, DATA_SHA256)
    ds = register_json(cli)
    assert ds["source"] == url and ds["sha256"] == DATA_SHA256 and ds["profile"]["rows"] == 32950
    assert register_json(cli)["created"] is False
    assert CountingHandler.hits == ["/bankmarketing_train.csv"]  # downloaded once, then served from cache


def test_sha256_mismatch_is_refused_and_nothing_kept(project, cli, workspace, http_root):
    point_config_at(project, f"{http_root}/bankmarketing_train.csv", "0" * 64)
    line = cli.fails("data", "register")
    assert "sha256 mismatch" in line
    assert list_datasets(workspace) == []
    assert not [f for f in workspace.cache_dir.rglob("*") if f.is_file()]


def test_explicit_url_sha_flag_and_http_errors(cli, workspace, http_root):
    assert "sha256 mismatch" in cli.fails("data", "register", "--url", f"{http_root}/bankmarketing_train.csv",
                                          "--sha256", "f" * 64)
    assert "HTTP 404" in cli.fails("data", "register", "--url", f"{http_root}/missing.csv")


def test_unreachable_url(cli, workspace):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = cli.fails("data", "register", "--url", f"http://127.0.0.1:{port}/data.csv")
    assert "unreachable" in line and "OPML_DATA" in line
    assert list_datasets(workspace) == []


# ---- opml.data.resolve: the one source order, for registration and step reuse ---------------------


def test_source_order_path_url_env_config(monkeypatch):
    from opml.config import DatasetSpec
    from opml.data.resolve import Source, resolve_source

    spec = DatasetSpec(name="d", label_column="y", url="https://h/d.csv", sha256="a" * 64)
    monkeypatch.setenv("OPML_DATA", "/env.csv")
    assert resolve_source(spec, path="/p.csv") == Source(path="/p.csv")
    assert resolve_source(spec, url="https://h/other.csv") == Source(url="https://h/other.csv")
    assert resolve_source(spec) == Source(path="/env.csv")
    monkeypatch.delenv("OPML_DATA")
    assert resolve_source(spec.model_copy(update={"path": "/cfg.csv"})) == Source(path="/cfg.csv")
    assert resolve_source(spec) == Source(url="https://h/d.csv", sha256="a" * 64)
    assert resolve_source(spec, url="https://h/d.csv", sha256="b" * 64).sha256 == "b" * 64
    assert resolve_source(None) == Source()
    with pytest.raises(OpmlError, match="mutually exclusive"):
        resolve_source(spec, path="/p.csv", url="https://h/d.csv")


# ---- opml.data.reference: the tests' dataset, found or fetched once -------------------------------


def fake_clone(tmp_path: Path, url: str, sha: str) -> Path:
    """A repo folder with configs/ pointing at `url`, and no ../shared beside it."""
    repo = tmp_path / "clone" / "opml"
    shutil.copytree(REPO / "configs", repo / "configs")
    point_config_at(repo, url, sha)
    return repo


def test_reference_dataset_is_downloaded_once_into_the_user_cache(tmp_path, monkeypatch, small_http):
    url, sha = small_http
    monkeypatch.delenv("OPML_TEST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    repo = fake_clone(tmp_path, url, sha)
    assert not (repo.parent / "shared").exists()
    got = reference_csv(repo)
    assert got.is_relative_to(tmp_path / "xdg" / "opml") and sha256_file(got) == sha
    assert CountingHandler.hits == ["/bankmarketing_train.csv"]
    assert reference_csv(repo) == got
    assert CountingHandler.hits == ["/bankmarketing_train.csv"]  # the second call used the cache


def test_reference_dataset_wrong_sha256_is_the_one_failure_message(tmp_path, monkeypatch, small_http):
    url, _ = small_http
    monkeypatch.delenv("OPML_TEST_DATA", raising=False)
    repo, cache = tmp_path / "repo", tmp_path / "cache"
    with pytest.raises(DataError) as e:
        reference_csv(repo, cache_dir=cache, url=url, sha256="0" * 64)
    line = e.value.line()
    assert "\n" not in line and line.startswith("the bank-marketing dataset was not found")
    assert "$OPML_TEST_DATA is unset" in line and str(tmp_path / "shared" / "data") in line
    assert "sha256 mismatch" in line and "set OPML_TEST_DATA=" in line
    assert CountingHandler.hits == ["/bankmarketing_train.csv"]
    assert not [f for f in cache.rglob("*") if f.is_file()]  # nothing unverified kept


def test_reference_dataset_prefers_env_then_shared_dir(tmp_path, monkeypatch, small_http):
    url, sha = small_http
    repo = tmp_path / "repo"
    shared = tmp_path / "shared" / "data" / "bankmarketing_train.csv"
    shared.parent.mkdir(parents=True)
    shared.write_text("a,response\n1,no\n")
    own = tmp_path / "own.csv"
    own.write_text("a,response\n2,yes\n")
    monkeypatch.setenv("OPML_TEST_DATA", str(own))
    assert reference_csv(repo, cache_dir=tmp_path / "c", url=url, sha256=sha) == own
    monkeypatch.setenv("OPML_TEST_DATA", str(tmp_path / "gone.csv"))
    assert reference_csv(repo, cache_dir=tmp_path / "c", url=url, sha256=sha) == shared
    assert CountingHandler.hits == []


# ---- every way a download can fail is one line, and leaves nothing in cache/downloads ----------------


class FaultyHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder (listings included); /boom answers 500, /slow.csv never answers."""

    def do_GET(self):
        if self.path == "/boom":
            self.send_error(500, "boom")
        elif self.path == "/slow.csv":
            time.sleep(5)
        else:
            super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def faulty_http(tmp_path) -> Iterator[str]:
    root = tmp_path / "www-faulty"
    (root / "folder").mkdir(parents=True)
    (root / "notes.txt").write_text("just one line of text\n")
    with serving(root, FaultyHandler) as url:
        yield url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/..", "CSV"),  # the probe: a directory listing whose URL ends in '..' (was an OSError traceback)
        ("/", "CSV"),
        ("/folder/", "CSV"),
        ("/notes.txt", "does not look like CSV"),
        ("/missing.csv", "HTTP 404"),
        ("/boom", "HTTP 500"),
    ],
)
def test_bad_downloads_are_one_line_and_leave_no_download(cli, workspace, faulty_http, path, expected):
    url = faulty_http + path
    line = cli.fails("data", "register", "--url", url, "--name", "x", "--label", "response")
    assert expected in line and url in line, line
    assert "Traceback" not in line and str(workspace.cache_dir) not in line
    assert list_datasets(workspace) == []
    downloads = workspace.cache_dir / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir()), list(downloads.rglob("*"))


def test_connection_refused_and_timeout_are_one_line(cli, workspace, faulty_http, monkeypatch):
    from opml.data import source

    line = cli.fails("data", "register", "--url", f"http://127.0.0.1:{closed_port()}/d.csv", "--name", "x",
                     "--label", "response")
    assert "unreachable (connection refused)" in line and "OPML_DATA" in line, line
    monkeypatch.setattr(source, "TIMEOUT", (2, 0.5))
    line = cli.fails("data", "register", "--url", f"{faulty_http}/slow.csv", "--name", "x", "--label", "response")
    assert "timed out" in line, line
    downloads = workspace.cache_dir / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir())


def test_a_download_that_registers_stays_cached_under_a_safe_name(cli, workspace, small_http):
    url, sha = small_http
    ds = register_json(cli, "--url", url, "--name", "small", "--label", "response")
    assert ds["sha256"] == sha
    kept = [p for p in (workspace.cache_dir / "downloads").rglob("*") if p.is_file()]
    assert [p.name for p in kept] == ["bankmarketing_train.csv"] and sha256_file(kept[0]) == sha
    # a later failure with the same URL (wrong label) keeps what an earlier registration verified
    assert "label column 'nope' not found" in cli.fails("data", "register", "--url", url, "--name", "small2",
                                                        "--label", "nope")
    assert [p for p in (workspace.cache_dir / "downloads").rglob("*") if p.is_file()] == kept


def test_unreadable_paths_are_one_line(cli, workspace, tmp_path):
    line = cli.fails("data", "register", "--path", str(tmp_path / ("a" * 300)), "--label", "y")
    assert "cannot read" in line and "name too long" in line, line
    folder = tmp_path / "f"
    folder.mkdir()
    assert "is not a file" in cli.fails("data", "register", "--path", str(folder), "--label", "y")
