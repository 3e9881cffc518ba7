"""The one job status model (promptmix_core/job_status.py): every face reads a job the same way."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from promptmix_core import job_status
from promptmix_core.job_status import PHASE_WORDS, job_view, sidebar_poll_seconds, usage_line
from promptmix_core.store import ProjectStore

ROOT = Path(__file__).resolve().parents[1]


def _job(store, kind="generate", status="running", progress=None, message=None):
    job_id = store.create_job(kind, {}, status=status)
    if progress is not None or message is not None:
        store.update_job(job_id, progress=progress, message=message)
    return store.get_job(job_id)


def test_every_phase_a_step_reports_has_words():
    """No face shows a raw phase name ("Loading-model..."): each phase written anywhere in the
    library has its words here."""
    written = set()
    for path in (ROOT / "promptmix_core").rglob("*.py"):
        written |= set(re.findall(r'"phase":\s*"([a-z-]+)"', path.read_text("utf-8")))
    assert {"loading-model", "generate", "relabel", "flag", "training", "embedding"} <= written
    assert written <= set(PHASE_WORDS), written - set(PHASE_WORDS)
    raw = [k for k in PHASE_WORDS if "-" in k]  # names no person would write ("loading-model")
    assert all(w[0].isupper() and not any(k in w.lower() for k in raw) for w in PHASE_WORDS.values())


def test_loading_the_model_reads_in_words(tmp_path):
    store = ProjectStore(tmp_path / "p.pmx")
    job = _job(store, progress={"phase": "loading-model", "done": 0, "total": 0,
                                "message": "loading the local model, 5 s"})
    v = job_view(job)
    assert v.progress_text == "Loading the local model…"
    assert "Loading-model" not in v.progress_text and "0 / 0" not in v.line()
    assert v.line() == "Generation job #1 is running · Loading the local model"


def test_states_and_counts(tmp_path):
    store = ProjectStore(tmp_path / "p.pmx")
    queued = job_view(_job(store, status="queued"))
    assert queued.line().endswith("is waiting to start") and queued.fraction == 0.0
    running = job_view(_job(store, progress={"phase": "relabel", "done": 12, "total": 40, "calls": 30}))
    assert running.progress_text == "Relabelling: 12 / 40 examples"
    assert running.fraction == 0.3 and running.usage.calls == 30
    # rows of earlier versions (counts, no phase) still read as counts
    old = job_view(_job(store, progress={"done": 4, "total": 15}))
    assert old.line() == "Generation job #3 is running · Generating 4 / 15 examples"
    # an ended job reads as its status, not as its last progress row
    ended = _job(store, progress={"phase": "relabel", "done": 40, "total": 40})
    store.update_job(ended.id, status="cancelled")
    v = job_view(store.get_job(ended.id))
    assert v.state == "stopped" and v.progress_text == "Stopped: 40 / 40 examples" and not v.active
    train = job_view(_job(store, kind="train", progress={"phase": "training", "step": 5, "total_steps": 20}))
    assert train.progress_text == "Training: 5 / 20 steps" and train.title == "Training job #5"


def test_sidebar_polls_a_queued_job_on_its_own_page(tmp_path):
    """The sidebar said "Generate job #1 is queued" while the job ran: on the Generate page it did not
    poll at all. A queued job is polled everywhere until it runs; a running one except on its page."""
    store = ProjectStore(tmp_path / "p.pmx")
    queued = job_view(_job(store, status="queued"))
    running = job_view(_job(store))
    assert sidebar_poll_seconds(queued, own_panel=True) == 2.0
    assert sidebar_poll_seconds(queued, own_panel=False) == 2.0
    assert sidebar_poll_seconds(running, own_panel=True) is None
    assert sidebar_poll_seconds(running, own_panel=False) == 2.0
    assert sidebar_poll_seconds(None, own_panel=False) is None


def test_usage_line_is_the_llm_stats_summary():
    from promptmix_core.llm.client import UsageStats

    s = UsageStats()
    s.calls, s.cache_hits, s.prompt_tokens, s.completion_tokens = 67, 3, 1000, 234
    assert s.summary() == usage_line(s.as_dict())
    assert usage_line(s.as_dict()).startswith("calls 67, cache hits 3, retries 0, failures 0, tokens 1,234")


def _embed(texts):
    """A small deterministic embedder (letter counts) so the flag pass needs no model here."""
    out = np.zeros((len(texts), 26), dtype="float32")
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_job_summary_counts_the_calls_the_card_shows(make_fake_llm, tmp_path, small_task, monkeypatch):
    """The card said "LLM calls 67" where the summary said "calls 17": the summary counted the
    generation's calls before the relabel ran. Both now count the whole job."""
    from promptmix_core import embed
    from promptmix_core.pipeline import run_generation_job

    monkeypatch.setattr(embed, "embed_texts", _embed)
    fake = make_fake_llm()
    small_task.classes = small_task.classes[:3]
    store = ProjectStore(tmp_path / "p.pmx")
    store.save_task(small_task)
    job_id = store.create_job("generate", {"per_class": 4, "base_url": fake.base_url, "model": "fake-model",
                                           "relabel": True})
    message = run_generation_job(store, store.get_job(job_id))
    job = store.get_job(job_id)
    view = job_view(job)
    relabelled = store.count_examples(job_id)["relabelled"]
    assert relabelled > 0
    calls = [int(n) for n in re.findall(r"\bcalls (\d+),", message)]
    assert calls == [view.usage.calls], (message, view.usage)
    assert view.usage.calls >= relabelled  # the relabel's calls are in it
    assert usage_line(view.usage) in message
    assert job_status.Usage.from_progress(job.progress).tokens == view.usage.tokens > 0
