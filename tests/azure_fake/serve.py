"""Run the fake Azure ML workspace as a process: `python -m tests.azure_fake.serve --dir DIR [--port PORT]`.

Writes DIR/cert.pem, DIR/bin/az (see azcli.py) and DIR/env.sh (`. DIR/env.sh` points the SDK, and so `opml` with
backend azureml, at this fake), prints one `ready` line, and serves until SIGTERM or SIGINT. On exit it writes
the request sequence to DIR/requests.txt and prints how many requests came and how many bodies were
schema-validated (and any that failed).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from pathlib import Path

from tests.azure_fake.azcli import cli_env
from tests.azure_fake.tls import FakeServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.azure_fake.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="Folder for the certificate, env.sh, bin/az.")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (default: a free one).")
    parser.add_argument("--print-requests", action="store_true",
                        help="On exit, also print the request sequence (repeats folded into `xN`).")
    args = parser.parse_args(argv)
    from tests.azure_fake.schemas import SchemasMissing, schemas_dir

    try:
        schemas_dir()
    except SchemasMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder = args.dir.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with FakeServer(folder, args.port) as srv:
        env = cli_env(srv, folder)
        (folder / "env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        print(f"ready {srv.url} (blob tunnel {srv.proxy_url}); . {folder / 'env.sh'}", flush=True)
        stop.wait()
        ws = srv.workspace
        (folder / "requests.txt").write_text("".join(line + "\n" for line in ws.sequence()))
    print(f"fake workspace: {len(ws.calls)} requests, {len(ws.validated)} request bodies schema-validated, "
          f"{len(ws.invalid)} invalid; sequence in {folder / 'requests.txt'}", flush=True)
    for problem in ws.invalid:
        print(f"invalid body: {problem}", flush=True)
    if args.print_requests:
        for line, count in folded(ws.sequence()):
            print(f"  {line}" + (f"  x{count}" if count > 1 else ""), flush=True)
    return 1 if ws.invalid else 0


def folded(lines: list[str]) -> list[tuple[str, int]]:
    """Consecutive repeats as (line, count)."""
    out: list[tuple[str, int]] = []
    for line in lines:
        if out and out[-1][0] == line:
            out[-1] = (line, out[-1][1] + 1)
        else:
            out.append((line, 1))
    return out


if __name__ == "__main__":
    sys.exit(main())
