"""4 · Train: fine-tune the student on seeds + generated examples in a background worker; live charts."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages._ui import (
    NO_TEST_SET_NOTE,
    current_project,
    device_info,
    owner_page,
    flash,
    fmt_duration,
    fmt_time,
    header,
    latest_job,
    md_escape,
    quote,
    render_test_set,
    run_scores,
    start_job,
    status_badge,
    store_or_stop,
    task_or_stop,
)
from promptmix_core.errors import SpecError
from promptmix_core.job_status import job_view
from promptmix_core.specs import TrainingSpec
from promptmix_core.training.config import TrainConfig, default_learning_rate
from promptmix_core.store import StoreError
from promptmix_core.training.data import build_training_data
from promptmix_core.training.jobs import prepare_job_data
from promptmix_core.training.control import NO_TEST_SET, describe as describe_control
from promptmix_core.training.plan import choose_student, data_report, run_name as default_run_name, train_plan

header(
    "4 · Train",
    "Fine-tune a small, fast classifier (the student) on your seeds plus the generated examples. Training "
    "runs in the background; the charts update while it runs and you can leave the page.",
)
owner_page("train", "Training")
store = store_or_stop()
task = task_or_stop(store)
project = current_project()
settings = store.get_settings()
K = f"train::{project}::"
# the last settings, as a typed spec: this session's, else the project's (flat ``train_*`` keys of
# earlier versions are migrated)
last = st.session_state.get(K + "spec") or TrainingSpec.from_page_settings(settings)
examples = store.list_examples()

SOURCES = {
    "a2": "A2 · LLM relabel",
    "a1": "A1 · the class each example was written for",
    "reviewed": "Reviewed · your decisions on the Review page",
}
STUDENT_CHOICES = {"auto": "Picked for your data (from the measurements)",
                   "setfit": "SetFit: contrastive MiniLM + logistic regression",
                   "embed-lr": "Quick student: MiniLM embeddings + logistic regression (seconds)",
                   "finetune": "Fine-tune a transformer"}
PENDING_CHOICES = {"drop": "Leave them out", "a1": "A1 · the class they were written for", "a2": "A2 · the LLM relabel"}
# The live panel (progress and charts, one fragment) reruns every LIVE_EVERY_S seconds and reads only
# the new metric rows. Each rerun costs the server and, more, the browser CPU (every chart on the page
# is drawn again), which a training run on the same 2 cores loses: 3 s is the measured balance
# (docs/BENCHMARKS.md, "Live training charts").
LIVE_EVERY_S = 3.0
MODELS = {"bundled": "Bundled MiniLM (all-MiniLM-L6-v2, 22 M parameters)", "other": "Another model"}


def _cancel(job_id: int) -> None:
    try:
        store.request_cancel(job_id)
    except StoreError as exc:
        st.session_state["train_flash"] = ("error", f"Could not ask the job to stop: {md_escape(exc)}.")
        return
    st.session_state["train_flash"] = ("info", f"Asked training job #{job_id} to stop after the current step.")


def _run_for_job(job_id: int, progress: dict | None = None):
    """The run of a training job: from the job's progress (one row read), else a search of recent runs."""
    rid = (progress or {}).get("run_id") or st.session_state.get(f"train_run_of::{job_id}")
    if rid:
        run = store.get_run(int(rid))
        if run is not None:
            return run
    for r in store.list_runs(limit=50):
        if r.job_id == job_id:
            st.session_state[f"train_run_of::{job_id}"] = r.id
            return r
    return None


PRETTY = {"train_loss": "training loss", "val_loss": "validation loss", "val_accuracy": "validation accuracy",
          "val_macro_f1": "validation macro-F1"}


def metric_figure(points: list[dict], names: list[str], title: str, *, percent: bool = False) -> go.Figure:
    """A line chart of some metrics by step. Accuracy-like charts (``percent``) keep their y-axis at
    0-100 % whatever the values; loss charts start at 0. Built from a plain spec (cheap to rebuild)."""
    data = []
    for name in names:
        pts = [p for p in points if p["name"] == name]
        if pts:
            data.append({"type": "scatter", "x": [p["step"] for p in pts], "y": [p["value"] for p in pts],
                         "mode": "lines+markers", "name": PRETTY.get(name, name), "marker": {"size": 5},
                         "cliponaxis": False})
    yaxis = ({"range": [0, 1], "tickformat": ".0%", "autorange": False, "fixedrange": True} if percent
             else {"rangemode": "tozero"})
    return go.Figure({"data": data, "layout": {
        "title": {"text": title, "x": 0, "font": {"size": 15}}, "height": 300,
        "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "xaxis": {"title": {"text": "step"}, "rangemode": "tozero"},
        "yaxis": yaxis, "legend": {"orientation": "h", "y": -0.25, "x": 0}}})


