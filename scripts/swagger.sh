#!/usr/bin/env bash
# The reference's swagger.sh: Swagger UI on port 9000 (or $1) for the deployed endpoint, without Docker
# and without internet. Downloads the endpoint's swagger.json to swagger/swagger.json, then serves it on
# 127.0.0.1 with "Try it out" proxied to the endpoint. Authorize with a key from
# `opml endpoint keys bankmarketing-endpoint`. Ctrl-C stops it. Extra arguments go to `opml swagger`
# (e.g. --endpoint NAME). Run from anywhere: it works in the repo root, like scripts/run_all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-9000}"
[ $# -gt 0 ] && shift
if command -v opml >/dev/null; then
  OPML=opml
elif [ -x .venv/bin/opml ]; then
  OPML=.venv/bin/opml
else
  echo "opml is not installed: run \`make install\`, then \`source .venv/bin/activate\`" >&2
  exit 1
fi
exec "$OPML" swagger --serve --port "$port" "$@"
