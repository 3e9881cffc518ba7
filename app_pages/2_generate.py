"""2 · Generate: LLM endpoint, generation settings, the alpha distribution, the background job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages._ui import (
    configured_key,
    current_project,
    owner_page,
    flash,
    fmt_cost,
    fmt_duration,
    fmt_int,
    fmt_time,
    header,
    latest_job,
    md_escape,
    resume_job,
    start_job,
    status_badge,
    store_or_stop,
    task_or_stop,
    write_failed,
)
from promptmix_core.alpha import ALPHA_BINS, alpha_preview
from promptmix_core.errors import SpecError
from promptmix_core.generate import GenerationConfig
from promptmix_core.job_status import job_view
from promptmix_core.llm.config import DEFAULT_OPENAI_MODEL, OPENAI_BASE_URL, bound_key
from promptmix_core.specs import GenerationSpec, LLMSpec
from promptmix_core.store import StoreError
from promptmix_core.task import TaskError, validate

header(
    "2 · Generate",
    "Let an LLM write more examples for your classes, the hard ones near the boundary between two classes, "
    "and check each one's class. It runs in the background: you can leave this page or close the tab.",
)
owner_page("generate", "Generating and relabelling")
store = store_or_stop()
task = task_or_stop(store)
project = current_project()
try:
    validate(task)
except TaskError as exc:
    st.error("The task is not complete yet, so nothing can be generated:")
    for p in exc.problems:
        st.markdown(f"- {md_escape(p)}")
    st.page_link("app_pages/1_task.py", label="Fix it on 1 · Task", icon=":material/arrow_forward:")
    st.stop()

PROVIDERS = {
    "local": "Bundled local model (no key, runs on this machine)",
    "openai": "OpenAI",
    "compatible": "Any OpenAI-compatible URL (vLLM, Ollama, LM Studio, ...)",
}
settings = store.get_settings()
K = f"gen::{project}::"
# the last settings as a typed spec: this session's, else the project's (defaults: the step configs)
last = st.session_state.get(K + "spec") or GenerationSpec.from_page_settings(settings)
G = last.generation


def job_spec(job) -> GenerationSpec | None:
    """The job's typed spec (rows of earlier versions migrated); None when it cannot be read."""
    try:
        return GenerationSpec.from_stored(job.config)
    except SpecError:
        return None


def alpha_samples(n: int, seed: int) -> np.ndarray:
    return np.array(alpha_preview(n, seed))  # the same formula as generation (promptmix_core.alpha)


def alpha_chart(preview: np.ndarray | None, actual: list[float] | None) -> go.Figure:
    bins = list(ALPHA_BINS)
    fig = go.Figure()
    if preview is not None and len(preview):
        counts = [int(np.isclose(preview, b).sum()) for b in bins]
        fig.add_bar(x=bins, y=[c / len(preview) for c in counts], name="expected (preview)",
                    marker_color="#9db4ff", hovertemplate="α=%{x:.2f}: %{y:.0%}<extra>expected</extra>")
    if actual:
        arr = np.array(actual, dtype=float)
        counts = [int(np.isclose(arr, b).sum()) for b in bins]
        fig.add_bar(x=bins, y=[c / len(arr) for c in counts], name=f"generated ({len(arr)})",
                    marker_color="#3b5bdb", hovertemplate="α=%{x:.2f}: %{y:.0%}<extra>generated</extra>")
    fig.update_layout(
        barmode="group", height=260, margin=dict(l=10, r=10, t=30, b=10),
        xaxis=dict(title="α (share of the intended class)", tickformat=".2f", dtick=0.05, range=[0.47, 1.03]),
        yaxis=dict(title="share of prompts", tickformat=".0%"),
        legend=dict(orientation="h", y=1.15, x=0), bargap=0.15,
    )
    return fig