class LiveMetrics:
    """The metric rows of one run, kept between reruns of the live fragment: each tick reads only
    the rows logged since the last one (``store.get_metrics(after_id=...)``) and the figures are
    rebuilt only when some arrived."""

    def __init__(self) -> None:
        self.after = 0
        self.points: list[dict] = []
        self.figs: tuple[go.Figure, go.Figure | None] | None = None

    def poll(self, run_id: int, val_is_measure: bool = True) -> bool:
        new = store.get_metrics(run_id, after_id=self.after)
        if not new:
            return False
        self.points.extend(new)
        self.after = new[-1]["id"]
        has_acc = val_is_measure and any(p["name"] in ("val_accuracy", "val_macro_f1") for p in self.points)
        self.figs = (metric_figure(self.points, ["train_loss", "val_loss"] if val_is_measure else ["train_loss"], "Loss"),
                     metric_figure(self.points, ["val_accuracy", "val_macro_f1"], "Validation accuracy", percent=True)
                     if has_acc else None)
        return True


def _val_is_measure(run) -> bool:
    """Validation on real labelled rows (a validation file) is a measure; on held-out generated examples it
    is only agreement with the generated labels, so the charts leave it out."""
    return run is not None and bool((run.config or {}).get("val_path"))


def render_charts(run_id: int | None, key: str, val_is_measure: bool = True) -> None:
    if not run_id:
        live = LiveMetrics()
    else:
        live = st.session_state.setdefault(f"train_live::{project}::{run_id}", LiveMetrics())
        live.poll(run_id, val_is_measure)
    c1, c2 = st.columns(2)
    if live.figs is None:
        with c1:
            st.info("The loss curve appears after the first logged steps.")
        return
    loss_fig, acc_fig = live.figs
    with c1:
        st.plotly_chart(loss_fig, width="stretch", config={"displayModeBar": False}, key=f"{key}_loss")
    with c2:
        if acc_fig is not None:
            st.plotly_chart(acc_fig, width="stretch", config={"displayModeBar": False}, key=f"{key}_acc")
        elif not val_is_measure:
            st.info("No validation chart: there are no real labelled rows to validate on (a score on held-out "
                    "*generated* examples only measures agreement with their generated labels). The test set "
                    "scores the finished model.")
        else:
            st.info("Accuracy on the validation rows appears after the first evaluation (end of an epoch).")
    n = len({p["step"] for p in live.points})
    st.caption(f"{n} logged step{'' if n == 1 else 's'}")


def _job_head(job, run) -> None:
    """Title, status, progress bar and timing of a training job."""
    p = job.progress or {}
    top = st.columns([3, 1], vertical_alignment="center")
    top[0].markdown(f"#### Training job #{job.id}" + (f" · run #{run.id}" if run else "")
                    + (f" · {md_escape(run.name)}" if run and run.name else ""))
    with top[1]:
        status_badge(job.status)
    view = job_view(job)  # one status model with the sidebar and the CLI (promptmix_core.job_status)
    if view.phase == "control" and job.active:
        st.progress(1.0, text="Training the seeds-only control (once per seed set; cached)…")
    elif not job.active and _quick(run):
        st.progress(1.0 if job.status == "done" else 0.0,
                    text=f"{view.phase_words}: {STUDENT_CHOICES.get(_student_of(run), 'student')}")
    elif view.phase == "contrastive" and view.total:
        st.progress(view.fraction, text=f"SetFit contrastive step {view.done or 0} / {view.total}")
    elif view.phase == "training" and view.total:
        st.progress(view.fraction, text=f"{view.progress_text} · epoch {float(p.get('epoch') or 0):.1f} of "
                                        f"{p.get('epochs', '?')}")
    else:
        st.progress(view.fraction, text=view.progress_text)
    st.caption(f"Started {fmt_time(job.started_at or job.created_at)} · "
               f"{'running for ' if job.active else 'took '}{fmt_duration(job.started_at, job.finished_at)}"
               + (f" · device {md_escape(run.device)}" if run and run.device else ""))


def live_status(job_id: int) -> None:
    """The running job's progress; the page reruns once when it ends."""
    job = store.get_job(job_id)
    if job is None:
        return
    _job_head(job, _run_for_job(job_id, job.progress))
    if job.active:
        st.button("Cancel training", icon=":material/stop_circle:", key=f"train_cancel_{job.id}", on_click=_cancel,
                  args=(job.id,), disabled=job.cancel_requested)
    elif st.session_state.pop(f"train_watch_{job_id}", None):
        st.rerun()


