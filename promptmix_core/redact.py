"""Secret scrubbing: API keys never reach a file, a log line or the screen.

:func:`scrub_secrets` removes keys by value (the ones this process knows of: :func:`known_secrets`,
the ``*API_KEY`` environment variables and every key :func:`register_secret` was given) and by
pattern (``sk-...``, ``Bearer ...``, ``user:password@`` in URLs, ``?api_key=`` query parameters).
Used by the LLM client before it stores or shows an answer and by the project store before every
write; it depends on nothing else in the library.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

_SECRET_PATTERNS = [  # (pattern, replacement)
    (re.compile(r"sk-[A-Za-z0-9_\-]{8,}"), "***"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.]{8,}"), r"\1***"),
    # credentials in a URL: scheme://user:password@host (the user name goes too)
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^/\s:@'\"]+:[^/\s@'\"]*@"), r"\1***@"),
    # a key passed as a query parameter: ?api_key=..., &key=..., &token=...
    (re.compile(r"(?i)([?&](?:api[_\-]?key|key|token|access_token|password|secret)=)[^&\s'\"]+"), r"\1***"),
]
_SECRET_KEYS = {"api_key", "apikey", "key", "authorization", "token", "secret", "password"}


def scrub_secrets(value: Any, secrets: Sequence[str] = ()) -> Any:
    """Remove API keys from a value before it is stored, logged or shown."""
    if isinstance(value, str):
        out = value
        for s in secrets:
            if s and len(s) >= 4:
                out = out.replace(s, "***")
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


def _env_secrets() -> list[str]:
    env = [v for k, v in os.environ.items() if k.endswith("API_KEY") and v]
    return [*env, *sorted(_REGISTERED_SECRETS - set(env))]


def known_secrets(*extra: str | None) -> list[str]:
    """Every key this process knows of (``extra`` plus the ``*API_KEY`` environment variables)."""
    return [s for s in (*extra, *_env_secrets()) if s]

__all__ = ["known_secrets", "register_secret", "scrub_secrets"]
