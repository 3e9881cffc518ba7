"""The Review page's team parts: reviews per example (owners set it), the owners' adjudication queue,
and agreement between reviewers. Thin: the rules live in ``promptmix_core.store.team`` and
``promptmix_core.agreement``; who may do what in ``promptmix_core.access``."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from app_pages._ui import can, md_escape, require, reviewer_name
from promptmix_core.agreement import project_agreement
from promptmix_core.export import FORMATS, dataset_bytes, decision_records, safe_filename
from promptmix_core.store import ProjectStore, StoreError
from promptmix_core.store.team import MAX_REVIEWS_PER_EXAMPLE


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0%}" if pct else f"{v:.2f}"


def _save_needed(store: ProjectStore, key: str) -> None:
    if not can("settings"):  # the widget is drawn for owners only; a crafted rerun changes nothing
        return
    try:
        store.set_reviews_per_example(int(st.session_state[key]))
    except (StoreError, ValueError) as exc:
        st.session_state["rv_flash"] = ("error", f"Not saved: {md_escape(exc)}.")


def team_panel(store: ProjectStore, classes: Sequence[str], project: str) -> None:
    """Reviews per example, the adjudication queue (owners) and the agreement figures."""
    needed = store.reviews_per_example()
    title = f"Team review · {needed} review{'s' if needed != 1 else ''} per example · you are {reviewer_name()}"
    with st.expander(title, icon=":material/groups:"):
        key = f"rv_needed::{project}"
        if can("settings"):
            st.session_state.setdefault(key, needed)
            st.number_input(
                "Reviews per example", 1, MAX_REVIEWS_PER_EXAMPLE, key=key, on_change=_save_needed,
                args=(store, key),
                help="How many reviewers decide each example. With 2 or more, an example stays in the queue of "
                     "everyone who has not decided it until it has that many decisions; you never see your own "
                     "decided examples again. When they all agree that is the final label; when they disagree it "
                     "waits for an owner below. Training and exports use final labels only.")
        else:
            st.caption(f"Each example needs {needed} decision{'s' if needed != 1 else ''} (an owner sets this).")
        if needed > 1:
            st.caption("Final label: the reviewers' shared answer when all agree (Accept counts as the example's "
                       "current class, Reject as rejected); otherwise an owner decides.")
            _adjudication(store, classes)
        _agreement(store)


def _adjudication(store: ProjectStore, classes: Sequence[str]) -> None:
    conflicts = store.adjudication_queue()
    st.markdown(f"**Conflicts waiting for an owner: {len(conflicts)}**")
    if not conflicts:
        return
    if not can("adjudicate"):
        st.caption("An owner decides these.")
        return
    for c in conflicts[:20]:
        with st.container(border=True):
            st.markdown(md_escape(c["text"]))
            st.caption(" · ".join(f"{md_escape(v['reviewer'])}: {md_escape(v['says'])}" for v in c["votes"]))
            opts = ["reject"] + list(classes)
            says = [v["says"] for v in c["votes"] if v["says"] in classes]
            pick = st.selectbox("Final", opts, index=opts.index(says[0]) if says else 0, key=f"adj_pick::{c['id']}",
                                label_visibility="collapsed")
            if st.button("Decide", key=f"adj_go::{c['id']}", icon=":material/gavel:"):
                require("adjudicate")
                if pick == "reject":
                    decision, label = "rejected", None
                elif pick == c["label"]:
                    decision, label = "accepted", None
                else:
                    decision, label = "overridden", pick
                try:
                    store.adjudicate(c["id"], decision, label=label, reviewer=reviewer_name())
                except (StoreError, KeyError) as exc:
                    st.error(f"Not saved: {md_escape(exc)}.")
                else:
                    st.rerun()


def _agreement(store: ProjectStore) -> None:
    st.markdown("**Agreement**")
    people, mark = store.reviewers_and_mark()
    if people < 2:
        st.caption("The agreement figures appear once two people have made decisions on this project.")
        return
    # computed again only when a decision was logged since (the log's last id), at most once per run
    cached = st.session_state.get("rv_agreement")
    if cached and cached[0] == (str(store.path), mark):
        a = cached[1]
    else:
        a = project_agreement(store)
        st.session_state["rv_agreement"] = ((str(store.path), mark), a)
    st.markdown(
        f"Krippendorff's alpha (nominal): **{_fmt(a.alpha)}** over {a.alpha_n} example"
        f"{'s' if a.alpha_n != 1 else ''} with two or more decisions · {a.votes} decisions on {a.examples} examples")
    if a.pairs:
        st.dataframe(pd.DataFrame([{"reviewers": f"{p['a']} / {p['b']}", "Cohen's kappa": _fmt(p["kappa"]),
                                    "same answer": _fmt(p["agree"], True), "examples": p["n"]} for p in a.pairs]),
                     hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame([{
        "reviewer": r["reviewer"], "decisions": r["decisions"],
        "per hour": "n/a" if r["per_hour"] is None else f"{r['per_hour']:.0f}",
        "agrees with LLM": f"{_fmt(r['llm_agree'], True)} (n={r['llm_n']})",
        "agrees with judge": f"{_fmt(r['judge_agree'], True)} (n={r['judge_n']})",
    } for r in a.reviewers]), hide_index=True, width="stretch")
    if a.per_class:
        st.dataframe(pd.DataFrame([{"class": c["class"], "disagreement": _fmt(c["share"], True),
                                    "examples": c["n"]} for c in a.per_class]), hide_index=True, width="stretch")


def decisions_section(store: ProjectStore, project: str) -> None:
    """The Results page's list of decisions: who decided what, when; downloads as CSV, JSONL or Parquet
    (the same rows as ``promptmix export PROJECT --decisions``)."""
    records = decision_records(store)
    st.subheader("Decisions and reviewers")
    if not records:
        st.caption("No review decisions yet.")
        return
    who = sorted({r["reviewer"] for r in records})
    st.caption(f"{len(records)} decisions by {len(who)} reviewer{'s' if len(who) != 1 else ''} "
               f"({', '.join(md_escape(w) for w in who)}); final labels follow the rule on the Review page.")
    df = pd.DataFrame(records)
    st.dataframe(df.tail(500), hide_index=True, width="stretch", height=260)
    cols = st.columns(len(FORMATS))
    for col, fmt in zip(cols, FORMATS):
        col.download_button(f"Decisions as {fmt.upper()}", dataset_bytes(records, fmt),
                            file_name=safe_filename(f"{project}-decisions", fmt), key=f"res_dec_{fmt}",
                            on_click="ignore", width="stretch")