def _student_of(run) -> str | None:
    if run is None:
        return None
    return (run.final_metrics or {}).get("student") or (run.config or {}).get("student")


def _quick(run) -> bool:
    """A student fitted in one go (no training curve): the quick student and SetFit's head."""
    return _student_of(run) in ("embed-lr", "setfit")


def live_charts(job_id: int) -> None:
    """The running job's charts, from the new metric rows only."""
    job = store.get_job(job_id)
    run = _run_for_job(job_id, job.progress if job else None)
    if _quick(run) or (run is not None and (run.config or {}).get("student") == "auto" and not store.get_metrics(run.id)):
        st.caption("This student has no training curve: SetFit tunes the embeddings on pairs of examples, then a "
                   "logistic regression is fitted; the quick student embeds the texts and fits it in seconds.")
        return
    render_charts(run.id if run else None, key=f"live_{job_id}", val_is_measure=_val_is_measure(run))


def live_panel(job_id: int) -> None:
    """The running job: progress, then charts (one fragment, every LIVE_EVERY_S)."""
    live_status(job_id)
    live_charts(job_id)


def render_job(job_id: int) -> None:
    """A finished (or failed, or cancelled) job: its charts and scores."""
    job = store.get_job(job_id)
    if job is None:
        return
    run = _run_for_job(job_id, job.progress)
    with st.container(border=True):
        _job_head(job, run)
        if not _quick(run):
            render_charts(run.id if run else None, key=f"live_{job.id}", val_is_measure=_val_is_measure(run))
        if job.active:  # shown without the live fragments (it just started)
            st.button("Cancel training", icon=":material/stop_circle:", key=f"train_cancel_{job.id}", on_click=_cancel,
                      args=(job.id,), disabled=job.cancel_requested)
        elif job.status == "failed":
            st.error(f"Training failed: {md_escape(job.message or (run.error if run else ''))}")
        elif job.status == "done" and run is not None and run.final_metrics:
            fm = run.final_metrics
            sc = run_scores(fm)
            m = st.columns(4)
            m[0].metric("Accuracy", f"{sc['accuracy']:.1%}" if sc["accuracy"] is not None else "–")
            m[1].metric("Macro-F1", f"{sc['macro_f1']:.1%}" if sc["macro_f1"] is not None else "–")
            data = fm.get("data") or {}
            m[2].metric("Trained on", data.get("train", fm.get("n_train", "–")))
            if sc["eval"] == "test set":
                m[3].metric("Tested on", sc["n"] or "–")
            else:
                m[3].metric("Validated on", data.get("val", sc["n"] or "–"))
            if sc["eval"]:
                st.caption(f"Scores on {sc['eval']}.")
            if sc["eval"] == "held-out generated examples":
                st.caption(f":orange[:material/warning:] {NO_TEST_SET_NOTE}")
            if fm.get("student_reason"):
                st.caption(md_escape(f"Student: {STUDENT_CHOICES.get(fm.get('student'), fm.get('student'))}"
                                     + (f" (picked: {fm['student_reason']})" if fm.get("student_auto") else "")))
            render_control(run)
            st.page_link("app_pages/5_results.py", label="See the results and export", icon=":material/arrow_forward:")


def _keep_control(run_id: int) -> None:
    """Record the seeds-only control of run ``run_id`` as a run of its own, so it can be exported and tried."""
    from promptmix_core.training.runs import RunLifecycle

    run = store.get_run(run_id)
    ctl = ((run.final_metrics or {}).get("control") or {}) if run else {}
    if not ctl.get("model_dir") or not Path(ctl["model_dir"]).is_dir():
        st.session_state["train_flash"] = ("error", "The seeds-only model's folder is gone; train again to rebuild it.")
        return
    try:
        life = RunLifecycle.create(store, {**(run.config or {}), "include_seeds": True, "name": None},
                                   name=f"seeds only · {ctl.get('student')} (control of run #{run_id})",
                                   method="seeds-only")
        life.start()
        test = ctl.get("test") or {}
        life.finish({"student": ctl.get("student"), "test_accuracy": test.get("accuracy"),
                     "test_macro_f1": test.get("macro_f1"), "test_n": test.get("n"), "n_train": ctl.get("n_train"),
                     "control": {"seeds_only_run": True}, "data": {"seeds": ctl.get("n_train"), "generated": 0}},
                    model_dir=ctl["model_dir"], device="cpu")
    except StoreError as exc:
        st.session_state["train_flash"] = ("error", f"Could not record the seeds-only model: {md_escape(exc)}.")
        return
    st.session_state["train_flash"] = ("success", f"Recorded the seeds-only model as run #{life.run_id}: export it "
                                                  "or try it on 5 · Results.")


