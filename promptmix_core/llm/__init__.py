"""The LLM layer: one OpenAI-compatible path for every call."""

from .cache import ResponseCache, default_cache_path
from .client import CallCancelled, CallSkipped, Completion, LLMClient, LLMError, LLMFatalError, LLMUnavailableError, UsageStats
from .config import LLMConfig, LLMConfigError, resolve_llm_config

__all__ = [
    "CallCancelled",
    "CallSkipped",
    "Completion",
    "LLMClient",
    "LLMConfig",
    "LLMConfigError",
    "LLMError",
    "LLMFatalError",
    "LLMUnavailableError",
    "ResponseCache",
    "UsageStats",
    "default_cache_path",
    "resolve_llm_config",
]
