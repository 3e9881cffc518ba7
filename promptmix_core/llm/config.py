"""LLM endpoint configuration: flags > environment > project settings > the bundled local model."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

# USD per million tokens (prompt, completion) for models whose price is public; cost is shown
# only where a price is known. Local models cost nothing.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}
OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
LOCAL_CONCURRENCY = 16  # calls in flight to the bundled model's batching server (its batch size)


from ..errors import LLMConfigError  # noqa: E402 - the one definition lives in errors.py


def llm_problems(base_url: Any, concurrency: Any, timeout: Any, max_retries: Any, max_retry_after: Any) -> list[str]:
    """Every rule of the endpoint settings, in one place (:class:`LLMConfig` and the job specs'
    :class:`~promptmix_core.specs.LLMSpec`, whose ``base_url`` may be None: resolved at run time)."""
    from ..checks import int_in, is_num

    p: list[str] = []
    if base_url is not None and not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
        p.append(f"the endpoint URL must start with http:// or https:// (got {base_url!r})")
    int_in(p, concurrency, 1, 256, "concurrency")
    if not (is_num(timeout) and 0 < timeout <= 3600):
        p.append(f"the timeout must be between 0 and 3600 seconds (got {timeout!r})")
    int_in(p, max_retries, 0, 20, "retries")
    if not (is_num(max_retry_after) and 0 <= max_retry_after <= 86_400):
        p.append(f"the longest Retry-After wait must be between 0 and 86400 seconds (got {max_retry_after!r})")
    return p


@dataclass
class LLMConfig:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_retry_after: float = 120.0  # the longest a server's Retry-After is waited out (--max-retry-after)
    price_prompt_per_1m: float | None = None
    price_completion_per_1m: float | None = None
    local: bool = False

    def __post_init__(self) -> None:
        problems = llm_problems(self.base_url, self.concurrency, self.timeout, self.max_retries, self.max_retry_after)
        if not self.model or not str(self.model).strip():
            problems.insert(1, "a model name is needed")
        if problems:
            raise LLMConfigError("; ".join(problems))
        self.base_url = str(self.base_url).rstrip("/")
        self.concurrency = int(self.concurrency)
        if self.price_prompt_per_1m is None and self.price_completion_per_1m is None:
            if self.local:
                self.price_prompt_per_1m = self.price_completion_per_1m = 0.0
            else:
                price = KNOWN_PRICES.get(self.model)
                if price and "openai.com" in self.base_url:
                    self.price_prompt_per_1m, self.price_completion_per_1m = price

    def __repr__(self) -> str:  # never the key, never credentials in the URL
        from ..redact import scrub_secrets

        return (f"LLMConfig(base_url={scrub_secrets(self.base_url)!r}, model={self.model!r}, "
                f"concurrency={self.concurrency}, timeout={self.timeout}, max_retries={self.max_retries}, "
                f"max_retry_after={self.max_retry_after}, local={self.local})")

    @property
    def has_price(self) -> bool:
        return self.price_prompt_per_1m is not None and self.price_completion_per_1m is not None

    def public_dict(self) -> dict[str, Any]:
        """Everything but the key: safe to store, log and show."""
        from ..redact import scrub_secrets

        d = asdict(self)
        d.pop("api_key", None)
        d["base_url"] = scrub_secrets(self.base_url, [self.api_key])
        return d


def _endpoint_key(url: str | None) -> tuple[str, str, int | None, str] | None:
    """What identifies an endpoint: scheme, host, port and path (no user, password or query)."""
    from urllib.parse import urlsplit

    if not url:
        return None
    try:
        parts = urlsplit(str(url).strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def same_endpoint(a: str | None, b: str | None) -> bool:
    """True when two URLs name the same endpoint (case of scheme and host, a default port, a
    trailing slash and credentials in the URL do not matter)."""
    ka, kb = _endpoint_key(a), _endpoint_key(b)
    return ka is not None and ka == kb


def key_endpoint(configured_base_url: str | None = None) -> str:
    """The one endpoint a configured key (environment or secrets) may be sent to: the URL configured
    beside it (``OPENAI_BASE_URL``), else the OpenAI API."""
    from ..settings import get_settings

    return configured_base_url or get_settings().openai_base_url or OPENAI_BASE_URL


def bound_key(base_url: str | None, key: str | None, endpoint: str | None) -> str | None:
    """``key`` when ``base_url`` is ``endpoint`` (the key's own), else None: a configured key never
    travels to another URL. ``base_url`` None means the configured endpoint itself."""
    if not key:
        return None
    return key if base_url is None or same_endpoint(base_url, endpoint) else None


def resolve_llm_config(
    base_url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    *,
    settings: Mapping[str, Any] | None = None,
    start_local: bool = True,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> LLMConfig:
    """Pick the endpoint: explicit arguments, then ``OPENAI_BASE_URL``/``OPENAI_API_KEY``/
    ``PROMPTMIX_MODEL``, then saved settings; with no endpoint anywhere, the bundled SmolLM2 served
    on 127.0.0.1 (started on first use; ``progress(message)`` hears about a cold start, see
    :func:`promptmix_core.llm.local.ensure_local_server`).

    A key is bound to its endpoint: ``api_key`` (given with the URL) goes to the URL chosen; the
    environment's key (``OPENAI_API_KEY``/``PROMPTMIX_API_KEY``) goes only to ``OPENAI_BASE_URL``,
    else to the OpenAI API, never to another URL (a warning is logged when it is held back)."""
    from ..settings import get_settings

    env = get_settings()
    settings = dict(settings or {})
    base_url = base_url or env.openai_base_url or settings.get("base_url") or None
    model = model or env.model or settings.get("model") or None
    if not api_key and env.api_key:
        api_key = bound_key(base_url, env.api_key, env.openai_base_url or OPENAI_BASE_URL)
        if not api_key:
            from ..redact import scrub_secrets

            logging.getLogger(__name__).warning(f"the key in {env.api_key_source} is only sent to "
                     f"{scrub_secrets(env.openai_base_url or OPENAI_BASE_URL)}, not to {scrub_secrets(str(base_url))}; "
                     f"set OPENAI_BASE_URL to that URL to use it there")
    api_key = api_key or ""
    for key in ("concurrency", "timeout", "max_retries", "max_retry_after"):
        if key not in options and settings.get(key) is not None:
            options[key] = settings[key]
    options = {k: v for k, v in options.items() if v is not None}
    if not base_url:
        if api_key and model:
            base_url = OPENAI_BASE_URL
        elif api_key:
            base_url, model = OPENAI_BASE_URL, DEFAULT_OPENAI_MODEL
        else:
            if not start_local:
                raise LLMConfigError("no LLM endpoint configured")
            from .local import default_backend, ensure_local_server

            local_url, local_model = ensure_local_server(progress=progress)
            # The bundled model's server decodes every request in flight as one batch (up to 16 rows),
            # so calls in flight are what makes it fast; `transformers serve` runs one at a time. A
            # client timeout does not cancel a request there: a generous timeout.
            cap = LOCAL_CONCURRENCY if default_backend() == "promptmix" else 2
            options["concurrency"] = min(int(options.get("concurrency", cap)), cap)
            options["timeout"] = max(float(options.get("timeout", 300.0)), 300.0)
            return LLMConfig(base_url=local_url, model=local_model, api_key="local", local=True, **options)
    if not model:
        if "openai.com" in base_url:
            model = DEFAULT_OPENAI_MODEL
        else:
            model = _first_served_model(base_url, api_key) or ""
            if not model:
                raise LLMConfigError(
                    f"no model name given and {base_url} lists none; pass --model or set PROMPTMIX_MODEL"
                )
    local = base_url.startswith(("http://127.0.0.1", "http://localhost")) and not api_key
    return LLMConfig(base_url=base_url, model=model, api_key=api_key or "not-needed", local=local, **options)


def _first_served_model(base_url: str, api_key: str) -> str | None:
    """Ask an OpenAI-compatible server which models it serves (vLLM, Ollama, llama.cpp answer)."""
    import openai

    try:
        client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=10, max_retries=0)
        models = client.models.list()
        data = list(models.data)
        return data[0].id if data else None
    except Exception:  # noqa: BLE001 - any failure means "unknown", reported by the caller
        return None