def render_control(run) -> None:
    """The run against its seeds-only control: "generated data: +x.x points (95 % interval a..b)"."""
    ctl = describe_control(run.final_metrics)
    if ctl["state"] == "compared":
        text = f"Seeds-only control {ctl['control_accuracy']:.1%} · {ctl['text']}"
        if ctl["verdict"] == "worse":
            st.error(md_escape(text) + "  \n" + md_escape(ctl["advice"]), icon=":material/trending_down:")
            kept = any(r.method == "seeds-only" and f"control of run #{run.id})" in (r.name or "") for r in store.list_runs())
            st.button("Keep the seeds-only model as a run (to export or try)", key=f"train_keep_control_{run.id}",
                      on_click=_keep_control, args=(run.id,), disabled=kept or store.read_only,
                      icon=":material/undo:")
        elif ctl["verdict"] == "better":
            st.success(md_escape(text) + "  \n" + md_escape(ctl["advice"]), icon=":material/trending_up:")
        else:
            st.info(md_escape(text) + "  \n" + md_escape(ctl["advice"]), icon=":material/trending_flat:")
    elif ctl["state"] == "no_test_set":
        st.warning(md_escape(ctl["text"]), icon=":material/warning:")
    elif ctl["state"] == "is_control":
        st.caption(ctl["text"])


flash("train_flash")
current = latest_job(store, "train")
busy = current is not None and current.active
if current is not None and current.active:
    # only this panel reruns while training (one fragment, every LIVE_EVERY_S, reading the new metric
    # rows alone); nothing else on the page reruns, the sidebar's job status included (app.py)
    st.session_state[f"train_watch_{current.id}"] = True
    with st.container(border=True):
        st.fragment(live_panel, run_every=LIVE_EVERY_S)(current.id)
elif current is not None:
    render_job(current.id)

# --------------------------------------------------------------------------- settings
dev = device_info()
left, right = st.columns([1, 1], gap="large")
with left:
    st.subheader("Student model")
    student = st.radio("Student", list(STUDENT_CHOICES), format_func=STUDENT_CHOICES.get, key=K + "student",
                       index=list(STUDENT_CHOICES).index(last.student) if last.student in STUDENT_CHOICES else 0,
                       help="Picked for your data: SetFit at few-shot sizes (up to 32 examples per class), where it "
                            "scored best on every data set measured (docs/RESULTS.md), fine-tuning above. The quick "
                            "student shows the effect of your review decisions in seconds.")
    model_name = None
    model_problem = None
    model_choice = "bundled"
    if student == "finetune":
        mkeys = list(MODELS)
        model_choice = st.radio("Model", mkeys, format_func=MODELS.get, key=K + "model_choice",
                                index=1 if last.train.model else 0)
    if student == "finetune" and model_choice == "other":
        model_name = st.text_input("Local folder or Hugging Face name", value=last.train.model or "",
                                   key=K + "model", placeholder="/path/to/model or distilbert-base-uncased")
        raw = (model_name or "").strip()
        if not raw:
            model_problem = "Give a local model folder or a Hugging Face model name."
        elif raw.startswith(("/", ".", "~")) or "\\" in raw:
            p = Path(raw).expanduser()
            if not p.is_dir():
                model_problem = f"No folder at {raw}."
            else:
                try:
                    from promptmix_core.training.model_io import check_safetensors_folder

                    check_safetensors_folder(p)
                except Exception as exc:  # noqa: BLE001 - ModelLoadError says what is wrong
                    model_problem = str(exc)
        else:
            st.caption("A name that is not a local folder is downloaded from the Hugging Face Hub (needs internet).")
        if model_problem:
            st.error(md_escape(model_problem), icon=":material/error:")
    if student == "finetune":
        icon = {"cuda": ":green[:material/memory:]", "mps": ":green[:material/memory:]"}.get(dev["device"], ":orange[:material/memory:]")
        st.markdown(f"**Device:** {icon} {md_escape(dev['name'])}")
        if dev["device"] == "cpu":
            st.caption("No GPU found: MiniLM trains on the CPU in a minute or two for a few hundred examples.")
    elif student == "embed-lr":
        st.markdown("**Device:** :green[:material/memory:] CPU (embedding a few hundred texts takes seconds)")

    st.subheader("Labels")
    skeys = list(SOURCES)
    counts = {}
    for s in skeys:
        ts = build_training_data(task, examples, label_source=s, pending="drop")
        counts[s] = ts.summary()
    decided = sum(e.review_status != "pending" for e in examples)
    pending_n = len(examples) - decided
    # once anything is reviewed the run follows the review; before that, the last choice (A2 at first)
    default_source = "reviewed" if decided else (last.label_source if last.label_source in SOURCES else "a2")
    source = st.radio(
        "Label source", skeys, key=K + "label_source",
        format_func=lambda s: f"{SOURCES[s]} · {counts[s]['generated']} generated",
        index=skeys.index(default_source),
    )
    if decided and source != "reviewed":
        st.caption(f":material/info: You reviewed {decided} example{'' if decided == 1 else 's'}; this label source "
                   "ignores those decisions (rejected examples are trained on, overrides are ignored).")
    pending_rule = "drop"
    if source == "reviewed":
        pending_rule = st.radio(
            f"Examples you have not reviewed ({pending_n})", list(PENDING_CHOICES), key=K + "pending",
            format_func=PENDING_CHOICES.get, horizontal=True,
            index=list(PENDING_CHOICES).index(last.pending) if last.pending in PENDING_CHOICES else 0,
            help="Accepted examples keep the label their card showed, overridden ones get your class, rejected "
                 "ones are always left out. This choice is for the examples still pending.")

