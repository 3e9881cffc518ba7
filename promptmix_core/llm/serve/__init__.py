"""The project's own OpenAI-compatible server for the bundled model, with batched generation.

``python -m promptmix_core.llm.serve --model-dir DIR --port PORT`` serves ``POST /v1/chat/completions``,
``GET /v1/models`` and ``GET /health`` on 127.0.0.1 (started by :class:`promptmix_core.llm.local.LocalServer`).

Why not ``transformers serve``: it runs one request at a time (about 21 tokens/s here), and its
``--continuous-batching`` mode keeps the first request's sampling settings for every later one.
This server batches every request in flight into one forward pass per step and samples each row
with **its own settings** (temperature, top_p, max_tokens, stop, n, seed). The parts:

==================  ======================================================================================
:mod:`.protocol`    the request body, parsed and bounded (token cap, prompt size); OpenAI-style errors
:mod:`.engine`      the thread that owns the model: queue, continuous batching, cancellation
:mod:`.cache`       key/values: the running batch's growing cache, the prefix cache of recent prompts
:mod:`.sampling`    each row's next token with its own temperature, top_p and seed; logprobs
:mod:`.scoring`     constrained answers (``response_format`` enum, ``guided_choice``) by scoring each value
:mod:`.server`      HTTP: routes, connection and size limits, cancel on disconnect
:mod:`.lifetime`    idle timeout, exit when the launcher is gone, unregistering the shared server
:mod:`.weights`     float32 or bfloat16 weights (bfloat16 where the CPU has it natively)
``__main__``        the command line
==================  ======================================================================================

Not supported (answered 400, so a client can fall back): other ``response_format`` schemas, ``tools``.
``stream: true`` gets the whole answer as one chunk followed by ``[DONE]``.

Only stdlib, torch and transformers; torch and transformers are imported when an :class:`Engine` is built.
"""

from __future__ import annotations

from .engine import Engine, Pending
from .weights import cpu_has_bf16, model_dtype
from .protocol import ChatRequest, RequestError, constrained_choices, parse_request

__all__ = ["ChatRequest", "Engine", "Pending", "RequestError", "constrained_choices", "cpu_has_bf16",
           "model_dtype", "parse_request"]
