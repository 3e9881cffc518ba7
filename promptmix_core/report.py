"""A project's report: one self-contained HTML file that tells its story to people who were not there.

``build_report(store)`` reads everything from the project store and returns the HTML as a string:
the task, what was generated (per class and kind, the LLM and its settings, calls, tokens and cost
where known), what people decided (per class, reviewers, how often the LLM relabel and the student
judge agreed with them), the models (every run beside its seeds-only control where one was
recorded, the best run's confusion matrix and per-class scores), a few example rows per class and
what to do next. Where something is missing (no test set, no control, one run, no review) the
report says so. Plotly's JavaScript is inlined from the installed ``plotly`` package once: the file
opens from disk with no request leaving it, and prints to PDF (print CSS).

Pure: no Streamlit; every user text is HTML-escaped and every value passes ``scrub_secrets``;
job settings are shown from a fixed list of fields, never the raw config (no key can reach it).
``promptmix report PROJECT --out report.html`` and the Results page's "Download report" use it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import __version__
from .scores import run_scores
from .redact import known_secrets, scrub_secrets
from .store import ProjectStore

#: generation settings the report shows (a fixed list: nothing else of a job's config is printed)
GEN_FIELDS = (("per_class", "examples per class"), ("group_size", "classes per prompt"), ("mixup", "mixup"),
              ("examples_per_call", "examples per call"), ("temperature", "temperature"), ("top_p", "top-p"),
              ("seed", "seed"), ("relabel", "relabelled"), ("nearest", "classes shown to the relabeller"))
EXAMPLES_PER_CLASS = 4
PALETTE = ["#3b5bdb", "#f08c00", "#2f9e44", "#e03131", "#7048e8", "#0c8599", "#d6336c", "#5c940d"]


# ----------------------------------------------------------------------------- small helpers
def _clean(value: Any) -> Any:
    return scrub_secrets(value, known_secrets())


def esc(value: Any) -> str:
    """A value as HTML text: secrets scrubbed, then escaped (quotes too)."""
    return html.escape(str(_clean("" if value is None else value)), quote=True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _pts(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} pts"


def _num(x: Any) -> float | None:
    try:
        return None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None


def _date(ts: Any) -> str:
    t = _num(ts)
    if t is None:
        return "unknown date"
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _day(ts: Any) -> str:
    t = _num(ts)
    return "–" if t is None else _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%d")


def _host(url: Any) -> str:
    """An endpoint as host only (no credentials, path or query)."""
    from urllib.parse import urlsplit

    if not url:
        return ""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "(unreadable URL)"
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}" if host else ""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", raw_cols: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped unless their column index is in ``raw_cols`` (already HTML)."""
    h = "".join(f"<th>{esc(c)}</th>" for c in head)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c if i in raw_cols else esc(c)}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _note(text: str, kind: str = "missing") -> str:
    """A visible note (``text`` is already HTML)."""
    return f'<p class="note {kind}">{text}</p>'


# ----------------------------------------------------------------------------- reading the store
def _controls(fm: Mapping[str, Any]) -> dict[str, Any]:
    """The seeds-only control a run recorded (``final_metrics['control']``, ``['delta']``), read
    defensively: ``{}`` when there is none."""
    ctl = fm.get("control")
    if not isinstance(ctl, Mapping):
        return {}
    acc = next((_num(ctl.get(k)) for k in ("test_accuracy", "accuracy") if _num(ctl.get(k)) is not None), None)
    f1 = next((_num(ctl.get(k)) for k in ("test_macro_f1", "macro_f1") if _num(ctl.get(k)) is not None), None)
    delta_raw = fm.get("delta", ctl.get("delta"))
    delta, ci = None, None
    if isinstance(delta_raw, Mapping):
        inner = next((delta_raw[k] for k in ("test_accuracy", "accuracy") if isinstance(delta_raw.get(k), Mapping)),
                     delta_raw)
        delta = next((_num(inner.get(k)) for k in ("test_accuracy", "accuracy", "delta", "value", "mean")
                      if _num(inner.get(k)) is not None), None)
        ci = inner.get("ci95", delta_raw.get("ci95"))
    else:
        delta = _num(delta_raw)
    if isinstance(ci, Mapping):
        ci = (ci.get("low", ci.get("lo")), ci.get("high", ci.get("hi")))
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_num(v) is not None for v in ci):
        ci = (float(ci[0]), float(ci[1]))
    else:
        ci = None
    if acc is None and delta is None:
        return {}
    run_acc = _num(fm.get("test_accuracy"))
    if delta is None and acc is not None and run_acc is not None:
        delta = run_acc - acc
    return {"accuracy": acc, "macro_f1": f1, "delta": delta, "ci95": ci, "student": ctl.get("student"),
            "n": ctl.get("test_n", ctl.get("n"))}


