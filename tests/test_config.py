from __future__ import annotations

from pathlib import Path

import pytest

from opml.config import AutoMLSettings, WorkspaceConfig, automl_settings, load, workspace_config
from opml.errors import ConfigError
from tests.conftest import DATA_SHA256, REPO


def error_of(path: Path, model) -> str:
    with pytest.raises(ConfigError) as e:
        load(path, model)
    return str(e.value)


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def test_shipped_configs_load_with_the_reference_dataset():
    s = automl_settings(REPO / "configs")
    assert s.dataset.name == "bankmarketing"
    assert s.dataset.sha256 == DATA_SHA256
    assert s.dataset.url.endswith("/automl-sample-notebook-data/bankmarketing_train.csv")
    assert s.label == "response"
    assert s.primary_metric == "AUC_weighted"
    assert s.cv_folds == 5
    assert workspace_config(REPO / "configs").backend == "local"


def test_unknown_key_names_file_key_suggestion_and_allowed(tmp_path):
    p = write(tmp_path, "automl.yaml", "n_cross_validation: 3\ndataset: {name: d, label_column: y}\n")
    with pytest.raises(ConfigError) as e:
        load(p, AutoMLSettings)
    msg = str(e.value)
    assert str(p) in msg and "'n_cross_validation'" in msg
    assert "did you mean 'n_cross_validations'" in msg
    assert "allowed keys:" in msg and "primary_metric" in msg
    assert "\n" not in msg


def test_unknown_nested_key_lists_that_sections_keys(tmp_path):
    p = write(tmp_path, "automl.yaml", "dataset: {name: d, lable_column: y}\n")
    msg = error_of(p, AutoMLSettings)
    assert "dataset.lable_column" in msg and "label_column" in msg and "sha256" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n_cross_validations: five", "n_cross_validations"),
        ("primary_metric: f1", "allowed: AUC_weighted"),
        ("experiment_timeout_seconds: 0", "experiment_timeout_seconds"),
        ("allowed_models: [LightGBM, CatBoostz]", "unknown model 'CatBoostz'"),
        ("n_cross_validations: 3\nvalidation_size: 0.2", "not both"),
        ("decision_threshold: 1.5", "strictly between 0 and 1"),
        ("featurization: maybe", "featurization"),
        ("model_selection: fastest", "model_selection"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, expected):
    p = write(tmp_path, "automl.yaml", text + "\ndataset: {name: d, label_column: y}\n")
    msg = error_of(p, AutoMLSettings)
    assert expected in msg and str(p) in msg


def test_missing_dataset_section(tmp_path):
    p = write(tmp_path, "automl.yaml", "task: classification\n")
    assert "missing required key 'dataset'" in error_of(p, AutoMLSettings)


def test_unknown_backend_lists_backends(tmp_path):
    p = write(tmp_path, "workspace.yaml", "backend: aws\n")
    msg = error_of(p, WorkspaceConfig)
    assert "unknown backend 'aws'" in msg and "backends available: local, azureml" in msg


def test_invalid_yaml_gives_line(tmp_path):
    p = write(tmp_path, "workspace.yaml", "backend: local\nlocal: [unclosed\n")
    msg = error_of(p, WorkspaceConfig)
    assert "not valid YAML at line" in msg


def test_missing_optional_file_uses_defaults_and_required_one_errors(tmp_path):
    assert workspace_config(tmp_path).local.path == ".opml"
    with pytest.raises(ConfigError, match=r"automl\.yaml not found"):
        automl_settings(tmp_path)


def test_cli_reports_bad_config_as_one_line(project, cli):
    (project / "configs" / "workspace.yaml").write_text("backend: local\nlocal: {path: .opml, colour: red}\n")
    line = cli.fails("auth")
    assert "unknown key 'local.colour'" in line and "workspace.yaml" in line


def test_models_respects_allowed_and_blocked():
    s = AutoMLSettings(dataset={"name": "d", "label_column": "y"}, allowed_models=["LightGBM", "RandomForest"],
                       blocked_models=["RandomForest"])
    assert s.models() == ["LightGBM"]
    with pytest.raises(ValueError, match="leaves no model"):
        AutoMLSettings(dataset={"name": "d", "label_column": "y"}, allowed_models=["LightGBM"],
                       blocked_models=["LightGBM"])


def test_with_overrides_renames_keeps_unset_and_validates():
    from pydantic import ValidationError

    from opml.errors import OpmlError

    s = AutoMLSettings(dataset={"name": "d", "label_column": "y"})
    assert s.with_overrides() is s and s.with_overrides(experiment="", max_trials=None) is s
    o = s.with_overrides(time_budget=30, max_trials=4, experiment="exp", model_selection="best", random_seed=7)
    assert (o.experiment_timeout_seconds, o.max_trials, o.experiment_name, o.model_selection, o.random_seed) == (
        30.0, 4, "exp", "best", 7)
    assert s.experiment_timeout_seconds == 120.0  # the original is left as it was
    with pytest.raises(OpmlError, match=r"time budget must be positive \(got 0\); pass --time-budget"):
        s.with_overrides(time_budget=0)
    with pytest.raises(OpmlError, match=r"max trials must be at least 1 \(got 0\)"):
        s.with_overrides(max_trials=0)
    with pytest.raises(ValidationError, match="unknown model 'CatBoost'"):
        s.with_overrides(allowed_models=["CatBoost"])


def test_pipeline_automl_steps_validate_names_as_automl_yaml_does():
    from pydantic import ValidationError

    from opml.pipelines.spec import AutoMLStepSettings

    with pytest.raises(ValidationError, match="unknown metric 'f1'; allowed: AUC_weighted"):
        AutoMLStepSettings(primary_metric="f1")
    with pytest.raises(ValidationError, match="unknown model 'CatBoost'"):
        AutoMLStepSettings(blocked_models=["CatBoost"])
    step = AutoMLStepSettings(config="other.yaml", experiment="e", time_budget=9, max_trials=2)
    assert AutoMLSettings.override_updates(**step.overrides()) == {"experiment_timeout_seconds": 9.0, "max_trials": 2}


def test_config_names_are_the_ones_the_engine_implements():
    from opml.automl.algorithms import CATALOGUE
    from opml.automl.metrics import METRIC_NAMES
    from opml.names import ALGORITHMS, PRIMARY_METRICS

    assert set(CATALOGUE) == set(ALGORITHMS)
    assert set(PRIMARY_METRICS) <= set(METRIC_NAMES)


def test_catboost_without_its_extra_is_a_one_line_config_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    from opml.config import known_models

    assert known_models(["LightGBM", "CatBoostClassifier"]) == ["LightGBM", "CatBoostClassifier"]  # installed here
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "catboost" else real(name, *a))
        with pytest.raises(ValueError, match=r"needs the catboost package: pip install 'opml\[catboost\]'"):
            known_models(["LightGBM", "CatBoostClassifier"])
