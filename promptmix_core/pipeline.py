"""Generation and relabeling as project steps: what the worker and ``promptmix generate --project``
run for a job. Each takes a typed spec and a :class:`~promptmix_core.lifecycle.StepContext`; they
write examples and relabels into the store, never the job's row (that is
:class:`~promptmix_core.lifecycle.JobLifecycle`'s)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

from .errors import Cancelled, TaskError
from .generate import GenerationFailed, GenerationResult, agenerate
from .lifecycle import StepContext, Throttle  # noqa: F401 - Throttle re-exported for old imports
from .llm import LLMClient, resolve_llm_config
from .paths import llm_cache_path
from .relabel import RelabelConfig, arelabel
from .specs import GenerationSpec, LLMSpec, RelabelSpec
from .store import Job, ProjectStore, StoreError
from .task import Task, validate

log = logging.getLogger(__name__)


def stop_checker(store: ProjectStore, job_id: int):
    """A cheap, sticky ``should_stop`` on a job's cancel flag (see :class:`StepContext`)."""
    return StepContext(stop_flag=lambda: store.cancel_requested(job_id)).should_stop


def llm_for(spec: LLMSpec, api_key: str | None = None, progress: Callable[[str], None] | None = None) -> LLMClient:
    """The client a job uses: its endpoint settings, and the one LLM cache of every entry point.
    ``progress(message)`` hears about a cold start of the bundled model (see :func:`model_loading_reporter`)."""
    return LLMClient(resolve_llm_config(api_key=api_key, progress=progress, **spec.options()),
                     cache_path=llm_cache_path())


def model_loading_reporter(ctx: StepContext) -> Callable[[str], None]:
    """Progress sink for a cold start of the bundled model: the job's message becomes "loading the
    local model, 5 s..." (progress phase ``loading-model``) instead of a bare "starting"."""

    def report(message: str) -> None:
        ctx.progress({"phase": "loading-model", "done": 0, "total": 0, "message": message}, force=True)
        ctx.note(message)

    return report


def llm_for_job(store: ProjectStore, config: dict[str, Any], api_key: str | None) -> LLMClient:
    """Kept for callers of earlier versions: the LLM of a stored generation job config."""
    return llm_for(GenerationSpec.from_stored(config).llm, api_key)


def _task(store: ProjectStore) -> Task:
    task = store.load_task()
    if task is None:
        raise TaskError("the project has no task yet: add classes and seeds first")
    validate(task)
    return task


@dataclass
class GenerationOutcome:
    result: GenerationResult
    summary: str


def embedding_warmer(task: Task):
    """A :class:`.embed.Warmer` already given the texts the junk flags and the judge embed for the
    classes (names, descriptions, seeds); hand it each example as it is kept (``add_examples``)."""
    from .embed import Warmer

    warmer = Warmer()
    texts: list[str] = []
    for c in task.classes:
        texts += [c.name.replace("_", " "), *([c.description] if c.description else []), *c.examples]
    warmer.add(texts)
    return warmer


