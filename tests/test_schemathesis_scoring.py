"""Schemathesis against the scoring app, in process: the OpenAPI document must describe what the app does.

Every operation of the app's own swagger.json is run with generated requests, positive and negative, in
every phase (examples, coverage, fuzzing) and checked with all of Schemathesis' checks: no 5xx, documented
status codes, content types and bodies, refused invalid data, accepted valid data, 405 with Allow for
unsupported methods, 401 without the key. The app is the real ScoringApp with the fake scorer of
test_http_contracts (its real record check); examples are bounded so the run takes seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from opml.serving.keys import ensure_keys, key_file
from tests.test_http_contracts import scoring_app

pytestmark = pytest.mark.timeout(120)


# the schemas are loaded at import (schemathesis' lazy fixture loader does not run under this pytest)
_SECRETS = tempfile.TemporaryDirectory(prefix="opml-schemathesis-")
KEY = ensure_keys(Path(_SECRETS.name), "ep")["primary"]
# 413 refuses a body too (the fake app's limit is 4 KiB, which generated negative bodies can pass)
REFUSED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSED}}})
keyed = schemathesis.openapi.from_asgi("/swagger.json", scoring_app(key_file(Path(_SECRETS.name), "ep")),
                                       config=CONFIG)
unkeyed = schemathesis.openapi.from_asgi("/swagger.json", scoring_app(None), config=CONFIG)
# derandomized: the same examples on every run, so a failure reproduces and the suite does not flake
BOUNDED = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def all_checks() -> list:
    from schemathesis.checks import CHECKS, is_check_class, load_all_checks

    load_all_checks()
    return [c for c in CHECKS.get_all() if not is_check_class(c)]


@keyed.parametrize()
@BOUNDED
def test_scoring_app_with_auth_conforms(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=all_checks())


@unkeyed.parametrize()
@BOUNDED
def test_scoring_app_without_auth_conforms(case):
    case.call_and_validate(checks=all_checks())
