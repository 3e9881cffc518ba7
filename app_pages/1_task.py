"""1 · Task: classes, their descriptions and seed examples; import from a file; save to the project."""

from __future__ import annotations

import sqlite3

import pandas as pd
import streamlit as st

from app_pages._ui import (
    current_project,
    owner_page,
    flash,
    header,
    md_escape,
    render_test_set,
    store_or_stop,
    write_failed,
)
from promptmix_core.projects import (
    IMPORT_TYPES,
    field_problems,
    field_warnings,
    import_task_bytes,
    lines_to_examples,
)
from promptmix_core.store import StoreError
from promptmix_core.task import ClassSpec, Task, TaskError

header(
    "1 · Task",
    "Name the classes your classifier should tell apart, describe each in a sentence and give a few "
    "seed examples. PromptMix needs only a handful per class.",
)
owner_page("task", "Defining the task")
store = store_or_stop()
project = current_project()
DRAFT = f"draft::{project}"


def _new_uid() -> str:
    n = st.session_state.get("_task_uid", 0) + 1
    st.session_state["_task_uid"] = n
    return f"c{n}"


def _draft_from(task: Task | None, source: str) -> dict:
    classes = task.classes if task else []
    if not classes:
        classes = [ClassSpec(name=""), ClassSpec(name="")]
    return {
        "gen": _new_uid(),  # widget keys of this draft: a reloaded draft gets fresh widgets
        "name": task.name if task else project,
        "classes": [
            {"uid": _new_uid(), "name": c.name, "description": c.description, "examples": "\n".join(c.examples)}
            for c in classes
        ],
        "source": source,
        "show_errors": False,
    }


def _draft_task(draft: dict) -> Task:
    return Task(
        name=draft["name"].strip() or (project or "untitled"),
        classes=[
            ClassSpec(name=c["name"].strip(), description=c["description"].strip(),
                      examples=lines_to_examples(c["examples"]))
            for c in draft["classes"]
        ],
    )


saved = store.load_task()
saved_json = saved.to_json() if saved else ""
if DRAFT not in st.session_state:
    st.session_state[DRAFT] = _draft_from(saved, saved_json)
draft = st.session_state[DRAFT]
BLANK_JSON = Task(name=project or "untitled", classes=[ClassSpec(name=""), ClassSpec(name="")]).to_json()


def _is_dirty(d: dict) -> bool:
    return _draft_task(d).to_json() != (saved_json or BLANK_JSON)


dirty = _is_dirty(draft)
if draft["source"] != saved_json and not dirty:
    st.session_state[DRAFT] = draft = _draft_from(saved, saved_json)


# --------------------------------------------------------------------------- callbacks
def _sync(d: dict) -> dict:
    """Bring the draft up to date with the widgets (callbacks run before the widgets do)."""
    ss = st.session_state
    d["name"] = ss.get(f"tk::{project}::{d['gen']}::name", d["name"])
    for c in d["classes"]:
        for field, suffix in (("name", "name"), ("description", "desc"), ("examples", "ex")):
            c[field] = ss.get(f"tk::{project}::{c['uid']}::{suffix}", c[field])
    return d


def _add_class() -> None:
    _sync(st.session_state[DRAFT])
    st.session_state[DRAFT]["classes"].append({"uid": _new_uid(), "name": "", "description": "", "examples": ""})


def _remove_class(uid: str) -> None:
    d = _sync(st.session_state[DRAFT])
    d["classes"] = [c for c in d["classes"] if c["uid"] != uid]


def _discard() -> None:
    task = store.load_task()
    st.session_state[DRAFT] = _draft_from(task, task.to_json() if task else "")
    st.session_state["task_flash"] = ("info", "Discarded your unsaved changes.")


def _save() -> None:
    d = _sync(st.session_state[DRAFT])
    task = _draft_task(d)
    task_level, per_field = field_problems(task)
    if task_level or per_field:
        d["show_errors"] = True
        st.session_state["task_flash"] = ("error", "Not saved: fix the problems marked below.")
        return
    old = store.load_task()
    try:
        store.save_task(task)
    except StoreError as exc:  # a full disk or a read-only folder: said, nothing lost from the draft
        st.session_state["task_flash"] = ("error", write_failed(exc))
        return
    except (sqlite3.Error, MemoryError, OverflowError) as exc:  # a task too big for the store: said, not raised
        st.session_state["task_flash"] = ("error", f"Not saved: the task is too big to store ({md_escape(exc)}).")
        return
    d["source"] = task.to_json()
    d["show_errors"] = False
    msg = f"Saved the task: {len(task.classes)} classes, {sum(len(c.examples) for c in task.classes)} seeds."
    kind = "success"
    if old is not None:
        gone = set(old.class_names) - set(task.class_names)
        used = {e.intended_label for e in store.list_examples()} | {e.label for e in store.list_examples()}
        stale = sorted(gone & used)
        if stale:
            kind = "warning"
            msg += (f" Generated examples still use the removed or renamed class(es) "
                    f"{', '.join(md_escape(s) for s in stale)}; generate again or reject them on the Review page.")
    st.session_state["task_flash"] = (kind, msg)


