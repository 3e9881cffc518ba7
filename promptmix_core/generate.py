"""Step 1 of PromptMix: generate borderline examples near class boundaries.

Classes are split at random into groups of ``group_size`` (leftovers join the last group). For each
class Ci the prompt shows every class of its group (description and seeds), then asks for a diverse
set of short examples that each belong alpha% to Ci and (1-alpha)% to Cj, Cj from the same group,
alpha = 0.5 + 0.5*Beta(5, 2) rounded to 0.05. Every call (request ``r`` of class Ci) draws its own
Cj and alpha, and a class's examples come from at least two calls (see :func:`examples_per_call`),
so each class mixes with several partners at several strengths. Each example is first labelled Ci.

Deterministic and resumable. Request ``r`` of class Ci always has the same Cj, alpha and prompt for
a given seed, and its response is cached under sample index ``r``. What is kept is a pure function
of the responses, never of their arrival order:

- a class's candidates are its responses' valid lines in (request, line) order, without seeds or
  repeats; a text that several classes produced goes to the first of them in class order that keeps
  it (each class keeps its first ``per_class`` candidates once the classes before it are final);
- which requests are made is itself decided in a fixed order: request ``r`` of a class is made when
  the results of that class's requests ``0..k-1`` (k <= r, all complete) estimate that it is needed,
  or, once the class and all before it are complete, when cross-class duplicates left it short.

So the same task, settings and seed give the same examples in the same order whatever the timing,
retries or faults, and a re-run replays the cache with zero calls. Requests are issued as soon as a
slot of the client's concurrency frees (one queue for all classes, in (class, request) order), not
in rounds. A class's examples are saved once they are final: the classes before it are final and
every request before theirs is in; a resumed job keeps what the store holds and replays the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .checks import int_in, is_num, raise_problems
from .llm.client import CallSkipped, Completion, LLMClient, LLMError
from .store import StoreError
from .task import Task, normalize_name, normalize_text

log = logging.getLogger(__name__)

from .errors import Cancelled  # noqa: E402,F401 - moved to errors.py; re-exported for old imports


@dataclass
class GenerationConfig:
    per_class: int = 10
    group_size: int = 4
    mixup: bool = True
    seed: int = 0
    examples_per_call: int = 5  # at most ceil(per_class / 2) are asked for: see examples_per_call()
    temperature: float = 1.0
    top_p: float | None = None  # nucleus sampling; None: LOCAL_TOP_P for the bundled model, else not sent
    max_tokens: int = 400
    max_calls_per_class: int | None = None
    max_example_chars: int = 400
    # a targeted round: only these (Ci, Cj) pairs, "write Ci mixed with Cj" (empty: every class, partners
    # from its group). Each Ci listed gets ``per_class`` examples; its partners are the Cj listed with it.
    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        raise_problems(self.problems())
        self.pairs = tuple((str(a), str(b)) for a, b in (self.pairs or ()))

    def problems(self) -> list[str]:
        """Every rule of the generation settings (the one place they live), each problem once."""
        p: list[str] = []
        int_in(p, self.per_class, 1, 10_000, "examples per class")
        int_in(p, self.group_size, 2, None, "the group size")
        if not isinstance(self.mixup, bool):
            p.append(f"mixup must be true or false (got {self.mixup!r})")
        int_in(p, self.seed, 0, None, "the seed")
        int_in(p, self.examples_per_call, 1, 50, "examples per call")
        if not (is_num(self.temperature) and 0 <= self.temperature <= 2):
            p.append(f"the temperature must be between 0 and 2 (got {self.temperature!r})")
        if self.top_p is not None and not (is_num(self.top_p) and 0 < self.top_p <= 1):
            p.append(f"top_p must be above 0 and at most 1 (got {self.top_p!r})")
        int_in(p, self.max_tokens, 16, 32_768, "max_tokens")
        if self.max_calls_per_class is not None:
            int_in(p, self.max_calls_per_class, 1, None, "the most calls per class")
        int_in(p, self.max_example_chars, 10, 20_000, "max_example_chars")
        if not isinstance(self.pairs, (list, tuple)):
            p.append(f"pairs must be a list of [class, other class] pairs (got {self.pairs!r})")
            return p
        for pair in self.pairs:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(c, str) and c for c in pair)):
                p.append(f"a class pair must be two class names (got {pair!r})")
            elif pair[0] == pair[1]:
                p.append(f"a class pair must name two different classes (got {pair!r})")
        if self.pairs and self.mixup is False:
            p.append("class pairs need mixup (they say which class each is mixed with)")
        return p

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
    request: int | None = None  # the call it came from: request r of its class (None: unknown, older data)

    def to_row(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "label": self.label,
            "intended_label": self.intended_label,
            "mixed_with": self.mixed_with,
            "alpha": self.alpha,
            "mixup": self.mixup,
            "request": self.request,
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
    n: int = 5  # examples asked for


def examples_per_call(config: GenerationConfig) -> int:
    """Examples asked for in one call: ``config.examples_per_call``, but at most half of ``per_class``
    (rounded up), so that every class's examples come from at least two calls, each with its own
    partner class and alpha (for 5 per class: 3 per call, two calls, one spare line)."""
    n = int(config.per_class)
    return max(1, min(int(config.examples_per_call), math.ceil(n / 2) if n >= 2 else 1))


# The bundled SmolLM2-135M at temperature 1 with the full distribution wrote 400-token rambles in most
# calls; cutting the tail (top_p 0.9) halved its tokens and its flagged share (docs/LOCAL_MODEL.md).
LOCAL_TOP_P = 0.9


def bundled_model(llm: LLMClient) -> bool:
    """Whether ``llm`` is the bundled SmolLM2-135M on the project's own server."""
    from .llm.local import MODEL_DIR_NAME  # the bundled model's name at its server

    return bool(getattr(llm.config, "local", False) and llm.config.model == MODEL_DIR_NAME)


