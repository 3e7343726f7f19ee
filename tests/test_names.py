"""The one name rule (opml.naming) at the CLI and YAML entry points: datasets, models, experiments, service
principals, endpoints. A bad name is a one-line error (exit 2) and nothing is written outside the workspace.
"""

from __future__ import annotations

import pytest
import yaml

from opml.data.registry import list_datasets
from opml.naming import RULE

# Each breaks the rule a different way: a path, a traversal, empty, a leading dot or dash, a space, too long.
BAD = ["../x", "a/b", "", ".hidden", "-x", "a b/..", "x" * 65]


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def before(project, workspace):
    """What the project folder (configs + workspace) holds before the probes."""
    return files_under(project)


def assert_rule(line: str, kind: str) -> None:
    assert f"invalid {kind} name" in line and RULE in line, line


@pytest.mark.parametrize("name", BAD)
def test_bad_names_on_the_cli_are_one_line_and_write_nothing(project, cli, workspace, before, bank_csv, name):
    assert_rule(cli.fails("data", "register", "--name", name, "--path", str(bank_csv), "--label", "response"),
                "dataset")
    assert_rule(cli.fails("train", "--experiment", name, "--data", str(bank_csv), "--max-trials", "1"),
                "experiment")
    assert_rule(cli.fails("auth", "sp", "create", "--", name), "service principal")
    assert_rule(cli.fails("auth", "sp", "delete", "--", name), "service principal")
    assert_rule(cli.fails("runs", "list", "--experiment", name), "experiment")
    for option_endpoint in (("logs",), ("enable-logs",), ("swagger",), ("consume",), ("benchmark",)):
        assert_rule(cli.fails(*option_endpoint, "--endpoint", name), "endpoint")
    assert files_under(project) == before
    assert list_datasets(workspace) == []
    assert not (project.parent / "x").exists() and not (project / "x").exists()


@pytest.mark.parametrize("ref", ["../m:1", "../m", "a/b:2", ":1", "..:1"])
def test_name_version_references_check_the_name(project, cli, workspace, before, ref):
    assert_rule(cli.fails("models", "show", ref), "model")
    assert_rule(cli.fails("data", "show", ref), "dataset")
    assert_rule(cli.fails("predict", "--model", ref, "--data", "in.csv", "--out", "out.csv"), "model")
    assert files_under(project) == before


@pytest.mark.parametrize(
    ("file", "text", "key", "kind"),
    [
        ("automl.yaml", {"experiment_name": "a/b"}, "experiment_name", "experiment"),
        ("automl.yaml", {"experiment_name": "../x"}, "experiment_name", "experiment"),
        ("automl.yaml", {"model_name": "../m"}, "model_name", "model"),
        ("automl.yaml", {"dataset": {"name": "../d", "label_column": "response"}}, "dataset.name", "dataset"),
        ("deploy.yaml", {"name": "../../e"}, "name", "endpoint"),
    ],
)
def test_bad_names_in_yaml_are_one_line(project, cli, workspace, bank_csv, file, text, key, kind):
    path = project / "configs" / file
    path.write_text(yaml.safe_dump((yaml.safe_load(path.read_text()) or {}) | text))
    before = files_under(project)
    command = ("train", "--data", str(bank_csv), "--max-trials", "1") if file == "automl.yaml" else ("logs",)
    line = cli.fails(*command)
    assert f"configs/{file}: {key}: invalid {kind} name" in line and RULE in line, line
    assert files_under(project) == before
    assert list_datasets(workspace) == []


def test_settings_overrides_check_names_like_the_file():
    from opml.config import AutoMLSettings
    from opml.errors import OpmlError

    s = AutoMLSettings(dataset={"name": "d", "label_column": "y"})
    with pytest.raises(OpmlError, match="invalid experiment name 'a/b'"):
        s.with_overrides(experiment="a/b")
    with pytest.raises(OpmlError, match=r"invalid model name '\.\./m'"):
        s.with_overrides(model_name="../m")
    assert s.with_overrides(experiment="ok.name-1").experiment_name == "ok.name-1"


def test_registries_refuse_bad_names_in_process(workspace, bank_csv):
    from opml.data.registry import get_dataset, register
    from opml.errors import OpmlError
    from opml.training.models import get_model
    from opml.workspace.identity import create_principal, delete_principal

    for call in (lambda: register(workspace, "../x", bank_csv, label="response"),
                 lambda: get_dataset(workspace, "../x:1"), lambda: get_model(workspace, "a/b"),
                 lambda: create_principal(workspace, "../x"), lambda: delete_principal(workspace, "")):
        with pytest.raises(OpmlError, match=r"invalid .* name"):
            call()
    assert not (workspace.root.parent / "x").exists()