with right:
    st.subheader("Training")
    lr_text, lr, lr_problem = "", None, None
    epochs, batch, min_steps = int(last.train.epochs), int(last.train.batch_size), int(last.train.min_steps)
    seed, max_length, max_steps = int(last.train.seed), int(last.train.max_length), int(last.train.max_steps or 0)
    val_fraction = min(0.5, float(last.val_fraction))
    quick_c = float(last.embed_lr.C)
    curation, control = bool(last.curation), bool(last.control)
    setfit_all = last.setfit_body == "all"
    if student == "finetune":
        c1, c2 = st.columns(2)
        epochs = c1.number_input("Epochs", min_value=1, max_value=1000, value=int(last.train.epochs),
                                 key=K + "epochs", help="Passes over the training data")
        auto_lr = default_learning_rate(len(task.classes))  # TrainConfig's own rule: 6e-5 for 50+ classes
        lr_text = c2.text_input("Learning rate", value="" if last.train.learning_rate is None else f"{last.train.learning_rate:g}",
                                key=K + "lr", placeholder=f"auto: {auto_lr:g}",
                                help="Empty: the paper's rule, 4e-5 (6e-5 for 50+ classes). Typical: 1e-5 to 1e-4.")
        if lr_text.strip():
            try:
                lr = float(lr_text.strip())
                if not (0 < lr <= 1):
                    lr_problem = "The learning rate must be above 0 and at most 1 (e.g. 4e-5)."
                elif lr > 1e-2:
                    c2.caption(":material/warning: Unusually high for fine-tuning; 1e-5 to 1e-4 is typical.")
            except ValueError:
                lr_problem = "Write the learning rate as a number, e.g. 4e-5 or 0.00004."
        else:
            c2.caption(f"Auto: {auto_lr:g} for {len(task.classes)} classes.")
        if lr_problem:
            c2.error(lr_problem, icon=":material/error:")
        c3, c4 = st.columns(2)
        batch = c3.selectbox("Batch size", [4, 8, 16, 32, 64], index=[4, 8, 16, 32, 64].index(
            int(last.train.batch_size)) if int(last.train.batch_size) in [4, 8, 16, 32, 64] else 1,
            key=K + "batch")
        min_steps = c4.number_input("Minimum steps", 0, 100000, int(last.train.min_steps),
                                    key=K + "min_steps",
                                    help="With few examples an epoch is a step or two; epochs are added until this "
                                         "many optimiser steps are taken (0: exactly the epochs above). The plan "
                                         "below shows what it does.")
    elif student == "embed-lr":
        st.markdown("The quick student embeds every training text once with the frozen all-MiniLM-L6-v2 and fits "
                    "a logistic regression on the embeddings: seconds on the CPU, so you can see at once what your "
                    "review decisions change.")
    else:
        st.markdown("SetFit fine-tunes MiniLM on pairs of your seeds and reviewed examples (same class: close; "
                    "different: apart), then fits a logistic regression on its embeddings of every example. With "
                    "**Picked for your data** the plan below says which student runs and why.")
    with st.expander("More settings"):
        e1, e2, e3 = st.columns(3)
        val_fraction = e1.slider("Generated examples held out", 0.0, 0.5, min(0.5, float(last.val_fraction)), 0.05,
                                 key=K + "val", help="Share of generated examples per class kept out of training. "
                                 "Their score only says how well the model agrees with the generated labels: it is "
                                 "not a measure, so it is not charted. The test set measures the model.")
        if student == "finetune":
            seed = e2.number_input("Seed", 0, 2**31 - 1, int(last.train.seed), key=K + "seed")
            max_length = e3.number_input("Max tokens per text", 16, 512, min(512, max(16, int(last.train.max_length))),
                                         key=K + "max_length")
            max_steps = st.number_input("Stop after at most this many steps (0: no limit)", 0, 1_000_000,
                                        int(last.train.max_steps or 0), key=K + "max_steps")
        else:
            quick_c = e2.number_input("Regularisation C (quick student)", 0.01, 1000.0, quick_c, key=K + "quick_c",
                                      help="Inverse regularisation strength of the logistic regression (10 was best "
                                           "on TREC6 and Banking77 with 5 to 20 examples per class)")
        curation = st.checkbox("Leave out generated examples the judges disagree on, or flagged as junk (recommended)",
                               value=bool(last.curation), key=K + "curation",
                               help="Kept only when the class it was written for, the LLM relabel and the embedding "
                                    "judge all agree, and no junk flag; when the LLM was measured weak (the embedding "
                                    "judge gave the labels), only reviewed examples are kept. Your review decisions "
                                    "always override this.")
        control = st.checkbox("Compare with the seeds alone (a seeds-only control, trained once and cached)",
                              value=bool(last.control), key=K + "control")
        setfit_all = st.checkbox("SetFit: make contrastive pairs of machine-labelled examples too (setfit's own way)",
                                 value=last.setfit_body == "all", key=K + "setfit_all",
                                 disabled=student in ("finetune", "embed-lr"),
                                 help="Off (recommended): the pairs come from the seeds and reviewed examples only, "
                                      "and the other examples train the logistic regression. On the offline "
                                      "measurements a single added example re-drew every pair and moved accuracy by "
                                      "5 to 6 points (docs/RESULTS.md).")
    run_name = st.text_input("Run name", key=K + "name", placeholder="optional; by default the plan below")

