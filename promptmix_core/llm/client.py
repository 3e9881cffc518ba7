"""The one path to an LLM: the async ``openai`` client against an OpenAI-compatible endpoint.

Bounded concurrency (a semaphore per event loop), retries with exponential backoff that honour
``Retry-After`` (and ``retry-after-ms``) up to a cap, a total deadline per call (connect to last
byte, not only between bytes), calls in flight cancelled the moment the caller's ``stop`` says so,
the SQLite response cache and token accounting. Errors that retrying cannot fix (bad key, unknown
model, bad request, a streaming-only endpoint) are raised at once. Keys and URL credentials are
scrubbed from every message and every answer before anyone stores or shows them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..redact import known_secrets, register_secret, register_url_credentials, scrub_secrets
from .cache import ResponseCache, cache_key
from .config import LLMConfig


from ..errors import LLMError  # noqa: E402 - the one definition lives in errors.py


class LLMFatalError(LLMError):
    """The endpoint refused the request in a way retrying cannot fix (key, model, bad request)."""


class LLMUnavailableError(LLMError):
    """The endpoint kept failing after every retry."""


class CallSkipped(Exception):
    """The caller's ``abort`` check said stop before the call was sent (nothing was spent)."""


# Optional request features an endpoint may refuse with 400/422 (transformers serve ignores them,
# older vLLM/llama.cpp/Ollama builds and some proxies refuse them). A refusal is remembered per
# endpoint and model for the life of the process, so later calls go out without the feature at once.
OPTIONAL_FEATURES = ("response_format", "logprobs", "stop")  # "stop": stop sequences (o-series models refuse them)
_refusals: dict[tuple[str, str], set[str]] = {}
_refusals_lock = threading.Lock()


def endpoint_refuses(base_url: str, model: str, feature: str) -> bool:
    """Whether this endpoint refused ``feature`` (one of :data:`OPTIONAL_FEATURES`) in this process."""
    with _refusals_lock:
        return feature in _refusals.get((base_url.rstrip("/"), model), set())


def remember_refusal(base_url: str, model: str, feature: str) -> None:
    with _refusals_lock:
        _refusals.setdefault((base_url.rstrip("/"), model), set()).add(feature)


def forget_refusal(base_url: str, model: str, feature: str) -> None:
    with _refusals_lock:
        _refusals.get((base_url.rstrip("/"), model), set()).discard(feature)


class _RefusedMeanwhile(Exception):
    """A feature of a waiting call was refused by another call: send it again without the feature."""


def forget_refusals() -> None:
    """Forget every remembered refusal (tests; or after the endpoint was upgraded)."""
    with _refusals_lock:
        _refusals.clear()


def _feature_params(feature: str) -> tuple[str, ...]:
    return ("logprobs", "top_logprobs") if feature == "logprobs" else (feature,)


def _refused_feature(message: str, params: Mapping[str, Any]) -> str | None:
    """Which optional feature a 400/422 answer is most likely about (None: none was sent)."""
    sent = [f for f in OPTIONAL_FEATURES if f in params]
    if not sent:
        return None
    low = message.lower()
    for f in sent:
        if f.replace("_", "") in low.replace("_", "").replace(" ", "") or (f == "response_format" and "schema" in low):
            return f
    return sent[0]
class CallCancelled(CallSkipped):
    """The caller's ``stop`` check said stop while the call was in flight; the call was abandoned
    (counted in ``UsageStats.cancelled``) and nothing of it is kept."""


# Usage counts above this are not believed (a server bug or a hostile server): the call's tokens are
# estimated from the text instead, so accounting never overflows SQLite's 64-bit INTEGER.
MAX_TOKENS_PER_CALL = 100_000_000
# How often a call in flight (or a retry wait) looks at the caller's ``stop``.
STOP_POLL_S = 0.1


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    finish_reason: str | None = None
    # per answer token: {"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}; None when the
    # endpoint sent none (not asked, or refused)
    logprobs: list[dict[str, Any]] | None = None
    # the optional features this answer was produced with (e.g. {"response_format", "logprobs"})
    features: frozenset[str] = frozenset()
    model: str = ""  # the model the server says answered (the requested one when it says nothing)


