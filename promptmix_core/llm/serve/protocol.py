"""What a request to the local server may say: the OpenAI chat-completions body, parsed and bounded.

Limits (each answered with an OpenAI-style error before any model work):

* the body: at most :data:`MAX_BODY_BYTES` (413, checked on ``Content-Length`` before a byte is read,
  see :mod:`.http`); the prompt text at most ``context x`` :data:`CHARS_PER_TOKEN_LIMIT` characters (400,
  before it is tokenized);
* ``max_tokens`` / ``max_completion_tokens``: clamped to the server's per-request cap
  (``--max-tokens-cap``, default :data:`MAX_TOKENS_CAP`) and to what the context leaves; a row that
  reaches it ends with ``finish_reason: "length"`` as OpenAI's do;
* ``n`` at most 16, ``stop`` at most 8 strings, ``top_logprobs`` at most 20.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_TOKENS = 512  # when a request names none (transformers serve: 1024, about 50 s here)
MAX_TOKENS_CAP = 1024  # most tokens one row may generate, whatever the request asks (about a minute alone here)
MAX_BODY_BYTES = 1 << 20  # 1 MiB: the model reads 8192 tokens (about 40 KB of text); anything larger is refused
CHARS_PER_TOKEN_LIMIT = 12  # a prompt over context x 12 characters cannot fit: refused before tokenizing


class RequestError(ValueError):
    """A request the server refuses (HTTP 400 unless ``status`` says otherwise)."""

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request_error",
                 param: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.param, self.retry_after = status, code, param, retry_after


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    choices: list[str] | None = None  # constrained answer: one of these values
    choice_key: str | None = None  # the JSON property that holds the value (None: the bare value)
    stream: bool = False


def constrained_choices(body: dict[str, Any]) -> tuple[list[str] | None, str | None]:
    """``(values, key)`` when the request asks for one of a fixed set of strings, else ``(None, None)``.

    Understood: OpenAI ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": S}}``
    where S is an object with exactly one property, a string ``enum`` (answered as ``{key: value}``),
    and vLLM's ``guided_choice: [...]`` (answered as the bare value). Other schemas raise
    :class:`RequestError` (400) so that a client falls back to free text.
    """
    guided = body.get("guided_choice")
    if guided is not None:
        if not isinstance(guided, list) or not guided or not all(isinstance(c, str) and c for c in guided):
            raise RequestError("guided_choice must be a non-empty list of strings", param="guided_choice")
        return list(dict.fromkeys(guided)), None
    rf = body.get("response_format")
    if rf is None:
        return None, None
    if not isinstance(rf, dict):
        raise RequestError("response_format must be an object", param="response_format")
    kind = rf.get("type", "text")
    if kind == "text":
        return None, None
    if kind != "json_schema":
        raise RequestError(
            f"response_format type {kind!r} is not supported here; use json_schema with one enum property",
            param="response_format",
        )
    schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or len(props) != 1:
        raise RequestError(
            "only a json_schema object with exactly one string enum property is supported here",
            param="response_format",
        )
    (key, prop), = props.items()
    values = prop.get("enum") if isinstance(prop, dict) else None
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise RequestError(
            f"the property {key!r} needs an enum of non-empty strings to be constrained here",
            param="response_format",
        )
    return list(dict.fromkeys(values)), str(key)


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    clean: list[dict[str, str]] = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError("each message needs a role and content", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text", ""), str))
        if not isinstance(content, str):
            raise RequestError("message content must be text", param="messages")
        clean.append({"role": m["role"], "content": content})
    return clean


def _integer(body: dict[str, Any], name: str, default: int, lo: int, hi: int | None, message: str) -> int:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise RequestError(message, param=name)
    return int(v)


def parse_request(body: Any, model_id: str, *, max_tokens_cap: int = MAX_TOKENS_CAP,
                  max_prompt_chars: int | None = None) -> ChatRequest:
    """The request as a :class:`ChatRequest`, or :class:`RequestError` saying what is wrong with it.

    ``max_tokens`` above ``max_tokens_cap`` is clamped to it; a prompt (all message contents together)
    longer than ``max_prompt_chars`` is refused before anything tokenizes it."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model != model_id:
        raise RequestError(f"The model `{model}` does not exist; this server serves `{model_id}`",
                           status=404, code="model_not_found", param="model")
    messages = _messages(body)
    if max_prompt_chars is not None:
        chars = sum(len(m["content"]) for m in messages)
        if chars > max_prompt_chars:
            raise RequestError(f"the prompt has {chars} characters; this model reads at most about "
                               f"{max_prompt_chars} (its context)", code="context_length_exceeded", param="messages")
    if body.get("tools"):
        raise RequestError("tools are not supported by this server", param="tools")

    def number(name: str, default: float, lo: float, hi: float) -> float:
        v = body.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
            raise RequestError(f"{name} must be a number between {lo:g} and {hi:g}", param=name)
        return float(v)

    key_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, key_name, DEFAULT_MAX_TOKENS, 1, None, "max_tokens must be a positive integer")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 8:
        raise RequestError("stop must be a string or a list of at most 8 strings", param="stop")
    n = _integer(body, "n", 1, 1, 16, "n must be between 1 and 16")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError("seed must be an integer", param="seed")
    top_logprobs = _integer(body, "top_logprobs", 0, 0, 20, "top_logprobs must be between 0 and 20")
    choices, key = constrained_choices(body)
    return ChatRequest(
        messages=messages,
        temperature=number("temperature", 1.0, 0.0, 2.0),
        top_p=number("top_p", 1.0, 0.0, 1.0),
        max_tokens=min(max_tokens, max(1, int(max_tokens_cap))),
        stop=[s for s in stop if s],
        n=n,
        seed=seed,
        logprobs=bool(body.get("logprobs")) or top_logprobs > 0,
        top_logprobs=top_logprobs,
        choices=choices,
        choice_key=key,
        stream=bool(body.get("stream")),
    )