# one typed spec: what is remembered for next time and what the job runs (the same shape the CLI builds)
train_cfg = None
spec_problems: list[str] = []
try:
    train_cfg = TrainConfig(
        model=(model_name or "").strip() or None if model_choice == "other" else None, epochs=int(epochs),
        learning_rate=lr if not lr_problem else None, batch_size=int(batch), min_steps=int(min_steps),
        seed=int(seed), max_length=int(max_length), max_steps=int(max_steps) or None,
    )
    spec = TrainingSpec(label_source=source, pending=pending_rule, val_fraction=float(val_fraction), train=train_cfg,
                        student=student,
                        embed_lr=dataclasses.replace(last.embed_lr, C=float(quick_c)) if student == "embed-lr"
                        else last.embed_lr, curation=bool(curation), control=bool(control),
                        setfit_body="all" if setfit_all else "trusted")
    spec_problems = spec.validate()
except ValueError as exc:
    spec, spec_problems = None, [str(exc)]
if spec is not None and not spec_problems:
    st.session_state[K + "spec"] = dataclasses.replace(spec, train=dataclasses.replace(
        spec.train, learning_rate=last.train.learning_rate if lr_problem else spec.train.learning_rate))
    new_settings = {k: v for k, v in settings.items() if not k.startswith("train_")}
    remembered = {**spec.to_dict(), "name": None}
    if lr_problem:  # keep the last good learning rate, not the typo
        remembered["train"]["learning_rate"] = last.train.learning_rate
    new_settings["training"] = remembered
    if new_settings != settings and not store.read_only:
        try:
            store.save_settings(new_settings)
        except StoreError:  # a full disk: the settings are remembered next time
            pass

# --------------------------------------------------------------------------- what the run will use
summary = counts[source] if source != "reviewed" else build_training_data(
    task, examples, label_source="reviewed", pending=pending_rule).summary()
data = None
data_problem = None
if spec is not None:
    try:
        # the rows the job will train, validate and test on (the preview loads no model: examples without a
        # judge label are checked by the embedding judge when the run starts)
        data = prepare_job_data(store, spec, embed_judge=False)
    except (ValueError, OSError) as exc:
        data_problem = str(exc)
st.subheader("What the run will use")
if data is not None:  # what the run will train on, after the curation (not the label source's raw counts)
    summary = {**summary, **{k: data["summary"][k] for k in ("total", "seeds", "generated", "per_class") if k in data["summary"]}}