@dataclass
class UsageStats:
    """Counters for one job; thread-safe."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    refusals: int = 0  # optional features (response_format, logprobs) the endpoint refused once
    cancelled: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    price_prompt_per_1m: float | None = None
    price_completion_per_1m: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float | None:
        if self.price_prompt_per_1m is None or self.price_completion_per_1m is None:
            return None
        return (
            self.prompt_tokens * self.price_prompt_per_1m + self.completion_tokens * self.price_completion_per_1m
        ) / 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failures": self.failures,
            "refusals": self.refusals,
            "cancelled": self.cancelled,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost": self.cost,
        }

    def summary(self) -> str:
        from ..job_status import usage_line  # the one wording of LLM usage (a leaf module)

        return usage_line(self.as_dict())


def _retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LLMClient:
    """Chat completions with concurrency, retries, cache and accounting.

    One client serves one job: ``stats`` counts that job's calls. ``cache_path`` may be a project
    file (its ``llm_cache`` table) or a standalone SQLite file; ``None`` disables caching.
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        cache_path: str | Path | None = None,
        cache: ResponseCache | None = None,
        stats: UsageStats | None = None,
        sleep=asyncio.sleep,
    ):
        self.config = config
        register_secret(config.api_key)  # scrubbed from whatever this process stores or logs from now on
        register_url_credentials(config.base_url)  # user:password in the URL, and its Basic token
        self.cache = cache if cache is not None else (ResponseCache(cache_path) if cache_path else None)
        self.stats = stats or UsageStats(
            price_prompt_per_1m=config.price_prompt_per_1m, price_completion_per_1m=config.price_completion_per_1m
        )
        self._sleep = sleep
        self._per_loop: dict[int, tuple[Any, asyncio.Semaphore]] = {}
        self._lock = threading.Lock()
        # Until the endpoint has answered once, one call goes out at a time (the others wait), and
        # an error that no retry can fix (key, model) or an endpoint that kept failing is remembered:
        # calls begun before it fail at once with the same message instead of hitting the endpoint.
        self._healthy = False
        self._failure: tuple[float, LLMError] | None = None
        # What the client is waiting for right now ("rate limited: waiting 120 s, retry 2 of 4"), or
        # None; ``on_notice`` (set by the job) is called whenever it changes, so progress can show it.
        self.notice: str | None = None
        self.on_notice: Callable[[str | None], None] | None = None

    # ------------------------------------------------------------------ plumbing
    def _loop_state(self):
        loop = asyncio.get_running_loop()
        key = id(loop)
        with self._lock:
            state = self._per_loop.get(key)
            if state is None or state[2] is not loop:
                import openai

                client = openai.AsyncOpenAI(
                    base_url=self.config.base_url,
                    api_key=self.config.api_key or "not-needed",
                    timeout=self.config.timeout,
                    max_retries=0,  # retries are ours: they honour Retry-After and are counted
                )
                state = (client, asyncio.Semaphore(self.config.concurrency), loop, asyncio.Lock())
                self._per_loop[key] = state
        return state[0], state[1], state[3]

    def _raise_if_failed(self, started: float) -> None:
        failure = self._failure
        if failure is not None and failure[0] >= started:
            raise type(failure[1])(str(failure[1]))

    async def _network_call(self, client, messages, params, started: float, abort=None, stop=None) -> Completion:
        self._raise_if_failed(started)
        if abort is not None and abort():  # checked once a slot is free, so a stop is quick
            raise CallSkipped()
        try:
            completion = await self._call_with_retries(client, messages, params, stop)
        except (LLMFatalError, LLMUnavailableError) as exc:
            if getattr(exc, "endpoint_wide", True):
                self._failure = (time.monotonic(), exc)
                self._healthy = False
            raise
        self._healthy = True
        return completion

    @property
    def public_url(self) -> str:
        """The endpoint URL without credentials (safe to store, log and show)."""
        return self._clean(self.config.base_url)

    def _clean(self, text: str) -> str:
        return scrub_secrets(str(text), known_secrets(self.config.api_key))

    def _set_notice(self, notice: str | None) -> None:
        if notice == self.notice:
            return
        self.notice = notice
        if self.on_notice is not None:
            try:
                self.on_notice(notice)
            except Exception:  # noqa: BLE001 - progress display must never break a call
                pass

    async def _bounded(self, aw, stop: Callable[[], bool] | None, deadline: float | None):
        """Await ``aw`` as a task, cancelling it when ``deadline`` seconds pass (``TimeoutError``) or
        when ``stop()`` turns true (:class:`CallCancelled`), whatever the other side does."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(aw)
        end = None if deadline is None else loop.time() + deadline
        try:
            while True:
                wait = None if end is None else max(0.0, end - loop.time())
                if stop is not None:
                    wait = STOP_POLL_S if wait is None else min(wait, STOP_POLL_S)
                done, _ = await asyncio.wait({task}, timeout=wait)
                if task in done:
                    return task.result()
                if stop is not None and stop():
                    raise CallCancelled()
                if end is not None and loop.time() >= end:
                    raise TimeoutError()
        finally:
            if not task.done():
                task.cancel()
                try:
                    await asyncio.wait({task}, timeout=1.0)  # let it close its connection
                except BaseException:  # noqa: BLE001 - we are leaving anyway
                    pass
            elif not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" warning

    # ---------------------------------------------------------------------- API
    async def achat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        temperature: float = 1.0,
        max_tokens: int = 512,
        top_p: float | None = None,
        sample_index: int = 0,
        use_cache: bool = True,
        abort: Callable[[], bool] | None = None,
        response_format: Mapping[str, Any] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        stop: Callable[[], bool] | None = None,
        stop_sequences: Sequence[str] | None = None,
    ) -> Completion:
        """One chat completion (cached). ``response_format`` (e.g. a ``json_schema``), ``logprobs`` and
        ``stop_sequences`` (OpenAI's ``stop``, at most 4) are optional features: sent unless this endpoint
        has refused them before; an endpoint that answers 400/422 to one gets the same call again without
        it, once, and is remembered (see :func:`endpoint_refuses`). ``Completion.features`` tells which
        ones the answer had.

        ``abort`` is checked before the call is sent (:class:`CallSkipped`: nothing spent); ``stop`` is
        polled while it is in flight and during retry waits (:class:`CallCancelled`: abandoned at once)."""
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if top_p is not None:
            params["top_p"] = top_p
        base, model = self.config.base_url, self.config.model
        if stop_sequences and not endpoint_refuses(base, model, "stop"):
            params["stop"] = [str(x) for x in stop_sequences][:4]
        if response_format is not None and not endpoint_refuses(base, model, "response_format"):
            params["response_format"] = dict(response_format)
        if logprobs and not endpoint_refuses(base, model, "logprobs"):
            params["logprobs"] = True
            if top_logprobs:
                params["top_logprobs"] = int(top_logprobs)
        refused_here: list[str] = []  # features this call found refused, until a call without them succeeds
        first_error: LLMFatalError | None = None
        while True:
            params = {k: v for k, v in params.items()
                      if not any(k in _feature_params(f) and endpoint_refuses(base, model, f) for f in OPTIONAL_FEATURES)}
            try:
                return await self._achat_params(messages, params, sample_index, use_cache, abort, stop)
            except _RefusedMeanwhile:
                continue  # another call found a refusal while this one waited: go without the feature
            except LLMFatalError as exc:
                request_scoped = not getattr(exc, "endpoint_wide", True)
                feature = _refused_feature(str(exc), params) if request_scoped else None
                if feature is not None:  # drop optional features one at a time until the endpoint answers
                    remember_refusal(base, model, feature)  # at once, so calls waiting now go without it
                    self.stats.add(failures=-1, refusals=1)  # a refused feature is not a failed call
                    refused_here.append(feature)
                    first_error = first_error or exc
                    continue
                if refused_here and request_scoped:  # refused without them too: they were not the reason
                    for f in refused_here:
                        forget_refusal(base, model, f)
                    self.stats.add(refusals=-len(refused_here))  # the failed call already counts as the failure
                    raise (first_error or exc) from None
                raise

    async def _achat_params(self, messages, params: dict[str, Any], sample_index: int, use_cache: bool,
                            abort, stop=None) -> Completion:
        features = frozenset(f for f in OPTIONAL_FEATURES if f in params)
        key = cache_key(self.config.base_url, self.config.model, params, messages, sample_index)
        if use_cache and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.add(cache_hits=1)
                return Completion(hit["text"], hit["prompt_tokens"], hit["completion_tokens"], cached=True,
                                  finish_reason=hit.get("finish_reason"),
                                  logprobs=(hit.get("extra") or {}).get("logprobs"), features=features,
                                  model=hit.get("model") or self.config.model)
        if stop is not None and stop():
            raise CallSkipped()
        started = time.monotonic()
        client, semaphore, probe = self._loop_state()

        async def send() -> Completion:
            async with semaphore:
                if any(endpoint_refuses(self.config.base_url, self.config.model, f) for f in features):
                    raise _RefusedMeanwhile()
                return await self._network_call(client, messages, params, started, abort, stop)

        completion: Completion | None = None
        if not self._healthy:  # the first call probes the endpoint alone
            async with probe:
                self._raise_if_failed(started)
                if not self._healthy:
                    completion = await send()
        if completion is None:
            completion = await send()
        completion.features = features
        if use_cache and self.cache is not None:
            extra = {"logprobs": completion.logprobs} if completion.logprobs is not None else None
            self.cache.put(key, completion.text, completion.prompt_tokens, completion.completion_tokens,
                           completion.model, completion.finish_reason, extra=extra)
        return completion

    def chat(self, messages: Sequence[Mapping[str, str]], **kwargs: Any) -> Completion:
        """Synchronous convenience wrapper (not for use inside a running event loop)."""
        return self.run_sync(self.achat(messages, **kwargs))

    async def aclose(self) -> None:
        """Close the HTTP client of the running event loop (call before the loop ends)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            state = self._per_loop.pop(id(loop), None)
        if state is not None:
            try:
                await asyncio.wait_for(state[0].close(), timeout=2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing is best effort
                pass

    def run_sync(self, coro):
        """Run ``coro`` in a fresh event loop and close this client's connections before it ends."""

        async def runner():
            try:
                return await coro
            finally:
                await self.aclose()

        return asyncio.run(runner())

    async def _call_with_retries(self, client, messages, params, stop=None) -> Completion:
        import openai

        attempts = self.config.max_retries + 1
        last_error = "unknown error"
        url = self.public_url
        for attempt in range(attempts):
            delay: float | None = None
            reason = "the call failed"
            asked: float | None = None
            try:
                self.stats.add(calls=1)
                resp = await self._bounded(
                    client.chat.completions.create(model=self.config.model, messages=list(messages), **params),
                    stop, self.config.timeout,
                )
                return self._to_completion(resp, messages)
            except CallCancelled:
                self.stats.add(cancelled=1)
                raise
            except _StreamingOnly as exc:
                self.stats.add(failures=1)
                raise LLMFatalError(str(exc)) from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                self.stats.add(failures=1)
                raise LLMFatalError(
                    f"the endpoint {url} refused the API key "
                    f"(HTTP {exc.status_code}); check OPENAI_API_KEY or the key in settings"
                ) from None
            except openai.NotFoundError as exc:
                self.stats.add(failures=1)
                raise LLMFatalError(
                    f"the endpoint {url} does not know the model '{self.config.model}' "
                    f"or the URL is wrong (HTTP 404): {self._clean(_error_message(exc))}"
                ) from None
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                self.stats.add(failures=1)
                msg = self._clean(_error_message(exc))
                if "stream" in msg.lower():
                    raise LLMFatalError(f"{STREAMING_HINT} (the server said: {msg[:200]})") from None
                hint = f" (model '{self.config.model}')" if "model" in msg.lower() else ""
                err = LLMFatalError(f"the endpoint rejected the request{hint}: {msg}")
                err.endpoint_wide = False  # this request only; other calls may still succeed
                raise err from None
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {self._clean(_error_message(exc))[:200]}"
                reason = "rate limited" if exc.status_code == 429 else f"server error (HTTP {exc.status_code})"
                asked = _retry_after_seconds(exc.response.headers if exc.response is not None else None)
                if asked is not None:
                    delay = min(asked, self.config.max_retry_after)
            except (TimeoutError, asyncio.TimeoutError, openai.APITimeoutError):
                last_error = f"no complete answer within {self.config.timeout:g} s"
                reason = f"no answer within {self.config.timeout:g} s"
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                last_error = f"connection failed ({type(cause).__name__}: {self._clean(str(cause))[:120]})"
                reason = "connection failed"
            except (openai.APIError, json.JSONDecodeError, ValueError, KeyError, IndexError, TypeError) as exc:
                last_error = f"malformed response ({type(exc).__name__}: {self._clean(str(exc))[:120]})"
                reason = "malformed response"
            if attempt == attempts - 1:
                break
            self.stats.add(retries=1)
            if delay is None:
                delay = min(self.config.backoff_max, self.config.backoff_base * (2**attempt))
                delay *= 0.5 + random.random() / 2  # jitter
            if delay >= 1.0 or asked is not None:
                capped = (f" (the server asked for {_secs(asked)} s; the cap is {_secs(delay)} s)"
                          if asked is not None and asked > delay else "")
                self._set_notice(f"{reason}: waiting {_secs(delay)} s{capped}, retry {attempt + 1} of "
                                 f"{self.config.max_retries}")
            try:
                if stop is None:
                    await self._sleep(delay)
                else:
                    await self._bounded(self._sleep(delay), stop, None)
            except CallCancelled:
                self.stats.add(cancelled=1)
                raise
            finally:
                self._set_notice(None)
        self.stats.add(failures=1)
        raise LLMUnavailableError(
            f"the LLM endpoint {url} kept failing after {attempts} attempts; last error: {last_error}"
        )

    def _to_completion(self, resp: Any, messages: Sequence[Mapping[str, str]]) -> Completion:
        if isinstance(resp, (str, bytes)):
            raw = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
            if raw.lstrip().startswith(("data:", "event:")):  # server-sent events: a stream
                raise _StreamingOnly(STREAMING_HINT)
            raise ValueError("the response is not JSON")
        if not getattr(resp, "choices", None):
            raise ValueError("the response has no choices")
        choice = resp.choices[0]
        text = (choice.message.content if choice.message is not None else None) or ""
        text = self._clean(text)  # a key the server echoes is never stored (raw response, cache, examples)
        usage = getattr(resp, "usage", None)
        prompt_tokens = _token_count(getattr(usage, "prompt_tokens", 0)) if usage else None
        completion_tokens = _token_count(getattr(usage, "completion_tokens", 0)) if usage else None
        if prompt_tokens is None or completion_tokens is None:
            # no usage, or an unbelievable one: estimate (about 4 characters a token) so accounting
            # never reads zero and never overflows
            prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
            completion_tokens = len(text) // 4
        self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        model = getattr(resp, "model", None)
        model = self._clean(model.strip())[:200] if isinstance(model, str) and model.strip() else self.config.model
        return Completion(text, prompt_tokens, completion_tokens, cached=False, finish_reason=choice.finish_reason,
                          logprobs=_token_logprobs(getattr(choice, "logprobs", None)), model=model)

    async def acheck(self) -> None:
        """One tiny call to fail fast on a bad key, model or URL (cached calls skip the network)."""
        await self.achat([{"role": "user", "content": "Say OK."}], temperature=0.0, max_tokens=2, use_cache=False)


def _token_logprobs(logprobs: Any) -> list[dict[str, Any]] | None:
    """``choice.logprobs.content`` as plain dicts (token, logprob, top_logprobs), or None."""
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if content is None and isinstance(logprobs, Mapping):
        content = logprobs.get("content")
    if not content:
        return None
    out = []
    for item in content:
        get = item.get if isinstance(item, Mapping) else (lambda k, _i=item: getattr(_i, k, None))
        try:
            lp = float(get("logprob"))
        except (TypeError, ValueError):
            return None
        top = []
        for alt in get("top_logprobs") or []:
            aget = alt.get if isinstance(alt, Mapping) else (lambda k, _a=alt: getattr(_a, k, None))
            try:
                top.append({"token": str(aget("token") or ""), "logprob": float(aget("logprob"))})
            except (TypeError, ValueError):
                continue
        out.append({"token": str(get("token") or ""), "logprob": lp, "top_logprobs": top})
    return out
STREAMING_HINT = (
    "the endpoint seems to answer only with streaming (server-sent events), but PromptMix asks for "
    "whole answers: turn streaming off on the server, or use its non-streaming (OpenAI-compatible) URL"
)


class _StreamingOnly(ValueError):
    pass


def _secs(x: float) -> str:
    """120 -> "120", 86400 -> "86,400", 2.5 -> "2.5", 0.25 -> "0.25"."""
    return f"{x:,.0f}" if x >= 10 else f"{x:.2f}".rstrip("0").rstrip(".")


def _token_count(value: Any) -> int | None:
    """A usage count as an int, or None when it is missing, negative or unbelievably large."""
    try:
        n = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return None
    return n if 0 <= n <= MAX_TOKENS_PER_CALL else None


def _error_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", None) or exc)
