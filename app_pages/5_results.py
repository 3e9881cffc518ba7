"""5 · Results: compare runs, confusion matrices, per-class scores, the embedding map, exports."""

from __future__ import annotations

import html
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

import streamlit as st

from app_pages._team import decisions_section
from app_pages._ui import (
    NO_TEST_SET_NOTE,
    can,
    configured_key,
    current_project,
    empty_state,
    header,
    md_escape,
    quote,
    require,
    run_scores,
    store_or_stop,
    task_or_stop,
)
from promptmix_core.paths import run_model_dir
from promptmix_core.export import curated_records, dataset_bytes, safe_filename, to_csv_bytes, zip_folder_bytes

header(
    "5 · Results",
    "Compare training runs, see which classes get confused, look at where the generated examples fall "
    "between the classes, and export the curated data set or a trained model.",
)
store = store_or_stop()
task = task_or_stop(store)
project = current_project() or "project"


REPORT_HELP = ("One HTML file for people who were not there: the task, what was generated, what people decided, the "
               "models beside their seeds-only control, examples and what to do next. It opens in any browser, also "
               "offline, and prints to PDF.")


def _prepare_report() -> None:
    """Build the report once, on the person's click, and keep its bytes for this session: a download of
    bytes keeps its file across reruns (a deferred one loses it when the page reruns before the click)."""
    from promptmix_core.report import build_report

    st.session_state["res_report_file"] = (str(store.path), time.time(), build_report(store).encode("utf-8"))


prepared = st.session_state.get("res_report_file")
if prepared and prepared[0] == str(store.path):
    r1, r2 = st.columns([1, 2], vertical_alignment="center")
    r1.download_button("Download report", data=prepared[2], file_name=safe_filename(f"{project}-report", "html"),
                       mime="text/html", icon=":material/summarize:", key="res_report", on_click="ignore",
                       help=REPORT_HELP)
    r2.button(f"Prepared at {time.strftime('%H:%M:%S', time.localtime(prepared[1]))}: prepare again with the "
              "latest data", key="res_report_again", on_click=_prepare_report, type="tertiary",
              icon=":material/refresh:")
else:
    st.button("Prepare the report", key="res_report_prepare", on_click=_prepare_report,
              icon=":material/summarize:", help=REPORT_HELP)
PALETTE = ["#3b5bdb", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#0c8599", "#d6336c", "#5c940d", "#868e96",
           "#1098ad", "#f59f00", "#ae3ec9"]

runs = store.list_runs()
scored = [(r, run_scores(r.final_metrics)) for r in runs]
scored = [(r, s) for r, s in scored if s["accuracy"] is not None]
test_info = store.test_set_info()


def _model_dir(run) -> Path | None:
    cand = [run.model_dir] if run.model_dir else []
    cand.append(str(run_model_dir(store.path, run.id)))
    for c in cand:
        if c and Path(c).is_dir() and any(Path(c).glob("*.safetensors")):
            return Path(c)
    return None


def describe_control(fm):
    from promptmix_core.training.control import describe

    return describe(fm)


ZIP_AT_ONCE_BYTES = 50_000_000  # models up to this size (before compression) are zipped with the page


@st.cache_data(show_spinner=False, max_entries=16)
def _dataset_bytes(digest: str, fmt: str, _records: list[dict]) -> bytes:
    """One export format of a data set, built once per content (``digest``) and format."""
    return dataset_bytes(_records, fmt)


def _dataset_files(records: list[dict]) -> dict[str, bytes]:
    """CSV, JSONL and Parquet of ``records``: the JSONL (cheap) names the content for the cache."""
    import hashlib

    jsonl = dataset_bytes(records, "jsonl")
    digest = hashlib.sha1(jsonl).hexdigest()
    return {"csv": _dataset_bytes(digest, "csv", records), "jsonl": jsonl,
            "parquet": _dataset_bytes(digest, "parquet", records)}


def _folder_signature(folder: Path) -> str:
    """Names, sizes and times of a model folder's files: a retrained model gets a new zip."""
    import hashlib

    parts = sorted(f"{p.relative_to(folder)}:{st_.st_size}:{st_.st_mtime_ns}"
                   for p in folder.rglob("*") if p.is_file() for st_ in [p.stat()])
    return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()


