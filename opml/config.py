"""YAML files in configs/ -> validated typed models. Unknown keys are errors."""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from opml.errors import ConfigError, OpmlError
from opml.names import ALGORITHMS, DEFAULT_ALGORITHMS, PRIMARY_METRICS
from opml.naming import RULE, check_name, is_name

BACKENDS = ("local", "azureml")
DEFAULT_CONFIGS = "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalWorkspace(_Strict):
    path: str = ".opml"


class AzureMLWorkspace(_Strict):
    """The `azureml:` section of workspace.yaml: which Azure ML workspace the azureml backend drives."""

    subscription_id: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    workspace_name: str = Field(min_length=1)
    tenant_id: str | None = None  # with OPML_CLIENT_ID / OPML_CLIENT_SECRET: service-principal auth
    compute: str = Field(default="cpu-cluster", pattern=r"^[A-Za-z][A-Za-z0-9-]{1,31}$")  # AmlCompute cluster
    instance_type: str = "Standard_DS3_v2"  # managed online deployments
    location: str | None = None  # where a new compute or endpoint goes (default: the workspace's)
    poll_seconds: float = Field(default=10.0, gt=0)  # how often `opml train` asks Azure how its job is doing


class WorkspaceConfig(_Strict):
    """configs/workspace.yaml"""

    backend: str = "local"
    local: LocalWorkspace = LocalWorkspace()
    azureml: AzureMLWorkspace | None = None

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; backends available: {', '.join(BACKENDS)}")
        return v


def named(kind: str) -> Callable[[Any], Any]:
    """Field validator: the one name rule (opml.naming) for a `kind` name (None: not set)."""

    def check(v: Any) -> Any:
        if v is not None and not is_name(v):
            raise ValueError(f"invalid {kind} name; use {RULE}")
        return v

    return check


class DatasetSpec(_Strict):
    """The `dataset:` section of automl.yaml: where the training data comes from."""

    name: str
    url: str | None = None
    path: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    label_column: str
    # Columns whose values are known only after the outcome (they leak it into training); the
    # leakage guardrail names them. The bank data's `duration` (the call's length) is one.
    post_outcome_columns: list[str] = []

    _name = field_validator("name")(named("dataset"))

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v


def known_metric(v: str | None) -> str | None:
    """Field validator: a primary metric opml implements (None: not set)."""
    if v is not None and v not in PRIMARY_METRICS:
        raise ValueError(f"unknown metric {v!r}; allowed: {', '.join(PRIMARY_METRICS)}")
    return v


def known_models(v: list[str] | None) -> list[str] | None:
    """Field validator: algorithm names opml implements (None: not set)."""
    for name in v or []:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown model {name!r}; allowed: {', '.join(ALGORITHMS)}")
        if name == "CatBoostClassifier" and importlib.util.find_spec("catboost") is None:
            raise ValueError("CatBoostClassifier needs the catboost package: pip install 'opml[catboost]'")
    return v


# Overrides named as `opml train`'s options and pipeline automl steps name them -> automl.yaml keys.
OVERRIDE_KEYS = {"time_budget": "experiment_timeout_seconds", "experiment": "experiment_name"}