def _version(store: ProjectStore, task: Any, examples: list[Any], runs: list[Any], jobs: list[Any]) -> dict[str, Any]:
    """Which state of the project the report describes: counters and a fingerprint of the data."""
    h = hashlib.sha256()
    h.update(task.to_json().encode() if task is not None else b"")
    for e in examples:
        h.update(f"{e.id}:{e.version}:{e.review_status}:{e.review_label}:{e.llm_label}".encode())
    for r in runs:
        h.update(f"{r.id}:{r.status}:{json.dumps(r.final_metrics, sort_keys=True, default=str)}".encode())
    for j in jobs:
        h.update(f"{j.id}:{j.status}".encode())
    for t in store.list_test_examples():
        h.update(f"{t['id']}:{t['label']}".encode())
    stamps = [e.reviewed_at for e in examples] + [e.created_at for e in examples]
    stamps += [r.finished_at or r.created_at for r in runs] + [j.finished_at or j.created_at for j in jobs]
    stamps = [t for t in (_num(x) for x in stamps) if t is not None]
    return {"schema": store.get_meta("schema_version", "?"), "last_change": max(stamps) if stamps else None,
            "fingerprint": h.hexdigest()[:12], "created_at": store.get_meta("created_at")}


def _reviewer_agreement(store: ProjectStore) -> Any:
    """Agreement between reviewers, where the store records it (a later version may; read defensively)."""
    for name in ("reviewer_agreement", "review_agreement", "agreement"):
        fn = getattr(store, name, None)
        if callable(fn):
            try:
                return fn()
            except Exception:  # noqa: BLE001 - optional: the report says it is not recorded
                return None
    return None


def collect(store: ProjectStore) -> dict[str, Any]:
    """Everything the report shows, read from the store (numbers only from here)."""
    task = store.load_task()
    examples = store.list_examples()
    runs = sorted(store.list_runs(), key=lambda r: r.id)
    jobs = sorted(store.list_jobs(limit=1000), key=lambda j: j.id)
    return {
        "name": task.name if task is not None else store.path.stem,
        "file": store.path.name,
        "task": task,
        "examples": examples,
        "counts": store.count_examples(),
        "runs": runs,
        "jobs": jobs,
        "test_set": store.test_set_info(),
        "version": _version(store, task, examples, runs, jobs),
        "reviewer_agreement": _reviewer_agreement(store),
    }


# ----------------------------------------------------------------------------- charts
class _Charts:
    """Plotly figures, drawn by the inlined plotly.js from JSON embedded in the page."""

    def __init__(self) -> None:
        self.figs: list[tuple[str, str]] = []

    def add(self, fig: Any, height: int) -> str:
        fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10), font=dict(size=12),
                          paper_bgcolor="white", plot_bgcolor="white")
        div_id = f"chart-{len(self.figs) + 1}"
        self.figs.append((div_id, fig.to_json()))
        return f'<div class="chart" id="{div_id}" style="height:{int(height)}px"></div>'

    def script(self) -> str:
        if not self.figs:
            return ""
        data = "{" + ",".join(f'"{i}":{j}' for i, j in self.figs) + "}"
        data = data.replace("</", "<\\/").replace("<!--", "<\\!--")
        return (
            "<script>\n(function(){var figs=" + data + ";\n"
            "var cfg={displayModeBar:false,responsive:true};\n"
            "for(var id in figs){Plotly.newPlot(id,figs[id].data,figs[id].layout,cfg);}\n"
            "function fit(){for(var id in figs){Plotly.Plots.resize(document.getElementById(id));}}\n"
            "window.addEventListener('beforeprint',fit);window.addEventListener('afterprint',fit);\n"
            "})();\n</script>"
        )


def _label(text: Any) -> str:
    """A class name for a plotly axis or legend (plotly reads some HTML in labels: escape it)."""
    return html.escape(str(_clean(text)))