@st.cache_resource(show_spinner=False, max_entries=2)
def _model_zip(folder: str, signature: str, root_name: str) -> bytes:
    """A model folder zipped once per content (shared by the sessions; the bytes are never changed)."""
    return zip_folder_bytes(folder, root_name=root_name)


def _student(run, short: bool = False) -> str:
    kind = (run.final_metrics or {}).get("student") or (run.config or {}).get("student") or "finetune"
    from promptmix_core.training.plan import STUDENT_WORDS, STUDENTS

    return "fine-tuned" if kind == "finetune" else (STUDENT_WORDS if short else STUDENTS).get(kind, kind)


def _eval_caption(s: dict) -> str:
    if s["eval"] == "test set":
        return f"on {s['n'] or '?'} test examples"
    return f"on {s['n'] or '?'} {s['eval'] or 'examples'}"

# --------------------------------------------------------------------------- run comparison
st.subheader("Compare runs")
if not scored:
    running = [r for r in runs if r.status in ("queued", "running")]
    unscored = [r for r in runs if r.status == "done"]
    if running:
        title, body = f"Run #{running[0].id} is still training", "Its scores appear here side by side once it ends."
    elif unscored:
        title = f"Run #{unscored[0].id} finished without scores"
        body = ("It had no test set and no held-out rows, so nothing measured it. Add real labelled texts on "
                "1 · Task (Test set tab) and train again: the run and its seeds-only control are then scored "
                "side by side here.")
    else:
        title, body = "No finished runs yet", "Train a classifier first; finished runs with their scores appear here side by side."
    empty_state(title, body, page="train", link_label="Go to 4 · Train")