def run_generation(store: ProjectStore, job_id: int, spec: GenerationSpec, ctx: StepContext,
                   llm: LLMClient, *, label_policy: str = "auto") -> GenerationOutcome:
    """Generate (and, with ``spec.relabel``, relabel and judge: :func:`judge_job`) for job ``job_id``;
    resumes what the store holds. Raises ``GenerationFailed`` / ``Cancelled`` with what was kept saved."""
    task = _task(store)
    ctx.progress({"phase": "starting", "done": 0, "total": 0}, force=True)
    ctx.note(f"generating with {llm.config.model} at {llm.config.base_url}")

    # the junk flags (and the judge after a relabel) need the embeddings of the classes and of every
    # example: they are made in a thread as the examples come, while the LLM calls are in flight
    warmer = embedding_warmer(task) if spec.flag_junk or spec.relabel else None

    async def run() -> GenerationOutcome:
        result = await agenerate(task, spec.generation, llm, store=store, job_id=job_id,
                                 progress=ctx.progress, should_stop=ctx.should_stop,
                                 on_kept=warmer.add_examples if warmer else None)
        if warmer is not None:
            warmer.close()
        summary = (
            f"kept {result.kept}/{result.requested} examples; generation "
            f"{result.calls_per_kept:.2f} calls and {result.tokens_per_kept:.0f} tokens per kept example"
        )
        if spec.flag_junk:
            summary += "; " + flag_job(store, job_id, task, ctx)
        if spec.relabel:
            summary += "; " + await relabel_pending(store, job_id, task, llm, spec.relabel_config(), ctx)
            summary += "; " + await judge_job(store, job_id, task, llm, spec.relabel_config(), ctx,
                                              policy=label_policy)
        # the job's LLM use counted once, at the end (generation, relabel, judge): the same numbers as the
        # job's last progress row, so the summary and the job card agree (promptmix_core.job_status)
        summary += "; " + llm.stats.summary()
        ctx.progress({"phase": "done", "done": result.kept, "total": result.requested, "kept": result.kept,
                      **llm.stats.as_dict()}, force=True)
        return GenerationOutcome(result, summary)

    try:
        return llm.run_sync(run())
    except (GenerationFailed, Cancelled) as exc:
        if spec.flag_junk and not isinstance(exc.__cause__, StoreError):  # a full disk or a read-only folder: nothing to write to
            with contextlib.suppress(Exception):  # what was kept gets its flags too; never mask the error
                flag_job(store, job_id, task, ctx)
        try:
            ctx.progress({"phase": "stopped", **llm.stats.as_dict(), "done": store.count_examples(job_id)["total"]},
                         force=True)
        except StoreError:  # a full disk: the job's final message matters more
            pass
        raise


def flag_job(store: ProjectStore, job_id: int, task: Task, ctx: StepContext | None = None) -> str:
    """Flag the probable junk among the job's examples (``promptmix_core.flags``; saved in
    ``examples.flag``, nothing is removed). Returns a one-line summary."""
    from .flags import flag_project_examples

    if ctx is not None:
        ctx.progress({"phase": "flag", "done": 0, "total": store.count_examples(job_id)["total"]}, force=True)
    s = flag_project_examples(store, task, job_id=job_id)
    parts = ", ".join(f"{k} {v}" for k, v in s["by_reason"].items() if v)
    return f"flagged {s['flagged']} of {s['texts']} as probable junk" + (f" ({parts})" if parts else "")


async def relabel_pending(store: ProjectStore, source_job: int | None, task: Task, llm: LLMClient,
                          config: RelabelConfig, ctx: StepContext) -> str:
    """Relabel the examples of ``source_job`` (all jobs when None) not relabelled yet; each answer
    is saved the moment it arrives. Returns a summary of the shares changed and unparseable."""
    pending = store.list_examples(job_id=source_job, relabel_status="none")
    total = store.count_examples(source_job)["total"]
    already = total - len(pending)

    def on_result(i: int, res) -> None:
        store.set_relabel(pending[i].id, llm_label=res.llm_label, status=res.status, raw=res.raw, prompt=res.prompt,
                          confidence=res.confidence)

    def relabel_progress(p: dict[str, Any]) -> None:
        ctx.progress({**p, "done": already + p["done"], "total": total})

    await arelabel(task, pending, llm, config, progress=relabel_progress, should_stop=ctx.should_stop,
                   on_result=on_result)
    counts = store.count_examples(source_job)
    n = max(1, counts["relabelled"])
    return (f"relabelled {counts['relabelled']}: {counts['changed'] / n:.0%} changed, "
            f"{counts['unparseable'] / n:.0%} unparseable")