# ----------------------------------------------------------------------------- the sections
def _headline(d: dict[str, Any], best: Any) -> str:
    task, c = d["task"], d["counts"]
    n_classes = len(task.classes) if task else 0
    parts = [f"<li><b>{n_classes}</b> classes, <b>{sum(len(k.examples) for k in task.classes) if task else 0}</b> "
             "seed examples written by people</li>",
             f"<li><b>{c['total']}</b> examples generated by an LLM; <b>{c['reviewed']}</b> reviewed by people "
             f"({c['accepted']} accepted, {c['overridden']} given another class, {c['rejected']} rejected)</li>"]
    if best is None:
        parts.append("<li>No trained model yet.</li>")
    else:
        r, s = best
        ctl = _controls(r.final_metrics or {})
        line = (f"<li>Best model: run #{r.id} ({esc(r.name or r.method)}), <b>{_pct(s['accuracy'])}</b> accuracy, "
                f"macro-F1 {_pct(s['macro_f1'])}, on {esc(s['n'] or '?')} "
                + ("real labelled texts it never saw" if s["eval"] == "test set" else esc(s["eval"])))
        if ctl:
            line += f"; the seeds-only control scored {_pct(ctl['accuracy'])}"
            if ctl["delta"] is not None:
                line += f" ({_pts(ctl['delta'])}"
                line += f", 95% interval {_pts(ctl['ci95'][0])} to {_pts(ctl['ci95'][1])})" if ctl["ci95"] else ")"
        else:
            line += "; no seeds-only control recorded, so it is not known whether the generated data helped"
        parts.append(line + "</li>")
    return f'<section class="glance"><h2>At a glance</h2><ul>{"".join(parts)}</ul></section>'


def _section_task(d: dict[str, Any]) -> str:
    task = d["task"]
    if task is None:
        return '<section><h2>1. The task</h2>' + _note("The project has no task yet.") + "</section>"
    rows = []
    for c in task.classes:
        seeds = "".join(f"<li>{esc(x)}</li>" for x in c.examples) or "<li><i>no seed</i></li>"
        rows.append((f"<b>{esc(c.name)}</b>", esc(c.description) or "<i>no description</i>", f"<ul>{seeds}</ul>"))
    ts = d["test_set"]
    test = (f"<p>Test set: <b>{ts['n']}</b> real labelled texts ({esc(ts.get('name') or 'unnamed')}, added "
            f"{_date(ts.get('added_at'))}), never trained on; the models below are scored on it.</p>" if ts else
            _note("No test set: the project holds no real labelled texts to score models on, so the scores below "
                  "come from held-out generated examples and mean little."))
    return ('<section><h2>1. The task</h2>'
            f"<p>{len(task.classes)} classes, each with a description and the seed examples a person wrote; "
            "everything else was built from these.</p>"
            + _table(["class", "description", "seed examples"], rows, raw_cols=(0, 1, 2), cls="task")
            + test + "</section>")


def _job_settings(cfg: Mapping[str, Any]) -> str:
    parts = []
    for key, words in GEN_FIELDS:
        if key in cfg and cfg[key] is not None:
            v = cfg[key]
            v = "yes" if v is True else "no" if v is False else v
            parts.append(f"{words} {v}")
    pairs = cfg.get("pairs") or []
    if pairs:
        parts.append("targeted pairs: " + ", ".join(f"{a} mixed with {b}" for a, b in
                                                      (p for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2)))
    return "; ".join(parts)