else:
    labels_for = {r.id: f"#{r.id} · {r.name or r.method}" for r, _ in scored}
    chosen = st.multiselect("Runs to compare", [r.id for r, _ in scored], default=[r.id for r, _ in scored[:3]],
                            format_func=labels_for.get, key=f"res_runs::{project}")
    picked = [(r, s) for r, s in scored if r.id in chosen]
    if not picked:
        st.info("Pick at least one run above.")
    else:
        cards = st.container(horizontal=True, wrap=True)  # side by side where they fit, else wrapped
        for r, s in picked:
            ctl = describe_control(r.final_metrics)
            with cards.container(border=True, width=272):
                st.markdown(f"**{md_escape(labels_for[r.id])}**")
                st.caption(f"labels {md_escape((r.config or {}).get('label_source', r.method))} · "
                           f"{_student(r)} · {md_escape(r.device or 'device ?')}")
                a, b = st.columns(2)
                # the delta is always against the run's own seeds-only control (same student, same test rows)
                delta_a = ctl.get("delta") if ctl["state"] == "compared" else None
                a.metric("Accuracy", f"{s['accuracy']:.1%}",
                         delta=f"{delta_a * 100:+.1f} pts" if delta_a is not None else None,
                         help="The change is against this run's own seeds-only control: the same student on the "
                              "seeds alone, scored on the same test rows (see below)." if delta_a is not None else None)
                f1 = s["macro_f1"]
                b.metric("Macro-F1", f"{f1:.1%}" if f1 is not None else "–")
                if s["eval"] == "test set":
                    st.caption(f":material/fact_check: {_eval_caption(s)}")
                else:
                    st.caption(f":orange[:material/warning: {_eval_caption(s)}]")
                if ctl["state"] == "compared":
                    lo, hi = ctl["ci95"]
                    words = {"better": ":green[generated data helped]", "worse": ":red[generated data made it worse]",
                             "unclear": "no clear difference"}[ctl["verdict"]]
                    st.caption(f"Seeds-only control {ctl['control_accuracy']:.1%}; 95 % interval of the difference "
                               f"{lo * 100:+.1f}..{hi * 100:+.1f} pts: {words}.")
                elif ctl["state"] == "is_control":
                    st.caption("Trained on the seeds alone: the control itself.")
                else:
                    why = (" (it needs a test set)." if ctl["state"] == "no_test_set"
                           else " (the control was turned off for this run)." if (r.config or {}).get("control") is False
                           else " (trained before controls).")
                    st.caption("No seeds-only control for this run" + why)
        if len(picked) > 1:
            st.caption("Deltas compare each run with its own seeds-only control (the same student on the seeds "
                       "alone, scored on the same test rows), never with another run.")
            if len({s["eval"] for _, s in picked}) > 1 or len({s["n"] for _, s in picked}) > 1:
                st.caption(":material/warning: These runs were scored on different data; compare like with like.")
        if any(s["eval"] != "test set" for _, s in picked):
            if test_info:
                st.warning("Some of these runs ran before the project had its test set: their scores come from "
                           "a few held-out *generated* examples and mean little. Train again to score them on the "
                           f"{test_info['n']} test examples.", icon=":material/warning:")
            else:
                st.warning(NO_TEST_SET_NOTE, icon=":material/warning:")

        fig = go.Figure()
        for i, (r, s) in enumerate(picked):
            fig.add_bar(name=html.escape(labels_for[r.id]), x=["Accuracy", "Macro-F1"], y=[s["accuracy"], s["macro_f1"] or 0],
                        marker_color=PALETTE[i % len(PALETTE)], texttemplate="%{y:.1%}", textposition="outside",
                        cliponaxis=False)
        # scores are shares: the axis is 0-100 % whatever the values (labels may stand above it)
        fig.update_layout(barmode="group", height=300, yaxis=dict(range=[0, 1], tickformat=".0%", fixedrange=True),
                          margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.15))
        pc_fig = go.Figure()
        classes = task.class_names
        for i, (r, s) in enumerate(picked):
            pc = s["per_class"]
            pc_fig.add_bar(name=html.escape(labels_for[r.id]), x=[html.escape(c) for c in classes], y=[(pc.get(c) or {}).get("f1", 0) for c in classes],
                           marker_color=PALETTE[i % len(PALETTE)])
        pc_fig.update_layout(barmode="group", height=300, yaxis=dict(range=[0, 1], tickformat=".0%", title="F1",
                                                                    fixedrange=True),
                             margin=dict(l=10, r=10, t=20, b=10), legend=dict(orientation="h", y=-0.35))
        g1, g2 = st.columns(2)
        with g1:
            st.markdown("**Overall**")
            st.plotly_chart(fig, width="stretch", config={"displayModeBar": False}, key="res_overall")
        with g2:
            st.markdown("**F1 per class**")
            st.plotly_chart(pc_fig, width="stretch", config={"displayModeBar": False}, key="res_per_class")

        st.markdown("**Confusion matrix and per-class scores**")
        tabs = st.tabs([md_escape(labels_for[r.id]) for r, _ in picked])
        for tab, (r, s) in zip(tabs, picked):
            with tab:
                st.caption(f"Scores {_eval_caption(s)}, over all {len(s['labels'])} classes "
                           "(rows: true class, columns: predicted).")
                left, right = st.columns([3, 2])
                with left:
                    if s["matrix"]:
                        z = np.array(s["matrix"], dtype=float)
                        rowsum = z.sum(axis=1, keepdims=True)
                        share = np.divide(z, rowsum, out=np.zeros_like(z), where=rowsum > 0)
                        hm = go.Figure(go.Heatmap(
                            z=share, x=[html.escape(str(c)) for c in s["columns"]], y=[html.escape(str(c)) for c in s["labels"]], colorscale="Blues", zmin=0, zmax=1,
                            text=z.astype(int), texttemplate="%{text}", showscale=False,
                            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} examples (%{z:.0%})<extra></extra>",
                        ))
                        hm.update_layout(height=120 + 45 * len(s["labels"]), margin=dict(l=10, r=10, t=10, b=10),
                                         xaxis=dict(title="predicted", side="bottom"),
                                         yaxis=dict(title="true", autorange="reversed"))
                        st.plotly_chart(hm, width="stretch", config={"displayModeBar": False}, key=f"res_cm_{r.id}")
                    else:
                        st.info("This run recorded no confusion matrix.")
                with right:
                    pc = s["per_class"]
                    if pc:
                        st.dataframe(
                            pd.DataFrame([{"class": c, "precision": v.get("precision"), "recall": v.get("recall"),
                                           "F1": v.get("f1"), "support": v.get("support")} for c, v in pc.items()]),
                            hide_index=True, width="stretch",
                            column_config={k: st.column_config.NumberColumn(format="%.2f")
                                           for k in ("precision", "recall", "F1")},
                        )
                    fm = r.final_metrics or {}
                    data = fm.get("data") or {}
                    if fm.get("student") in ("embed-lr", "setfit"):
                        st.caption(f"{'SetFit' if fm['student'] == 'setfit' else 'Quick'} student trained on {data.get('train', fm.get('n_train', '?'))} examples"
                                   f" ({data.get('seeds', '?')} seeds) in {fm.get('train_time_s', '?')} s.")
                    else:
                        st.caption(
                            f"Trained on {data.get('train', fm.get('n_train', '?'))} examples"
                            f" ({data.get('seeds', '?')} seeds) for {fm.get('epochs', '?')} epochs, "
                            f"{fm.get('steps', '?')} steps, in {fm.get('train_time_s', '?')} s."
                        )
                    used = store.get_run_examples(r.id)
                    if used:
                        n_by = {sp: sum(u["split"] == sp for u in used) for sp in ("train", "val", "test")}
                        st.download_button(
                            f"Rows this run used ({n_by['train']} train · {n_by['val']} validation · {n_by['test']} test)",
                            data=to_csv_bytes([{k: u[k] for k in ("split", "text", "label", "source", "example_id")}
                                               for u in used]),
                            file_name=safe_filename(f"{project}-run-{r.id}-rows", "csv"), mime="text/csv",
                            icon=":material/download:", key=f"res_rows_{r.id}", on_click="ignore",
                            help="Exactly the texts and labels the run trained, validated and was tested on "
                                 "(example_id: the generated example's id)")
                    if s["eval"] == "test set" and fm.get("val_accuracy") is not None:
                        st.caption(f"On {fm.get('val_n', '?')} held-out generated examples: accuracy "
                                   f"{fm['val_accuracy']:.1%} (agreement with the generated labels).")