def sampling_top_p(config: GenerationConfig, llm: LLMClient) -> float | None:
    """``top_p`` sent with generation calls: the config's, else :data:`LOCAL_TOP_P` for the bundled model,
    else none (the endpoint's default)."""
    if config.top_p is not None:
        return float(config.top_p)
    return LOCAL_TOP_P if bundled_model(llm) else None


# Room for one line, in seed lengths: twice the seeds' mean for an endpoint (a good model's lines can be
# long); one for the bundled model, whose usable lines are short and whose rambles ran to max_tokens in
# 8 of 20 calls: capping those calls near 16 + one seed length a line kept 60 of 60 with the same calls
# (78 against 79) in 239 decoding steps instead of 431 (docs/BENCHMARKS.md, offline walk).
LINE_ROOM_SEEDS = 2.0
LOCAL_LINE_ROOM_SEEDS = 1.0


def tokens_per_example(task: Task | None, room: float = LINE_ROOM_SEEDS) -> int:
    """Room for one example line in a generation answer: ``room`` times the seeds' mean length (at
    about 4 characters a token) plus the numbering, between 20 and 100 tokens (48 without seeds)."""
    lengths = [len(ex) for c in (task.classes if task is not None else ()) for ex in c.examples]
    if not lengths:
        return 48
    return max(20, min(100, math.ceil(sum(lengths) / len(lengths) / 4 * room) + 4))


def call_max_tokens(config: GenerationConfig, n: int, task: Task | None = None, bundled: bool = False) -> int:
    """``max_tokens`` of a call asking for ``n`` examples: room for ``n`` lines (:func:`tokens_per_example`:
    twice the seeds' mean length, once for the bundled model), at most ``config.max_tokens``. A model that
    rambles (the bundled 135M one wrote 400 tokens of noise in most calls) is cut off early; the cut last
    line is dropped and the class topped up as usual."""
    room = LOCAL_LINE_ROOM_SEEDS if bundled else LINE_ROOM_SEEDS
    return max(16, min(int(config.max_tokens), 16 + tokens_per_example(task, room) * int(n)))


