from __future__ import annotations

import json
import time

import pytest

from opml.errors import AuthError, OpmlError
from opml.workspace.identity import check_secret, create_principal, issue_token, verify_token
from opml.workspace.workspace import Workspace


def test_sp_create_shows_secret_once_and_stores_only_a_hash(project, cli, workspace):
    out = json.loads(cli.ok("auth", "sp", "create", "ci-bot", "--json").output)
    assert out["name"] == "ci-bot" and len(out["client_secret"]) >= 40
    secret = out["client_secret"]
    listed = cli.ok("auth", "sp", "list", "--json").output
    assert out["client_id"] in listed and secret not in listed
    assert secret not in cli.ok("auth", "sp", "list").output
    for f in (project / ".opml").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"secret found in {f}"
    assert check_secret(workspace, out["client_id"], secret).name == "ci-bot"


def test_sp_name_rules_and_duplicates(cli, workspace):
    cli.ok("auth", "sp", "create", "a")
    assert "already exists" in cli.fails("auth", "sp", "create", "a")
    assert "invalid service principal name" in cli.fails("auth", "sp", "create", "bad name!")


def test_sp_delete(cli, workspace):
    cli.ok("auth", "sp", "create", "gone")
    assert "Deleted service principal 'gone'" in cli.ok("auth", "sp", "delete", "gone").output
    assert json.loads(cli.ok("auth", "sp", "list", "--json").output) == []
    assert "no service principal named 'gone'" in cli.fails("auth", "sp", "delete", "gone")


def _creds(cli) -> tuple[str, str]:
    out = json.loads(cli.ok("auth", "sp", "create", "pipeline-caller", "--json").output)
    return out["client_id"], out["client_secret"]


def test_token_from_env_secret_verifies(cli, workspace):
    cid, secret = _creds(cli)
    res = cli.ok("auth", "token", "--client-id", cid, "--json", env={"OPML_CLIENT_SECRET": secret})
    reply = json.loads(res.stdout)
    assert reply["token_type"] == "Bearer" and reply["expires_in"] == 3600
    assert abs(reply["expires_on"] - (time.time() + 3600)) < 60
    claims = verify_token(workspace, reply["access_token"])
    assert claims["sub"] == cid and claims["name"] == "pipeline-caller"


def test_token_secret_from_stdin_prints_only_the_token(cli, workspace):
    cid, secret = _creds(cli)
    res = cli.ok("auth", "token", "--client-id", cid, "--expires-in", "60", input=secret + "\n")
    token = res.stdout.strip()
    assert token.count(".") == 2 and secret not in res.output
    assert verify_token(workspace, token)["exp"] - verify_token(workspace, token)["iat"] == 60


def test_wrong_secret_is_refused(cli, workspace):
    cid, _ = _creds(cli)
    assert "invalid client id or secret" in cli.fails("auth", "token", "--client-id", cid,
                                                      env={"OPML_CLIENT_SECRET": "nope"})
    assert "invalid client id or secret" in cli.fails("auth", "token", "--client-id", "unknown-id",
                                                      env={"OPML_CLIENT_SECRET": "nope"})
    assert "no client secret given" in cli.fails("auth", "token", "--client-id", cid, input="")


def test_token_rejections(workspace, tmp_path):
    creds = create_principal(workspace, "svc")
    token = issue_token(workspace, creds.principal.client_id, creds.client_secret, 30)["access_token"]
    assert verify_token(workspace, token)["sub"] == creds.principal.client_id
    with pytest.raises(AuthError, match="expired"):
        verify_token(workspace, token, now=time.time() + 31)
    head, payload, sig = token.split(".")
    with pytest.raises(AuthError, match="signature"):
        verify_token(workspace, f"{head}.{payload}.{sig[:-2]}AA")
    with pytest.raises(AuthError, match="malformed"):
        verify_token(workspace, "not-a-token")
    other = Workspace.create_or_open(tmp_path / "other")
    with pytest.raises(AuthError):
        verify_token(other, token)
    with pytest.raises(OpmlError, match="positive"):
        issue_token(workspace, creds.principal.client_id, creds.client_secret, 0)
    workspace.db.execute("DELETE FROM identities")
    with pytest.raises(AuthError, match="no longer exists"):
        verify_token(workspace, token)


def test_auth_checks_env_credentials(cli, workspace):
    cid, secret = _creds(cli)
    out = json.loads(cli.ok("auth", "--json", env={"OPML_CLIENT_ID": cid, "OPML_CLIENT_SECRET": secret}).output)
    assert out["authenticated_as"] == "pipeline-caller" and out["service_principals"] == 1
    assert secret not in json.dumps(out)
    assert "invalid client id or secret" in cli.fails("auth", env={"OPML_CLIENT_ID": cid,
                                                                   "OPML_CLIENT_SECRET": "x"})