# --------------------------------------------------------------------------- try the model
st.divider()
st.subheader("Try the model")
with_models = [(r, _model_dir(r)) for r in runs if r.status == "done"]
with_models = [(r, d) for r, d in with_models if d is not None]
if not with_models:
    st.info("No saved model yet: once a training run finishes, type a text here to see what it predicts.")
else:
    from promptmix_core.task import TaskError
    from promptmix_core.training.config import ModelLoadError
    from promptmix_core.training.inference import TEXT_FILE_TYPES, classify, read_texts

    try_names = {r.id: f"#{r.id} · {r.name or r.method} · {_student(r, short=True)}" for r, _ in with_models}
    try_dirs = {r.id: d for r, d in with_models}
    try_run = st.selectbox("Model", list(try_dirs), format_func=try_names.get, key=f"res_try_run::{project}")
    t1, t2 = st.columns([1, 2], gap="large")
    with t1:
        try_text = st.text_area("Text", key=f"res_try_text::{project}", height=100,
                                placeholder="Type a sentence, e.g. a customer message")
        do_try = st.button("Classify", icon=":material/play_arrow:", type="primary", key="res_try_btn",
                           disabled=not (try_text or "").strip())
    OUT_KEY = f"res_try_out::{project}"
    if do_try and (try_text or "").strip():
        try:
            with st.spinner("Loading the model and classifying…"):
                pred = classify(try_dirs[try_run], [try_text.strip()])
        except (ModelLoadError, OSError, ValueError) as exc:
            st.session_state[OUT_KEY] = {"run": try_run, "text": try_text, "error": str(exc)}
        else:
            st.session_state[OUT_KEY] = {"run": try_run, "text": try_text, "ranked": pred.ranked(0)}
    out = st.session_state.get(OUT_KEY)
    with t2:
        if out and out["run"] == try_run and out["text"] == try_text:
            if out.get("error"):
                st.error(f"The model could not be used: {md_escape(out['error'])}")
            else:
                ranked = out["ranked"]
                best, p_best = ranked[0]
                st.markdown(f"Predicted class: {quote(best)} · probability **{p_best:.1%}**")
                shown = ranked[:12]
                bar = go.Figure(go.Bar(
                    x=[p for _, p in shown][::-1], y=[html.escape(c) for c, _ in shown][::-1], orientation="h",
                    marker_color=[PALETTE[0] if c == best else "#adb5bd" for c, _ in shown][::-1],
                    texttemplate="%{x:.1%}", textposition="outside", cliponaxis=False,
                    hovertemplate="%{y}: %{x:.2%}<extra></extra>",
                ))
                bar.update_layout(height=80 + 32 * len(shown), margin=dict(l=10, r=40, t=10, b=10),
                                  xaxis=dict(range=[0, 1], tickformat=".0%", title="probability"))
                st.plotly_chart(bar, width="stretch", config={"displayModeBar": False}, key="res_try_chart")
                if len(ranked) > len(shown):
                    st.caption(f"The {len(shown)} most probable of {len(ranked)} classes.")
        else:
            st.caption("The predicted class and the probability of every class appear here.")

    st.markdown("**Classify a file of texts**")
    b1, b2 = st.columns([2, 1], vertical_alignment="bottom")
    batch_up = b1.file_uploader("CSV (a text column), JSONL (a text field) or TXT (one text per line)",
                                type=list(TEXT_FILE_TYPES), key=f"res_batch_file::{project}")
    BATCH_KEY = f"res_batch_out::{project}"
    batch_texts: list[str] = []
    if batch_up is not None:
        try:
            batch_texts = read_texts(batch_up.getvalue(), batch_up.name)
        except TaskError as exc:
            st.error(md_escape(exc))
        else:
            if not batch_texts:
                st.warning(f"{md_escape(batch_up.name)} has no texts.")
    go_batch = b2.button(f"Classify {len(batch_texts)} texts" if batch_texts else "Classify the file",
                         icon=":material/playlist_play:", key="res_batch_btn", disabled=not batch_texts,
                         width="stretch")
    if go_batch and batch_texts:
        bar_slot = st.progress(0.0, text=f"Classifying 0 / {len(batch_texts)}…")

        def _progress(done: int, total: int) -> None:
            bar_slot.progress(done / total, text=f"Classifying {done} / {total}…")

        try:
            pred = classify(try_dirs[try_run], batch_texts, progress=_progress)
        except (ModelLoadError, OSError, ValueError) as exc:
            bar_slot.empty()
            st.error(f"The model could not be used: {md_escape(exc)}")
        else:
            bar_slot.progress(1.0, text=f"Classified {len(pred)} texts.")
            counts = pd.Series(pred.predicted).value_counts()
            st.session_state[BATCH_KEY] = {
                "file": batch_up.name, "run": try_run, "csv": pred.to_csv_bytes(), "n": len(pred),
                "preview": pd.DataFrame([{"text": t, "predicted": lab, "probability": pred.confidence(i)}
                                         for i, (t, lab) in enumerate(zip(pred.texts[:8], pred.predicted[:8]))]),
                "counts": {str(k): int(v) for k, v in counts.items()},
            }
    res = st.session_state.get(BATCH_KEY)
    if res and batch_up is not None and res["file"] == batch_up.name:
        st.caption(f"{res['n']} texts of {md_escape(res['file'])} classified with {md_escape(try_names.get(res['run'], ''))}. "
                   "Predicted: " + " · ".join(f"{quote(k)} {v}" for k, v in res["counts"].items()))
        st.dataframe(res["preview"], hide_index=True, width="stretch",
                     column_config={"probability": st.column_config.NumberColumn(format="percent")})
        st.download_button("Predictions (CSV)", data=res["csv"], icon=":material/download:",
                           file_name=safe_filename(f"{project}-predictions-run-{res['run']}", "csv"),
                           mime="text/csv", key="res_batch_dl", on_click="ignore",
                           help="text, predicted label, its probability and one column per class")

