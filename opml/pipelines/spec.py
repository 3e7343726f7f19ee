"""Pipeline definitions: YAML -> validated models, DAG checks, ${param} substitution with type checks.

Names (pipeline, datasets, models, endpoints, experiments) follow the one name rule (opml.naming). Settings
that name code or files (FIXED) cannot take a parameter, so no caller of a published pipeline chooses what
runs; a dataset URL may take one only where the definition lists `allowed_url_hosts`.
Kept import-light (pydantic, yaml): the control plane validates triggers with it on the request path.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from opml.config import known_metric, known_models
from opml.errors import ConfigError, OpmlError
from opml.naming import check_name

STEP_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
PARAM_RE = re.compile(r"\$\{([^}]*)\}")
STEP_TYPES = ("dataset", "automl", "register", "deploy", "script")
# What each step type produces; a script step declares its own outputs.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "dataset": ("dataset",),
    "automl": ("model", "run"),
    "register": ("model",),
    "deploy": ("endpoint", "scoring_uri"),
}
# Inputs each type understands (script: any name).
INPUTS: dict[str, tuple[str, ...]] = {"dataset": (), "automl": ("dataset",), "register": ("model",),
                                      "deploy": ("model",)}
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {"register": ("model",), "deploy": ("model",)}
PARAM_TYPES = ("int", "float", "string", "bool")
INT64 = (-(2**63), 2**63 - 1)  # the range of an int parameter
# Settings that name code or files: written in the definition, never taken from a parameter.
FIXED: dict[str, tuple[str, ...]] = {"script": ("script",), "dataset": ("path",), "automl": ("config",)}
MAX_CONCURRENT_RUNS = 4  # default cap on the active runs of one published pipeline (REST triggers beyond: 429)


def _name_rule(kind: str):
    """A pydantic validator applying opml.naming.check_name to an optional name of `kind`."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_name(value, kind)
        except OpmlError as exc:
            raise ValueError(exc.line()) from None

    return AfterValidator(check)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameter(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    type: Literal["int", "float", "string", "bool"] = "string"
    default: Any = None
    description: str = ""


class Step(_Strict):
    name: str = Field(pattern=STEP_NAME)
    type: str
    inputs: dict[str, str] = {}
    settings: dict[str, Any] = {}
    outputs: list[str] = []  # script steps only
    allow_reuse: bool = True


class PipelineSpec(_Strict):
    name: Annotated[str, _name_rule("pipeline")]
    description: str = ""
    parameters: list[Parameter] = []
    steps: list[Step] = Field(min_length=1)
    # hosts a dataset step's `url` may name when it takes a parameter (every url is checked once this is set)
    allowed_url_hosts: list[Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]+$")]] = []
    max_concurrent_runs: int = Field(default=MAX_CONCURRENT_RUNS, ge=1, le=1000)

    def param(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def outputs_of(self, step: Step) -> tuple[str, ...]:
        return tuple(step.outputs) if step.type == "script" else OUTPUTS[step.type]

    def digest(self) -> str:
        doc = self.model_dump(mode="json")
        for key in ("allowed_url_hosts", "max_concurrent_runs"):  # at their defaults: the digest they had before
            if doc[key] == type(self).model_fields[key].get_default(call_default_factory=True):
                del doc[key]
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ---- step settings, per type (validated after substitution) ----------------------


class DatasetSettings(_Strict):
    name: Annotated[str | None, _name_rule("dataset")] = None
    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    label: str | None = None
    version: int | None = Field(default=None, ge=0)  # set (> 0): use that registered version, register nothing


class AutoMLStepSettings(_Strict):
    config: str | None = None  # an automl.yaml other than <configs>/automl.yaml
    experiment: Annotated[str | None, _name_rule("experiment")] = None  # default: the pipeline run's experiment
    time_budget: float | None = Field(default=None, gt=0)
    max_trials: int | None = Field(default=None, ge=1)
    primary_metric: str | None = None
    model_name: Annotated[str | None, _name_rule("model")] = None
    n_cross_validations: int | None = Field(default=None, ge=2, le=20)
    allowed_models: list[str] | None = None
    blocked_models: list[str] | None = None
    enable_voting_ensemble: bool | None = None
    enable_stack_ensemble: bool | None = None
    random_seed: int | None = None

    _metric = field_validator("primary_metric")(known_metric)
    _models = field_validator("allowed_models", "blocked_models")(known_models)

    def overrides(self) -> dict[str, Any]:
        """The settings this step overrides, for AutoMLSettings.with_overrides (experiment: the caller's)."""
        return {k: v for k, v in self.model_dump().items() if v is not None and k not in ("config", "experiment")}


class RegisterSettings(_Strict):
    tags: dict[str, str] = {}


class DeploySettings(_Strict):
    name: Annotated[str | None, _name_rule("endpoint")] = None
    port: int | None = Field(default=None, ge=0, le=65535)
    auth_enabled: bool | None = None
    workers: int | None = Field(default=None, ge=1, le=32)


class ScriptSettings(_Strict):
    script: str
    args: list[str | int | float | bool] = []
    timeout_seconds: float | None = Field(default=None, gt=0)


SETTINGS: dict[str, type[_Strict]] = {"dataset": DatasetSettings, "automl": AutoMLStepSettings,
                                      "register": RegisterSettings, "deploy": DeploySettings,
                                      "script": ScriptSettings}


# ---- loading and validation ---------------------------------------------------


def load_spec(path: Path) -> PipelineSpec:
    """Read and validate a pipeline file; every problem is one line naming the file and the culprit."""
    if not path.is_file():
        raise ConfigError(f"pipeline file {path} not found", "pass --file PATH or add configs/pipeline.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}", "fix the syntax") \
            from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with name, parameters and steps")
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc, raw)}") from None
    try:
        spec = resolve_scripts(spec, path.parent)
        validate(spec)
    except OpmlError as exc:
        raise ConfigError(f"{path}: {exc.line()}") from None
    return spec


