"""One step of a pipeline run, in its own process: `python -m opml.pipelines.step --workspace ROOT --run ID --step S`.

Reads its settings and inputs from opml.db (the executor resolved them), does the work, and writes
<workspace>/logs/pipelines/<run>/<step>.result.json: {"outputs": {...}} or {"error": "..."}.
stdout/stderr are the step's log.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
from pathlib import Path

from opml.files import atomic_write


def run_dir(root: Path, run_id: str) -> Path:
    return root / "logs" / "pipelines" / run_id


def result_file(root: Path, run_id: str, step: str) -> Path:
    return run_dir(root, run_id) / f"{step}.result.json"


def _term(signum, frame):  # SIGTERM (cancel) -> KeyboardInterrupt, so the stages record "Canceled"
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opml-pipeline-step")
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--run", required=True)
    ap.add_argument("--step", required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _term)
    out = result_file(args.workspace, args.run, args.step)
    t0 = time.monotonic()
    try:
        result = {"outputs": _run(args)}
        code = 0
    except KeyboardInterrupt:
        result, code = {"error": "canceled"}, 130
    except Exception as exc:
        from opml.errors import OpmlError

        if isinstance(exc, OpmlError):
            message = exc.line()
        else:
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
        print(f"step failed: {message}", file=sys.stderr, flush=True)
        result, code = {"error": message}, 1
    atomic_write(out, json.dumps(result, default=str))
    print(f"step {args.step} finished in {time.monotonic() - t0:.1f} s ({'ok' if code == 0 else 'failed'})",
          flush=True)
    return code


def _run(args: argparse.Namespace) -> dict:
    from opml.errors import OpmlError
    from opml.pipelines import registry
    from opml.pipelines.steps import StepContext, execute
    from opml.workspace.workspace import Workspace

    ws = Workspace.open(args.workspace)
    run = registry.get_run(ws, args.run)
    step = next(s for s in registry.steps_of(ws, args.run) if s.step == args.step)
    pipeline = registry.get_pipeline(ws, run.ref)
    declared = pipeline.spec.step(args.step).outputs
    ctx = StepContext(ws, Path(pipeline.configs), run.id, run.experiment, step.step,
                      run_dir(args.workspace, run.id))
    print(f"step {step.step} ({step.type}) of {run.id}; inputs {json.dumps(step.inputs)}; "
          f"settings {json.dumps(step.settings)}", flush=True)
    outputs = execute(step.type, step.settings, step.inputs, ctx)
    missing = [o for o in declared if o not in outputs]
    if missing:
        raise OpmlError(f"the script did not write output {missing[0]!r}",
                        "write a JSON object with it to the file $OPML_OUTPUTS")
    print(f"outputs {json.dumps(outputs, default=str)}", flush=True)
    return outputs


if __name__ == "__main__":
    sys.exit(main())