# --------------------------------------------------------------------------- aim generation at confusions
st.divider()
st.subheader("Generate where the model is confused")
if not with_models:
    st.info("Once a training run finishes, the class pairs its model confuses most are listed here, with one "
            "click to generate more borderline examples for exactly those pairs.")
else:
    import dataclasses

    from promptmix_core.confusion import directed, suggest_pairs
    from promptmix_core.jobs import start_job
    from promptmix_core.errors import SpecError
    from promptmix_core.llm.config import bound_key
    from promptmix_core.specs import GenerationSpec

    conf_run = st.selectbox("Run", [r.id for r, _ in with_models], format_func=lambda i: try_names[i],
                            key="conf_run", help="The pairs come from this run's test set or validation split; "
                                                 "without either, from its close calls on the generated examples")
    run = next(r for r, _ in with_models if r.id == conf_run)
    fm = run.final_metrics or {}
    pool_probs = None
    if not any(isinstance(fm.get(k), dict) for k in ("test_confusion", "val_confusion")):
        pool = [e.text for e in store.list_examples()][:2000]
        if pool:
            try:
                with st.spinner(f"Reading the model's close calls on {len(pool)} generated examples..."):
                    pool_probs = classify(try_dirs[conf_run], pool).probs
            except (ModelLoadError, OSError) as exc:
                st.warning(f"Could not load run #{conf_run}'s model: {md_escape(exc)}")
    confused, where = suggest_pairs(fm, task.class_names, pool_probs=pool_probs, top=3)
    if not confused:
        st.success("This run confuses no pair of classes on its labelled data: nothing to aim at.")
    else:
        counted = "errors" if where != "generated pool" else "close calls"
        st.caption(f"Most confused pairs of run #{conf_run}, read from its {where} ({counted} in both directions)."
                   + (" Close calls on generated examples are a weaker signal than errors on real labelled "
                      "data: add a test set for a better aim." if where == "generated pool" else ""))
        st.dataframe(pd.DataFrame([{"class": p.a, "confused with": p.b, counted: p.count,
                                    f"{p.a} read as {p.b}": p.a_as_b, f"{p.b} read as {p.a}": p.b_as_a}
                                   if where != "generated pool" else
                                   {"class": p.a, "confused with": p.b, counted: p.count} for p in confused]),
                     hide_index=True, width="stretch")
        pairs = directed(confused)
        jobs = [j for j in store.list_jobs("generate") if not (j.config or {}).get("demo")]
        base, base_problem = GenerationSpec(), None
        if jobs:
            try:
                base = GenerationSpec.from_stored(jobs[0].config)
            except SpecError as exc:
                base_problem = (f"The settings of generation job #{jobs[0].id} cannot be read ({md_escape(exc)}): "
                                "start a generation on the Generate page first.")
        if base_problem is None and "://***@" in str(base.llm.base_url or ""):
            base_problem = ("The last generation job's endpoint has a user and password in its URL, which are never "
                            "saved: start this round from the Generate page, where they can be typed again.")
        # the operator's key goes only to the endpoint it was configured for
        found_key, _source, key_home = configured_key()
        round_key = bound_key(base.llm.base_url, found_key, key_home)
        c1, c2 = st.columns([1, 2], gap="large")
        n_more = c1.number_input("Examples per class and pair direction", 1, 200, value=min(base.generation.per_class, 10),
                                 key="conf_n", help="Ci mixed with Cj at alpha drawn as usual; then relabelled and "
                                                    "queued for review like any other job")
        busy = any(j.active for j in store.list_jobs("generate"))
        go_ = c2.button(f"Generate {int(n_more) * len({a for a, _ in pairs})} examples for these pairs",
                        icon=":material/target:", type="primary",
                        disabled=busy or bool(base_problem) or not can("generate"), key="conf_go",
                        help="Uses the endpoint of the last generation job" if jobs else "Uses the default endpoint")
        if busy:
            c2.caption("A generation job is running; start this when it is done.")
        if base_problem:
            c2.warning(base_problem)
        if go_ and not base_problem:
            require("generate")
            spec = dataclasses.replace(base, demo=False, generation=dataclasses.replace(
                base.generation, per_class=int(n_more), pairs=tuple(tuple(p) for p in pairs), mixup=True))
            try:
                job_id = start_job(store.path, "generate", spec.to_dict(), api_key=round_key,
                                   key_endpoint=key_home if round_key else None)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                st.error(f"Could not start the job: {md_escape(exc)}")
            else:
                st.success(f"Started job #{job_id}: follow it on the Generate page, then review its examples.")

