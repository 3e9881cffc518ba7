"""One job status model for every face: a job row and its progress in words.

The sidebar, the Generate and Train pages and the CLI's progress lines all read a job through
:func:`job_view`, so they cannot disagree: one word for the state, one phrase for the phase (never a
raw phase name such as ``loading-model``), one ``done / total``, and LLM calls and tokens counted one
way (:func:`usage_line`, the same numbers the job's progress holds at the end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# a job's status (the store's ``jobs.status``) in words
STATE_WORDS = {
    "queued": "waiting to start",
    "running": "running",
    "done": "finished",
    "failed": "failed",
    "cancelled": "stopped",
}

# every phase a step reports (``progress["phase"]``) in words; a phase not listed reads as "Working"
PHASE_WORDS = {
    "queued": "Waiting for the worker",
    "starting": "Starting",
    "loading-model": "Loading the local model",
    "generate": "Generating",
    "flag": "Flagging probable junk",
    "relabel": "Relabelling",
    "judge": "Checking with the student judge",
    "preparing": "Preparing the data",
    "embedding": "Embedding the texts",
    "contrastive": "Training the sentence encoder",
    "training": "Training",
    "control": "Training the seeds-only control",
    "done": "Finished",
    "stopped": "Stopped",
    "cancelled": "Stopped",
    "failed": "Failed",
}

KIND_WORDS = {"generate": "Generation", "relabel": "Relabel", "train": "Training"}

USAGE_KEYS = ("calls", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens")


def _int(v: Any) -> int:
    try:
        return int(v or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Usage:
    """LLM usage of a job, counted one way: what the job's client counted over the whole job."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_progress(cls, p: Mapping[str, Any]) -> "Usage":
        cost = p.get("cost")
        try:
            cost = None if cost is None else float(cost)
        except (TypeError, ValueError):
            cost = None
        return cls(**{k: _int(p.get(k)) for k in USAGE_KEYS}, cost=cost)

    @property
    def any(self) -> bool:
        return bool(self.calls or self.cache_hits or self.failures or self.tokens)


def usage_line(stats: Mapping[str, Any] | Usage) -> str:
    """``calls 67, cache hits 0, retries 0, failures 0, tokens 1,234 (1,000 prompt + 234 completion)``:
    the one wording of LLM usage, for a job summary, a CLI line and the job card's numbers alike."""
    u = stats if isinstance(stats, Usage) else Usage.from_progress(stats)
    cost = f", cost ${u.cost:.4f}" if u.cost is not None else ""
    return (f"calls {u.calls}, cache hits {u.cache_hits}, retries {u.retries}, failures {u.failures}, "
            f"tokens {u.tokens:,} ({u.prompt_tokens:,} prompt + {u.completion_tokens:,} completion){cost}")


@dataclass(frozen=True)
class JobView:
    """What a face shows of one job."""

    id: int
    kind: str
    status: str            # the store's status: queued, running, done, failed, cancelled
    state: str             # the status in words: "waiting to start", "running", "finished", ...
    phase: str             # the raw phase (for code; never shown)
    phase_words: str       # "Loading the local model", "Relabelling", ...
    done: int | None       # examples (generate/relabel) or steps (train) done, None when unknown
    total: int | None
    unit: str              # "examples" or "steps"
    usage: Usage
    notice: str            # "rate limited: waiting 120 s, retry 2 of 4" while it runs
    message: str           # the job's one-line message (its summary once it ended)
    active: bool

    @property
    def title(self) -> str:
        return f"{KIND_WORDS.get(self.kind, self.kind.capitalize())} job #{self.id}"

    @property
    def fraction(self) -> float:
        if not self.total:
            return 1.0 if self.status == "done" else 0.0
        return max(0.0, min((self.done or 0) / self.total, 1.0))

    @property
    def counts(self) -> str:
        """``12 / 40 examples`` or "" when the step has no count yet."""
        if not self.total:
            return ""
        return f"{self.done or 0} / {self.total} {self.unit}"

    @property
    def progress_text(self) -> str:
        """The progress bar's words: ``Relabelling: 12 / 40 examples`` or ``Loading the local model…``."""
        if self.counts:
            return f"{self.phase_words}: {self.counts}"
        return f"{self.phase_words}…" if self.active else self.phase_words

    def line(self) -> str:
        """One line for a status bar (sidebar, CLI): ``Generation job #1 is running · Relabelling 12 / 40 examples``."""
        head = f"{self.title} is {self.state}"
        if self.status == "queued":
            return head
        if self.active:
            return f"{head} · {self.phase_words}" + (f" {self.counts}" if self.counts else "")
        return head + (f" · {self.counts}" if self.counts else "")


def _phase(kind: str, job_status: str, p: Mapping[str, Any], active: bool) -> str:
    phase = str(p.get("phase") or "")
    if job_status == "queued":
        return "queued"
    if not active:
        # an ended job reads as its status, whatever the last progress row said
        return {"done": "done", "failed": "failed", "cancelled": "stopped"}.get(job_status, phase or job_status)
    if phase in ("done", "stopped", "failed", "cancelled"):
        return "starting"  # a running job whose last row is old (a resume): it is starting again
    if not phase:  # rows of earlier versions carry counts without a phase
        counted = p.get("total") or p.get("total_steps")
        return {"train": "training", "relabel": "relabel"}.get(kind, "generate") if counted else "starting"
    return phase


def sidebar_poll_seconds(view: JobView | None, own_panel: bool, every: float = 2.0) -> float | None:
    """How often the sidebar's job line rereads the job: on every page while a job waits for its
    worker (so "waiting to start" never stays on screen while it runs), and while it runs except on
    the page that follows it in its own live panel (which reruns the page when the job ends)."""
    if view is None or not view.active:
        return None
    if own_panel and view.status != "queued":
        return None
    return every


def job_view(job: Any) -> JobView:
    """The view of a job row (:class:`promptmix_core.store.Job` or anything with its fields)."""
    p: Mapping[str, Any] = getattr(job, "progress", None) or {}
    status = str(job.status)
    active = status in ("queued", "running")
    kind = str(job.kind)
    phase = _phase(kind, status, p, active)
    if kind == "train":
        unit = "steps"
        if phase == "embedding":
            done, total, unit = p.get("embedded"), p.get("to_embed"), "texts"
        else:
            done, total = p.get("step"), p.get("total_steps") or p.get("steps")
    else:
        unit = "examples"
        done, total = p.get("done"), p.get("total")
    done = None if done is None else _int(done)
    total = _int(total) or None
    if phase in ("loading-model", "starting", "queued", "preparing"):
        done = total = None  # nothing counted yet: no "0 / 0"
    return JobView(
        id=int(job.id), kind=kind, status=status, state=STATE_WORDS.get(status, status), phase=phase,
        phase_words=PHASE_WORDS.get(phase, "Working"), done=done, total=total, unit=unit,
        usage=Usage.from_progress(p), notice=str(p.get("notice") or "") if active else "",
        message=str(getattr(job, "message", "") or ""), active=active,
    )
