"""A stand-in `az` for the fake workspace: what DefaultAzureCredential's AzureCliCredential runs after `az login`.

It answers only `az account get-access-token --resource R` with a JWT-shaped token for R (the SDK decodes some
tokens and checks their audience). With AZURE_TOKEN_CREDENTIALS=AzureCliCredential the CLI's real credential
chain asks it, and nothing else, for tokens: opml's credential code runs unchanged, offline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.azure_fake.tls import FakeServer

SCRIPT = '''#!{python}
"""Fake `az account get-access-token` for opml's fake Azure ML workspace (tests only)."""
import base64, json, sys, time

args = sys.argv[1:]
if args[:2] != ["account", "get-access-token"]:
    sys.exit("this fake az answers only `az account get-access-token`")
resource = args[args.index("--resource") + 1] if "--resource" in args else "https://management.azure.com"
exp = int(time.time()) + 3600


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


claims = {{"aud": resource.rstrip("/") + "/", "exp": exp, "iss": "https://sts.windows.net/fake/",
          "oid": "00000000-0000-0000-0000-0000000000aa", "tid": "00000000-0000-0000-0000-0000000000bb",
          "upn": "opml@example.invalid"}}
print(json.dumps({{"accessToken": b64({{"alg": "none", "typ": "JWT"}}) + "." + b64(claims) + ".sig",
                  "expires_on": exp, "subscription": "00000000-0000-0000-0000-000000000000",
                  "tenant": claims["tid"], "tokenType": "Bearer"}}))
'''


def write_fake_az(folder: Path) -> Path:
    """<folder>/bin/az; returns the bin folder (to put first on PATH)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    az = bin_dir / "az"
    az.write_text(SCRIPT.format(python=sys.executable))
    az.chmod(0o755)
    return bin_dir


def cli_env(server: FakeServer, folder: Path) -> dict[str, str]:
    """Environment for a process (e.g. `opml`) that talks to `server` with the fake `az` as its credential."""
    bin_dir = write_fake_az(folder)
    return server.env() | {
        "AZURE_TOKEN_CREDENTIALS": "AzureCliCredential",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