def _section_generated(d: dict[str, Any], charts: _Charts) -> str:
    task, examples = d["task"], d["examples"]
    names = task.class_names if task else sorted({e.intended_label for e in examples})
    out = ['<section><h2>2. What was generated</h2>']
    if not examples:
        out.append(_note("No examples were generated yet.") + "</section>")
        return "".join(out)
    by_cls = Counter(e.intended_label for e in examples)
    mixed = Counter(e.intended_label for e in examples if e.mixup and e.mixed_with)
    a2 = Counter(e.llm_label for e in examples if e.llm_label)
    flagged = Counter(e.intended_label for e in examples if e.flag)
    test_pc = (d["test_set"] or {}).get("per_class", {})
    seeds = {c.name: len(c.examples) for c in task.classes} if task else {}
    rows = [(c, seeds.get(c, 0), by_cls.get(c, 0), mixed.get(c, 0), by_cls.get(c, 0) - mixed.get(c, 0),
             a2.get(c, 0), flagged.get(c, 0), test_pc.get(c, 0)) for c in names]
    rows.append(("total", sum(r[1] for r in rows), *(sum(r[i] for r in rows) for i in range(2, 8))))
    out.append(f"<p>An LLM wrote <b>{len(examples)}</b> examples. Each was written for one class; most mix in "
               "a little of a second class (mixup), so they sit near the boundary between two classes, where "
               "a classifier needs help. A second LLM pass then labelled each again (the relabel).</p>")
    out.append(_table(["class", "seeds", "generated for it", "mixed with another class", "plain",
                       "relabelled as it", "flagged as probable junk", "test set"], rows, cls="num"))
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (status, words) in enumerate((("accepted", "accepted"), ("overridden", "another class chosen"),
                                         ("rejected", "rejected"), ("pending", "not reviewed"))):
        per = Counter(e.intended_label for e in examples if e.review_status == status)
        fig.add_bar(name=words, x=[_label(c) for c in names], y=[per.get(c, 0) for c in names],
                    marker_color=["#2f9e44", "#f08c00", "#e03131", "#adb5bd"][i])
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=-0.25, traceorder="normal"),
                      yaxis=dict(title="examples"),
                      title=dict(text="Generated examples per class, by review decision", font=dict(size=13)))
    out.append(charts.add(fig, 320))
    gen_jobs = [j for j in d["jobs"] if j.kind in ("generate", "relabel")]
    if gen_jobs:
        jrows = []
        n_by_job = Counter(e.job_id for e in examples)
        for j in gen_jobs:
            cfg = j.config or {}
            llm = cfg.get("llm") if isinstance(cfg.get("llm"), Mapping) else cfg
            model = llm.get("model") or "(endpoint default)"
            where = _host(llm.get("base_url")) or ("no endpoint: pre-written" if cfg.get("demo") else "bundled local model")
            p = j.progress or {}
            tokens = (p.get("prompt_tokens") or 0) + (p.get("completion_tokens") or 0)
            calls = p.get("calls")
            cost = _num(p.get("cost"))
            if cfg.get("demo"):
                llm_words, settings, cost_words = "none: pre-written demo examples", "", "none (no LLM call)"
            else:
                llm_words = f"{model} · {where}"
                settings = _job_settings(cfg) if j.kind == "generate" else ""
                cost_words = f"${cost:.4f}" if cost is not None else "not known"
            jrows.append((f"#{j.id}", j.kind, j.status, llm_words, settings,
                          n_by_job.get(j.id, 0) if j.kind == "generate" else "–",
                          "not recorded" if calls is None else calls,
                          "not recorded" if calls is None else f"{tokens:,}", cost_words,
                          _day(j.finished_at or j.created_at)))
        out.append("<h3>The LLM jobs</h3>")
        out.append(_table(["job", "kind", "status", "LLM", "settings", "examples kept", "calls", "tokens", "cost",
                           "finished"], jrows, cls="jobs"))
        known = [_num((j.progress or {}).get("cost")) for j in gen_jobs if not (j.config or {}).get("demo")]
        if any(c is None for c in known):
            out.append(_note("Cost is shown only where the endpoint's prices were set; a local model costs "
                             "nothing but the machine.", "info"))
    out.append("</section>")
    return "".join(out)


def _agreement(pairs: list[tuple[str | None, str | None]]) -> tuple[int, int]:
    n = sum(1 for a, _b in pairs if a)
    return sum(1 for a, b in pairs if a and a == b), n