class AutoMLSettings(_Strict):
    """configs/automl.yaml, named as Azure's AutoMLConfig names its settings."""

    task: Literal["classification"] = "classification"
    experiment_name: str = "bankmarketing-automl"
    model_name: str = "bankmarketing-automl"
    primary_metric: str = "AUC_weighted"
    label_column_name: str | None = None
    n_cross_validations: int | None = Field(default=None, ge=2, le=20)
    validation_size: float | None = Field(default=None, gt=0.0, lt=1.0)
    experiment_timeout_seconds: float = Field(default=120.0, gt=0)
    max_trials: int | None = Field(default=None, ge=1)
    experiment_exit_score: float | None = None
    enable_early_stopping: bool = True
    allowed_models: list[str] | None = None
    blocked_models: list[str] = []
    enable_voting_ensemble: bool = True
    enable_stack_ensemble: bool = True
    featurization: Literal["auto", "off"] = "auto"
    random_seed: int = 0
    # How labels are decided from probabilities: "f1_minority" picks the threshold that
    # maximises the minority class's F1 on out-of-fold predictions; "argmax" uses 0.5;
    # a number in (0, 1) fixes the threshold on the minority class's probability.
    decision_threshold: Literal["f1_minority", "argmax"] | float = "f1_minority"
    # Which candidate becomes the model (opml.automl.selection): "tolerance" (the default, chosen by the outer
    # evaluation of benchmarks/automl_quality.py --outer) takes the cheapest to score (fewest tree leaves) among
    # those within selection_tolerance of the top score; "best" the top primary score (Azure's rule); "one_se"
    # the cheapest within one standard error of the top score.
    model_selection: Literal["tolerance", "best", "one_se"] = "tolerance"
    selection_tolerance: float = Field(default=0.0005, ge=0.0, le=0.1)
    # Feature columns left out of training, e.g. a post-outcome column (dataset.post_outcome_columns);
    # each must be a column of the data. `opml train --drop-columns a,b` overrides it.
    drop_columns: list[str] = []
    dataset: DatasetSpec

    _known_metric = field_validator("primary_metric")(known_metric)
    _known_models = field_validator("allowed_models", "blocked_models")(known_models)
    _experiment_name = field_validator("experiment_name")(named("experiment"))
    _model_name = field_validator("model_name")(named("model"))

    @field_validator("decision_threshold")
    @classmethod
    def _threshold_range(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError("a fixed threshold must lie strictly between 0 and 1")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> AutoMLSettings:
        if self.n_cross_validations is not None and self.validation_size is not None:
            raise ValueError("set n_cross_validations or validation_size, not both")
        if self.label_column_name and self.label_column_name != self.dataset.label_column:
            raise ValueError(
                f"label_column_name {self.label_column_name!r} differs from "
                f"dataset.label_column {self.dataset.label_column!r}; keep one"
            )
        if self.allowed_models is not None and not set(self.allowed_models) - set(self.blocked_models):
            raise ValueError("allowed_models minus blocked_models leaves no model to try")
        if self.label in self.drop_columns:
            raise ValueError(f"drop_columns names the label column {self.label!r}; it cannot be dropped")
        return self

    @property
    def label(self) -> str:
        return self.label_column_name or self.dataset.label_column

    @property
    def cv_folds(self) -> int | None:
        """Folds of cross-validation, or None when a holdout (validation_size) is used."""
        if self.validation_size is not None:
            return None
        return self.n_cross_validations or 5

    def models(self) -> list[str]:
        """Algorithms the search may use, in catalogue order."""
        allowed = self.allowed_models if self.allowed_models is not None else list(DEFAULT_ALGORITHMS)
        return [m for m in ALGORITHMS if m in allowed and m not in self.blocked_models]

    @staticmethod
    def override_updates(**given: Any) -> dict[str, Any]:
        """The given overrides under automl.yaml's keys (time_budget, experiment renamed); None or "" keeps a value."""
        return {OVERRIDE_KEYS.get(k, k): v for k, v in given.items() if v is not None and v != ""}

    def with_overrides(self, **given: Any) -> AutoMLSettings:
        """These settings with overrides from the CLI or a pipeline step, validated like the file.

        Keys are automl.yaml's, or time_budget / experiment for experiment_timeout_seconds / experiment_name.
        A bad budget, trial count or name is an OpmlError; any other bad value raises pydantic's ValidationError.
        """
        for key, kind in (("experiment", "experiment"), ("experiment_name", "experiment"), ("model_name", "model")):
            if given.get(key) not in (None, ""):
                check_name(given[key], kind)
        budget, trials = given.get("time_budget"), given.get("max_trials")
        if budget is not None and budget <= 0:
            raise OpmlError(f"time budget must be positive (got {budget:g})", "pass --time-budget SECONDS > 0")
        if trials is not None and trials < 1:
            raise OpmlError(f"max trials must be at least 1 (got {trials})", "pass --max-trials N >= 1")
        if self.label in (given.get("drop_columns") or []):
            raise OpmlError(f"--drop-columns names the label column {self.label!r}", "drop feature columns only")
        updates = self.override_updates(**given)
        return AutoMLSettings.model_validate(self.model_dump() | updates) if updates else self


class DeployConfig(_Strict):
    """configs/deploy.yaml: how `opml deploy` runs an endpoint."""

    name: str = "bankmarketing-endpoint"
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port, kept across redeploys
    auth_enabled: bool = True
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    workers: int = Field(default=1, ge=1, le=32)
    startup_timeout_seconds: float = Field(default=90.0, gt=0)

    _name = field_validator("name")(named("endpoint"))


M = TypeVar("M", bound=BaseModel)


def configs_dir(value: str | os.PathLike[str] | None = None) -> Path:
    """The configs folder: --configs, else $OPML_CONFIGS, else ./configs."""
    return Path(value or os.environ.get("OPML_CONFIGS") or DEFAULT_CONFIGS)


def load(path: Path, model: type[M], *, required: bool = True) -> M:
    """Read one YAML file into `model`; any problem becomes a one-line ConfigError."""
    if not path.is_file():
        if required:
            raise ConfigError(
                f"config file {path} not found",
                "run opml from the project folder or pass --configs DIR",
            )
        return model.model_validate({})
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}", "fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(path, model, exc)) from None


