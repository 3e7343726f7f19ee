"""What each step type does (run inside the step's own process) and its reuse fingerprint.

fingerprint() is cheap (runs in the executor before deciding to reuse); execute() does the work and
returns the step's outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from opml.errors import OpmlError
from opml.workspace.workspace import Workspace


class StepContext:
    """What a step needs besides its settings and inputs."""

    def __init__(self, ws: Workspace, configs: Path, run_id: str, experiment: str, step: str, work_dir: Path) -> None:
        self.ws, self.configs, self.run_id, self.experiment, self.step = ws, configs, run_id, experiment, step
        self.work_dir = work_dir

    def automl_base(self, config: str | None):
        from opml.config import automl_settings

        path = Path(config) if config else None
        if path is not None and not path.is_absolute():
            path = self.configs.parent / path
        return automl_settings(self.configs, path)

    def dataset_spec(self):
        return self.automl_base(None).dataset if (self.configs / "automl.yaml").is_file() else None


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: str | Path) -> str:
    from opml.data.source import sha256_file

    try:
        return sha256_file(Path(path))
    except OSError:
        return f"missing:{path}"


def fingerprint(step_type: str, settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> str:
    """Hash of the step's code identity, effective settings and input values: equal hash -> reusable output."""
    extra: dict[str, Any] = {}
    if step_type == "dataset":
        if settings.get("version"):
            extra["source"] = f"{settings.get('name')}:{settings['version']}"
        else:
            from opml.data.resolve import resolve_source

            spec = ctx.dataset_spec()
            src = resolve_source(spec, path=settings.get("path"), url=settings.get("url"),
                                 sha256=settings.get("sha256"))
            extra["source"] = {"file": _file_sha(src.path)} if src.path else {"url": src.url, "sha256": src.sha256}
            extra["defaults"] = spec.model_dump() if spec else None
    elif step_type == "automl":
        from opml.config import AutoMLSettings
        from opml.pipelines.spec import AutoMLStepSettings

        s = AutoMLStepSettings.model_validate(settings)
        base = ctx.automl_base(s.config).model_dump(mode="json", exclude={"experiment_name"})
        extra["automl"] = base | AutoMLSettings.override_updates(**s.overrides())
    elif step_type == "deploy":
        from opml.config import deploy_config

        extra["deploy"] = deploy_config(ctx.configs).model_dump()
    elif step_type == "script":
        extra["script"] = _file_sha(settings["script"])
    return _sha({"type": step_type, "code": 1, "settings": settings, "inputs": inputs, "extra": extra})


# ---- execution (in the step process) ------------------------------------------------


def execute(step_type: str, settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"dataset": _dataset, "automl": _automl, "register": _register, "deploy": _deploy,
            "script": _script}[step_type](settings, inputs, ctx)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _copy_output(proc: subprocess.Popen, last: list[str]) -> None:
    """Copy the script's output into this step's log, keeping its last 20 non-empty lines in `last`."""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if line.strip():
            last[:] = [*last[-19:], line.rstrip()]


