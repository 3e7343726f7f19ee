#!/usr/bin/env bash
# The reference's benchmark.sh: Apache Bench against the scoring endpoint, with the key and a JSON body,
# filled in from `opml endpoint show/keys`. Usage: scripts/benchmark.sh [ENDPOINT] [REQUESTS]
# (`opml benchmark` does the same and parses the report.)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-bankmarketing-endpoint}
requests=${2:-10}
command -v ab >/dev/null || { echo "Apache Bench is missing: apt-get install apache2-utils" >&2; exit 2; }
uri=$(opml endpoint show "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["scoring_uri"])')
auth=$(opml endpoint show "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["auth_enabled"])')
body=$(mktemp --suffix=.json)
trap 'rm -f "$body"' EXIT
python3 -c 'import json,sys; sys.path.insert(0, "scripts"); import endpoint; print(json.dumps(endpoint.DATA))' > "$body"
headers=()
if [ "$auth" = "True" ]; then
  key=$(opml endpoint keys "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primaryKey"])')
  headers=(-H "Authorization: Bearer $key")
fi
ab -n "$requests" -p "$body" -T 'application/json' "${headers[@]}" "$uri"