def _section_decisions(d: dict[str, Any]) -> str:
    task, examples, c = d["task"], d["examples"], d["counts"]
    names = task.class_names if task else sorted({e.intended_label for e in examples})
    out = ['<section><h2>3. What people decided</h2>']
    if not examples:
        return "".join(out) + _note("Nothing to review: no generated examples.") + "</section>"
    if not c["reviewed"]:
        out.append(_note("No example has been reviewed yet: every generated example still carries the LLM's label, "
                         "unchecked by a person."))
    else:
        out.append(f"<p>People reviewed <b>{c['reviewed']}</b> of {c['total']} generated examples: "
                   f"<b>{c['accepted']}</b> accepted as labelled, <b>{c['overridden']}</b> moved to another class, "
                   f"<b>{c['rejected']}</b> rejected (left out of training); {c['total'] - c['reviewed']} "
                   "are not reviewed yet.</p>")
    per = {n: Counter() for n in names}
    for e in examples:
        per.setdefault(e.intended_label, Counter())[e.review_status] += 1
    rows = [(n, per[n]["accepted"], per[n]["overridden"], per[n]["rejected"], per[n]["pending"],
             sum(per[n].values())) for n in per]
    out.append(_table(["written for class", "accepted", "another class chosen", "rejected", "not reviewed", "total"],
                      rows, cls="num"))
    reviewed = [e for e in examples if e.review_status != "pending"]
    who = Counter((e.reviewed_by or "").strip() or "(not signed in)" for e in reviewed)
    if who:
        out.append("<p>Reviewers: " + ", ".join(f"{esc(k)} ({v})" for k, v in who.most_common()) + ".</p>")
        agreement = d.get("reviewer_agreement")
        if len(who) > 1:
            if agreement not in (None, {}, []):
                out.append(f"<p>Agreement between reviewers: {esc(_agreement_words(agreement))}.</p>")
            else:
                out.append(_note("Several people reviewed, but each example holds one decision: agreement between "
                                 "reviewers is not recorded in this project."))
    kept = [e for e in reviewed if e.review_status in ("accepted", "overridden")]
    if kept:
        lines = []
        pairs_a1 = [(e.intended_label, e.final_label) for e in kept]
        agree, n = _agreement(pairs_a1)
        lines.append(("the class the LLM wrote it for (A1)", agree, n))
        agree, n = _agreement([(e.llm_label, e.final_label) for e in kept])
        lines.append(("the LLM relabel (A2)", agree, n))
        judge = [(getattr(e, "judge_label", None), e.final_label) for e in kept]
        agree_j, n_j = _agreement(judge)
        rows = [(w, f"{a} of {n}", _pct(a / n) if n else "–") for w, a, n in lines]
        if n_j:
            rows.append(("the student judge", f"{agree_j} of {n_j}", _pct(agree_j / n_j)))
        out.append("<h3>Did the machines agree with people?</h3>")
        out.append(f"<p>Of the {len(kept)} examples people kept (accepted or moved), how often each automatic "
                   "label matched the class people settled on:</p>")
        out.append(_table(["label", "matches people", "share"], rows, cls="num"))
        if not n_j:
            out.append(_note("No student-judge labels are recorded in this project.", "info"))
        rej = [e for e in reviewed if e.review_status == "rejected"]
        if rej:
            out.append(f"<p>{len(rej)} rejected examples are left out of these shares (people judged them unusable "
                       "for any class).</p>")
    out.append("</section>")
    return "".join(out)


def _agreement_words(agreement: Any) -> str:
    if isinstance(agreement, Mapping):
        return ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in agreement.items())
    if isinstance(agreement, float):
        return f"{agreement:.2f}"
    return str(agreement)


def _student(run: Any) -> str:
    from .training.plan import STUDENTS

    kind = (run.final_metrics or {}).get("student") or (run.config or {}).get("student") or "finetune"
    return STUDENTS.get(kind, str(kind))


def _data_used(run: Any) -> str:
    fm = run.final_metrics or {}
    data = fm.get("data") if isinstance(fm.get("data"), Mapping) else {}
    src = (run.config or {}).get("label_source") or run.method or "?"
    src_words = {"reviewed": "people's decisions", "a2": "LLM relabels", "a1": "written-for classes"}.get(src, src)
    train = data.get("train", fm.get("n_train"))
    if train is None:
        return f"labels: {src_words}"
    seeds = data.get("seeds")
    gen = train - seeds if isinstance(train, int) and isinstance(seeds, int) else data.get("generated", "?")
    return f"{train} texts ({seeds if seeds is not None else '?'} seeds, {gen} generated); labels: {src_words}"


def _best(runs: list[Any]) -> tuple[Any, dict[str, Any]] | None:
    scored = [(r, run_scores(r.final_metrics)) for r in runs if r.status == "done"]
    scored = [(r, s) for r, s in scored if s["accuracy"] is not None]
    if not scored:
        return None
    on_test = [(r, s) for r, s in scored if s["eval"] == "test set"]
    # ties: the run with a seeds-only control (it says whether the generated data helped), then the newest
    return max(on_test or scored, key=lambda rs: (rs[1]["accuracy"], rs[1]["macro_f1"] or 0,
                                                  bool(_controls(rs[0].final_metrics or {})), rs[0].id))