per_class = summary["per_class"]
st.caption(f"Training data: {summary['seeds']} seeds + {summary['generated']} generated examples. Per class: "
           + " · ".join(f"{quote(k)} {v}" for k, v in per_class.items()))
plan = None
if data is not None:
    report = data_report(task.class_names, {c.name: len(c.examples) for c in task.classes}, data["train_rows"],
                         data["val_rows"])
    d1, d2 = st.columns([3, 2], gap="large")
    with d1:
        st.dataframe(pd.DataFrame(report.table()), hide_index=True, width="stretch", key="train_counts",
                     height=min(400, 38 + 35 * len(report.classes)))
        dropped = {k: v for k, v in (data["summary"].get("dropped") or {}).items() if v}
        if dropped:
            words = {"rejected": "rejected", "pending": "pending (left out)", "unparseable": "relabel failed",
                     "not_relabelled": "not relabelled", "duplicate": "duplicates", "unknown_label": "unknown class",
                     "in_test_set": "repeat a test example", "empty_text": "empty",
                     "curated_flagged": "flagged as junk", "curated_disagree": "judges disagree",
                     "curated_low_confidence": "low confidence",
                     "curated_judge_labelled": "labelled by the embedding judge only"}
            st.caption("Left out: " + " · ".join(f"{v} {words.get(k, k)}" for k, v in dropped.items()))
            if dropped.get("curated_judge_labelled"):
                st.caption("The LLM was measured weak, so the embedding judge (the seeds' own nearest class) gave "
                           "the labels; unreviewed, those examples only move the model, measured -0.8 points on "
                           "average and down to -20 against the seeds alone (docs/RESULTS.md). Accept or correct "
                           "them on **3 · Review** and they train the model.")
        if spec is not None and spec.curation:
            unjudged = sum(1 for e in examples if getattr(e, "judge_label", None) is None
                           and (e.review_status or "pending") == "pending")
            if unjudged:
                st.caption(f"{unjudged} pending example{'' if unjudged == 1 else 's'} have no judge label yet: when the "
                           "run starts, the embedding judge (closest class by name and seeds) checks them too, so a "
                           "few more may be left out.")
        for w in report.warnings:
            st.warning(md_escape(w), icon=":material/warning:")
    with d2:
        choice = choose_student(student, report.n_train, len(task.classes), gpu=dev["device"] == "cuda")
        resolved = choice.student
        st.markdown(f"**Student:** {md_escape(choice.title)}" + (" *(picked)*" if choice.auto else ""))
        if choice.auto:
            st.caption(md_escape(f"Why: {choice.reason}."))
        if resolved == "finetune" and train_cfg is not None:
            plan = train_plan(train_cfg, report.n_train, len(task.classes))
            st.markdown(f"**Plan:** {plan.headline()}  \n{plan.details()}")
            for note in plan.notes():
                st.info(note, icon=":material/info:")
        elif resolved == "setfit":
            from promptmix_core.training.setfit_student import SetFitConfig, plan_steps
            from promptmix_core.training.students import student_settings

            from promptmix_core.training.students import is_trusted

            body_rule = spec.setfit_body if spec is not None else "trusted"
            n_body = (sum(1 for r in data["train_rows"] if is_trusted(r)) if body_rule == "trusted"
                      else report.n_train)
            pairs, steps = plan_steps(n_body, SetFitConfig(**student_settings("setfit", {"seed": int(seed)},
                                                                              setfit_body=body_rule)))
            if body_rule == "trusted":
                st.markdown(f"**Plan:** {steps} contrastive steps on {pairs} pairs of the {n_body} seeds and reviewed "
                            f"examples, then a logistic regression (each class weighed alike) on all {report.n_train} "
                            "training examples")
                st.caption("Machine-labelled examples train the logistic regression only: a wrong label in the "
                           "pairs is copied into forty of them. Without reviewed examples the run shares its tuned "
                           "MiniLM with the seeds-only control, so the two differ only by what the generated "
                           "examples add.")
            else:
                st.markdown(f"**Plan:** {steps} contrastive steps on {pairs} pairs of the {report.n_train} training "
                            "examples, then a logistic regression on the tuned embeddings")
        else:
            st.markdown(f"**Plan:** embed {report.n_train + report.n_val + (data['summary'].get('test') or 0)} texts "
                        f"once, then fit a logistic regression on {report.n_train} (C = {float(quick_c):g})")
        if report.n_val:
            st.caption(f"Held out: {report.n_val} generated examples. Their score is agreement with the generated "
                       "labels, not a measure: it is not charted.")
        if spec is not None and spec.control:
            n_gen = sum(1 for r in data["train_rows"] if r.get("source") != "seed")
            if not n_gen:
                st.caption("Control: this run trains on the seeds alone, so it is its own control.")
            elif data.get("test_set"):
                st.caption("Control: the same student also trains on the seeds alone (once; cached) and both are "
                           "scored on the test set, with a 95 % bootstrap interval of the difference.")
            else:
                st.caption(f":orange[:material/warning:] {NO_TEST_SET}")
        test_info = data.get("test_set")
        if test_info:
            st.markdown(f":material/fact_check: **Test set:** scored on {test_info['n']} real labelled examples "
                        f"({md_escape(test_info.get('name') or '')})")
        else:
            st.caption(f":orange[:material/warning:] {NO_TEST_SET_NOTE}")