def stop_sequences(n: int) -> list[str]:
    """Stop strings for an answer numbered 1..n: the start of line n+1 (the model would go on)."""
    return [f"\n{n + 1}.", f"\n{n + 1})"]


def _partner(others: Sequence[str], seed: int, ci: str, r: int) -> str:
    """Partner class of request ``r``: the other classes of the group in a shuffled cycle (a new
    shuffle per cycle), so consecutive calls mix with different partners and all partners come up
    equally often."""
    cycle, pos = divmod(r, len(others))
    order = sorted(others)
    _stable_rng("partners", seed, ci, cycle).shuffle(order)
    return order[pos]


def _alpha(seed: int, ci: str, r: int) -> float:
    """alpha of request ``r``: a fresh draw per call; requests come in pairs (0, 1), (2, 3), ... and
    the second of a pair draws again while it equals the first, so a class's first two calls always
    differ in alpha."""
    rng = _stable_rng("alpha", seed, ci, r)
    a = sample_alpha(rng)
    if r % 2 == 1:
        first = _alpha(seed, ci, r - 1)
        while a == first:
            a = sample_alpha(rng)
    return a


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
    """Request ``r`` of class ``ci``: a pure function of the task, the settings, ``ci`` and ``r``."""
    if config.pairs:  # a targeted round: the prompt shows Ci and the partners it is confused with
        partners = [b for a, b in config.pairs if a == ci]
        group = [ci] + [c for c in task.class_names if c in partners]
    else:
        group = next(g for g in groups if ci in g)
    cj: str | None = None
    alpha: float | None = None
    if config.mixup:
        cj = _partner([c for c in group if c != ci], config.seed, ci, r)
        alpha = _alpha(config.seed, ci, r)
    n = examples_per_call(config)
    messages = build_generation_prompt(task, group, ci, cj, alpha, n, config.mixup)
    return RequestSpec(ci=ci, r=r, cj=cj, alpha=alpha, messages=messages, n=n)


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


