"""Generation and relabeling as store-backed jobs (used by the worker and the CLI's --project)."""

from __future__ import annotations

import time
from typing import Any, Callable

from .generate import Cancelled, GenerationConfig, GenerationFailed, agenerate
from .llm import LLMClient, resolve_llm_config
from .relabel import RelabelConfig, arelabel
from .store import Job, ProjectStore
from .task import TaskError, validate


class Throttle:
    """Call ``fn`` at most every ``interval`` seconds (always on ``force``)."""

    def __init__(self, fn: Callable[..., Any], interval: float = 0.5):
        self.fn, self.interval, self.last = fn, interval, 0.0

    def __call__(self, *args: Any, force: bool = False) -> Any:
        now = time.monotonic()
        if force or now - self.last >= self.interval:
            self.last = now
            return self.fn(*args)
        return None


def stop_checker(store: ProjectStore, job_id: int) -> Callable[[], bool]:
    """A cheap, sticky ``should_stop``: reads the job's cancel flag at most once a second and stays
    True once it has seen it."""
    check = Throttle(lambda: store.cancel_requested(job_id), 1.0)
    seen = False

    def should_stop() -> bool:
        nonlocal seen
        seen = seen or bool(check())
        return seen

    return should_stop


def llm_for_job(store: ProjectStore, config: dict[str, Any], api_key: str | None) -> LLMClient:
    llm_config = resolve_llm_config(
        base_url=config.get("base_url") or None,
        model=config.get("model") or None,
        api_key=api_key,
        concurrency=config.get("concurrency"),
        timeout=config.get("timeout"),
        max_retries=config.get("max_retries"),
    )
    return LLMClient(llm_config, cache_path=store.path)


def run_generation_job(store: ProjectStore, job: Job, api_key: str | None = None) -> str:
    """Generate (and, unless ``relabel`` is false, relabel) for ``job``; resumes what the store holds.

    Returns a one-line summary; raises on failure (the worker marks the job)."""
    cfg = dict(job.config)
    task = store.load_task()
    if task is None:
        raise TaskError("the project has no task yet: add classes and seeds first")
    validate(task)
    store.update_job(job.id, progress={"phase": "starting", "done": 0, "total": 0}, message="connecting to the LLM")
    llm = llm_for_job(store, cfg, api_key)
    gen_cfg = GenerationConfig(
        per_class=int(cfg.get("per_class", 10)),
        group_size=int(cfg.get("group_size", 4)),
        mixup=bool(cfg.get("mixup", True)),
        seed=int(cfg.get("seed", 0)),
        examples_per_call=int(cfg.get("examples_per_call", 5)),
        temperature=float(cfg.get("temperature", 1.0)),
        max_calls_per_class=cfg.get("max_calls_per_class"),
    )
    progress = Throttle(lambda p: store.update_job(job.id, progress=p), 0.5)
    should_stop = stop_checker(store, job.id)
    store.update_job(job.id, message=f"generating with {llm.config.model} at {llm.config.base_url}")

    async def run() -> str:
        result = await agenerate(task, gen_cfg, llm, store=store, job_id=job.id, progress=progress,
                                 should_stop=should_stop)
        summary = (
            f"kept {result.kept}/{result.requested} examples; {llm.stats.summary()}; "
            f"{result.calls_per_kept:.2f} calls and {result.tokens_per_kept:.0f} tokens per kept example"
        )
        if cfg.get("relabel", True):
            summary += "; " + await _relabel_pending(store, job.id, task, llm, cfg, progress, should_stop)
        progress({"phase": "done", "done": result.kept, "total": result.requested, "kept": result.kept,
                  **llm.stats.as_dict()}, force=True)
        return summary

    try:
        return llm.run_sync(run())
    except (GenerationFailed, Cancelled):
        progress({"phase": "stopped", **llm.stats.as_dict(),
                  "done": store.count_examples(job.id)["total"]}, force=True)
        raise


async def _relabel_pending(store, source_job, task, llm, cfg, progress, should_stop) -> str:
    """Relabel the examples of ``source_job`` (all jobs when None) not relabelled yet; each answer
    is saved the moment it arrives. Returns a summary of the shares changed and unparseable."""
    pending = store.list_examples(job_id=source_job, relabel_status="none")
    total = store.count_examples(source_job)["total"]
    already = total - len(pending)

    def on_result(i: int, res) -> None:
        store.set_relabel(pending[i].id, llm_label=res.llm_label, status=res.status, raw=res.raw, prompt=res.prompt)

    def relabel_progress(p: dict[str, Any]) -> None:
        progress({**p, "done": already + p["done"], "total": total})

    await arelabel(task, pending, llm, RelabelConfig(nearest=int(cfg.get("nearest", 5))),
                   progress=relabel_progress, should_stop=should_stop, on_result=on_result)
    counts = store.count_examples(source_job)
    n = max(1, counts["relabelled"])
    return (f"relabelled {counts['relabelled']}: {counts['changed'] / n:.0%} changed, "
            f"{counts['unparseable'] / n:.0%} unparseable")


def run_relabel_job(store: ProjectStore, job: Job, api_key: str | None = None) -> str:
    """Relabel every example of the job named in ``config['source_job']`` (or all) not yet relabelled."""
    cfg = dict(job.config)
    task = store.load_task()
    if task is None:
        raise TaskError("the project has no task yet")
    llm = llm_for_job(store, cfg, api_key)
    progress = Throttle(lambda p: store.update_job(job.id, progress=p), 0.5)
    summary = llm.run_sync(_relabel_pending(store, cfg.get("source_job"), task, llm, cfg, progress,
                                            stop_checker(store, job.id)))
    counts = store.count_examples(cfg.get("source_job"))
    progress({"phase": "done", "done": counts["relabelled"], "total": counts["total"], **llm.stats.as_dict()},
             force=True)
    return f"{summary}; {llm.stats.summary()}"
