#!/usr/bin/env bash
# The azureml backend end to end, offline: `opml auth`, `data register`, `train`, `runs show`, `models list`
# with `backend: azureml`, against the fake Azure ML workspace of the test suite (tests/azure_fake: real TLS,
# every request body checked against the Azure ARM schemas in ../shared/azure-schemas or $OPML_AZURE_SCHEMAS).
# The SDK, opml's credential code (DefaultAzureCredential, through a stand-in `az`) and the CLI run unchanged.
# OPML_DATA=/path/to.csv registers and trains on a local file (uploaded); else automl.yaml's dataset URL.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/opml-azure-fake.XXXXXX")
FAKE_PID=""

stop_fake() {
  if [ -n "$FAKE_PID" ]; then
    kill "$FAKE_PID" 2>/dev/null || true
    wait "$FAKE_PID" 2>/dev/null || true
    FAKE_PID=""
  fi
}
trap 'stop_fake; rm -rf "$WORK"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "start the fake Azure ML workspace (TLS on 127.0.0.1, certificate made now)"
PYTHONPATH=$REPO "$PY" -m tests.azure_fake.serve --dir "$WORK/fake" --print-requests >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 100); do
  grep -q '^ready ' "$WORK/fake.log" 2>/dev/null && break
  kill -0 "$FAKE_PID" 2>/dev/null || { cat "$WORK/fake.log" >&2; exit 1; }
  sleep 0.1
done
grep '^ready ' "$WORK/fake.log" || { echo "the fake workspace did not start" >&2; cat "$WORK/fake.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$WORK/fake/env.sh"   # AZUREML_DEV_URL_MFE, REQUESTS_CA_BUNDLE, the blob tunnel, the stand-in `az` first on PATH

mkdir -p "$WORK/project"
cp -R "$REPO/configs" "$WORK/project/configs"
cat >"$WORK/project/configs/workspace.yaml" <<'YAML'
backend: azureml
azureml:
  subscription_id: 00000000-0000-0000-0000-000000000000
  resource_group: opml-rg
  workspace_name: opml-ws
  compute: cpu-cluster
  poll_seconds: 0.2     # the fake finishes in seconds; a real job: leave the default (10)
YAML
cd "$WORK/project"
opml() { "$PY" -m opml "$@"; }

step "auth: sign in, fetch the workspace, check the compute cluster"
opml auth

step "data: register the bank-marketing dataset${OPML_DATA:+ from $OPML_DATA} (uri_file + MLTable assets)"
opml data register
opml data list

step "train: an AutoML classification job on cpu-cluster, followed until it ends"
opml train
run_id=$(opml runs list --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')

step "runs show $run_id"
opml runs show "$run_id"

step "models list"
opml models list

step "the fake workspace's record"
stop_fake
sed -n '/^fake workspace:/,$p' "$WORK/fake.log"
if grep -q '^invalid body:' "$WORK/fake.log"; then exit 1; fi