def _use_import(task: Task, test_rows: list | None = None, file_name: str = "") -> None:
    try:
        store.save_task(task)
    except StoreError as exc:  # a full disk or a read-only folder: said, the import can be tried again
        st.session_state["task_flash"] = ("error", write_failed(exc))
        return
    except (sqlite3.Error, MemoryError, OverflowError) as exc:  # a task too big for the store: said, not raised
        st.session_state["task_flash"] = ("error", f"Not saved: the task is too big to store ({md_escape(exc)}).")
        return
    st.session_state[DRAFT] = _draft_from(task, task.to_json())
    msg = (f"Imported “{md_escape(task.name)}”: {len(task.classes)} classes, "
           f"{sum(len(c.examples) for c in task.classes)} seeds. The task is saved.")
    if test_rows:
        n = store.set_test_set(test_rows, name=f"{file_name} (rows not drawn as seeds)", source="import split")
        msg += f" The other {n} rows are the project's test set."
    st.session_state["task_flash"] = ("success", msg)


# --------------------------------------------------------------------------- page
flash("task_flash")

metrics_slot = st.container()  # filled at the end, once the widgets have updated the draft

tab_edit, tab_import, tab_test, tab_file = st.tabs([":material/edit: Edit classes", ":material/upload_file: Import a file",
                                                    ":material/fact_check: Test set", ":material/description: Task file"])

with tab_edit:
    draft["name"] = st.text_input("Task name", value=draft["name"], key=f"tk::{project}::{draft['gen']}::name",
                                  help="Shown in exports and run names.")
    top_errors = st.container()
    class_slots = []
    for i, c in enumerate(draft["classes"]):
        uid = c["uid"]
        with st.container(border=True):
            head = rm = st.container(horizontal=True, vertical_alignment="bottom")  # the button keeps its label
            c["name"] = head.text_input(
                f"Class {i + 1} name", value=c["name"], key=f"tk::{project}::{uid}::name",
                placeholder="e.g. card_lost_or_stolen", max_chars=200,
            )
            rm.button("Remove", key=f"tk::{project}::{uid}::rm", on_click=_remove_class, args=(uid,),
                      help="Remove this class from the task")
            name_slot = st.container()
            left, right = st.columns(2)
            c["description"] = left.text_area(
                "Description", value=c["description"], key=f"tk::{project}::{uid}::desc", height=110,
                placeholder="One sentence: what belongs in this class?",
            )
            desc_slot = left.container()
            c["examples"] = right.text_area(
                "Seed examples (one per line)", value=c["examples"], key=f"tk::{project}::{uid}::ex",
                height=110, placeholder="Write a realistic example on each line",
            )
            ex_slot = right.container()
            n = len(lines_to_examples(c["examples"]))
            right.caption(f"{n} seed example{'s' if n != 1 else ''}")
            class_slots.append((name_slot, desc_slot, ex_slot))

    dirty = _is_dirty(draft)
    b1 = b2 = b3 = st.container(horizontal=True, wrap=True)  # buttons as wide as their labels, wrapping
    b1.button("Add a class", icon=":material/add:", on_click=_add_class)
    b2.button("Save task", icon=":material/save:", type="primary", on_click=_save, key="task_save")
    b3.button("Discard changes", on_click=_discard, disabled=not dirty or not saved)

    # validation messages next to the field at fault
    current = _draft_task(draft)
    task_level, per_field = field_problems(current)
    warnings = field_warnings(current)
    if draft.get("show_errors"):
        for m in task_level:
            top_errors.error(m)
    for i, (name_slot, desc_slot, ex_slot) in enumerate(class_slots):
        if draft.get("show_errors"):
            for m in per_field.get((i, "name"), []):
                name_slot.error(m, icon=":material/error:")
            for m in per_field.get((i, "examples"), []):
                ex_slot.error(m, icon=":material/error:")
        for m in warnings.get((i, "description"), []):
            desc_slot.caption(f":material/lightbulb: {m}")
        for m in warnings.get((i, "examples"), []):
            ex_slot.caption(f":material/lightbulb: {m}")
    if dirty:
        st.caption("You have unsaved changes. They are kept while you move between pages; save to store them "
                   "in the project.")