# --------------------------------------------------------------------------- callbacks
def _cancel(job_id: int) -> None:
    try:
        store.request_cancel(job_id)
    except StoreError as exc:
        st.session_state["gen_flash"] = ("error", write_failed(exc))
        return
    st.session_state["gen_flash"] = ("info", f"Asked job #{job_id} to stop; it stops within a second.")


def _resume(job_id: int, api_key: str | None, base_url: str | None = None, key_for: str | None = None) -> None:
    try:
        resume_job(store, job_id, api_key, base_url, key_endpoint=key_for)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        st.session_state["gen_flash"] = ("error", f"Could not resume job #{job_id}: {md_escape(exc)}")
        return
    st.session_state["gen_flash"] = ("success", f"Resumed job #{job_id}; it continues where it stopped.")


# --------------------------------------------------------------------------- live progress
current = latest_job(store, "generate")
flash("gen_flash")


def render_progress(job_id: int) -> None:
    job = store.get_job(job_id)
    if job is None:
        return
    with st.container(border=True):
        top = st.columns([3, 1], vertical_alignment="center")
        with top[0]:
            st.markdown(f"#### Job #{job.id}")
        with top[1]:
            status_badge(job.status)
        view = job_view(job)  # one status model with the sidebar and the CLI (promptmix_core.job_status)
        st.progress(view.fraction, text=view.progress_text)
        u = view.usage  # the job's LLM use, counted as its summary counts it
        c = [st.container(horizontal=True, wrap=True, gap="large")] * 6  # wraps rather than cut a number short
        c[0].metric("LLM calls", fmt_int(u.calls), width="content")
        c[1].metric("Cache hits", fmt_int(u.cache_hits), width="content")
        c[2].metric("Retries", fmt_int(u.retries), width="content")
        c[3].metric("Failures", fmt_int(u.failures), width="content")
        c[4].metric("Tokens", fmt_int(u.tokens), width="content",
                    help=f"prompt {fmt_int(u.prompt_tokens)} · completion {fmt_int(u.completion_tokens)}")
        c[5].metric("Cost", fmt_cost(u.cost), help="n/a when the endpoint has no known prices")
        cfg = job_spec(job)
        st.caption(
            f"Started {fmt_time(job.started_at or job.created_at)} · "
            f"{'running for' if job.active else 'took'} {fmt_duration(job.started_at, job.finished_at)} · "
            + (f"{cfg.generation.per_class} per class · group size {cfg.generation.group_size} · "
               f"mixup {'on' if cfg.generation.mixup else 'off'} · "
               f"model {md_escape(cfg.llm.model or 'default')}" if cfg else "settings of an unknown version")
        )
        if view.notice:  # "rate limited: waiting 120 s, retry 2 of 4"
            st.warning(md_escape(view.notice), icon=":material/hourglass_top:")
        if job.message and job.status != "running":
            (st.error if job.status == "failed" else st.caption)(md_escape(job.message))
        if job.active:
            st.button("Stop", icon=":material/stop_circle:", key=f"gen_stop_{job.id}", on_click=_cancel, args=(job.id,),
                      disabled=job.cancel_requested, help="Stops at once (calls in flight are abandoned); resume later.")
            if job.cancel_requested:
                st.caption("Stopping…")
            recent = _live_examples(job.id)
            if recent:
                st.markdown("**Latest examples**")
                st.dataframe(
                    pd.DataFrame([{"text": e["text"], "written for": e["intended_label"], "mixed with": e["mixed_with"],
                                   "α": e["alpha"], "LLM relabel": e["llm_label"]} for e in reversed(recent)]),
                    hide_index=True, width="stretch",
                )
    if not job.active and st.session_state.get(f"gen_watch_{job_id}"):
        # the job just finished: refresh the whole page (counts, chart, table)
        st.session_state.pop(f"gen_watch_{job_id}")
        st.rerun()