def _die_with_parent():
    """A preexec_fn (Linux) asking for SIGKILL when the step process dies, so a script is never left behind."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the forked child only calls it
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=5)


def _dataset(settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from opml.data.registry import get_dataset
    from opml.data.stage import register_dataset

    spec = ctx.dataset_spec()
    if settings.get("version"):
        name = settings.get("name") or (spec.name if spec else None)
        if not name:
            raise OpmlError("dataset step: no dataset name", "set settings.name or automl.yaml dataset.name")
        ds = get_dataset(ctx.ws, f"{name}:{settings['version']}")
        _say(f"using registered dataset {ds.ref} ({ds.profile['rows']} rows)")
        return {"dataset": ds.ref}
    ds, created = register_dataset(ctx.ws, spec, name=settings.get("name"), path=settings.get("path"),
                                   url=settings.get("url"), label=settings.get("label"),
                                   sha256=settings.get("sha256"), progress=False)
    _say(f"{'registered' if created else 'already registered'} dataset {ds.ref}: {ds.profile['rows']} rows x "
         f"{ds.profile['columns']} columns, label {ds.label!r}, sha256 {ds.sha256[:12]}")
    return {"dataset": ds.ref}


def _automl(settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from opml.pipelines.spec import AutoMLStepSettings
    from opml.training.stage import train

    s = AutoMLStepSettings.model_validate(settings)
    base = ctx.automl_base(s.config)
    updates = s.overrides() | {"experiment": s.experiment or ctx.experiment}
    data = None
    if inputs.get("dataset"):
        from opml.data.registry import get_dataset

        ds = get_dataset(ctx.ws, inputs["dataset"])
        data = ds.path
        updates["dataset"] = {"name": ds.name, "path": ds.path, "label_column": ds.label}
        updates["label_column_name"] = ds.label
    from pydantic import ValidationError

    try:
        cfg = base.with_overrides(**updates)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise OpmlError(f"automl step settings: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    _say(f"AutoML: experiment {cfg.experiment_name!r}, metric {cfg.primary_metric}, budget "
         f"{cfg.experiment_timeout_seconds:g} s, max trials {cfg.max_trials or '-'}, dataset {cfg.dataset.name}")

    def on_trial(t: Any) -> None:
        score = t.metrics.get(cfg.primary_metric) if getattr(t, "metrics", None) else None
        shown = f"{score:.4f}" if isinstance(score, float) else "-"
        _say(f"trial {t.iteration}: {t.pipeline_name}  {cfg.primary_metric}={shown}  {t.duration_s:.1f}s  {t.status}")

    result = train(ctx.ws, cfg, data=data, on_trial=on_trial, progress=False)
    best = result.summary["best"]
    score = best["metrics"].get(cfg.primary_metric)
    _say(f"best: {best['pipeline']} {cfg.primary_metric}={score}; registered model {result.model.ref}")
    return {"run": result.run_id, "model": result.model.ref, "best_pipeline": best["pipeline"],
            "primary_metric": cfg.primary_metric, "score": score}


def _register(settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from opml.training.models import get_model

    model = get_model(ctx.ws, inputs["model"])
    tags = dict(settings.get("tags") or {}) | {"pipeline_run": ctx.run_id}
    _say(f"model {model.ref} is registered ({model.pipeline}); tags {tags}")
    return {"model": model.ref, "tags": tags, "run": model.run_id}


def _deploy(settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    from opml.config import DeployConfig, deploy_config
    from opml.serving.endpoints import deploy

    cfg = deploy_config(ctx.configs)
    cfg = DeployConfig.model_validate(cfg.model_dump() | {k: v for k, v in settings.items() if v is not None})
    ep = deploy(ctx.ws, inputs["model"], cfg, settings.get("name"))
    _say(f"endpoint {ep.name!r} serves {ep.model} at {ep.scoring_uri} (pid {ep.pid})")
    return {"endpoint": ep.name, "scoring_uri": ep.scoring_uri}


def _script(settings: dict[str, Any], inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Run the user's Python file. It gets its inputs as OPML_INPUT_<NAME> variables and in the JSON file
    $OPML_INPUTS, and writes its outputs as a JSON object to the file $OPML_OUTPUTS."""
    script = Path(settings["script"])
    if not script.is_file():
        raise OpmlError(f"script {script} not found", "fix settings.script in the pipeline file")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    in_file, out_file = ctx.work_dir / f"{ctx.step}.inputs.json", ctx.work_dir / f"{ctx.step}.outputs.json"
    in_file.write_text(json.dumps(inputs))
    out_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPML_CLIENT")}
    env |= {"OPML_INPUTS": str(in_file), "OPML_OUTPUTS": str(out_file), "OPML_WORKSPACE": str(ctx.ws.root),
            "OPML_RUN_ID": ctx.run_id, "OPML_STEP": ctx.step, "OPML_EXPERIMENT": ctx.experiment,
            "PYTHONUNBUFFERED": "1"}
    env |= {f"OPML_INPUT_{k.upper()}": str(v) for k, v in inputs.items()}
    cmd = [sys.executable, str(script), *map(str, settings.get("args") or [])]
    _say(f"$ {' '.join(cmd)}")
    timeout = settings.get("timeout_seconds")
    # Its own process group (killed whole at the deadline or when this step stops), and SIGKILLed if this
    # process dies first.
    proc = subprocess.Popen(cmd, env=env, cwd=ctx.work_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", process_group=0, preexec_fn=_die_with_parent())
    last: list[str] = []
    copier = threading.Thread(target=_copy_output, args=(proc, last), name="script-output", daemon=True)
    copier.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise OpmlError(f"script {script.name} timed out after {timeout:g} s",
                        "raise settings.timeout_seconds or make the script faster") from None
    except BaseException:  # canceled (SIGTERM -> KeyboardInterrupt) or failed: the script goes too
        _kill_group(proc)
        raise
    copier.join(timeout=5)  # the rest of its output (a child that keeps the pipe open is not waited for)
    if code != 0:
        reason = next((ln for ln in reversed(last) if "Error" in ln or "Exception" in ln), last[-1] if last else "")
        raise OpmlError(f"script {script.name} exited with code {code}" + (f": {reason.strip()}" if reason else ""))
    outputs: dict[str, Any] = {}
    if out_file.is_file():
        try:
            outputs = json.loads(out_file.read_text())
        except ValueError:
            raise OpmlError(f"script {script.name} wrote invalid JSON to $OPML_OUTPUTS") from None
        if not isinstance(outputs, dict):
            raise OpmlError(f"script {script.name} must write a JSON object to $OPML_OUTPUTS")
    return outputs