elif data_problem:
    st.error(md_escape(data_problem))
with st.expander("Test set" + (f" · {store.test_set_info()['n']} examples" if store.test_set_info() else " · none yet")):
    render_test_set(store, task, "train_test", examples=examples)

problems = [p for p in (model_problem, lr_problem) if p] + ([] if lr_problem else spec_problems)
if store.read_only:
    problems.append("The project is read-only here, so no run can be recorded in it.")
if summary["total"] == 0 or data is None:
    problems.append("There are no training examples for this label source.")
st.divider()
go_cols = st.columns([1.3, 4])
start = go_cols[0].button("Start training", icon=":material/model_training:", type="primary", disabled=busy or bool(problems), width="stretch",
                          key="train_start")
if busy:
    go_cols[1].caption("A training job is running; its progress is shown above.")
elif problems:
    go_cols[1].caption("Fix the marked settings to start.")
else:
    go_cols[1].caption(f"{data['summary']['train']} training examples · {len(task.classes)} classes · "
                       + ("quick student on the CPU" if student == "embed-lr" else f"on {dev['device']}"))
if start:
    n_generated = sum(1 for r in data["train_rows"] if r.get("source") != "seed")
    default_name = default_run_name(source, resolved, n_generated, plan)
    spec.name = run_name.strip() or default_name
    cfg = spec.to_dict()
    try:
        job_id = start_job(store, "train", cfg)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        st.error(f"Could not start training: {md_escape(exc)}")
    else:
        st.session_state["train_flash"] = ("success", f"Started training job #{job_id}: {md_escape(spec.name)}.")
        st.rerun()

# --------------------------------------------------------------------------- history
def render_history() -> None:
    runs = store.list_runs()
    if busy and not any(r.job_id == current.id for r in runs):
        st.caption("The run in progress is shown above; it joins this table when it ends.")
    if not runs:
        if not busy:
            st.info("No training runs yet. Pick the settings above and press **Start training**.")
    else:
        rows = []
        for r in runs:
            fm = run_scores(r.final_metrics)
            tc = (r.config or {}).get("train") or {}
            kind = _student_of(r) or "finetune"
            quick = kind != "finetune"
            ctl = describe_control(r.final_metrics)
            rows.append({
                "run": r.id, "name": r.name, "status": r.status, "labels": (r.config or {}).get("label_source", r.method),
                "student": {"embed-lr": "quick (embed-lr)", "setfit": "SetFit", "auto": "picked"}.get(kind, "fine-tuned"),
                # the plan's real epochs (minimum steps raise the asked ones), as recorded by the finished run
                "epochs": "–" if quick else str((r.final_metrics or {}).get("epochs") or tc.get("epochs") or "–"),
                "learning rate": "–" if quick else (f"{tc['learning_rate']:g}" if tc.get("learning_rate") is not None
                                                     else f"auto ({default_learning_rate(len(task.classes)):g})"),
                "accuracy": fm.get("accuracy"), "macro-F1": fm.get("macro_f1"),
                "vs seeds only": (f"{ctl['delta'] * 100:+.1f} ({ctl['ci95'][0] * 100:+.1f}..{ctl['ci95'][1] * 100:+.1f})"
                                  if ctl["state"] == "compared" else {"is_control": "is the control",
                                                                      "no_test_set": "needs a test set"}.get(ctl["state"], "–")),
                "scored on": {"test set": "test set", "held-out generated examples": "generated (few)"}.get(
                    fm.get("eval"), fm.get("eval") or ""),
                "device": r.device,
                "started": fmt_time(r.started_at or r.created_at),
                "duration": fmt_duration(r.started_at, r.finished_at) if r.started_at else "–",
                "error": r.error,
            })
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={"accuracy": st.column_config.NumberColumn(format="percent"),
                                    "macro-F1": st.column_config.NumberColumn(format="percent")})


st.subheader("Run history")
# not live: the panel above follows the running run, and the page reruns once when it ends
render_history()