def _live_examples(job_id: int, keep: int = 8) -> list[dict]:
    """The newest examples of a running job. Each tick reads the rows from the oldest one shown on
    (the shown ones again, for their relabel, and only the rows newer than the last it saw)."""
    key = f"gen_live::{project}::{job_id}"
    cols = ("text", "intended_label", "mixed_with", "alpha", "llm_label")
    shown = st.session_state.get(key) or []
    rows = []
    if shown:
        rows = store.examples_since(shown[0]["id"] - 1, job_id=job_id, limit=keep * 4, columns=cols)
    if not shown or len(rows) >= keep * 4:  # first look, or far behind: jump to the newest
        rows = store.latest_examples(keep, job_id=job_id, columns=cols)
    rows = rows[-keep:]
    st.session_state[key] = rows
    return rows


if current is not None and current.active:
    st.session_state[f"gen_watch_{current.id}"] = True
    st.fragment(render_progress, run_every=1.0)(current.id)
elif current is not None and not getattr(job_spec(current), "demo", False):
    render_progress(current.id)

# --------------------------------------------------------------------------- settings
busy = current is not None and current.active
left, right = st.columns([1, 1], gap="large")
with left:
    st.subheader("LLM endpoint")
    provider_keys = list(PROVIDERS)
    provider = st.radio(
        "Where the LLM runs", provider_keys, format_func=PROVIDERS.get, key=K + "provider",
        index=provider_keys.index(settings.get("provider", "local")) if settings.get("provider") in PROVIDERS else 0,
    )
    base_url = model = None
    if provider == "local":
        st.caption("SmolLM2-135M-Instruct runs on this machine: free and private, but small, so expect "
                   "simpler examples. The first use prepares the model (a minute).")
    elif provider == "openai":
        base_url = OPENAI_BASE_URL
        model = st.text_input("Model", value=settings.get("model_openai", DEFAULT_OPENAI_MODEL), key=K + "model_openai")
    else:
        base_url = st.text_input("Base URL", value=settings.get("base_url", ""), key=K + "base_url",
                                 placeholder="http://127.0.0.1:8000/v1")
        model = st.text_input("Model", value=settings.get("model", ""), key=K + "model",
                              placeholder="empty: the first model the server lists")
    # the operator's key (secrets or environment) goes only to the endpoint it was configured for;
    # a URL typed here needs a key typed here
    found_key, key_source, key_home = configured_key()
    usable_key = bound_key((base_url or "").strip(), found_key, key_home) if provider != "local" else None
    typed_key = ""
    if provider != "local":
        typed_key = st.text_input(
            "API key", type="password", key=K + "api_key",
            placeholder=f"using the key from {key_source}" if usable_key else "paste your key",
            help="Used for this session's jobs only. Never saved in the project, logs or exports.",
        )
        if usable_key and not typed_key:
            st.caption(f":material/key: A key was found in {key_source}.")
        elif found_key and not typed_key and (base_url or "").strip():
            st.caption(f":material/key: The key in {key_source} is sent only to the endpoint it was configured "
                       f"for, not to this URL: type this endpoint's key above if it needs one.")
        elif not found_key and not typed_key and provider == "openai":
            st.caption(":material/key: OpenAI needs a key: paste it above, or set OPENAI_API_KEY / st.secrets.")
    api_key = typed_key or usable_key
    # the endpoint the key is for: the URL typed here for a typed key, the configured one for the found key
    api_key_for = ((base_url or "").strip() if typed_key else key_home) if api_key else None

