"""Settings from the environment, read in one place.

Every environment variable PromptMix looks at is listed in :data:`VARIABLES` (and in the README's
table); nothing else in the package reads ``os.environ`` for its own settings. :func:`get_settings`
reads them once and keeps the result; it reads again only when one of these variables has changed
in this process (tests, or a face that sets one), so callers never cache a stale copy themselves.

The app and the CLI accept the same variables: an API key is taken from ``OPENAI_API_KEY``, else
``PROMPTMIX_API_KEY``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

#: name -> what it sets (the README's table is written from this).
VARIABLES: dict[str, str] = {
    "OPENAI_BASE_URL": "OpenAI-compatible endpoint used when no URL is given (else OpenAI with a key, else the bundled model)",
    "OPENAI_API_KEY": "API key for the endpoint",
    "PROMPTMIX_API_KEY": "API key, used when OPENAI_API_KEY is not set (app and CLI alike)",
    "PROMPTMIX_MODEL": "model name at the endpoint when none is given",
    "PROMPTMIX_CACHE_DIR": "folder for PromptMix's caches: the converted local model, its server state, the LLM response cache (default ~/.cache/promptmix)",
    "PROMPTMIX_CACHE": "the LLM response cache file (default $PROMPTMIX_CACHE_DIR/llm_cache.sqlite); the same for the app's jobs, the CLI and experiments",
    "PROMPTMIX_PROJECTS_DIR": "the app's projects folder (default ./projects)",
    "PROMPTMIX_EMBEDDER": "folder of the sentence embedder used by relabel and review (default: the bundled all-MiniLM-L6-v2)",
    "PROMPTMIX_LOCAL_DTYPE": "weights of the bundled local model server: auto (default: bfloat16 where the CPU has native bfloat16, else float32), float32 or bfloat16",
    "PROMPTMIX_LOCAL_THREADS": "CPU threads of the bundled local model server (default OMP_NUM_THREADS, else min(4, cores))",
    "PROMPTMIX_LOCAL_IDLE_MINUTES": "the shared bundled-model server exits once the process that started it is gone and no request came for this many minutes (default 10)",
    "PROMPTMIX_LOCAL_BACKEND": "server of the bundled model: promptmix (the project's batching server, default) or transformers (`transformers serve`)",
    "PROMPTMIX_OPEN_NETWORK": "1 lets `make run ADDRESS=...` serve beyond 127.0.0.1 without sign-in ([auth] in secrets.toml); off by default",
    "PROMPTMIX_JOB_API_KEY": "internal: hands the API key from the app to its background worker (never stored)",
    "PROMPTMIX_JOB_KEY_ENDPOINT": "internal: the endpoint the handed-over key is for; the worker sends it nowhere else",
    "PROMPTMIX_CHROMIUM": "tests/scripts only: the Chromium binary for browser tests (default /usr/bin/chromium)",
    "PROMPTMIX_FORCE_CPU": "scripts/setup_env.py only: 1 installs the CPU build of torch even with a GPU",
    "PROMPTMIX_TORCH_VERSION": "scripts/setup_env.py only: the torch version to install",
    "OMP_NUM_THREADS": "read for the local model's threads when PROMPTMIX_LOCAL_THREADS is unset",
}


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """The environment, parsed. Blank values count as unset."""

    openai_base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_source: str | None = None  # the variable the key came from
    model: str | None = None
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "promptmix")
    llm_cache_path: Path = field(default_factory=lambda: Path.home() / ".cache" / "promptmix" / "llm_cache.sqlite")
    projects_dir: Path = Path("projects")
    embedder_path: str | None = None
    local_threads: int | None = None
    local_backend: str | None = None
    local_dtype: str | None = None  # weights of the local server: auto, float32 or bfloat16
    local_idle_minutes: float | None = None  # the shared local server's idle time once its launcher is gone
    job_api_key: str | None = field(default=None, repr=False)
    open_network: bool = False  # serve beyond 127.0.0.1 without sign-in, on purpose

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        key, source = None, None
        for name in ("OPENAI_API_KEY", "PROMPTMIX_API_KEY"):
            if _clean(env.get(name)):
                key, source = _clean(env.get(name)), name
                break
        cache_dir = Path(_clean(env.get("PROMPTMIX_CACHE_DIR")) or "~/.cache/promptmix").expanduser()
        cache = _clean(env.get("PROMPTMIX_CACHE"))
        threads = None
        for name in ("PROMPTMIX_LOCAL_THREADS", "OMP_NUM_THREADS"):
            try:
                value = int(_clean(env.get(name)) or 0)
            except ValueError:
                value = 0
            if value > 0:
                threads = value
                break
        try:
            idle = float(_clean(env.get("PROMPTMIX_LOCAL_IDLE_MINUTES")) or "nan")
        except ValueError:
            idle = float("nan")
        return cls(
            openai_base_url=_clean(env.get("OPENAI_BASE_URL")),
            api_key=key,
            api_key_source=source,
            model=_clean(env.get("PROMPTMIX_MODEL")),
            cache_dir=cache_dir,
            llm_cache_path=Path(cache).expanduser() if cache else cache_dir / "llm_cache.sqlite",
            projects_dir=Path(_clean(env.get("PROMPTMIX_PROJECTS_DIR")) or "projects").expanduser(),
            embedder_path=_clean(env.get("PROMPTMIX_EMBEDDER")),
            local_threads=threads,
            local_backend=(_clean(env.get("PROMPTMIX_LOCAL_BACKEND")) or "").lower() or None,
            local_dtype=(_clean(env.get("PROMPTMIX_LOCAL_DTYPE")) or "").lower() or None,
            local_idle_minutes=idle if idle >= 0 else None,  # nan (unset, unreadable) and negatives: default
            job_api_key=_clean(env.get("PROMPTMIX_JOB_API_KEY")),
            open_network=(_clean(env.get("PROMPTMIX_OPEN_NETWORK")) or "").lower() in ("1", "true", "yes"),
        )


_lock = threading.Lock()
_cached: tuple[tuple[str | None, ...], Settings] | None = None


def _snapshot() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in VARIABLES)


def get_settings() -> Settings:
    """The current settings (read once; read again only when one of :data:`VARIABLES` changed)."""
    global _cached
    snap = _snapshot()
    with _lock:
        if _cached is None or _cached[0] != snap:
            _cached = (snap, Settings.from_env())
        return _cached[1]


__all__ = ["Settings", "VARIABLES", "get_settings"]
