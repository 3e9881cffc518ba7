"""Secret scrubbing: API keys never reach a file, a log line or the screen.

:func:`scrub_secrets` removes keys by value (the ones this process knows of: :func:`known_secrets`,
the ``*API_KEY`` environment variables and every key :func:`register_secret` was given) and by
pattern (``sk-...``, ``Bearer ...``, ``user:password@`` in URLs, ``?api_key=`` query parameters).
Used by the LLM client before it stores or shows an answer and by the project store before every
write; it depends on nothing else in the library.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from typing import Any, Mapping, Sequence

_SECRET_PATTERNS = [  # (pattern, replacement)
    (re.compile(r"sk-[A-Za-z0-9_\-]{8,}"), "***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.]{8,}"), r"\1***"),
    # an HTTP Basic token (base64 of user:password, as sent for a user:password@ URL)
    (re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/_\-]{8,}={0,2}"), r"\1***"),
    # credentials in a URL: scheme://user:password@host (the user name goes too)
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s:@'\"]+:[^/\s@'\"]*@"), r"\1***@"),
    # a key passed as a query parameter: ?api_key=..., &key=..., &token=...
    (re.compile(r"(?i)([?&](?:api[_\-]?key|key|token|access_token|password|secret)=)[^&\s'\"]+"), r"\1***"),
]
_SECRET_KEYS = {"api_key", "apikey", "key", "authorization", "token", "secret", "password"}


def _base64_cores(secret: str) -> list[str]:
    """The base64 characters that encode ``secret`` wherever it sits in a longer encoded text (each of
    the three alignments), in the standard and the URL-safe alphabet: a key echoed base64-encoded, or
    inside a Basic token (``user:password``), is still found."""
    raw = secret.encode("utf-8", "surrogatepass")
    out = []
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode("ascii")
        core = enc[-(-8 * k // 6):(8 * (k + len(raw))) // 6]
        if len(core) >= 6:
            out += [core, core.replace("+", "-").replace("/", "_")]
    return out


@functools.lru_cache(maxsize=64)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for every known secret: as written in any case (upper-cased, lower-cased), and
    base64-encoded (:func:`_base64_cores`)."""
    plain = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
    if not plain:
        return None
    encoded = sorted({c for s in plain if len(s) >= 6 for c in _base64_cores(s)}, key=len, reverse=True)
    parts = [f"(?i:{re.escape(s)})" for s in plain] + [re.escape(c) for c in encoded]
    return re.compile("|".join(parts))


def scrub_secrets(value: Any, secrets: Sequence[str] = ()) -> Any:
    """Remove API keys from a value before it is stored, logged or shown: each known key as written,
    in another case or base64-encoded, and every key shape the patterns know."""
    if isinstance(value, str):
        out = value
        pattern = _secret_pattern(tuple(secrets)) if secrets else None
        if pattern is not None:
            out = pattern.sub("***", out)
        for pat, repl in _SECRET_PATTERNS:
            out = pat.sub(repl, out)
        return out
    if isinstance(value, Mapping):
        return {
            k: ("***" if str(k).lower() in _SECRET_KEYS and v else scrub_secrets(v, secrets))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub_secrets(v, secrets) for v in value]
    return value


_REGISTERED_SECRETS: set[str] = set()
_PLACEHOLDER_KEYS = {"not-needed", "local", "none", "empty", "no-key"}


def register_secret(value: str | None) -> None:
    """Remember a key this process uses (an LLM client's, a worker's) so that every later write and
    message scrubs it too, even once it has left the environment."""
    if value and len(value) >= 6 and value.strip().lower() not in _PLACEHOLDER_KEYS:
        _REGISTERED_SECRETS.add(value)


def register_url_credentials(url: str | None) -> None:
    """Remember the ``user:password`` of an endpoint URL (and the password alone) as secrets: a server
    that echoes the Basic token it was sent is scrubbed like one that echoes a key."""
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(str(url or ""))
    except ValueError:
        return
    if parts.password:
        register_secret(unquote(parts.password))
        register_secret(f"{unquote(parts.username or '')}:{unquote(parts.password)}")


def _env_secrets() -> list[str]:
    env = [v for k, v in os.environ.items() if k.endswith("API_KEY") and v]
    return [*env, *sorted(_REGISTERED_SECRETS - set(env))]


def known_secrets(*extra: str | None) -> list[str]:
    """Every key this process knows of (``extra`` plus the ``*API_KEY`` environment variables)."""
    return [s for s in (*extra, *_env_secrets()) if s]

__all__ = ["known_secrets", "register_secret", "register_url_credentials", "scrub_secrets"]
