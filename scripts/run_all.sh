#!/usr/bin/env bash
# The reference workflow end to end on the embedded workspace. Offline: set OPML_DATA=/path/to.csv.
# OPML_TIME_BUDGET (default 120) sets the AutoML budget in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "auth: create/open the workspace and a service principal"
opml auth
opml auth sp list --json | grep -q '"name": "demo"' || opml auth sp create demo >/dev/null 2>&1
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