def _section_models(d: dict[str, Any], best: Any, charts: _Charts) -> str:
    runs = d["runs"]
    out = ['<section><h2>4. The models</h2>']
    if not runs:
        return "".join(out) + _note("No model has been trained yet.") + "</section>"
    rows, any_control = [], False
    import plotly.graph_objects as go

    bars_x, bars_run, bars_ctl = [], [], []
    for r in runs:
        s = run_scores(r.final_metrics)
        ctl = _controls(r.final_metrics or {})
        any_control |= bool(ctl)
        if ctl:
            ctl_cell = f"<b>{_pct(ctl['accuracy'])}</b>"
            if ctl["macro_f1"] is not None:
                ctl_cell += f" · F1 {_pct(ctl['macro_f1'])}"
            if ctl["delta"] is not None:
                ctl_cell += f"<br>run − control: <b>{_pts(ctl['delta'])}</b>"
            if ctl["ci95"]:
                ctl_cell += f'<br><span class="small">95% interval {_pts(ctl["ci95"][0])} to {_pts(ctl["ci95"][1])}</span>'
        else:
            ctl_cell = '<span class="small">no control recorded</span>'
        if r.status != "done":
            acc_cell = esc(r.status + (f": {str(_clean(r.error))[:120]}" if r.error else ""))
            f1_cell = "–"
        else:
            where = (f"on {s['n'] or '?'} test texts" if s["eval"] == "test set" else
                     f"on {s['n'] or '?'} {s['eval']}" if s["eval"] else "not scored")
            acc_cell = f"<b>{_pct(s['accuracy'])}</b><br><span class=\"small\">{esc(where)}</span>"
            f1_cell = _pct(s["macro_f1"])
        rows.append((f"<b>#{r.id}</b> {esc(r.name or r.method)}", esc(_student(r)), esc(_data_used(r)), acc_cell,
                     f1_cell, ctl_cell, esc(_day(r.finished_at or r.created_at))))
        if s["accuracy"] is not None and r.status == "done":
            bars_x.append(_label(f"#{r.id} {r.name or r.method}"[:40]))
            bars_run.append(s["accuracy"])
            bars_ctl.append(ctl.get("accuracy"))
    out.append("<p>Each training run teaches a small, cheap classifier from the seeds plus the generated examples. "
               "Its <b>seeds-only control</b> is the same classifier trained on the seeds alone: the difference is "
               "what the generated data bought.</p>")
    out.append(_table(["run", "student", "data used", "accuracy", "macro-F1", "seeds-only control", "finished"],
                      rows, cls="runs", raw_cols=range(7)))
    if not any_control:
        out.append(_note("No seeds-only control was recorded for any run, so this report cannot say whether the "
                         "generated examples made the classifier better than the seeds alone."))
    if len([r for r in runs if r.status == "done"]) == 1:
        out.append(_note("Only one run: nothing to compare it with.", "info"))
    if bars_x:
        fig = go.Figure()
        fig.add_bar(name="run", x=bars_x, y=bars_run, marker_color=PALETTE[0], texttemplate="%{y:.1%}",
                    textposition="outside", cliponaxis=False)
        if any(v is not None for v in bars_ctl):
            fig.add_bar(name="seeds-only control", x=bars_x, y=bars_ctl, marker_color="#adb5bd",
                        texttemplate="%{y:.1%}", textposition="outside", cliponaxis=False)
        fig.update_layout(barmode="group", yaxis=dict(range=[0, 1.08], tickformat=".0%", title="accuracy"),
                          bargap=0.55 if len(bars_x) < 3 else 0.25,
                          legend=dict(orientation="h", y=-0.25),
                          title=dict(text="Accuracy of each run", font=dict(size=13)))
        out.append(charts.add(fig, 320))
    if best is None:
        out.append(_note("No finished run has scores."))
        return "".join(out) + "</section>"
    r, s = best
    out.append(f"<h3>The best run: #{r.id} ({esc(r.name or r.method)})</h3>")
    if s["eval"] != "test set":
        out.append(_note(f"Scored on {esc(s['n'] or '?')} {esc(s['eval'])}, not on real labelled texts: these scores "
                         "measure agreement with the LLM's own labels and are optimistic."))
    else:
        out.append(f"<p>Scored on {esc(s['n'] or '?')} real labelled texts of the test set, which it never saw in "
                   "training.</p>")
    if s["matrix"]:
        z = [[float(v) for v in row] for row in s["matrix"]]
        share = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in z]
        hm = go.Figure(go.Heatmap(
            z=share, x=[_label(c) for c in s["columns"]], y=[_label(c) for c in s["labels"]], colorscale="Blues",
            zmin=0, zmax=1, text=[[int(v) for v in row] for row in z], texttemplate="%{text}", showscale=False,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} texts (%{z:.0%})<extra></extra>"))
        hm.update_layout(xaxis=dict(title="predicted class", side="bottom"),
                         yaxis=dict(title="true class", autorange="reversed"),
                         title=dict(text="Confusion matrix (rows: true class, columns: predicted)", font=dict(size=13)))
        out.append(charts.add(hm, 160 + 46 * len(s["labels"])))
        cm_rows = [(lab, *[int(v) for v in row]) for lab, row in zip(s["labels"], s["matrix"])]
        out.append('<details class="print-open"><summary>The confusion matrix as numbers</summary>'
                   + _table(["true \\ predicted", *s["columns"]], cm_rows, cls="num cm") + "</details>")
    else:
        out.append(_note("This run recorded no confusion matrix."))
    pc = s["per_class"] or {}
    if pc:
        out.append(_table(["class", "precision", "recall", "F1", "texts"],
                          [(c, _pct(_num(v.get("precision"))), _pct(_num(v.get("recall"))), _pct(_num(v.get("f1"))),
                            v.get("support", "–")) for c, v in pc.items()], cls="num"))
    return "".join(out) + "</section>"


def _section_examples(d: dict[str, Any]) -> str:
    task, examples = d["task"], d["examples"]
    out = ['<section><h2>5. Examples</h2>']
    if not examples:
        return "".join(out) + _note("No generated examples to show.") + "</section>"
    out.append(f"<p>Up to {EXAMPLES_PER_CLASS} generated examples per class, decisions by people first.</p>")
    names = task.class_names if task else sorted({e.intended_label for e in examples})
    order = {"overridden": 0, "rejected": 1, "accepted": 2, "pending": 3}
    words = {"accepted": "accepted", "overridden": "moved to", "rejected": "rejected", "pending": "not reviewed"}
    for name in names:
        mine = [e for e in examples if e.intended_label == name]
        if not mine:
            continue
        picked: list[Any] = []
        for status in sorted(order, key=order.get):  # one of each decision first, then the rest in order
            picked += [e for e in mine if e.review_status == status][:1]
        rest = sorted((e for e in mine if e not in picked), key=lambda e: (order.get(e.review_status, 9), e.id))
        picked = (picked + rest)[:EXAMPLES_PER_CLASS]
        rows = []
        for e in picked:
            decision = words.get(e.review_status, e.review_status)
            if e.review_status == "overridden":
                decision += f" {e.review_label}"
            elif e.review_status == "accepted":
                decision += f" as {e.final_label}"
            mix = f"{e.mixed_with} (alpha {e.alpha:.2f})" if e.mixed_with and e.alpha is not None else "–"
            rows.append((e.text, mix, e.llm_label or "–", decision))
        out.append(f"<h3>{esc(name)}</h3>")
        out.append(_table(["text", "mixed with", "LLM relabel", "decision"], rows, cls="examples"))
    return "".join(out) + "</section>"


def _section_next(d: dict[str, Any], best: Any) -> str:
    out = ['<section><h2>6. What to do next</h2><ul class="next">']
    if not d["test_set"]:
        out.append("<li>Add a test set of real labelled texts (page 1 · Task, tab Test set): without it no score in "
                   "this report measures the model on real data.</li>")
    c = d["counts"]
    if c["total"] and c["reviewed"] < c["total"]:
        out.append(f"<li>Review the {c['total'] - c['reviewed']} examples not reviewed yet (page 3 · Review).</li>")
    if best is not None:
        from .confusion import suggest_pairs

        r, s = best
        names = d["task"].class_names if d["task"] else []
        pairs, where = suggest_pairs(r.final_metrics or {}, names, top=3)
        if pairs:
            listed = "".join(f"<li><b>{esc(p.a)}</b> and <b>{esc(p.b)}</b>: {p.count:g} error{'s' if p.count != 1 else ''} "
                             f"({p.a_as_b:g} {esc(p.a)} read as {esc(p.b)}, {p.b_as_a:g} the other way)</li>"
                             for p in pairs)
            out.append(f"<li>The classes run #{r.id} confuses most on its {esc(where)}:<ul>{listed}</ul>"
                       "Generate borderline examples aimed at exactly these pairs, review them and train again: on "
                       "the Results page, <i>Generate where the model is confused</i>, or from the command line "
                       "(task.json: the project's classes and seeds):"
                       f"<pre>promptmix generate task.json --project {esc(d['file'])} --pairs-from {r.id} "
                       "--out more.jsonl --per-class 5</pre></li>")
        else:
            out.append(f"<li>Run #{r.id} confuses no pair of classes on its labelled data.</li>")
        if not _controls(r.final_metrics or {}):
            out.append("<li>Train with a seeds-only control to learn whether the generated data helps.</li>")
    else:
        out.append("<li>Train a model (page 4 · Train).</li>")
    return "".join(out) + "</ul></section>"


def _missing(d: dict[str, Any], best: Any) -> list[str]:
    m = []
    if not d["test_set"]:
        m.append("no test set")
    if not d["runs"]:
        m.append("no training run")
    elif len([r for r in d["runs"] if r.status == "done"]) == 1:
        m.append("one finished run")
    if d["runs"] and not any(_controls(r.final_metrics or {}) for r in d["runs"]):
        m.append("no seeds-only control")
    if not d["counts"]["reviewed"]:
        m.append("no review")
    return m


# ----------------------------------------------------------------------------- the page
CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d8dee4;--accent:#3b5bdb;--warn:#9a6700;--warnbg:#fff8c5}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#f6f8fa}
main{max-width:1080px;margin:0 auto;padding:28px 32px 48px;background:#fff;min-height:100vh}
header h1{margin:0 0 4px;font-size:28px;line-height:1.2}
header .sub{color:var(--muted);margin:0}
h2{font-size:21px;margin:34px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:22px 0 8px}
section{break-inside:auto}
.glance{background:#eef2ff;border:1px solid #c5d0fa;border-radius:8px;padding:6px 20px;margin-top:20px}
.glance h2{border:0;margin-top:10px}
table{border-collapse:collapse;width:100%;margin:8px 0 12px;font-size:13.5px}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f6f8fa;font-weight:600}
table.num td:not(:first-child),table.num th:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
table.task ul{margin:0;padding-left:18px}
table.examples td:first-child{width:50%}
table.runs td:last-child,table.jobs td:last-child{white-space:nowrap}
.note{border-left:4px solid var(--warn);background:var(--warnbg);padding:6px 10px;border-radius:4px}
.note.info{border-color:#8c959f;background:#f6f8fa}
.chart{width:100%;margin:8px 0}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 10px;white-space:pre-wrap;overflow-wrap:break-word}
.small{color:var(--muted);font-size:12.5px}
footer{margin-top:36px;color:var(--muted);font-size:13px;border-top:1px solid var(--line);padding-top:10px}
details summary{cursor:pointer;color:var(--accent)}
@media print{
  body{background:#fff;font-size:11pt}
  main{max-width:none;padding:0}
  h2{break-after:avoid}
  h3{break-after:avoid}
  table,.chart,.glance,pre{break-inside:avoid}
  tr{break-inside:avoid}
  details>summary{display:none}
  a{color:inherit}
}
@page{size:A4;margin:14mm}
"""


def build_report(store: ProjectStore, *, now: float | None = None) -> str:
    """The project's report as one self-contained HTML page (see the module docstring)."""
    import time

    from plotly.offline import get_plotlyjs

    d = collect(store)
    best = _best(d["runs"])
    charts = _Charts()
    v = d["version"]
    when = _date(now if now is not None else time.time())
    missing = _missing(d, best)
    body = "".join([
        f"<header><h1>{esc(d['name'])}</h1>"
        f'<p class="sub">A PromptMix Studio report on project file {esc(d["file"])} · written {when}</p></header>',
        _headline(d, best),
        _section_task(d),
        _section_generated(d, charts),
        _section_decisions(d),
        _section_models(d, best, charts),
        _section_examples(d),
        _section_next(d, best),
        "<footer><p>Every number in this report was read from the project file when the report was written "
        f"({when}). Project version <code>{esc(v['fingerprint'])}</code> (a fingerprint of its data: two reports "
        f"with the same one describe the same data), last changed {_date(v['last_change'])}, created "
        f"{_date(v['created_at'])}: {d['counts']['total']} generated examples, {len(d['jobs'])} jobs, "
        f"{len(d['runs'])} training runs; file format {esc(v['schema'])}. Written by PromptMix Studio "
        f"{esc(__version__)}."
        + (f" Not in this project: {esc(', '.join(missing))}." if missing else "")
        + " The page is self-contained and makes no network request; print it from the browser for a PDF.</p>"
          "</footer>",
    ])
    body = _clean(body)  # a last pass: nothing that looks like a key or a user:password@ URL survives
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline' "
        "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:\">"
        f"<title>{esc(d['name'])}: PromptMix report</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head>"
        f"<body><main>{body}</main>{charts.script()}</body></html>"
    )


def write_report(project: str | Path, out: str | Path) -> Path:
    """Write ``project``'s report to ``out`` (an HTML file); returns the path."""
    store = ProjectStore(project, create=False)
    try:
        html_text = build_report(store)
    finally:
        store.close()
    out = Path(out)
    out.write_text(html_text, encoding="utf-8")
    return out


__all__ = ["build_report", "collect", "write_report"]