def call_key(llm: LLMClient, config: GenerationConfig, spec: RequestSpec) -> str:
    """Identifies one call: endpoint, model, sampling settings, prompt and sample index."""
    blob = json.dumps(
        {"endpoint": llm.config.base_url, "model": llm.config.model, "temperature": config.temperature,
         "max_tokens": config.max_tokens, "messages": spec.messages, "sample": spec.r},
        sort_keys=True, ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


@dataclass
class _Candidate:
    text: str
    norm: str
    r: int
    idx: int


@dataclass
class _Response:
    spec: RequestSpec
    completion: Completion
    key: str
    texts: list[str]


class _ClassRun:
    """One class's requests and examples. Every decision reads only completed results, in order:
    ``prefix`` counts the requests 0..prefix-1 that are all in; nothing after a gap is looked at."""

    MIN_YIELD = 0.05

    def __init__(self, name: str, index: int, n: int, e: int, budget: int, seeds: set[str],
                 pinned: list[GeneratedExample], speculate: bool = True):
        self.name, self.index, self.n, self.e, self.budget = name, index, n, e, budget
        self.speculate = speculate
        self.seeds = seeds
        self.pinned = pinned[:n]  # what the store already holds for this class (resume)
        self.pinned_norms = {normalize_text(p.text) for p in self.pinned}
        self.responses: dict[int, _Response] = {}
        self.prefix = 0  # requests 0..prefix-1 are complete
        self.planned = 0  # requests 0..planned-1 are made (or queued)
        self.queued = 0
        self.lines = 0  # lines asked for by the complete prefix
        self.cands: list[_Candidate] = []  # the prefix's valid lines, no seeds, no repeats, in (r, line) order
        self._cand_norms: set[str] = set()
        self._fresh = 0  # candidates that are not already pinned
        self.kept: list[GeneratedExample] = list(self.pinned)
        self._scan = 0  # candidates already considered for ``kept``
        self.excl: set[str] = set()
        self.writable = False  # the classes before this one are final: ``kept`` may grow (and be saved)
        self.final = len(self.pinned) >= n
        if not self.final:
            self.planned = self._want()

    # ------------------------------------------------------------------ planning
    def have(self) -> int:
        """Examples this class would keep from its prefix, cross-class duplicates not counted yet."""
        return min(self.n, len(self.pinned) + self._fresh)

    def _yield(self, usable: int) -> float:
        """Lines kept per line asked for, as expected of the calls not made yet when planning top-ups.

        A request once made cannot be taken back, so the guess leans optimistic. Until the class has asked
        for ``per_class`` lines, and always for a local model (whose calls cost compute, not waiting), it
        is 1: top-ups only replace what came back short, so no more calls are made than rounds would make.
        After that, for an endpoint, twice the observed share, at most 1: a good model (half or more of
        its lines usable) still gets replacements only; a weak one gets top-ups that cover about half of
        what is missing per wave instead of a long trickle of single calls."""
        if not self.speculate or self.lines < self.n:
            return 1.0
        return min(1.0, max(self.MIN_YIELD, 2 * (usable + self.e) / (self.lines + self.e)))

    def _want(self) -> int:
        """How many requests the complete prefix says this class needs (capped by the budget)."""
        need = self.n - self.have()
        if need <= 0:
            return self.prefix
        return min(self.budget, self.prefix + math.ceil(need / (self.e * self._yield(len(self.cands)))))

    def absorb(self) -> None:
        """Take in the responses that extend the complete prefix, re-planning after each one."""
        while self.prefix in self.responses:
            resp = self.responses[self.prefix]
            for idx, text in enumerate(resp.texts):
                norm = normalize_text(text)
                if not norm or norm in self.seeds or norm in self._cand_norms:
                    continue
                self._cand_norms.add(norm)
                self.cands.append(_Candidate(text, norm, self.prefix, idx))
                if norm not in self.pinned_norms:
                    self._fresh += 1
            self.lines += resp.spec.n
            self.prefix += 1
            if not self.final:
                self.planned = max(self.planned, self._want())

    # ------------------------------------------------------------------- keeping
    def make_writable(self, excl: set[str]) -> None:
        self.writable = True
        self.excl = excl

    def grow(self, example: Callable[[_Candidate, _Response], GeneratedExample]) -> list[GeneratedExample]:
        """Keep the next candidates of the prefix, in order, that no earlier class kept."""
        new: list[GeneratedExample] = []
        while self._scan < len(self.cands) and len(self.kept) < self.n:
            c = self.cands[self._scan]
            self._scan += 1
            if c.norm in self.pinned_norms or c.norm in self.excl:
                continue
            ex = example(c, self.responses[c.r])
            self.kept.append(ex)
            new.append(ex)
        return new

    def settle(self) -> None:
        """Once every planned request is in: final, or a top-up for what cross-class duplicates took."""
        if self.final or not self.writable or self.prefix < self.planned:
            return
        short = self.n - len(self.kept)
        if short > 0 and self.planned < self.budget:
            usable = len(self.kept) - len(self.pinned)
            self.planned = min(self.budget, self.planned + math.ceil(short / (self.e * self._yield(usable))))
        else:
            self.final = True


def target_classes(task: Task, config: GenerationConfig) -> list[str]:
    """The classes a run writes examples for, in task order: every class, or for a targeted round the
    first class of each pair. Raises ``ValueError`` naming pair classes the task does not have."""
    if not config.pairs:
        return list(task.class_names)
    unknown = sorted({c for pair in config.pairs for c in pair if c not in task.class_names})
    if unknown:
        raise ValueError(f"class pairs name classes the task does not have: {', '.join(unknown)}")
    wanted = {a for a, _ in config.pairs}
    return [c for c in task.class_names if c in wanted]


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
    on_kept: Callable[[list[GeneratedExample]], None] | None = None,
) -> GenerationResult:
    """Generate ``config.per_class`` examples for each target class (see the module's docstring);
    with ``store``/``job_id`` every kept example is saved as it becomes final, and what the store
    holds for the job is kept (resume). ``on_kept(examples)`` hears of each example as it becomes
    final, while other calls are still in flight (the CLI embeds them then, for the junk flags and
    the judge; an error in it is logged, never raised). Raises :class:`GenerationFailed` (errors,
    or too few usable answers) or :class:`GenerationCancelled` (``should_stop``), each with what was kept."""
    run = _Generation(task, config, llm, store=store, job_id=job_id, progress=progress, should_stop=should_stop,
                      existing=existing, on_kept=on_kept)
    await run.loop()
    return run.outcome()