def _describe(exc: ValidationError, raw: dict) -> str:
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = list(err["loc"])
    item, keys = "", []
    for i, part in enumerate(loc):
        if isinstance(part, int) and i > 0 and loc[i - 1] in ("steps", "parameters"):
            items = raw.get(loc[i - 1]) or []
            entry = items[part] if part < len(items) and isinstance(items[part], dict) else {}
            item = f"{loc[i - 1][:-1]} {entry.get('name', f'#{part + 1}')!r}: "
            keys = []
        else:
            keys.append(str(part))
    key = ".".join(keys) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{item}unknown key {key!r}"
    if err["type"] == "missing":
        return f"{item}missing required key {key!r}"
    return f"{item}{key}: {err['msg'].removeprefix('Value error, ')}"


def resolve_scripts(spec: PipelineSpec, base: Path) -> PipelineSpec:
    """Make script paths absolute (relative to the pipeline file) so runs do not depend on the cwd."""
    steps = []
    for s in spec.steps:
        check_fixed(spec, s)
        script = s.settings.get("script") if s.type == "script" else None
        if isinstance(script, str):
            p = Path(script).expanduser()
            p = p if p.is_absolute() else (base / p).resolve()
            if not p.is_file():
                raise OpmlError(f"step {s.name!r}: script {script} not found", f"looked for {p}")
            s = s.model_copy(update={"settings": s.settings | {"script": str(p)}})
        steps.append(s)
    return spec.model_copy(update={"steps": steps})


def check_fixed(spec: PipelineSpec, step: Step) -> None:
    """Refuse a parameter in a setting that names code or files, and a parameterised URL without allowed hosts."""
    for key in FIXED.get(step.type, ()):
        if _params_used(step.settings.get(key)):
            raise OpmlError(f"step {step.name!r}: setting {key!r} cannot take a parameter (it names code or a file)",
                            "write the path itself in the pipeline file")
    if step.type == "dataset" and _params_used(step.settings.get("url")) and not spec.allowed_url_hosts:
        raise OpmlError(f"step {step.name!r}: setting 'url' takes a parameter only when allowed_url_hosts lists the "
                        "hosts", "add allowed_url_hosts: [HOST, ...] to the pipeline file, or write the URL itself")


def check_url(spec: PipelineSpec, url: str) -> str | None:
    """Why `url` may not be fetched under the definition's allowed_url_hosts (None: it may, or no list is set)."""
    if not spec.allowed_url_hosts:
        return None
    allowed = ", ".join(spec.allowed_url_hosts)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if parts is None or parts.scheme not in ("http", "https") or not host:
        return f"{url[:200]!r} is not an http(s) URL on a host in allowed_url_hosts ({allowed})"
    if host.lower() not in {h.lower().strip("[]") for h in spec.allowed_url_hosts}:
        return f"host {host!r} is not in allowed_url_hosts ({allowed})"
    return None


