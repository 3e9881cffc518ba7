"""PromptMix Studio: the Streamlit app.

Registers the five workflow pages and draws the sidebar (current project, where it stands,
create/switch/delete projects). All state lives in the project store; the current project's name
is kept in the URL (``?project=...``) so a refresh opens the same project and a link can be sent to
another reviewer; a new tab without one opens the project used last (``.last-project`` in the projects
folder).
"""

from __future__ import annotations

import streamlit as st

from app_pages._ui import (
    PAGE_FILES,
    active_job,
    can,
    current_project,
    forget_store,
    get_store,
    md_escape,
    projects_folder,
    require,
    set_current_project,
    sign_in_gate,
    sign_out_panel,
)
from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME, create_demo
from promptmix_core.job_status import job_view, sidebar_poll_seconds
from promptmix_core.store import StoreError

st.set_page_config(
    page_title="PromptMix Studio",
    page_icon="🧪",
    layout="wide",
    initial_sidebar_state="expanded",
)

# before anything of any project: sign-in when [auth] is configured, else 127.0.0.1 only
sign_in_gate()

folder = projects_folder()
try:
    projects.ensure_demo(folder)
except (OSError, projects.ProjectError, StoreError) as exc:
    st.error(f"The projects folder {md_escape(folder)} cannot be used: {md_escape(exc)}")
    st.stop()


def _resolve_project() -> str | None:
    """The project of this run: the link's ``?project=`` (so a link can be shared), else this
    session's, else the one used last (a new tab), else the demo or the newest."""
    names = [p.name for p in projects.list_projects(folder)]
    wanted = st.query_params.get("project")
    if wanted and wanted in names:
        if wanted != current_project():
            set_current_project(wanted)
        return wanted
    if wanted and wanted not in names and "_bad_project" not in st.session_state:
        st.session_state["_bad_project"] = wanted
    cur = current_project()
    if cur in names:
        st.query_params["project"] = cur
        return cur
    last = projects.last_project(folder) if not cur else None
    if last in names:
        set_current_project(last)
        return last
    if names:
        preferred = DEMO_NAME if DEMO_NAME in names and not cur else names[0]
        set_current_project(preferred)
        return preferred
    set_current_project(None)
    return None


project = _resolve_project()


# registered first, so the sidebar can link to the pages
pages = [
    st.Page(PAGE_FILES["task"], title="1 · Task", icon=":material/edit_note:", url_path="task", default=True),
    st.Page(PAGE_FILES["generate"], title="2 · Generate", icon=":material/auto_awesome:", url_path="generate"),
    st.Page(PAGE_FILES["review"], title="3 · Review", icon=":material/fact_check:", url_path="review"),
    st.Page(PAGE_FILES["train"], title="4 · Train", icon=":material/model_training:", url_path="train"),
    st.Page(PAGE_FILES["results"], title="5 · Results", icon=":material/insights:", url_path="results"),
]
nav = st.navigation(pages, position="sidebar")
PAGE_JOB_KINDS = {"generate": ("generate", "relabel"), "train": ("train",)}  # pages with a live job panel


# --------------------------------------------------------------------------- sidebar callbacks
def _switch() -> None:
    set_current_project(st.session_state["sb_project"])


def _create() -> None:
    require("create")
    raw = st.session_state.get("sb_new_name", "")
    template = st.session_state.get("sb_new_template", "Empty")
    try:
        name = projects.check_new_name(raw, folder)  # look-alikes of an existing name are refused
        if template.startswith("Copy of the banking demo"):
            path = projects.project_path(name, folder)
            projects.check_writable(folder)
            create_demo(path, with_examples=False)
        else:
            projects.create_project(name, folder)
    except (projects.ProjectError, StoreError, OSError) as exc:  # a read-only folder, a full disk, ...
        st.session_state["sb_flash"] = ("error", f"Could not create the project: {md_escape(exc)}.")
        return
    st.session_state["sb_new_name"] = ""
    set_current_project(name)
    st.session_state["sb_flash"] = ("success", f"Created project “{md_escape(name)}”.")


def _delete() -> None:
    require("delete")
    name = current_project()
    if not name:
        return
    if not st.session_state.get("sb_delete_confirm"):
        st.session_state["sb_flash"] = ("warning", "Tick the box to confirm the deletion first.")
        return
    try:
        forget_store(projects.project_path(name, folder))
        projects.delete_project(name, folder)
    except (projects.ProjectError, StoreError, OSError) as exc:
        st.session_state["sb_flash"] = ("error", f"Could not delete: {exc}.")
        return
    st.session_state["sb_delete_confirm"] = False
    remaining = [p.name for p in projects.list_projects(folder)]
    set_current_project(remaining[0] if remaining else None)
    st.session_state["sb_flash"] = ("success", f"Deleted project “{md_escape(name)}”.")