def _pinned_examples(previous: Sequence[Any], classes: Sequence[str],
                     seeds: set[str]) -> tuple[dict[str, list[GeneratedExample]], set[str]]:
    """What a resumed job already holds, per class (first come, no seeds, no repeats), and its texts."""
    pinned: dict[str, list[GeneratedExample]] = {c: [] for c in classes}
    stored_norms: set[str] = set()
    for ex in previous:
        norm = normalize_text(ex.text)
        label = ex.intended_label
        if norm in seeds or norm in stored_norms or label not in pinned:
            continue
        stored_norms.add(norm)
        pinned[label].append(
            GeneratedExample(
                text=ex.text, label=ex.intended_label, intended_label=ex.intended_label,
                mixed_with=ex.mixed_with, alpha=ex.alpha, mixup=bool(ex.mixup), slot=ex.slot,
                prompt=getattr(ex, "prompt", "") or "", raw_response=getattr(ex, "raw_response", "") or "",
                model=getattr(ex, "model", ""), endpoint=getattr(ex, "endpoint", ""),
                request=getattr(ex, "request_index", getattr(ex, "request", None)),
            )
        )
    return pinned, stored_norms


class _Generation:
    """One :func:`agenerate` call: the classes' runs, the request queue, and what went wrong."""

    def __init__(self, task: Task, config: GenerationConfig, llm: LLMClient, *, store, job_id: int | None,
                 progress: ProgressFn | None, should_stop: Callable[[], bool] | None, existing: Iterable[Any],
                 on_kept: Callable[[list[GeneratedExample]], None] | None = None):
        self.task, self.config, self.llm, self.on_kept = task, config, llm, on_kept
        self.store, self.job_id, self.progress, self.should_stop = store, job_id, progress, should_stop
        self.groups = make_groups(task.class_names, config.group_size, config.seed)
        classes = target_classes(task, config)
        self.n = config.per_class
        self.e = examples_per_call(config)
        seeds = {normalize_text(ex) for c in task.classes for ex in c.examples}
        # resume: what the store (or ``existing``) holds counts, first, for its class
        previous = list(existing)
        if store is not None and job_id is not None:
            previous += store.list_examples(job_id=job_id)
        # Texts other jobs of the project already hold are never added again: a re-run with the same seed
        # replays the cache, finds every text there, and asks for new ones instead of duplicating them.
        self.other_jobs: set[str] = set()
        if store is not None and job_id is not None:
            self.other_jobs = store.example_norm_texts() - {normalize_text(ex.text) for ex in previous}
        pinned, self.stored_norms = _pinned_examples(previous, classes, seeds)
        speculate = not getattr(llm.config, "local", False)
        self.runs = [_ClassRun(c, i, self.n, self.e, config.call_budget, seeds, pinned[c], speculate=speculate)
                     for i, c in enumerate(classes)]
        self.errors: list[BaseException] = []
        self.store_failed: list[BaseException] = []  # the store could not be written (a full disk): stop saving
        self.total = self.n * len(classes)
        self.cancelled = False
        self.queue: list[tuple[int, int]] = []  # (class index, request): one queue for all classes, in that order
        self.top_p = sampling_top_p(config, llm)  # the same for every call of the job
        self.bundled = bundled_model(llm)  # shorter lines allowed (call_max_tokens)

    # ------------------------------------------------------------------ stopping and progress
    def user_stop(self) -> bool:
        if self.should_stop is not None and self.should_stop():
            self.cancelled = True
        return self.cancelled

    def stop_now(self) -> bool:
        return self.user_stop() or bool(self.errors)

    def report(self, *_: Any) -> None:
        if self.progress is None:
            return
        runs = self.runs
        done = sum(min(self.n, len(r.kept)) if r.writable else r.have() for r in runs)
        p = {"phase": "generate", "done": done, "kept": sum(len(r.kept) for r in runs), "total": self.total,
             "requests": sum(r.prefix for r in runs), **self.llm.stats.as_dict()}
        p["notice"] = self.llm.notice  # "rate limited: waiting 120 s, retry 2 of 4" while it waits
        try:
            self.progress(p)
        except Exception as exc:  # noqa: BLE001 - progress goes to the store: a full disk stops the job
            if not self.store_failed:
                self.store_failed.append(exc)
                self.errors.append(exc)

    # ------------------------------------------------------------------ keeping and saving
    def example(self, c: _Candidate, resp: _Response) -> GeneratedExample:
        spec = resp.spec
        return GeneratedExample(
            text=c.text, label=spec.ci, intended_label=spec.ci, mixed_with=spec.cj, alpha=spec.alpha,
            mixup=self.config.mixup, slot=f"{spec.ci}|{spec.r}|{c.idx}|{resp.key[:8]}",
            prompt=spec.messages[-1]["content"], raw_response=resp.completion.text,
            model=resp.completion.model or self.llm.config.model, endpoint=self.llm.public_url, request=spec.r,
        )

    def save(self, run: _ClassRun, new: list[GeneratedExample]) -> None:
        """Each response once (``responses``), then the examples kept from it, in one transaction."""
        store, job_id, llm = self.store, self.job_id, self.llm
        if store is None or job_id is None or not new or self.store_failed:
            return
        by_request: dict[int, list[GeneratedExample]] = {}
        for ex in new:
            by_request.setdefault(ex.request, []).append(ex)
        for r, exs in by_request.items():
            resp = run.responses[r]
            with store.transaction():
                response_id = store.add_response({
                    "job_id": job_id, "call_key": resp.key, "class_name": run.name, "request_index": r,
                    "mixed_with": resp.spec.cj, "alpha": resp.spec.alpha,
                    "prompt": resp.spec.messages[-1]["content"], "raw_response": resp.completion.text,
                    "finish_reason": resp.completion.finish_reason,
                    "model": resp.completion.model or llm.config.model,
                    "endpoint": llm.public_url, "prompt_tokens": resp.completion.prompt_tokens,
                    "completion_tokens": resp.completion.completion_tokens,
                })
                store.add_examples([
                    {**asdict(x), "prompt": "", "raw_response": "", "job_id": job_id,
                     "norm_text": normalize_text(x.text), "response_id": response_id}
                    for x in exs
                ])

    def advance(self) -> None:
        """Re-plan, keep and save in class order; reads only complete prefixes, so the outcome never
        depends on the order in which responses arrived."""
        earlier_final = True
        # texts the store holds (this job's, and other jobs' of the project) and those kept by earlier
        # (final) classes
        excl = self.stored_norms | self.other_jobs
        for run in self.runs:
            run.absorb()
            if earlier_final and not run.writable:
                run.make_writable(set(excl))
            if run.writable:
                new = run.grow(self.example)
                try:
                    self.save(run, new)
                except Exception as exc:  # noqa: BLE001 - a full disk: stop; what is kept stays in memory
                    self.store_failed.append(exc)
                    self.errors.append(exc)
                self.tell_kept(new)
                run.settle()
            while run.queued < run.planned:
                heapq.heappush(self.queue, (run.index, run.queued))
                run.queued += 1
            earlier_final = earlier_final and run.final
            excl.update(normalize_text(x.text) for x in run.kept)

    def tell_kept(self, new: list[GeneratedExample]) -> None:
        if new and self.on_kept is not None:
            try:
                self.on_kept(new)
            except Exception as exc:  # noqa: BLE001 - a listener never stops the generation
                log.warning("on_kept failed: %s", exc)

    # ------------------------------------------------------------------ calling
    async def call(self, spec: RequestSpec) -> Completion:
        # abort: not sent once anything failed or Stop was pressed; stop: abandoned in flight on Stop
        return await self.llm.achat(
            spec.messages, temperature=self.config.temperature, top_p=self.top_p,
            max_tokens=call_max_tokens(self.config, spec.n, self.task, self.bundled),
            stop_sequences=stop_sequences(spec.n),
            sample_index=spec.r, abort=self.stop_now, stop=self.user_stop if self.should_stop is not None else None,
        )

    def take(self, run: _ClassRun, spec: RequestSpec, fut: asyncio.Future) -> None:
        """A finished call: its parsed lines join the class's responses, or its error is kept."""
        try:
            res = fut.result()
        except CallSkipped:
            return
        except Exception as exc:  # noqa: BLE001 - kept, reported once all in flight are done
            ours = isinstance(exc, (LLMError, StoreError))  # a full disk says so in words
            self.errors.append(exc if ours else LLMError(f"{type(exc).__name__}: {exc}"))
            return
        texts = parse_examples(res.text, task=self.task, truncated=res.finish_reason == "length",
                               max_chars=self.config.max_example_chars)
        run.responses[spec.r] = _Response(spec, res, call_key(self.llm, self.config, spec), texts)

    async def loop(self) -> None:
        """Issue requests as slots free (one queue, class order) until none is planned or it stops."""
        # twice the client's concurrency in tasks: the client's semaphore keeps ``concurrency`` on the wire, and
        # the next requests have done their cache look-up and wait at the semaphore, ready when a slot frees
        limit = 2 * max(1, int(self.llm.config.concurrency))
        in_flight: dict[asyncio.Future, tuple[_ClassRun, RequestSpec]] = {}
        self.advance()
        self.report()
        previous_notice = self.llm.on_notice
        self.llm.on_notice = self.report  # a wait ("rate limited: waiting 120 s") reaches the progress as it starts
        try:
            while True:
                # the next request starts as soon as a slot frees, whichever class it is for
                while self.queue and len(in_flight) < limit and not self.stop_now():
                    index, r = heapq.heappop(self.queue)
                    spec = plan_request(self.task, self.groups, self.config, self.runs[index].name, r)
                    in_flight[asyncio.ensure_future(self.call(spec))] = (self.runs[index], spec)
                if not in_flight:
                    break
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    run, spec = in_flight.pop(fut)
                    self.take(run, spec, fut)
                self.advance()
                self.report()
        finally:
            self.llm.on_notice = previous_notice

    def outcome(self) -> GenerationResult:
        """The result, or the error that ended the run (each carrying what was kept)."""
        n, runs = self.n, self.runs
        examples = [x for run in runs for x in run.kept]
        shortfalls = {run.name: n - len(run.kept) for run in runs if len(run.kept) < n}
        stats = {**self.llm.stats.as_dict(), "requests": sum(run.prefix for run in runs),
                 "requests_per_class": {run.name: run.prefix for run in runs}, "examples_per_call": self.e}
        result = GenerationResult(examples=examples, stats=stats, shortfalls=shortfalls, requested=self.total)
        if self.errors:
            first = self.errors[0]
            raise GenerationFailed(str(first), result) from first
        if self.cancelled:
            raise GenerationCancelled("generation was stopped; what was finished is kept", result)
        if shortfalls:
            detail = ", ".join(f"{c} ({n - k} of {n})" for c, k in shortfalls.items())
            raise GenerationFailed(
                f"the model gave too few usable examples within {self.config.call_budget} calls per class for: "
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
