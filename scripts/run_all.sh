#!/usr/bin/env bash
# The reference workflow end to end on the embedded workspace. Offline: set OPML_DATA=/path/to.csv.
# OPML_TIME_BUDGET (default 120) sets the AutoML budget in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "auth: create/open the workspace and a service principal"
opml auth
# A fresh service principal for this demo; its secret stays in this shell (printed nowhere).
opml auth sp delete demo >/dev/null 2>&1 || true
creds=$(opml auth sp create demo --json)
export OPML_CLIENT_ID OPML_CLIENT_SECRET
OPML_CLIENT_ID=$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
OPML_CLIENT_SECRET=$(printf '%s' "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')
unset creds
opml auth        # with OPML_CLIENT_ID/SECRET set, this also checks the credentials
opml auth sp list

step "data: register the bank-marketing dataset${OPML_DATA:+ from $OPML_DATA}"
opml data register
opml data list

step "train: AutoML classification (${OPML_TIME_BUDGET:-120} s budget)"
opml train --time-budget "${OPML_TIME_BUDGET:-120}"
opml models list

step "deploy: the best model as an authenticated endpoint"
opml deploy --best
opml endpoint show bankmarketing-endpoint

step "enable-logs: request telemetry on the live endpoint"
opml enable-logs

step "swagger: download the endpoint's swagger.json (browse it with: opml swagger --serve --port 9000)"
opml swagger

step "consume: score rows through the endpoint (opml consume, then scripts/endpoint.py)"
opml consume --rows 5
OPML_SCORING_URI=$(opml endpoint show bankmarketing-endpoint --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["scoring_uri"])') \
OPML_KEY=$(opml endpoint keys bankmarketing-endpoint --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])') \
  python3 scripts/endpoint.py

step "benchmark: Apache Bench against the endpoint"
opml benchmark -n 200 -c 4

step "logs: the endpoint's server log and telemetry"
opml logs --tail 10

step "pipeline: create, publish as a REST endpoint, trigger it with a bearer token, wait for Completed"
opml pipeline create
endpoint=$(opml pipeline publish bankmarketing-train --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["endpoint"])')
echo "REST endpoint: $endpoint"
python3 scripts/pipeline_rest.py --endpoint "$endpoint" --experiment pipeline-rest-endpoint \
  --param time_budget="${OPML_PIPELINE_BUDGET:-30}" --param max_trials=4
opml pipeline runs