def _job_status(own_panel: bool = False) -> None:
    """The running job, live on every page (one status model: ``promptmix_core.job_status``); the
    whole page refreshes when it ends. On the page that follows the job in its own panel the line
    names only what cannot go stale there (the sidebar does not poll once the job runs)."""
    store = get_store()
    job = active_job(store) if store is not None else None
    if job is None:
        if st.session_state.pop("_sb_watch_job", None):
            st.rerun()
        return
    st.session_state["_sb_watch_job"] = job.id
    view = job_view(job)
    text = (f"{view.title} is running: its progress is on this page" if own_panel and view.status == "running"
            else view.line())
    st.info(text, icon=":material/autorenew:")


def _restore_demo() -> None:
    require("create")
    try:
        name = projects.unique_name(DEMO_NAME, folder)
        projects.check_writable(folder)
        create_demo(projects.project_path(name, folder))
    except (projects.ProjectError, StoreError, OSError) as exc:
        st.session_state["sb_flash"] = ("error", f"Could not restore the demo: {md_escape(exc)}.")
        return
    set_current_project(name)


# --------------------------------------------------------------------------- sidebar
with st.sidebar:
    st.markdown("## :material/science: PromptMix Studio")
    st.caption("A few labelled examples in, a small trained classifier out.")
    sign_out_panel()
    names = [p.name for p in projects.list_projects(folder)]
    msg = st.session_state.pop("sb_flash", None)
    if msg:
        getattr(st, msg[0])(msg[1])
    bad = st.session_state.pop("_bad_project", None)
    if bad:
        st.warning(f"There is no project called “{md_escape(bad)}”; opened another one.")

    if names:
        if st.session_state.get("sb_project") != project:
            st.session_state["sb_project"] = project
        st.selectbox("Project", names, key="sb_project", on_change=_switch,
                     help=f"Projects are files in {folder}")
    else:
        st.info("No projects yet. Create one below, or restore the demo." if can("create") else
                "No projects yet. An owner creates them.")
        if can("create"):
            st.button("Restore the banking demo", on_click=_restore_demo, width="stretch")

    store = get_store()
    if store is not None:
        s = store.summary()

        def _step(done: bool, text: str) -> str:
            icon = ":green[:material/check_circle:]" if done else ":gray[:material/radio_button_unchecked:]"
            return f"{icon} {text}"

        def plural(n: int, one: str, many: str | None = None) -> str:
            return f"{n} {one if n == 1 else (many or one + 's')}"

        def _steps() -> None:
            s = store.summary()
            with st.container(border=True):
                st.markdown("  \n".join([
                    _step(s["classes"] >= 2 and s["seeds"] > 0,
                          f"**Task** · {plural(s['classes'], 'class', 'classes')}, "
                          f"{plural(s['seeds'], 'seed')}"),
                    _step(s["generated"] > 0, f"**Generated** · {plural(s['generated'], 'example')}"
                          + (f", {s['relabelled']} relabelled" if s["relabelled"] < s["generated"] else "")),
                    _step(s["generated"] > 0 and s["reviewed"] >= s["generated"],
                          f"**Reviewed** · {s['reviewed']} of {s['generated']}"),
                    _step(s["runs_done"] > 0,
                          f"**Trained** · {s['runs_done']} of {plural(s['runs'], 'run')} finished"
                          if s["runs"] > s["runs_done"] else f"**Trained** · {plural(s['runs_done'], 'run')}"),
                ]))

        # while reviewing, decisions are saved without rerunning the page: keep the steps current
        st.fragment(_steps, run_every=10.0 if nav.url_path == "review" else None)()
        running = active_job(store)
        # the Generate and Train pages follow their own job in a live panel: the sidebar does not poll
        # as well there (a second fragment rerunning every 2 s costs the server and the browser CPU
        # that a training run on the same machine would otherwise get; see docs/BENCHMARKS.md)
        own_panel = running is not None and running.kind in PAGE_JOB_KINDS.get(nav.url_path, ())
        poll = sidebar_poll_seconds(job_view(running) if running is not None else None, own_panel)
        st.fragment(_job_status, run_every=poll)(own_panel)
        # where the project stands: the next useful step
        if s["classes"] < 2 or s["seeds"] == 0:
            nxt, page = "define the task", "task"
        elif s["generated"] == 0:
            nxt, page = "generate examples", "generate"
        elif s["reviewed"] < s["generated"] and s["runs"] == 0:
            nxt, page = "review examples", "review"
        elif s["runs_done"] == 0:
            nxt, page = "train a classifier", "train"
        else:
            nxt, page = "results and export", "results"
        st.page_link(PAGE_FILES[page], label=f"Next: {nxt}", icon=":material/arrow_forward:")

    if can("create"):
        with st.expander("New project", icon=":material/add:"):
            st.text_input("Name", key="sb_new_name", placeholder="e.g. support-tickets",
                          help="Letters, digits, spaces, - _ and . (up to 64 characters)")
            st.radio("Start from", ["Empty", "Copy of the banking demo task"], key="sb_new_template")
            st.button("Create project", on_click=_create, type="primary", width="stretch")

    if project and can("delete"):
        with st.expander("Delete this project", icon=":material/delete:"):
            st.caption("Deletes the project file with its examples, reviews and runs. This cannot be undone.")
            st.checkbox(f"Yes, delete “{md_escape(project)}”", key="sb_delete_confirm")
            st.button("Delete project", on_click=_delete, width="stretch")

nav.run()