# --------------------------------------------------------------------------- the embedding map
st.divider()
st.subheader("Where the examples fall")
st.caption("Seeds and generated examples embedded with MiniLM and projected to 2-D (PCA). Borderline examples "
           "(low α) should sit between their class and the class mixed in.")
examples = store.list_examples()


@st.cache_data(show_spinner=False, max_entries=8)
def project_2d(texts: tuple[str, ...]) -> np.ndarray:
    from promptmix_core.embed import embed_texts

    emb = np.asarray(embed_texts(list(texts)), dtype=float)
    centred = emb - emb.mean(axis=0, keepdims=True)
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def _hover(text: str) -> str:
    return "<br>".join(textwrap.wrap(html.escape(text), 60)[:6])


seeds = task.seed_rows()
texts = tuple([r["text"] for r in seeds] + [e.text for e in examples])
MAP_KEY = f"res_map::{project}"
if len(texts) < 3:
    st.info("The map needs at least three texts.")
elif not st.session_state.get(MAP_KEY):
    st.button(f"Draw the map ({len(texts)} texts)", key="res_map_btn", icon=":material/scatter_plot:",
              on_click=lambda: st.session_state.__setitem__(MAP_KEY, True),
              help="Loads the MiniLM embedding model (a few seconds the first time)")
