"""Sign-in rules and roles (promptmix_core/access.py), and the network rule `make run` applies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptmix_core import access
from promptmix_core.access import OWNER, REVIEWER, AccessConfig, AccessDenied

ROOT = Path(__file__).resolve().parent.parent


def _cfg(**team):
    return access.access_config({"auth": {"client_id": "x"}, "promptmix": team})


def test_no_auth_table_means_one_local_owner():
    cfg = access.access_config({})
    assert cfg == AccessConfig(auth=False)
    assert access.role_for({}, cfg) == OWNER
    assert access.access_config({"auth": {}}).auth is False  # an empty table configures nothing


def test_identity_is_the_email_else_the_subject():
    assert access.identity({"email": "a@x.org", "sub": "123"}) == "a@x.org"
    assert access.identity({"sub": "123"}) == "123"
    assert access.identity({"email": " ", "sub": ""}) is None


def test_owners_and_reviewers_by_email_or_domain():
    cfg = _cfg(owners=["Boss@Example.com", "@ops.example.com"])
    assert access.role_for({"email": "boss@example.com"}, cfg) == OWNER
    assert access.role_for({"email": "pat@ops.example.com"}, cfg) == OWNER
    assert access.role_for({"email": "pat@example.com"}, cfg) == REVIEWER
    # a domain entry never matches a longer domain that merely ends with it
    assert access.role_for({"email": "pat@evilops.example.com"}, cfg) == REVIEWER


def test_without_an_owners_list_everyone_signed_in_is_an_owner():
    assert access.role_for({"sub": "anyone"}, _cfg()) == OWNER


def test_the_allow_list_keeps_others_out():
    cfg = _cfg(allowed=["example.com"], owners=["root@elsewhere.org"])
    assert access.role_for({"email": "a@example.com"}, cfg) == REVIEWER
    assert access.role_for({"email": "root@elsewhere.org"}, cfg) == OWNER  # owners are always allowed
    assert access.role_for({"email": "m@elsewhere.org"}, cfg) is None
    assert access.role_for({"email": "m@example.com.evil.org"}, cfg) is None
    assert access.role_for({}, cfg) is None  # no identity at all


def test_reviewers_cannot_take_owner_actions():
    for action in access.OWNER_ACTIONS:
        assert access.can(OWNER, action)
        assert not access.can(REVIEWER, action)
        with pytest.raises(AccessDenied, match="Reviewers cannot"):
            access.require(REVIEWER, action)
    for action in access.REVIEWER_ACTIONS:
        assert access.can(REVIEWER, action)
    with pytest.raises(AccessDenied, match="Signed-out"):
        access.require(None, "review")


@pytest.mark.parametrize("address,refused", [
    ("127.0.0.1", False), ("127.0.0.2", False), ("::1", False), ("localhost", False),
    ("0.0.0.0", True), ("::", True), ("192.168.1.5", True), ("example.org", True),
])
def test_network_rule(address, refused):
    reason = access.network_refusal(address, auth=False, open_network=False)
    assert (reason is not None) == refused
    if refused:
        assert "[auth]" in reason and "PROMPTMIX_OPEN_NETWORK=1" in reason and "\n" not in reason
    assert access.network_refusal(address, auth=True, open_network=False) is None
    assert access.network_refusal(address, auth=False, open_network=True) is None


def _check(args, env_extra=None, home=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTMIX_")}
    env["HOME"] = str(home)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "check_network.py"), *args], capture_output=True,
                          text=True, env=env, cwd=home, timeout=60)


def test_check_network_script(tmp_path):
    out = _check(["--address", "0.0.0.0"], home=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "[auth]" in out.stderr and "PROMPTMIX_OPEN_NETWORK=1" in out.stderr
    assert _check(["--address", "127.0.0.1"], home=tmp_path).returncode == 0
    assert _check(["--address", "0.0.0.0"], {"PROMPTMIX_OPEN_NETWORK": "1"}, home=tmp_path).returncode == 0
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    secrets.parent.mkdir()
    secrets.write_text('[auth]\nclient_id = "x"\n', "utf-8")
    assert _check(["--address", "0.0.0.0"], home=tmp_path).returncode == 0  # ./.streamlit/secrets.toml


def test_make_run_refuses_a_network_address_without_sign_in(tmp_path):
    """`make run ADDRESS=0.0.0.0` stops before Streamlit starts (setup is taken as done)."""
    venv = Path(sys.executable).parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTMIX_")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run(["make", "-s", "-o", "setup", "run", f"VENV={venv}", "ADDRESS=0.0.0.0", "PORT=1"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode != 0
    assert "Refusing to serve 0.0.0.0 without sign-in" in out.stderr
    assert "streamlit" not in out.stdout.lower()
