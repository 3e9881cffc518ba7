"""Who may do what: sign-in configuration, roles, the owner-only actions, and the network rule.

Pure functions over plain data (the secrets as a mapping, the identity provider's claims), so the
rules are tested without Streamlit; the app reads ``st.secrets`` and ``st.user`` and hands them here.

- **Sign-in** is on when the secrets have an ``[auth]`` table (Streamlit's ``st.login``, OpenID
  Connect). Then every page asks for sign-in first.
- ``[promptmix]`` in the same secrets file (optional): ``allowed = [...]`` (emails, or domains as
  ``"example.com"`` / ``"@example.com"``; empty or absent: anyone the provider signs in) and
  ``owners = [...]`` (emails or domains; empty or absent: every signed-in person is an owner).
- **Owners** manage endpoints and keys, generation, training, deletion, project settings and
  adjudication (:data:`OWNER_ACTIONS`); **reviewers** review and see results. Without sign-in the
  app is a one-person tool and that person is an owner.
- **Network**: without sign-in the app serves only 127.0.0.1 (:func:`network_refusal`), unless
  ``PROMPTMIX_OPEN_NETWORK=1`` says otherwise on purpose.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

OWNER = "owner"
REVIEWER = "reviewer"
#: actions only an owner may take (a reviewer's page never offers them, and the faces check again)
OWNER_ACTIONS = frozenset({
    "endpoint", "api_key", "generate", "relabel", "train", "delete", "create", "task", "settings", "adjudicate",
})
REVIEWER_ACTIONS = frozenset({"review", "results", "export"})
LOCAL_REVIEWER = "local"


class AccessDenied(PermissionError):
    """The signed-in person may not do this."""


@dataclass(frozen=True)
class AccessConfig:
    """The sign-in rules of one app: whether ``[auth]`` is configured, the allow-list, the owners."""

    auth: bool = False
    allowed: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()


def _entries(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    try:
        return tuple(str(v).strip().lower() for v in value if str(v).strip())
    except TypeError:
        return ()


def access_config(secrets: Mapping[str, Any] | None) -> AccessConfig:
    """The rules from the app's secrets (``st.secrets`` as a mapping, or a parsed secrets.toml)."""
    secrets = secrets or {}
    auth = secrets.get("auth")
    team = secrets.get("promptmix") or {}
    if not isinstance(team, Mapping):
        team = {}
    return AccessConfig(auth=isinstance(auth, Mapping) and bool(auth),
                        allowed=_entries(team.get("allowed")), owners=_entries(team.get("owners")))


def identity(claims: Mapping[str, Any] | None) -> str | None:
    """The person behind the provider's claims: their email, else their subject; None when none."""
    claims = claims or {}
    for key in ("email", "sub"):
        value = str(claims.get(key) or "").strip()
        if value:
            return value
    return None


def _matches(who: str, entries: Iterable[str]) -> bool:
    who = who.lower()
    domain = who.rsplit("@", 1)[1] if "@" in who else None
    for e in entries:
        if e == who:
            return True
        if domain and e.lstrip("@") == domain and "@" not in e.lstrip("@"):
            return True
    return False


def role_for(claims: Mapping[str, Any] | None, config: AccessConfig) -> str | None:
    """The role of a signed-in person (:data:`OWNER` or :data:`REVIEWER`), or None when they may not
    come in (no identity, or not on the allow-list). Without sign-in the one local person is an owner."""
    if not config.auth:
        return OWNER
    who = identity(claims)
    if not who:
        return None
    if config.allowed and not (_matches(who, config.allowed) or _matches(who, config.owners)):
        return None
    if not config.owners or _matches(who, config.owners):
        return OWNER
    return REVIEWER


def can(role: str | None, action: str) -> bool:
    """Whether ``role`` may take ``action``."""
    if role == OWNER:
        return True
    if role == REVIEWER:
        return action not in OWNER_ACTIONS
    return False


def require(role: str | None, action: str) -> None:
    """Raise :class:`AccessDenied` unless ``role`` may take ``action`` (the check every face makes
    where the action happens, not only where its button is drawn)."""
    if not can(role, action):
        who = "Signed-out visitors" if role is None else "Reviewers"
        raise AccessDenied(f"{who} cannot {action.replace('_', ' ')}: ask a project owner")


def local_reviewer() -> str:
    """The name decisions made without sign-in carry: the OS user, else "local"."""
    try:
        return getpass.getuser() or LOCAL_REVIEWER
    except Exception:  # noqa: BLE001 - no user database (containers)
        return LOCAL_REVIEWER


# --------------------------------------------------------------------------- the network rule
def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    address = (address or "").strip().strip("[]")
    if address in ("", "localhost"):
        return address == "localhost"
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def network_refusal(address: str | None, *, auth: bool, open_network: bool) -> str | None:
    """The one-line reason the app must not serve ``address``, or None when it may."""
    if auth or open_network or is_loopback(address):
        return None
    return (f"Refusing to serve {address} without sign-in: anyone on the network would see every project. "
            "Add an [auth] table to .streamlit/secrets.toml (see the README's Team review), or set "
            "PROMPTMIX_OPEN_NETWORK=1 to serve it open on purpose.")


def secrets_files(root: str | os.PathLike | None = None) -> list[Path]:
    """Where Streamlit reads secrets by default: ~/.streamlit/secrets.toml, then ./.streamlit/secrets.toml."""
    root = Path(root) if root is not None else Path.cwd()
    return [Path.home() / ".streamlit" / "secrets.toml", root / ".streamlit" / "secrets.toml"]


def read_secrets(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """The secrets files merged (later ones win, as Streamlit does); unreadable ones are skipped."""
    merged: dict[str, Any] = {}
    for p in paths:
        try:
            with open(p, "rb") as fh:
                merged.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return merged


__all__ = [
    "AccessConfig", "AccessDenied", "LOCAL_REVIEWER", "OWNER", "OWNER_ACTIONS", "REVIEWER", "access_config", "can",
    "identity", "is_loopback", "local_reviewer", "network_refusal", "read_secrets", "require", "role_for",
    "secrets_files",
]