def _describe(path: Path, model: type[BaseModel], exc: ValidationError) -> str:
    # A misspelt key also makes the right one "missing": report the misspelling first.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{path}: unknown key {key!r}{did}; allowed keys: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{path}: missing required key {key!r}"
    msg = err["msg"].removeprefix("Value error, ")
    given = err.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
    if key == "(top level)":
        return f"{path}: {msg}"
    return f"{path}: {key}: {msg}{shown}"


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        ann = _section(getattr(field, "annotation", None))
        if ann is None:
            break
        model = ann
    return list(model.model_fields)


def _section(ann: Any) -> type[BaseModel] | None:
    """The model of a nested section: `Model` or an optional `Model | None`; None for a plain value."""
    for candidate in (ann, *get_args(ann)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def workspace_config(cfg_dir: Path) -> WorkspaceConfig:
    return load(cfg_dir / "workspace.yaml", WorkspaceConfig, required=False)


def select_backend(cfg_dir: Path, override: str | None = None) -> tuple[str, WorkspaceConfig]:
    """The backend to use (`--backend` over $OPML_BACKEND over workspace.yaml `backend`) and the workspace config.

    The azureml backend needs the file's `azureml:` section; a missing one is a one-line ConfigError.
    """
    cfg = workspace_config(cfg_dir)
    path = cfg_dir / "workspace.yaml"
    env = os.environ.get("OPML_BACKEND")
    chosen, where = (override, "--backend") if override else (env, "OPML_BACKEND") if env else (cfg.backend, path)
    if chosen not in BACKENDS:  # (the file's own value was checked when it loaded)
        raise ConfigError(f"{where}: unknown backend {chosen!r}; backends available: {', '.join(BACKENDS)}")
    if chosen == "azureml" and cfg.azureml is None:
        raise ConfigError(f"{path}: missing required key 'azureml' (the azureml backend's workspace)",
                          "add azureml: {subscription_id, resource_group, workspace_name}")
    return chosen, cfg


def deploy_config(cfg_dir: Path) -> DeployConfig:
    return load(cfg_dir / "deploy.yaml", DeployConfig, required=False)


def automl_settings(cfg_dir: Path, path: Path | None = None) -> AutoMLSettings:
    return load(path or cfg_dir / "automl.yaml", AutoMLSettings)