else:
    try:
        with st.spinner("Embedding the texts…"):
            xy = project_2d(texts)
    except Exception as exc:  # noqa: BLE001 - the map is optional
        st.info(f"The map is not available: {md_escape(exc)}")
    else:
        color_by = st.radio("Colour generated examples by", ["written for", "final label"], horizontal=True,
                            key="res_map_color")
        colour = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(task.class_names)}
        fig = go.Figure()
        n_seed = len(seeds)
        gen_xy = xy[n_seed:]
        for c in task.class_names:
            idx = [i for i, e in enumerate(examples)
                   if (e.intended_label if color_by == "written for" else e.final_label) == c]
            if idx:
                alphas = [examples[i].alpha if examples[i].alpha is not None else 1.0 for i in idx]
                fig.add_scatter(
                    x=gen_xy[idx, 0], y=gen_xy[idx, 1], mode="markers", name=f"{html.escape(c)} (generated)",
                    legendgroup=c, marker=dict(color=colour[c], size=[6 + 10 * (1 - a) * 2 for a in alphas],
                                               opacity=0.65, line=dict(width=0)),
                    hovertext=[f"{_hover(examples[i].text)}<br><b>written for</b> {html.escape(examples[i].intended_label)}"
                               f"<br><b>mixed with</b> {html.escape(examples[i].mixed_with or '–')}"
                               f"<br><b>α</b> {alphas[k]:.2f}<br><b>final</b> {html.escape(examples[i].final_label or 'rejected')}"
                               for k, i in enumerate(idx)],
                    hoverinfo="text",
                )
            sidx = [i for i, r in enumerate(seeds) if r["label"] == c]
            if sidx:
                fig.add_scatter(
                    x=xy[sidx, 0], y=xy[sidx, 1], mode="markers", name=f"{html.escape(c)} (seed)", legendgroup=c,
                    marker=dict(color=colour[c], size=16, symbol="star", line=dict(width=1.5, color="white")),
                    hovertext=[f"{_hover(seeds[i]['text'])}<br><b>seed of</b> {html.escape(c)}" for i in sidx],
                    hoverinfo="text",
                )
        fig.update_layout(height=520, margin=dict(l=10, r=10, t=10, b=10),
                          xaxis=dict(title="PC 1", zeroline=False, showticklabels=False),
                          yaxis=dict(title="PC 2", zeroline=False, showticklabels=False),
                          legend=dict(orientation="v", x=1.01, y=1))
        st.plotly_chart(fig, width="stretch", key="res_map")
        st.caption("Stars: seeds · dots: generated examples; bigger dots are more borderline (lower α). Hover for the text.")