with right:
    st.subheader("What to generate")
    st.caption("The LLM writes new examples for every class. Most mix in a little of a second class, so they sit "
               "near the boundary between two classes: the texts a classifier trained on a few seeds gets wrong. "
               "A second pass then asks the LLM which class each example really belongs to, so you can review "
               "the ones it doubts.")
    c1 = c4 = st.container()
    per_class = c1.number_input("Examples per class", 1, 1000, int(G.per_class), key=K + "per_class",
                                help="How many generated examples to keep for each class")
    relabel = c4.toggle("Check each class (LLM relabel)", value=bool(last.relabel),
                        key=K + "relabel",
                        help="Step 2: an LLM classifier labels each example again; where it disagrees with the "
                             "class the example was written for, the Review page puts it first")
    with st.expander("How the examples are mixed (the PromptMix method)"):
        st.caption("Each prompt describes a small group of classes (**Group size**) with their seeds. For class A "
                   "it asks for examples that are α parts A and 1 − α parts another class B of the group "
                   "(**Mixup**); α is drawn for every prompt as 0.5 + 0.5 · Beta(5, 2), rounded to 0.05, so most "
                   "examples are 80–90 % their own class. Sahu et al., EMNLP 2023.")
        c2, c3 = st.columns(2)
        group_size = c2.number_input("Group size", 2, max(2, min(10, len(task.classes))),
                                     min(int(G.group_size), max(2, min(10, len(task.classes)))),
                                     key=K + "group_size",
                                     help="Classes described together in one prompt (the paper uses 4)")
        mixup = c3.toggle("Mixup", value=bool(G.mixup), key=K + "mixup",
                          help="On: borderline examples that mix two classes. Off: plain examples of each class (α = 1)")
        mix_slot = st.container()
    with st.expander("More settings"):
        d1, d2, d3 = st.columns(3)
        seed = d1.number_input("Random seed", 0, 2**31 - 1, int(G.seed), key=K + "seed")
        concurrency = d2.number_input("Parallel calls", 1, 64, int(last.llm.concurrency),
                                      key=K + "concurrency")
        nearest = d3.number_input("Classes shown to the relabeller", 2, max(2, len(task.classes)),
                                  min(int(last.nearest), max(2, len(task.classes))), key=K + "nearest",
                                  help="The nearest classes by embedding (the paper uses 5)")
    n_prompts = max(1, int(per_class) * len(task.classes) // 5)
    with mix_slot:
        st.markdown("**α distribution** · α = 0.5 + 0.5 · Beta(5, 2), rounded to 0.05")
        actual = [e.alpha for e in store.list_examples() if e.alpha is not None and e.mixup]
        preview = alpha_samples(max(200, n_prompts), int(seed)) if mixup else np.ones(max(200, n_prompts))
        st.plotly_chart(alpha_chart(preview, actual), width="stretch", config={"displayModeBar": False},
                        key="gen_alpha_chart")
        st.caption("Most prompts ask for examples that are about 80–90 % the intended class; the bars in dark blue "
                   "are the α of the examples generated so far." if mixup else
                   "Mixup is off: every example is written purely for its class (α = 1).")

# remember the non-secret settings in the project (the key is never saved)
new_settings = {
    **settings, "provider": provider, "per_class": int(per_class), "group_size": int(group_size),
    "mixup": bool(mixup), "relabel": bool(relabel), "seed": int(seed), "concurrency": int(concurrency),
    "nearest": int(nearest),
}
if provider == "openai":
    new_settings["model_openai"] = model
elif provider == "compatible":
    new_settings["base_url"] = base_url or ""
    new_settings["model"] = model or ""
if new_settings != settings and not store.read_only:
    try:
        store.save_settings(new_settings)
    except StoreError:  # a full disk: the settings are remembered next time
        pass

spec = GenerationSpec(  # the same typed spec the CLI, the worker and the experiments use
    generation=GenerationConfig(per_class=int(per_class), group_size=int(group_size), mixup=bool(mixup), seed=int(seed)),
    relabel=bool(relabel), nearest=int(nearest),
    llm=LLMSpec(base_url=(base_url or "").strip() or None, model=(model or "").strip() or None,
                concurrency=int(concurrency)),
)
st.session_state[K + "spec"] = spec
problems = []
if provider == "compatible" and not spec.llm.base_url:
    problems.append("Give the base URL of the OpenAI-compatible server.")
elif provider == "compatible" and "://***@" in str(spec.llm.base_url):
    problems.append("Type the endpoint's user and password in the base URL again (http://user:password@host/...): "
                    "they are never saved.")
else:
    problems += [p[:1].upper() + p[1:] + "." for p in spec.validate()]
if provider == "openai" and not api_key:
    problems.append("OpenAI needs an API key.")
if store.read_only:
    problems.append("The project is read-only here, so nothing can be generated into it.")

st.divider()
start_cols = [st.container(horizontal=True, wrap=True)] * 2  # buttons as wide as their labels
total_new = int(per_class) * len(task.classes)
start = start_cols[0].button(
    "Start generating", icon=":material/auto_awesome:", type="primary", disabled=busy or bool(problems), key="gen_start",
    help=f"Generates {total_new} examples ({int(per_class)} × {len(task.classes)} classes)",
)
resumable = (current is not None and current.status in ("cancelled", "failed")
             and not getattr(job_spec(current), "demo", False))
if resumable:
    start_cols[1].button(f"Resume job #{current.id}", icon=":material/replay:", on_click=_resume, args=(current.id, api_key, spec.llm.base_url, api_key_for),
                         disabled=busy, key="gen_resume",
                         help="Continue the stopped job: what it already generated is kept")
for p in problems:
    st.warning(p)
if busy:
    st.caption("A generation job is running; its progress is shown above.")
if start:
    try:
        job_id = start_job(store, "generate", spec.to_dict(), api_key=api_key, key_endpoint=api_key_for)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        st.error(f"Could not start the job: {md_escape(exc)}")
    else:
        st.session_state["gen_flash"] = ("success", f"Started job #{job_id}: {total_new} examples to generate.")
        st.rerun()

# --------------------------------------------------------------------------- results so far
st.subheader("Generated examples")
examples = store.list_examples()
if not examples and busy:
    st.info("The job is running: its newest examples appear in the panel above, and all of them here when it "
            "finishes.")
elif not examples:
    st.info("No examples yet. Choose an endpoint and press **Start generating**; examples appear here while "
            "the job runs.")
else:
    per = pd.DataFrame([{"class": e.intended_label, "relabel": e.relabel_status or "pending"} for e in examples])
    summary = per.groupby("class").size().reindex(task.class_names, fill_value=0)
    counts_row = st.container(horizontal=True, wrap=True)  # whole class names, wrapping
    for name, n in summary.items():
        counts_row.metric(md_escape(name), int(n), width="content")
    st.dataframe(
        pd.DataFrame([{"id": e.id, "text": e.text, "written for": e.intended_label, "mixed with": e.mixed_with,
                       "α": e.alpha, "LLM relabel": e.llm_label, "relabel": e.relabel_status,
                       "job": e.job_id} for e in reversed(examples)]),
        hide_index=True, width="stretch", height=320,
        column_config={"text": st.column_config.TextColumn("text", width="large"),
                       "α": st.column_config.NumberColumn("α", format="%.2f")},
    )
    st.page_link("app_pages/3_review.py", label="Next: review the examples", icon=":material/arrow_forward:")

jobs = store.list_jobs(kind="generate", limit=50)
if jobs:
    with st.expander(f"Job history ({len(jobs)})"):
        st.dataframe(
            pd.DataFrame([{
                "job": j.id, "status": j.status, "started": fmt_time(j.started_at or j.created_at),
                "duration": fmt_duration(j.started_at, j.finished_at) if j.started_at else "–",
                "per class": getattr(getattr(job_spec(j), "generation", None), "per_class", None),
                "model": getattr(getattr(job_spec(j), "llm", None), "model", None) or "default",
                "kept": (j.progress or {}).get("kept", (j.progress or {}).get("done")),
                "calls": (j.progress or {}).get("calls"), "message": j.message,
            } for j in jobs]),
            hide_index=True, width="stretch",
        )
