"""A review project of any size, for the review tests and ``benchmarks/review_latency.py``.

Uses the banking demo's task; the generated examples look like a relabelled generation run: every
fifth example starts a new "LLM call" whose prompt (about 1.5 kB) and response (about 0.9 kB) are
stored once (``responses``) and referenced by the examples kept from it, as generation stores them
(``inline=True`` copies them into each example instead, as files written before did); 75 % of the
relabels agree, 20 % name another class, 5 % are unparseable; a few examples carry a relabel confidence
or a junk flag.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from promptmix_core.demo import DEMO_TASK
from promptmix_core.store import ProjectStore
from promptmix_core.task import normalize_text

_OPENERS = ["I", "My partner", "We", "Yesterday I", "This morning I", "Last week my son", "Honestly, I",
            "Hi, I", "So I", "Hello, I"]
_MIDDLES = [
    "paid for a veggie burger with my card but only got a chicken one",
    "sent money abroad and the rate looked far worse than the one online",
    "tried to pay at the supermarket and the card was declined twice",
    "was promised a refund for a jacket that still is not on my account",
    "cannot find my debit card anywhere since the train ride",
    "transferred rent to my landlord and he says nothing arrived",
    "was charged in dollars and the conversion seems off",
    "returned a broken kettle and the shop claims it refunded me",
]
_ENDS = ["what should I do?", "can you check?", "is this normal?", "please help.", "why is that?",
         "how long does it take?", "who do I contact?", "can it be fixed today?"]


def example_text(i: int, rng: random.Random) -> str:
    return f"{rng.choice(_OPENERS)} {rng.choice(_MIDDLES)} (case {i}), {rng.choice(_ENDS)}"


def make_review_project(path: str | Path, n: int, *, seed: int = 0, prompt_chars: int = 1500,
                        response_chars: int = 900, inline: bool = False) -> ProjectStore:
    """A project file at ``path`` with the demo task and ``n`` generated, relabelled examples."""
    rng = random.Random(seed)
    store = ProjectStore(path, create=True)
    task = DEMO_TASK
    store.save_task(task)
    classes = task.class_names
    job = store.create_job("generate", {"per_class": n // len(classes), "synthetic": True}, status="done")
    rows = []
    prompt = response = ""
    response_id = None
    now = time.time()
    responses = []
    for i in range(n):
        if i % 5 == 0:
            prompt = ("You write short customer messages for a bank. " * 40)[:prompt_chars] + f" call {i // 5}"
            response = ("1. A short message about a card or a transfer.\n" * 30)[:response_chars]
            if not inline:
                responses.append({"job_id": job, "call_key": f"call{i // 5}", "class_name": classes[i % len(classes)],
                                  "request_index": i // 5, "prompt": prompt, "raw_response": response,
                                  "model": "synthetic", "created_at": now})
        intended = classes[i % len(classes)]
        mixed = classes[(i + 1 + rng.randrange(len(classes) - 1)) % len(classes)]
        text = example_text(i, rng)
        rows.append({
            "job_id": job, "slot": f"s{i}", "text": text, "norm_text": normalize_text(text),
            "intended_label": intended, "mixed_with": mixed, "alpha": round(0.5 + 0.05 * rng.randrange(11), 2),
            "prompt": prompt if inline else "", "raw_response": response if inline else "",
            "response_id": None if inline else len(responses), "model": "synthetic", "created_at": now,
        })
    if responses:
        with store.transaction() as c:  # one row per call; examples point at it (ids 1, 2, ... in order)
            c.executemany(
                "INSERT INTO responses(job_id, call_key, class_name, request_index, prompt, raw_response, model, "
                "created_at) VALUES (:job_id, :call_key, :class_name, :request_index, :prompt, :raw_response, "
                ":model, :created_at)",
                responses,
            )
    store.add_examples(rows)
    ids = [r[0] for r in store._query("SELECT id FROM examples ORDER BY id")]  # noqa: SLF001 - test data
    updates = []
    for k, ex_id in enumerate(ids):
        intended = classes[k % len(classes)]
        u = rng.random()
        if u < 0.75:
            llm, status, raw = intended, "agree", intended
        elif u < 0.95:
            llm = classes[(k + 2) % len(classes)]
            status, raw = "changed", llm
        else:
            llm, status, raw = None, "unparseable", "I think this message is about several things at once."
        conf = round(rng.random(), 3) if rng.random() < 0.3 else None
        flag = "meta-text" if rng.random() < 0.02 else ""
        updates.append((llm, status, raw, conf, flag, llm, llm, ex_id))
    with store.transaction() as c:
        c.executemany(
            "UPDATE examples SET llm_label = ?, relabel_status = ?, llm_raw = ?, relabeled_at = 0, "
            "llm_confidence = ?, flag = ?, label = CASE WHEN ? IS NOT NULL THEN ? ELSE label END WHERE id = ?",
            updates,
        )
    return store