# --------------------------------------------------------------------------- export
st.divider()
st.subheader("Export")
exp_l, exp_r = st.columns(2, gap="large")
with exp_l:
    st.markdown("**Curated data set**")
    src_opts = {"reviewed": "Reviewed (your decisions)", "a2": "A2 · LLM relabel", "a1": "A1 · written-for class"}
    default_src = "reviewed" if any(e.review_status != "pending" for e in examples) else "a2"
    src = st.selectbox("Labels", list(src_opts), format_func=src_opts.get, index=list(src_opts).index(default_src),
                       key="res_exp_src")
    pending = "drop"
    if src == "reviewed":
        pending = st.radio("Examples not reviewed yet", ["a2", "drop"], horizontal=True, key="res_exp_pending",
                           format_func={"a2": "Include with the LLM relabel", "drop": "Leave out"}.get)
    with_seeds = st.checkbox("Include the seed examples", value=True, key="res_exp_seeds")
    records = curated_records(task, examples, label_source=src, pending=pending, include_seeds=with_seeds)
    n_gen = sum(r["source"] == "generated" for r in records)
    st.caption(f"{len(records)} rows: {len(records) - n_gen} seeds, {n_gen} generated. Rejected examples are "
               "always left out.")
    if records:
        st.dataframe(pd.DataFrame(records)[["text", "label", "source"]].head(6), hide_index=True, width="stretch")
    d1 = d2 = d3 = st.container(horizontal=True, wrap=True)
    stem = f"{project}-dataset"
    # the files themselves, not deferred callables: a deferred download's id changes on every rerun and
    # the old one is dropped when the rerun ends, so a click just before or during a rerun gave no file
    # and no message. Bytes get an id from their content, the same on every rerun (built once, cached).
    files = _dataset_files(records) if records else {"csv": b"", "jsonl": b"", "parquet": b""}
    d1.download_button("CSV", icon=":material/download:", data=files["csv"], file_name=safe_filename(stem, "csv"),
                       mime="text/csv", disabled=not records, key="res_dl_csv", on_click="ignore",
                       help="Cells starting with = + - @ get a leading ' so spreadsheets do not run them")
    d2.download_button("JSONL", icon=":material/download:", data=files["jsonl"],
                       file_name=safe_filename(stem, "jsonl"), mime="application/jsonl", disabled=not records,
                       key="res_dl_jsonl", on_click="ignore")
    d3.download_button("Parquet", icon=":material/download:", data=files["parquet"],
                       file_name=safe_filename(stem, "parquet"), mime="application/vnd.apache.parquet",
                       disabled=not records, key="res_dl_parquet", on_click="ignore")

with exp_r:
    st.markdown("**Trained model**")
    if not with_models:  # the finished runs with a saved model, found for "Try the model" above
        st.info("No saved model yet: a finished training run's model folder can be downloaded here as a zip.")
    else:
        names = {r.id: f"#{r.id} · {r.name or r.method}" for r, _ in with_models}
        rid = st.selectbox("Run", [r.id for r, _ in with_models], format_func=names.get, key=f"res_model_run::{project}")
        folder = dict((r.id, d) for r, d in with_models)[rid]
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        quick = _student(dict((r.id, r) for r, _ in with_models)[rid]).startswith("quick")
        st.caption(f"{len(list(folder.rglob('*')))} files, {size / 1e6:.1f} MB before compression. Load it with "
                   "`promptmix predict`" + (" (logistic-regression weights over all-MiniLM-L6-v2 embeddings)."
                                            if quick else " or transformers' `AutoModelForSequenceClassification`."))
        sig = _folder_signature(folder)
        if size > ZIP_AT_ONCE_BYTES and not st.session_state.get(f"res_zip_ready::{folder}::{sig}"):
            # a large model is zipped on request (seconds), once; then its file is offered
            if st.button(f"Prepare the zip ({size / 1e6:.0f} MB)", icon=":material/folder_zip:", width="stretch",
                         key="res_zip_prepare"):
                with st.spinner("Zipping the model…"):
                    _model_zip(str(folder), sig, f"run-{rid}")
                st.session_state[f"res_zip_ready::{folder}::{sig}"] = True
                st.rerun()
        else:
            st.download_button("Model (zip)", icon=":material/download:", data=_model_zip(str(folder), sig, f"run-{rid}"),
                               file_name=safe_filename(f"{project}-run-{rid}-model", "zip"), mime="application/zip",
                               width="stretch", key="res_dl_model", on_click="ignore")

# --------------------------------------------------------------------------- who decided what
st.divider()
decisions_section(store, project)
