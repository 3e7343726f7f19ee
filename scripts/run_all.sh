#!/usr/bin/env bash
# The reference workflow end to end on the embedded workspace. Offline: set OPML_DATA=/path/to.csv.
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
