"""The run executor: `python -m opml.pipelines.runner --workspace ROOT --run ID`, started detached.

Walks the DAG: a step starts once its inputs are Completed (independent steps run side by side,
up to the number of CPUs), each as its own process with its own log; a step whose fingerprint
matches an earlier Completed step (and allow_reuse) reuses that output instead of running. A
failing step fails the run and cancels its dependents; `opml pipeline cancel` is honoured within
a fraction of a second. All states live in opml.db.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from opml import processes
from opml.errors import OpmlError
from opml.pipelines import registry
from opml.pipelines.spec import dependencies, step_settings
from opml.pipelines.step import result_file, run_dir
from opml.pipelines.steps import StepContext, fingerprint
from opml.workspace.workspace import Workspace, now_iso

POLL_S = 0.2


def spawn(root: Path, run_id: str, *, popen: bool = False):
    """Start the executor for `run_id`, detached; returns its pid (or the Popen with popen=True)."""
    proc = processes.spawn("opml.pipelines.runner", ["--workspace", str(root), "--run", run_id],
                           run_dir(root, run_id) / "runner.log")
    return proc if popen else proc.pid


def is_runner(pid: int | None, run_id: str) -> bool:
    return processes.alive(pid, "opml.pipelines.runner", run_id)


def is_step(pid: int | None, run_id: str) -> bool:
    return processes.alive(pid, "opml.pipelines.step", run_id)


def kill_group(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and processes.alive(pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def log(msg: str) -> None:
    print(f"{now_iso()} {msg}", flush=True)


class Executor:
    def __init__(self, ws: Workspace, run_id: str) -> None:
        self.ws = ws
        self.run = registry.get_run(ws, run_id)
        self.pipeline = registry.get_pipeline(ws, self.run.ref)
        self.spec = self.pipeline.spec
        self.dir = run_dir(ws.root, run_id)
        self.state = {s.step: s.status for s in registry.steps_of(ws, run_id)}
        self.outputs: dict[str, dict] = {}
        self.procs: dict[str, tuple[subprocess.Popen, float]] = {}
        self.max_parallel = max(1, os.cpu_count() or 1)
        self.first_error: str | None = None

    def set_step(self, name: str, status: str, **fields) -> None:
        self.state[name] = status
        registry.update_step(self.ws, self.run.id, name, status=status, **fields)
        log(f"step {name}: {status}" + (f" ({fields['error']})" if fields.get("error") else ""))

    def execute(self) -> str:
        run_id = self.run.id
        registry.update_run(self.ws, run_id, status="Running", started_at=now_iso(), runner_pid=os.getpid(),
                            runner_ticks=processes.start_ticks(os.getpid()))
        log(f"run {run_id} of {self.pipeline.ref} started; parameters {json.dumps(self.run.parameters)}")
        t0 = time.monotonic()
        canceled = False
        while True:
            if registry.get_run(self.ws, run_id).cancel_requested:
                canceled = True
                self.cancel_all()
                break
            progressed = self.launch_ready()
            progressed |= self.reap()
            if not self.procs and not progressed and not self.launchable():
                break
            if not progressed:
                time.sleep(POLL_S)
        for name, st in self.state.items():  # whatever could not run
            if st in ("NotStarted", "Queued"):
                self.set_step(name, "Canceled", error="canceled" if canceled else "not run: an upstream step failed")
        status = "Canceled" if canceled else ("Failed" if self.first_error else "Completed")
        registry.update_run(self.ws, run_id, status=status, ended_at=now_iso(),
                            duration_s=round(time.monotonic() - t0, 3),
                            error="canceled by request" if canceled else self.first_error)
        log(f"run {run_id}: {status}")
        return status

    def launchable(self) -> bool:
        return any(st in ("NotStarted", "Queued") and self.ready(n) for n, st in self.state.items())

    def ready(self, name: str) -> bool:
        return all(self.state[d] == "Completed" for d in dependencies(self.spec.step(name)))

    def launch_ready(self) -> bool:
        progressed = False
        for s in self.spec.steps:
            st = self.state[s.name]
            if st not in ("NotStarted", "Queued"):
                continue
            deps = dependencies(s)
            bad = [d for d in deps if self.state[d] in ("Failed", "Canceled")]
            if bad:
                self.set_step(s.name, "Canceled", error=f"not run: upstream step {bad[0]!r} {self.state[bad[0]]}")
                progressed = True
                continue
            if not self.ready(s.name):
                continue
            if len(self.procs) >= self.max_parallel:
                if st == "NotStarted":
                    self.set_step(s.name, "Queued")
                continue
            progressed |= self.start(s)
        return progressed

    def start(self, s) -> bool:
        inputs = {k: self.outputs[ref.split(".", 1)[0]].get(ref.split(".", 1)[1]) for k, ref in s.inputs.items()}
        try:
            settings = step_settings(self.spec, s, self.run.parameters).model_dump(mode="json", exclude_unset=True)
            ctx = StepContext(self.ws, Path(self.pipeline.configs), self.run.id, self.run.experiment, s.name, self.dir)
            digest = fingerprint(s.type, settings, inputs, ctx)
        except OpmlError as exc:
            self.fail(s.name, exc.line(), inputs=inputs)
            return True
        log_file = self.dir / f"{s.name}.log"
        prev = registry.reusable(self.ws, digest, self.run.id) if s.allow_reuse else None
        if prev is not None and s.type == "deploy" and not _still_serving(self.ws, prev.outputs, inputs.get("model")):
            log(f"step {s.name}: not reusing {prev.run_id}: its endpoint no longer serves that model")
            prev = None
        if prev is not None:
            now = now_iso()
            self.outputs[s.name] = prev.outputs
            source = prev.reused_from or prev.run_id
            with log_file.open("a") as fh:
                fh.write(f"{now} reused the output of step {s.name!r} of run {source} (same code, inputs and "
                         f"settings): {json.dumps(prev.outputs)}\n")
            self.set_step(s.name, "Completed", reused=1, reused_from=source, hash=digest, inputs=inputs,
                          settings=settings, outputs=prev.outputs, started_at=now, ended_at=now, duration_s=0.0)
            return True
        registry.update_step(self.ws, self.run.id, s.name, hash=digest, inputs=inputs, settings=settings)
        result_file(self.ws.root, self.run.id, s.name).unlink(missing_ok=True)
        with log_file.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "opml.pipelines.step", "--workspace", str(self.ws.root),
                                     "--run", self.run.id, "--step", s.name], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True, close_fds=True)
        self.procs[s.name] = (proc, time.monotonic())
        self.set_step(s.name, "Running", pid=proc.pid, started_at=now_iso())
        return True

    def reap(self) -> bool:
        progressed = False
        for name, (proc, t0) in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[name]
            progressed = True
            duration = round(time.monotonic() - t0, 3)
            try:
                result = json.loads(result_file(self.ws.root, self.run.id, name).read_text())
            except (OSError, ValueError):
                result = {"error": f"step process exited with code {code} without a result; see its log"}
            if code == 0 and "outputs" in result:
                self.outputs[name] = result["outputs"]
                self.set_step(name, "Completed", outputs=result["outputs"], ended_at=now_iso(), duration_s=duration)
            else:
                self.fail(name, result.get("error") or f"exit code {code}", duration_s=duration)
        return progressed

    def fail(self, name: str, error: str, **fields) -> None:
        if self.first_error is None:
            self.first_error = f"step {name!r} failed: {error}"
        self.set_step(name, "Failed", error=error, ended_at=now_iso(), **fields)

    def cancel_all(self) -> None:
        for name, (proc, t0) in list(self.procs.items()):
            kill_group(proc.pid)
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            self.set_step(name, "Canceled", error="canceled", ended_at=now_iso(),
                          duration_s=round(time.monotonic() - t0, 3))
        self.procs.clear()


def _still_serving(ws: Workspace, outputs: dict, model: str | None) -> bool:
    """A deploy step's output is only reusable while its endpoint still runs the same model."""
    from opml.serving.endpoints import find
    from opml.serving.process import alive

    ep = find(ws, str(outputs.get("endpoint")))
    return bool(ep and ep.model == model and ep.scoring_uri == outputs.get("scoring_uri") and alive(ep.pid, ep.name))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="opml-pipeline-runner")
    ap.add_argument("--workspace", required=True, type=Path)
    ap.add_argument("--run", required=True)
    args = ap.parse_args(argv)
    ws = Workspace.open(args.workspace)
    run = registry.get_run(ws, args.run)
    if run.status != "NotStarted":
        log(f"run {run.id} is {run.status}; nothing to do")
        return 0
    ex = Executor(ws, args.run)

    def on_term(signum, frame):  # stop like a cancel: steps are killed, states recorded
        registry.update_run(ws, args.run, cancel_requested=1)

    signal.signal(signal.SIGTERM, on_term)
    try:
        status = ex.execute()
    except BaseException as exc:
        registry.update_run(ws, args.run, status="Failed", ended_at=now_iso(),
                            error=f"executor error: {type(exc).__name__}: {exc}")
        for name, (proc, _) in ex.procs.items():
            kill_group(proc.pid)
            registry.update_step(ws, args.run, name, status="Failed", error="executor error")
        raise
    return 0 if status == "Completed" else 1


if __name__ == "__main__":
    sys.exit(main())