with tab_import:
    st.markdown(
        "Upload a **CSV** or **JSONL** file with `text` and `label` columns (one labelled example per row), "
        "or a **task file** in JSON or YAML with `name` and `classes` (each with `name`, `description`, "
        "`examples`). Importing replaces the current task."
    )
    up = st.file_uploader("Task or labelled file", type=list(IMPORT_TYPES), key=f"tk::{project}::upload")
    k = st.number_input(
        "Keep at most this many seeds per class (0 = keep all)", min_value=0, max_value=1000, value=0, step=1,
        key=f"tk::{project}::k", help="Draws a seeded random sample per class from a CSV/JSONL file.",
    )
    if up is not None:
        try:
            imported = import_task_bytes(up.getvalue(), up.name, k=int(k) or None)
        except TaskError as exc:
            st.error(f"{md_escape(up.name)} cannot be imported:")
            for p in exc.problems:
                st.markdown(f"- {md_escape(p)}")
        except (RecursionError, MemoryError, ValueError) as exc:  # a hostile file past the readers' limits
            st.error(f"{md_escape(up.name)} cannot be imported: it is too large or too deeply nested to read "
                     f"({type(exc).__name__}).")
        else:
            st.success(
                f"{md_escape(up.name)}: {len(imported.classes)} classes, "
                f"{sum(len(c.examples) for c in imported.classes)} seed examples."
            )
            st.dataframe(
                pd.DataFrame(
                    [{"class": c.name, "seeds": len(c.examples), "description": c.description,
                      "first example": c.examples[0] if c.examples else ""} for c in imported.classes]
                ),
                hide_index=True, width="stretch",
            )
            test_rows: list = []
            if up.name.lower().endswith((".csv", ".jsonl")) and int(k):
                keep_test = st.checkbox(
                    "Keep the rows not drawn as seeds as the project's test set", value=True,
                    key=f"tk::{project}::split_test",
                    help="Real labelled data to score every training run on. Rows that are seeds never go "
                         "into the test set.")
                if keep_test:
                    cap = st.number_input("At most this many test rows per class (0 = all)", 0, 100_000, 200,
                                          key=f"tk::{project}::split_cap")
                    from promptmix_core.testset import split_test_from_import

                    test_rows = split_test_from_import(up.getvalue(), up.name, imported,
                                                       max_per_class=int(cap) or None)
                    st.caption(f"{len(test_rows)} rows become the test set (never overlapping the seeds)"
                               + ("; it replaces the current test set." if store.test_set_info() else "."))
            st.button("Replace the task with this file", type="primary", on_click=_use_import,
                      args=(imported, test_rows, up.name), key="task_import_use")

with tab_test:
    if saved:
        st.markdown("Real labelled examples that every training run is scored on (accuracy, macro-F1, per-class "
                    "scores and the confusion matrix on 5 · Results). The model never trains on them.")
        render_test_set(store, saved, "task_test")
    else:
        st.info("Save the task first; a test set is checked against its classes.")

with tab_file:
    if saved:
        st.markdown("The saved task as a JSON task file, to keep, share or load with the command line tool.")
        st.code(saved.to_json(), language="json")
        st.download_button("Download task.json", saved.to_json().encode("utf-8"),
                           file_name="task.json", mime="application/json")
    else:
        st.info("Save the task first; then it can be downloaded here as a task file.")

with metrics_slot:
    m1 = m2 = m3 = m4 = st.container(horizontal=True, wrap=True, gap="large")  # wraps rather than cut a value
    m1.metric("Classes", len(saved.classes) if saved else 0, width="content")
    m2.metric("Seed examples", sum(len(c.examples) for c in saved.classes) if saved else 0, width="content")
    m3.metric("Fewest seeds in a class", saved.k if saved and saved.classes else 0, width="content")
    m4.metric("Status", "Unsaved changes" if dirty else ("Saved" if saved else "Not saved yet"), width="content")

if saved and not dirty:
    st.divider()
    st.page_link("app_pages/2_generate.py", label="Next: generate borderline examples", icon=":material/arrow_forward:")