def validate(spec: PipelineSpec) -> None:
    """Names, types, wiring, cycles, parameters; then the settings of each step with the defaults filled in."""
    seen: set[str] = set()
    for p in spec.parameters:
        if p.name in seen:
            raise OpmlError(f"parameter {p.name!r} is declared twice")
        seen.add(p.name)
        if p.default is not None:
            coerce(p, p.default, strict=True)
    names = [s.name for s in spec.steps]
    for s in spec.steps:
        if names.count(s.name) > 1:
            raise OpmlError(f"step {s.name!r} is defined twice", "give each step a unique name")
        if s.type not in STEP_TYPES:
            raise OpmlError(f"step {s.name!r} has unknown type {s.type!r}", f"use one of {', '.join(STEP_TYPES)}")
        if s.outputs and s.type != "script":
            raise OpmlError(f"step {s.name!r}: only script steps declare outputs ({s.type} produces "
                            f"{', '.join(OUTPUTS[s.type])})")
        for key, ref in s.inputs.items():
            if s.type != "script" and key not in INPUTS[s.type]:
                allowed = ", ".join(INPUTS[s.type]) or "none"
                raise OpmlError(f"step {s.name!r}: unknown input {key!r} for a {s.type} step (allowed: {allowed})")
            src, dot, out = str(ref).partition(".")
            if not dot or src not in names:
                raise OpmlError(f"step {s.name!r}: input {key!r} refers to {ref!r}, which is no step's output",
                                "write STEP.OUTPUT with an existing step")
            if src == s.name:
                raise OpmlError(f"cycle: step {s.name!r} takes its own output {ref!r}")
            if out not in spec.outputs_of(spec.step(src)):
                have = ", ".join(spec.outputs_of(spec.step(src))) or "no outputs"
                raise OpmlError(f"step {s.name!r}: input {key!r} refers to {ref!r}, but step {src!r} has {have}")
        check_fixed(spec, s)
        for key in REQUIRED_INPUTS.get(s.type, ()):
            if key not in s.inputs:
                raise OpmlError(f"step {s.name!r}: a {s.type} step needs input {key!r}",
                                f"add inputs: {{{key}: STEP.{key}}}")
        for used in _params_used(s.settings):
            if spec.param(used) is None:
                raise OpmlError(f"step {s.name!r} uses undeclared parameter ${{{used}}}",
                                "declare it under parameters: or fix the name")
    order(spec)
    defaults = {p.name: p.default for p in spec.parameters}
    for s in spec.steps:
        if any(v is None for k, v in defaults.items() if k in _params_used(s.settings)):
            continue  # a parameter without default: checked when a run supplies it
        step_settings(spec, s, defaults)


def order(spec: PipelineSpec) -> list[list[str]]:
    """Topological levels (Kahn); a cycle is an error naming the steps in it."""
    deps = {s.name: {str(r).split(".", 1)[0] for r in s.inputs.values()} for s in spec.steps}
    levels, done = [], set()
    while len(done) < len(deps):
        ready = [n for n, d in deps.items() if n not in done and d <= done]
        if not ready:
            stuck = [n for n in deps if n not in done]
            raise OpmlError(f"cycle among steps {', '.join(repr(n) for n in stuck)}", "remove one of the inputs")
        levels.append(ready)
        done.update(ready)
    return levels


def dependencies(step: Step) -> set[str]:
    return {str(r).split(".", 1)[0] for r in step.inputs.values()}


def _params_used(value: Any) -> list[str]:
    if isinstance(value, str):
        return [m.strip() for m in PARAM_RE.findall(value)]
    if isinstance(value, dict):
        return [p for v in value.values() for p in _params_used(v)]
    if isinstance(value, list):
        return [p for v in value for p in _params_used(v)]
    return []


# ---- parameters ---------------------------------------------------------------


class ParameterError(OpmlError):
    """A run's parameter is unknown or of the wrong type (REST: 422)."""