async def judge_job(store: ProjectStore, source_job: int | None, task: Task, llm: LLMClient | None,
                    config: RelabelConfig | None, ctx: StepContext | None = None, *, policy: str = "auto") -> str:
    """The second judge (:mod:`promptmix_core.judge`) on the examples of ``source_job`` (all when None):
    its suggestions saved (``examples.judge_label/judge_confidence``); which judge gives the default
    label chosen (:func:`~promptmix_core.judge.achoose_label_source`) and saved as the project setting
    ``label_source`` with its reason; when the judge was chosen, the label of every example still
    pending review becomes the judge's (reviewed ones keep theirs). Returns a one-line summary."""
    import json
    import time

    from .judge import LABEL_SOURCE_META, EmbeddingJudge, achoose_label_source

    examples = store.list_examples(job_id=source_job)
    if ctx is not None:
        ctx.progress({"phase": "judge", "done": 0, "total": len(examples)}, force=True)
    judge = EmbeddingJudge(task)
    verdicts = judge.judge([e.text for e in examples])
    store.set_judge({e.id: (v.label, v.confidence) for e, v in zip(examples, verdicts)})
    choice = await achoose_label_source(task, llm, policy=policy, relabel_config=config, judge=judge)
    store.set_meta(LABEL_SOURCE_META, json.dumps({**choice.to_dict(), "job_id": source_job, "at": time.time()}))
    adopted = store.adopt_judge_labels(job_id=source_job) if choice.source == "judge" else 0
    both = [(e, v) for e, v in zip(examples, verdicts) if e.llm_label]
    agree = sum(e.llm_label == v.label for e, v in both)
    note = f"; {adopted} pending labels set to the judge's" if adopted else ""
    return (f"label source: {choice.source} ({choice.reason}); judge and LLM agree on {agree} of "
            f"{len(both)}{note}")


def run_relabel(store: ProjectStore, spec: RelabelSpec, ctx: StepContext, llm: LLMClient, *,
                label_policy: str = "auto") -> str:
    task = store.load_task()
    if task is None:
        raise TaskError("the project has no task yet")

    async def both() -> str:
        from .embed import preload_in_background

        preload_in_background()
        summary = await relabel_pending(store, spec.source_job, task, llm, spec.relabel_config(), ctx)
        return summary + "; " + await judge_job(store, spec.source_job, task, llm, spec.relabel_config(), ctx,
                                                policy=label_policy)

    summary = llm.run_sync(both())
    counts = store.count_examples(spec.source_job)
    ctx.progress({"phase": "done", "done": counts["relabelled"], "total": counts["total"], **llm.stats.as_dict()},
                 force=True)
    return f"{summary}; {llm.stats.summary()}"


# ------------------------------------------------------------------ the worker's entry points
def run_generation_job(store: ProjectStore, job: Job, api_key: str | None = None,
                       ctx: StepContext | None = None) -> str:
    """The worker's step for kind "generate": the stored spec (old shapes migrated), then
    :func:`run_generation`. Returns a one-line summary; raises on failure."""
    spec = GenerationSpec.from_stored(job.config)
    ctx = ctx or _job_context(store, job.id)
    ctx.note("connecting to the LLM")
    _task(store)  # a clear error before any endpoint is started
    return run_generation(store, job.id, spec, ctx,
                          llm_for(spec.llm, api_key, progress=model_loading_reporter(ctx))).summary


def run_relabel_job(store: ProjectStore, job: Job, api_key: str | None = None,
                    ctx: StepContext | None = None) -> str:
    """The worker's step for kind "relabel"."""
    spec = RelabelSpec.from_stored(job.config)
    ctx = ctx or _job_context(store, job.id)
    return run_relabel(store, spec, ctx, llm_for(spec.llm, api_key, progress=model_loading_reporter(ctx)))


def _job_context(store: ProjectStore, job_id: int) -> StepContext:
    """Called directly (not by a lifecycle): the job's own context (progress and cancel flag)."""
    from .lifecycle import JobLifecycle

    return JobLifecycle(store, job_id).context()


__all__ = ["GenerationOutcome", "embedding_warmer", "flag_job", "judge_job", "llm_for", "model_loading_reporter", "relabel_pending", "run_generation", "run_generation_job",
           "run_relabel", "run_relabel_job", "stop_checker"]
