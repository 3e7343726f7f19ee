#!/usr/bin/env python3
"""Consume a scoring endpoint the way the reference project's endpoint.py did (needs only `requests`).

    python scripts/endpoint.py --uri http://127.0.0.1:PORT/score --key KEY
    OPML_SCORING_URI=... OPML_KEY=... python scripts/endpoint.py

Get the URI and key with `opml endpoint show NAME` and `opml endpoint keys NAME`. Works against Azure ML
endpoints too: their v1 AutoML services answer with a JSON-encoded string, which is decoded here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests

# Two records of the bank-marketing schema, as in the reference's endpoint.py.
DATA = {
    "data": [
        {"age": 17, "job": "blue-collar", "marital": "married", "education": "university.degree",
         "default": "no", "housing": "yes", "loan": "yes", "contact": "cellular", "month": "may",
         "day_of_week": "mon", "duration": 971, "campaign": 1, "pdays": 999, "previous": 1,
         "poutcome": "failure", "emp.var.rate": -1.8, "cons.price.idx": 92.893, "cons.conf.idx": -46.2,
         "euribor3m": 1.299, "nr.employed": 5099.1},
        {"age": 87, "job": "blue-collar", "marital": "married", "education": "university.degree",
         "default": "no", "housing": "yes", "loan": "yes", "contact": "cellular", "month": "may",
         "day_of_week": "mon", "duration": 471, "campaign": 1, "pdays": 999, "previous": 1,
         "poutcome": "failure", "emp.var.rate": -1.8, "cons.price.idx": 92.893, "cons.conf.idx": -46.2,
         "euribor3m": 1.299, "nr.employed": 5099.1},
    ]
}


def decode(reply: object) -> object:
    """Azure v1 AutoML endpoints return the JSON document as a string; opml returns it as JSON."""
    if isinstance(reply, str):
        try:
            return json.loads(reply)
        except ValueError:
            return reply
    return reply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uri", default=os.environ.get("OPML_SCORING_URI"), help="scoring URI (env OPML_SCORING_URI)")
    ap.add_argument("--key", default=os.environ.get("OPML_KEY"), help="endpoint key (env OPML_KEY)")
    ap.add_argument("--data", help="JSON file with the request body (default: two example rows)")
    args = ap.parse_args()
    if not args.uri:
        print("error: no scoring URI; pass --uri or set OPML_SCORING_URI", file=sys.stderr)
        return 2
    body = DATA
    if args.data:
        with open(args.data) as fh:
            body = json.load(fh)
    headers = {"Content-Type": "application/json"}
    if args.key:
        headers["Authorization"] = f"Bearer {args.key}"
    try:
        resp = requests.post(args.uri, data=json.dumps(body), headers=headers, timeout=30)
    except requests.RequestException as exc:
        print(f"error: cannot reach {args.uri} ({type(exc).__name__})", file=sys.stderr)
        return 2
    try:
        reply = decode(resp.json())
    except ValueError:
        reply = resp.text
    print(json.dumps(reply))
    return 0 if resp.ok else 1


if __name__ == "__main__":
    sys.exit(main())