def coerce(p: Parameter, value: Any, *, strict: bool) -> Any:
    """Check `value` against the parameter's type. strict: JSON values (REST); else strings from --param."""
    t = p.type
    if isinstance(value, str) and "\x00" in value:  # no process argument, path or row can carry it
        raise ParameterError(f"parameter {p.name!r} must not contain NUL characters")
    if not strict and isinstance(value, str):
        try:
            if t == "int":
                return _in_range(p, int(value))
            if t == "float":
                return _in_range(p, float(value))
            if t == "bool":
                low = value.strip().lower()
                if low in ("true", "1", "yes", "on"):
                    return True
                if low in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return value
        except ValueError:
            raise ParameterError(f"parameter {p.name!r} must be {_a(t)} (got {value!r})") from None
    ok = (
        (t == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (t == "float" and isinstance(value, int | float) and not isinstance(value, bool))
        or (t == "string" and isinstance(value, str))
        or (t == "bool" and isinstance(value, bool))
    )
    if not ok:
        raise ParameterError(f"parameter {p.name!r} must be {_a(t)} (got {json.dumps(value)})")
    return _in_range(p, float(value) if t == "float" else value)


def _in_range(p: Parameter, value: Any) -> Any:
    """Integers fit 64 bits and numbers are finite (what opml.db, JSON and the steps can hold)."""
    if p.type == "int" and not INT64[0] <= value <= INT64[1]:
        raise ParameterError(f"parameter {p.name!r} must be a 64-bit integer (got {value})")
    if p.type == "float" and not math.isfinite(value):
        raise ParameterError(f"parameter {p.name!r} must be a finite number (got {value})")
    return value


def _a(t: str) -> str:
    return {"int": "an integer", "float": "a number", "string": "a string", "bool": "true or false"}[t]


def resolve_parameters(spec: PipelineSpec, given: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """Defaults overlaid with `given`; unknown names, wrong types and missing values are ParameterErrors."""
    if not isinstance(given, dict):
        raise ParameterError("ParameterAssignments must be an object of name: value")
    values = {p.name: p.default for p in spec.parameters}
    for name, value in given.items():
        p = spec.param(name)
        if p is None:
            known = ", ".join(x.name for x in spec.parameters) or "none"
            raise ParameterError(f"unknown parameter {name!r} for pipeline {spec.name!r} (parameters: {known})")
        values[name] = coerce(p, value, strict=strict)
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ParameterError(f"parameter {missing[0]!r} has no default and was not given",
                             f"pass --param {missing[0]}=VALUE")
    for s in spec.steps:  # settings must still validate with these values
        try:
            step_settings(spec, s, values)
        except ParameterError:
            raise
        except OpmlError as exc:
            raise ParameterError(exc.line()) from None
    return values


def substitute(value: Any, params: dict[str, Any]) -> Any:
    """"${p}" alone keeps the parameter's type; inside a longer string it is formatted in."""
    if isinstance(value, str):
        whole = PARAM_RE.fullmatch(value.strip())
        if whole:
            return params[whole.group(1).strip()]
        return PARAM_RE.sub(lambda m: str(params[m.group(1).strip()]), value)
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    return value


def step_settings(spec: PipelineSpec, step: Step, params: dict[str, Any]) -> _Strict:
    """The step's settings with `params` substituted, validated (a definition stored before a rule was added
    is held to it here too, so a run cannot get around it)."""
    check_fixed(spec, step)
    model = SETTINGS[step.type]
    raw = substitute(step.settings, params)
    try:
        settings = model.model_validate(raw)
    except ValidationError as exc:
        err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            raise OpmlError(f"step {step.name!r}: unknown setting {key!r} for a {step.type} step",
                            f"allowed: {', '.join(model.model_fields)}") from None
        if err["type"] == "missing":
            raise OpmlError(f"step {step.name!r}: missing setting {key!r}") from None
        used = [p for p in _params_used(step.settings.get(str(err['loc'][0]), "")) if p in params]
        via = f" (from parameter {used[0]!r})" if used else ""
        got = err.get("input")
        shown = repr(got[:64]) + "..." if isinstance(got, str) and len(got) > 64 else repr(got)
        raise OpmlError(f"step {step.name!r}: setting {key!r}{via}: "
                        f"{err['msg'].removeprefix('Value error, ')} (got {shown})") from None
    url = getattr(settings, "url", None)
    problem = check_url(spec, url) if isinstance(url, str) else None
    if problem:
        used = _params_used(step.settings.get("url"))
        via = f" (from parameter {used[0]!r})" if used else ""
        raise OpmlError(f"step {step.name!r}: setting 'url'{via}: {problem}")
    return settings
