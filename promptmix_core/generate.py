"""Step 1 of PromptMix: generate borderline examples near class boundaries.

Classes are split at random into groups of ``group_size`` (leftovers join the last group). For each
class Ci the prompt shows every class of its group (description and seeds), then asks for a diverse
set of short examples that each belong alpha% to Ci and (1-alpha)% to Cj, Cj drawn from the same
group, alpha = 0.5 + 0.5*Beta(5, 2) rounded to 0.05 (one draw per prompt). Each example is first
labelled Ci. Several examples are asked for per call and every valid unique one is kept until the
class has exactly ``per_class``.

Reproducible and resumable: request ``r`` of class Ci always has the same Cj, alpha and prompt for a
given seed, and its response is cached under sample index ``r``; a re-run replays the cache (zero
calls) and a resumed job skips what the store already holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .llm.client import CallSkipped, Completion, LLMClient, LLMError
from .task import Task, normalize_name, normalize_text


from .errors import Cancelled  # noqa: E402,F401 - moved to errors.py; re-exported for old imports


@dataclass
class GenerationConfig:
    per_class: int = 10
    group_size: int = 4
    mixup: bool = True
    seed: int = 0
    examples_per_call: int = 5
    temperature: float = 1.0
    max_tokens: int = 400
    max_calls_per_class: int | None = None
    max_example_chars: int = 400

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= int(self.per_class) <= 10_000:
            problems.append("examples per class must be between 1 and 10,000")
        if int(self.group_size) < 2:
            problems.append("the group size must be at least 2")
        if not 1 <= int(self.examples_per_call) <= 50:
            problems.append("examples per call must be between 1 and 50")
        if not 0.0 <= float(self.temperature) <= 2.0:
            problems.append("the temperature must be between 0 and 2")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def call_budget(self) -> int:
        """Most calls spent on one class (the paper's reference spends about 4 per kept example)."""
        return self.max_calls_per_class or 4 * self.per_class + 5


@dataclass
class GeneratedExample:
    text: str
    label: str
    intended_label: str
    mixed_with: str | None
    alpha: float | None
    mixup: bool
    slot: str
    prompt: str = ""
    raw_response: str = ""
    model: str = ""
    endpoint: str = ""
    created_at: float = field(default_factory=time.time)

    def to_row(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "intended_label": self.intended_label,
            "mixed_with": self.mixed_with,
            "alpha": self.alpha,
            "mixup": self.mixup,
        }


@dataclass
class GenerationResult:
    examples: list[GeneratedExample]
    stats: dict[str, Any]
    shortfalls: dict[str, int]
    requested: int

    @property
    def kept(self) -> int:
        return len(self.examples)

    @property
    def calls_per_kept(self) -> float:
        return self.stats.get("calls", 0) / max(1, self.kept)

    @property
    def tokens_per_kept(self) -> float:
        return self.stats.get("tokens", 0) / max(1, self.kept)


# ----------------------------------------------------------------------------- the method
from .alpha import sample_alpha  # noqa: E402,F401 - the one alpha formula lives in alpha.py


def make_groups(class_names: Sequence[str], group_size: int, seed: int) -> list[list[str]]:
    """Split classes at random into groups of ``group_size``; leftovers join the last group."""
    names = list(class_names)
    random.Random(f"groups|{seed}").shuffle(names)
    n_groups = max(1, len(names) // group_size)
    groups = [names[i * group_size : (i + 1) * group_size] for i in range(n_groups)]
    groups[-1].extend(names[n_groups * group_size :])
    return groups


def _stable_rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class RequestSpec:
    ci: str
    r: int
    cj: str | None
    alpha: float | None
    messages: list[dict[str, str]]


# Worded for small instruct models too (measured with the bundled SmolLM2-135M: benchmarks/prompt_tuning.py,
# docs/LOCAL_MODEL.md): say what an example is (a text like the seeds), and what not to write.
SYSTEM_PROMPT = (
    "You write short, realistic texts for training a text classifier, one per line, numbered. "
    "Write only the texts: never explain them, never mention categories, percentages or examples."
)


def build_generation_prompt(
    task: Task, group: Sequence[str], ci: str, cj: str | None, alpha: float | None, n: int, mixup: bool
) -> list[dict[str, str]]:
    lines = [
        "Consider the task of classifying text into the following categories. "
        "Each category has a description and some examples.",
        "",
    ]
    for name in group:
        spec = task.get(name)
        lines.append(f"Category: {spec.name}")
        if spec.description:
            lines.append(f"Description: {spec.description}")
        lines.append("Examples:")
        lines.extend(f"- {ex}" for ex in spec.examples)
        lines.append("")
    if mixup and cj is not None and alpha is not None:
        a = int(round(alpha * 100))
        lines.append(
            f'Generate a diverse set of {n} short examples where each example belongs {a}% to category '
            f'"{ci}" and {100 - a}% to category "{cj}".'
        )
        lines.append(f'Each example is a new text like the examples above: mostly "{ci}", partly "{cj}".')
    else:
        lines.append(f'Generate a diverse set of {n} short examples that belong to category "{ci}".')
        lines.append("Each example is a new text like the examples above.")
    lines.append("Do not copy the examples above and do not name the categories.")
    lines.append(f"Write each example on its own line, numbered 1 to {n}. Write only the examples.")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


def plan_request(task: Task, groups: Sequence[Sequence[str]], config: GenerationConfig, ci: str, r: int) -> RequestSpec:
    group = next(g for g in groups if ci in g)
    rng = _stable_rng("request", config.seed, ci, r)
    cj: str | None = None
    alpha: float | None = None
    if config.mixup:
        others = [c for c in group if c != ci]
        cj = rng.choice(others)
        alpha = sample_alpha(rng)
    messages = build_generation_prompt(task, group, ci, cj, alpha, config.examples_per_call, config.mixup)
    return RequestSpec(ci=ci, r=r, cj=cj, alpha=alpha, messages=messages)


# ------------------------------------------------------------------------------- parsing
_PREFIX = re.compile(
    r"""^\s*(?:
        \(?\d{1,3}\s*[\.\):\-\]]\s*            # 1.  1)  (1)  1:  1-
      | [\-\*\u2022\u2023\u25e6\u2043\u2219]\s+  # bullets
      | (?:example|utterance|sentence|text|question|sample)\s*\#?\s*\d*\s*[:\.\)\-]\s*
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_TRAILING_PCT = re.compile(r"\s*[\(\[\{][^\(\)\[\]\{\}]*\d+(?:\.\d+)?\s*%[^\(\)\[\]\{\}]*[\)\]\}]\s*$")
_LEADING_PCT = re.compile(r"^\s*[\(\[\{][^\(\)\[\]\{\}]*\d+(?:\.\d+)?\s*%[^\(\)\[\]\{\}]*[\)\]\}]\s*[:\-]?\s*")
_DASH_PCT = re.compile(r"\s+[\-\u2013\u2014]+\s*\d+(?:\.\d+)?\s*%.*$")
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb`"
_CHATTER = re.compile(
    r"^(?:sure|certainly|of course|sorry|i(?:'m| am) sorry|i can(?:'|no)t|as an ai|here (?:are|is)|below (?:are|is)|i hope|note:|these examples|"
    r"generate a diverse|consider the task|category:|description:|examples?:|okay|ok[,.!])",
    re.IGNORECASE,
)


def clean_line(line: str) -> str:
    text = line.strip()
    for _ in range(3):  # "1. Example 2: ..." and similar stacked prefixes
        new = _PREFIX.sub("", text, count=1)
        if new == text:
            break
        text = new
    text = text.strip()
    text = _LEADING_PCT.sub("", text)
    text = _TRAILING_PCT.sub("", text)
    text = _DASH_PCT.sub("", text)
    text = text.strip().strip("*_").strip()
    if not text:  # a line of only markup ("**", "---")
        return ""
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    elif text[:1] in _QUOTES and text.count(text[0]) == 1:
        text = text[1:].strip()
    elif text[-1:] in _QUOTES and text.count(text[-1]) == 1:
        text = text[:-1].strip()
    return text


def parse_examples(
    content: str,
    *,
    task: Task | None = None,
    truncated: bool = False,
    max_chars: int = 400,
    max_lines: int = 200,
) -> list[str]:
    """Pull example texts out of an LLM answer; drops chatter, echoed instructions, class names."""
    if not content:
        return []
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if truncated and lines:
        lines = lines[:-1]  # the last line may be cut mid-sentence
    banned: set[str] = set()
    if task is not None:
        for c in task.classes:
            banned.add(normalize_text(c.name))
            banned.add(normalize_name(c.name))
            if c.description:
                banned.add(normalize_text(c.description))
    out = []
    for raw in lines[:max_lines]:
        if not raw.strip():
            continue
        stripped = raw.strip()
        if _CHATTER.match(clean_line(stripped)) or _CHATTER.match(stripped):
            continue
        if stripped.endswith(":") and len(stripped) < 120:
            continue
        text = clean_line(stripped)
        if len(text) < 3 or len(text) > max_chars:
            continue
        if not re.search(r"[^\W\d_]", text):  # no letters at all
            continue
        norm = normalize_text(text)
        if not norm or norm in banned or normalize_name(text) in banned:
            continue
        if re.search(r"\d+\s*%\s*to\s*(?:category|class)", text, re.IGNORECASE):
            continue
        out.append(text)
    return out


# ---------------------------------------------------------------------------- the runner
ProgressFn = Callable[[dict[str, Any]], None]


async def agenerate(
    task: Task,
    config: GenerationConfig,
    llm: LLMClient,
    *,
    store=None,
    job_id: int | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    existing: Iterable[Any] = (),
) -> GenerationResult:
    groups = make_groups(task.class_names, config.group_size, config.seed)
    n = config.per_class
    seen: set[str] = {normalize_text(ex) for c in task.classes for ex in c.examples}
    kept: dict[str, list[GeneratedExample]] = {c: [] for c in task.class_names}
    previous = list(existing)
    if store is not None and job_id is not None:
        previous += store.list_examples(job_id=job_id)
    for ex in previous:  # resume: what the store holds counts
        label = ex.intended_label
        if label in kept and len(kept[label]) < n and normalize_text(ex.text) not in seen:
            seen.add(normalize_text(ex.text))
            kept[label].append(
                GeneratedExample(
                    text=ex.text, label=ex.intended_label, intended_label=ex.intended_label,
                    mixed_with=ex.mixed_with, alpha=ex.alpha, mixup=bool(ex.mixup), slot=ex.slot,
                    prompt=getattr(ex, "prompt", ""), raw_response=getattr(ex, "raw_response", ""),
                    model=getattr(ex, "model", ""), endpoint=getattr(ex, "endpoint", ""),
                )
            )
    requests_made = {c: 0 for c in task.class_names}
    errors: list[BaseException] = []
    total = n * len(task.classes)
    cancelled = False

    def report() -> None:
        if progress is not None:
            done = sum(len(v) for v in kept.values())
            progress({"phase": "generate", "done": done, "kept": done, "total": total, **llm.stats.as_dict()})

    def stop_now() -> bool:
        nonlocal cancelled
        if should_stop is not None and should_stop():
            cancelled = True
        return cancelled or bool(errors)

    async def call(spec: RequestSpec) -> Completion:
        return await llm.achat(
            spec.messages, temperature=config.temperature, max_tokens=config.max_tokens, sample_index=spec.r,
            abort=stop_now,
        )

    async def run_class(ci: str) -> None:
        r = 0
        while len(kept[ci]) < n and not stop_now():
            budget = config.call_budget - requests_made[ci]
            if budget <= 0:
                return
            needed = n - len(kept[ci])
            n_req = max(1, min(budget, math.ceil(needed / config.examples_per_call)))
            specs = [plan_request(task, groups, config, ci, r + i) for i in range(n_req)]
            r += n_req
            requests_made[ci] += n_req
            tasks = [asyncio.ensure_future(call(s)) for s in specs]
            for spec, fut in zip(specs, tasks):  # in request order, each as soon as it is in
                try:
                    res = await fut
                except CallSkipped:
                    continue
                except Exception as exc:  # noqa: BLE001 - kept, reported once all in flight are done
                    errors.append(exc if isinstance(exc, LLMError) else LLMError(f"{type(exc).__name__}: {exc}"))
                    continue
                texts = parse_examples(
                    res.text, task=task, truncated=res.finish_reason == "length", max_chars=config.max_example_chars
                )
                new: list[GeneratedExample] = []
                for idx, text in enumerate(texts):
                    if len(kept[ci]) >= n:
                        break
                    norm = normalize_text(text)
                    if norm in seen:
                        continue
                    seen.add(norm)
                    ex = GeneratedExample(
                        text=text, label=ci, intended_label=ci, mixed_with=spec.cj, alpha=spec.alpha,
                        mixup=config.mixup, slot=f"{ci}|{spec.r}|{idx}",
                        prompt=spec.messages[-1]["content"], raw_response=res.text,
                        model=llm.config.model, endpoint=llm.config.base_url,
                    )
                    kept[ci].append(ex)
                    new.append(ex)
                if new and store is not None and job_id is not None:
                    store.add_examples(
                        [{**asdict(e), "job_id": job_id, "norm_text": normalize_text(e.text)} for e in new]
                    )
                report()

    report()
    await asyncio.gather(*(run_class(c) for c in task.class_names))
    examples = [e for c in task.class_names for e in kept[c]]
    shortfalls = {c: n - len(v) for c, v in kept.items() if len(v) < n}
    result = GenerationResult(examples=examples, stats=llm.stats.as_dict(), shortfalls=shortfalls, requested=total)
    if errors:
        first = errors[0]
        raise GenerationFailed(str(first), result) from first
    if cancelled:
        raise GenerationCancelled("generation was stopped; what was finished is kept", result)
    if shortfalls:
        detail = ", ".join(f"{c} ({n - k} of {n})" for c, k in shortfalls.items())
        raise GenerationFailed(
            f"the model gave too few usable examples within {config.call_budget} calls per class for: "
            f"{detail}. Try again (the cache keeps what was made), raise --max-calls, or use a stronger model",
            result,
        )
    return result


class GenerationFailed(LLMError):
    """Generation stopped early; ``result`` holds what was kept (also saved in the store)."""

    def __init__(self, message: str, result: GenerationResult):
        super().__init__(message)
        self.result = result


class GenerationCancelled(Cancelled):
    def __init__(self, message: str, result: GenerationResult):
        super().__init__(message)
        self.result = result


def generate(task: Task, config: GenerationConfig, llm: LLMClient, **kwargs: Any) -> GenerationResult:
    """Synchronous entry point; see :func:`agenerate`."""
    return llm.run_sync(agenerate(task, config, llm, **kwargs))
