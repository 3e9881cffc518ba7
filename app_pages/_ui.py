"""Shared helpers for the app's pages: the current project, safe text rendering, job-engine access.

Pages stay thin: they read state through these helpers, call ``promptmix_core`` and render.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import streamlit as st

from promptmix_core import access, projects
from promptmix_core.settings import get_settings
from promptmix_core.store import ProjectStore, StoreError
from promptmix_core.scores import run_scores  # noqa: F401 - the pages read run scores from here
from promptmix_core.task import Task

PAGE_FILES = {
    "task": "app_pages/1_task.py",
    "generate": "app_pages/2_generate.py",
    "review": "app_pages/3_review.py",
    "train": "app_pages/4_train.py",
    "results": "app_pages/5_results.py",
}
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
}
STATUS_COLORS = {"queued": "gray", "running": "blue", "done": "green", "failed": "red", "cancelled": "orange"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$=:])")


# --------------------------------------------------------------------------- sign-in and roles
def access_config() -> access.AccessConfig:
    """The sign-in rules of this app, from ``st.secrets`` (``[auth]``, ``[promptmix]``)."""
    try:
        secrets = st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - no secrets file at all: no sign-in
        secrets = {}
    return access.access_config(secrets)


def _claims() -> dict[str, Any]:
    try:
        return dict(st.user.to_dict()) if st.user.is_logged_in else {}
    except Exception:  # noqa: BLE001 - no [auth]: st.user has no sign-in
        return {}


def _stop_without_pages() -> None:
    """End this run showing only what was drawn: the pages are registered hidden, so Streamlit's own
    list of the page files never shows in the sidebar."""
    def sign_in_screen() -> None:  # what "/" is before sign-in: the screen drawn above
        return None

    st.navigation([st.Page(sign_in_screen, title="Sign in", url_path="sign-in", default=True)]
                  + [st.Page(path, url_path=name) for name, path in PAGE_FILES.items()], position="hidden")
    st.stop()


def sign_in_gate() -> None:
    """Run first on every page: without ``[auth]`` refuse a network address (unless opted out); with
    it, nothing but a sign-in button until the person has signed in and is allowed in. Decides this
    run's role and reviewer name (:func:`current_role`, :func:`reviewer_name`) from ``st.user`` on
    the server, so nothing the browser sends can change them."""
    cfg = access_config()
    if not cfg.auth:
        address = st.get_option("server.address")
        reason = access.network_refusal(address, auth=False, open_network=get_settings().open_network) if address \
            else None
        if reason:
            st.error(reason, icon=":material/lock:")
            _stop_without_pages()
        st.session_state["_pmx_role"] = access.OWNER
        st.session_state["_pmx_who"] = access.local_reviewer()
        return
    claims = _claims()
    if not claims:
        st.session_state.pop("_pmx_role", None)
        st.markdown("## :material/science: PromptMix Studio")
        st.markdown("Sign in to see the projects.")
        if st.button("Sign in", type="primary", key="pmx_sign_in", icon=":material/login:"):
            st.login()
        _stop_without_pages()
    role = access.role_for(claims, cfg)
    who = access.identity(claims) or "?"
    if role is None:
        st.session_state.pop("_pmx_role", None)
        st.error(f"{md_escape(who)} is not on this app's list of people allowed in. Ask an owner to add you.",
                 icon=":material/block:")
        if st.button("Sign out", key="pmx_sign_out_refused"):
            st.logout()
        _stop_without_pages()
    st.session_state["_pmx_role"] = role
    st.session_state["_pmx_who"] = who


def current_role() -> str | None:
    """This run's role (owner or reviewer), set by :func:`sign_in_gate`; before the gate has run, the
    one local person is an owner without ``[auth]`` and nobody is anything with it."""
    role = st.session_state.get("_pmx_role")
    if role is None and not access_config().auth:
        return access.OWNER
    return role


def reviewer_name() -> str:
    """Who this run's decisions are recorded under: the signed-in person, else the OS user."""
    return str(st.session_state.get("_pmx_who") or access.local_reviewer())


def can(action: str) -> bool:
    return access.can(current_role(), action)


def require(action: str) -> None:
    """Stop with a message unless this run's person may take ``action`` (the check that holds even
    when a rerun is crafted by hand)."""
    try:
        access.require(current_role(), action)
    except access.AccessDenied as exc:
        st.error(f"{exc}.", icon=":material/lock:")
        st.stop()


def owner_page(action: str, what: str) -> None:
    """For a page only owners use: a reviewer sees why and is sent to the pages they use."""
    if can(action):
        return
    st.info(f"{what} is for the project's owners. As a reviewer you review examples and see the results.",
            icon=":material/lock:")
    st.page_link(PAGE_FILES["review"], label="Go to 3 · Review", icon=":material/arrow_forward:")
    st.page_link(PAGE_FILES["results"], label="Go to 5 · Results", icon=":material/arrow_forward:")
    st.stop()


def sign_out_panel() -> None:
    """The signed-in person and a sign-out, in the sidebar (nothing without ``[auth]``)."""
    if not access_config().auth or not _claims():
        return
    role = current_role() or ""
    who = reviewer_name().replace("`", "'")
    st.caption(f":material/person: Signed in as `{who}` · {role}")
    if st.button("Sign out", key="pmx_sign_out", icon=":material/logout:", width="stretch"):
        st.logout()


# --------------------------------------------------------------------------- text safety
def md_escape(text: Any) -> str:
    """Escape user or LLM text so Markdown shows it literally (no links, images, HTML, LaTeX)."""
    s = "" if text is None else str(text)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    # keep line breaks as line breaks
    return s.replace("\r\n", "\n").replace("\n", "  \n")


def quote(text: Any) -> str:
    """A short label (a class name) in bold, escaped so Markdown shows it verbatim."""
    s = "" if text is None else str(text).replace("\n", " ").strip()
    return f"**{md_escape(s)}**" if s else "–"


# --------------------------------------------------------------------------- projects
def projects_folder() -> Path:
    return projects.projects_dir()


def current_project() -> str | None:
    return st.session_state.get("project")


def set_current_project(name: str | None) -> None:
    """Open ``name`` in this session, put it in the URL (a link to share) and remember it as the
    project a new tab opens."""
    st.session_state["project"] = name
    if name:
        st.query_params["project"] = name
    elif "project" in st.query_params:
        del st.query_params["project"]
    if name:
        projects.remember_last_project(name, projects_folder())


@st.cache_resource(show_spinner=False, max_entries=32)
def _shared_store(path: str, inode: int) -> ProjectStore:
    """One store per project file and server process, shared by every session (its SQLite
    connections are per thread). Keyed on the inode too, so a deleted and re-created project
    never reuses a connection to the old file."""
    return ProjectStore(path, create=False)


@st.cache_resource(show_spinner=False)
def _store_inodes() -> dict[str, set[int]]:
    """The inodes each project path's shared store was opened on (to forget exactly those)."""
    return {}


def forget_store(path: str | Path) -> None:
    """Drop the shared store of the project at ``path`` (before deleting its file); the other
    projects' stores stay open."""
    key = str(path)
    inodes = set(_store_inodes().pop(key, set()))
    try:
        inodes.add(Path(path).stat().st_ino)
    except OSError:
        pass
    for inode in inodes:
        _shared_store.clear(key, inode)


def get_store() -> ProjectStore | None:
    """The open project's store, or None when there is none (or it cannot be opened)."""
    name = current_project()
    if not name:
        return None
    try:
        path = projects.project_path(name, projects_folder())
        inode = path.stat().st_ino
        store = _shared_store(str(path), inode)
        _store_inodes().setdefault(str(path), set()).add(inode)
    except (projects.ProjectError, StoreError, OSError):
        return None
    try:
        store.reap_stale_jobs()  # a worker that died shows as failed, never as running for ever
    except Exception:  # noqa: BLE001 - reaping is best effort, never blocks the page
        pass
    return store


def store_or_stop() -> ProjectStore:
    store = get_store()
    if store is None:
        empty_state(
            "No project is open",
            "Create a project in the sidebar (or open the banking demo) to start.",
        )
        st.stop()
    if getattr(store, "read_only", False):
        st.warning(f"This project is open read-only: {md_escape(store.read_only_reason)}. You can look at "
                   "everything; saving, reviewing and starting jobs need a folder you can write to.",
                   icon=":material/lock:")
    return store


def write_failed(exc: Exception) -> str:
    """A failed write (full disk, read-only folder) in words for a flash message."""
    return f"Not saved: {md_escape(exc)}."


def task_or_stop(store: ProjectStore) -> Task:
    try:
        task = store.load_task()
    except StoreError as exc:
        st.error(str(exc))
        st.stop()
    if task is None or not task.classes:
        empty_state(
            "This project has no task yet",
            "Define the classes and a few seed examples first.",
            page="task",
            link_label="Go to 1 · Task",
        )
        st.stop()
    return task


# --------------------------------------------------------------------------- layout helpers
def header(title: str, subtitle: str) -> None:
    st.title(title)
    st.caption(subtitle)


def empty_state(title: str, body: str, *, page: str | None = None, link_label: str | None = None) -> None:
    with st.container(border=True):
        st.markdown(f"#### {title}")
        st.markdown(body)
        if page:
            st.page_link(PAGE_FILES[page], label=link_label or f"Go to {page}", icon=":material/arrow_forward:")


def flash(key: str) -> None:
    """Show (once) a message a callback left in ``st.session_state[key]`` as (kind, text)."""
    msg = st.session_state.pop(key, None)
    if msg:
        kind, text = msg
        getattr(st, kind, st.info)(text)


def status_badge(status: str) -> None:
    st.badge(status, icon=STATUS_ICONS.get(status), color=STATUS_COLORS.get(status, "gray"))


def fmt_int(n: Any) -> str:
    try:
        return f"{int(n):,}"
    except (TypeError, ValueError):
        return "–"


def fmt_cost(cost: Any) -> str:
    if cost is None:
        return "n/a"
    try:
        c = float(cost)
    except (TypeError, ValueError):
        return "n/a"
    if c == 0:
        return "$0.00"
    return f"${c:,.4f}" if c < 1 else f"${c:,.2f}"


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def fmt_duration(start: float | None, end: float | None) -> str:
    if not start:
        return "–"
    secs = int((end or time.time()) - start)
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m {secs % 60:02d}s"
    return f"{secs // 3600}h {secs % 3600 // 60:02d}m"


# --------------------------------------------------------------------------- job engine access
def start_job(store: ProjectStore, kind: str, config: dict[str, Any], api_key: str | None = None,
              key_endpoint: str | None = None) -> int:
    """Launch a background worker (``promptmix_core.jobs.start_job``); returns the job id. Owners only.
    ``key_endpoint``: the endpoint ``api_key`` is for (the worker sends it nowhere else)."""
    from promptmix_core import jobs

    access.require(current_role(), "train" if kind == "train" else "generate")

    return int(jobs.start_job(str(store.path), kind, config, api_key=api_key or None,
                              key_endpoint=key_endpoint if api_key else None))


def resume_job(store: ProjectStore, job_id: int, api_key: str | None = None, base_url: str | None = None,
               key_endpoint: str | None = None) -> None:
    """Start a stopped or failed job again; it continues from what the store holds. Owners only."""
    from promptmix_core import jobs
    from promptmix_core.store import scrub_secrets

    access.require(current_role(), "generate")

    key_endpoint = key_endpoint if api_key else None
    if base_url and scrub_secrets(base_url) != base_url:  # an endpoint with user:password in its URL
        jobs.resume_job(str(store.path), job_id, api_key=api_key or None, base_url=base_url,
                        key_endpoint=key_endpoint)
    else:
        jobs.resume_job(str(store.path), job_id, api_key=api_key or None, key_endpoint=key_endpoint)


def configured_key(secrets: Any = None) -> tuple[str | None, str | None, str]:
    """The operator's API key (``st.secrets``, else the environment), where it came from, and the one
    endpoint it may be sent to (``OPENAI_BASE_URL`` beside it, else the OpenAI API)."""
    from promptmix_core.llm.config import key_endpoint
    from promptmix_core.settings import get_settings

    secrets = st.secrets if secrets is None else secrets
    for name in ("OPENAI_API_KEY", "PROMPTMIX_API_KEY"):
        try:
            val = secrets.get(name)
            url = secrets.get("OPENAI_BASE_URL")
        except Exception:  # noqa: BLE001 - no secrets file is fine
            val = url = None
        if val:
            return str(val), f"secrets ({name})", key_endpoint(str(url).strip() if url else None)
    env = get_settings()  # the same variables the CLI accepts
    if env.api_key:
        return env.api_key, f"environment ({env.api_key_source})", key_endpoint()
    return None, None, key_endpoint()


@st.cache_resource(show_spinner=False)
def device_info() -> dict[str, str]:
    """Where training will run: ``{"device": "cuda"|"mps"|"cpu", "name": ...}``."""
    from promptmix_core.device import device_info as probe

    info = probe()
    return {"device": str(info["device"]), "name": str(info.get("name") or info["device"])}


def latest_job(store: ProjectStore, kind: str):
    jobs = store.list_jobs(kind=kind, limit=1)
    return jobs[0] if jobs else None


def active_job(store: ProjectStore, kind: str | None = None):
    for job in store.list_jobs(kind=kind, limit=50):
        if job.active:
            return job
    return None


# --------------------------------------------------------------------------- the project's test set
NO_TEST_SET_NOTE = (
    "No test set: scores come from a handful of held-out *generated* examples, labelled by the same LLM "
    "that wrote them. With so few examples they mean little; add a test set of real labelled texts "
    "(1 · Task → Test set, or 4 · Train) to measure the model."
)


def _save_test_set(store: ProjectStore, rows: list[dict], name: str, flash_key: str, upload_key: str) -> None:
    n = store.set_test_set(rows, name=name, source="upload")
    st.session_state[flash_key] = ("success", f"Saved the test set: {n} labelled examples from {md_escape(name)}. "
                                              "Every training run from now on is scored on it.")
    st.session_state[upload_key] = st.session_state.get(upload_key, 0) + 1  # a fresh uploader


def _clear_test_set(store: ProjectStore, flash_key: str) -> None:
    store.clear_test_set()
    st.session_state[flash_key] = ("info", "Removed the test set.")


def render_test_set(store: ProjectStore, task: Task, key: str, *, examples: list | None = None) -> None:
    """The project's test set: what it holds, and an uploader (CSV/JSONL ``text,label``) that checks
    every row against the task before anything is saved."""
    from promptmix_core.task import TaskError
    from promptmix_core.testset import TEST_SET_TYPES, read_test_set

    flash_key, upload_key = f"{key}_flash", f"{key}_upload_n"
    flash(flash_key)
    info = store.test_set_info()
    if info:
        per_class = info["per_class"]
        missing = [c for c in task.class_names if not per_class.get(c)]
        st.markdown(f":material/fact_check: **Test set:** {info['n']} labelled examples"
                    + (f" from {md_escape(info['name'])}" if info.get("name") else "") + ". Per class: "
                    + " · ".join(f"{quote(c)} {per_class.get(c, 0)}" for c in task.class_names))
        extra = sorted(set(per_class) - set(task.class_names))
        if missing:
            st.warning("No test examples for " + ", ".join(quote(c) for c in missing)
                       + ": their recall cannot be measured.", icon=":material/warning:")
        if extra:
            st.warning("The test set has classes the task no longer has (" + ", ".join(quote(c) for c in extra)
                       + "); those rows are left out when scoring.", icon=":material/warning:")
        st.button("Remove the test set", key=f"{key}_clear", icon=":material/delete:",
                  on_click=_clear_test_set, args=(store, flash_key))
    else:
        st.info(NO_TEST_SET_NOTE, icon=":material/info:")
    up = st.file_uploader(
        "Replace the test set (CSV or JSONL with text and label columns)" if info else
        "Upload a test set (CSV or JSONL with text and label columns)",
        type=list(TEST_SET_TYPES), key=f"{key}_file_{st.session_state.get(upload_key, 0)}",
        help="Real labelled texts the model never trains on. Labels must be classes of the task; rows that "
             "repeat a seed are refused.",
    )
    if up is None:
        return
    gen = [e.text for e in (examples if examples is not None else store.list_examples())]
    try:
        chk = read_test_set(up.getvalue(), up.name, task, generated_texts=gen)
    except TaskError as exc:
        st.error(f"{md_escape(up.name)} cannot be used as a test set: " + "; ".join(md_escape(p) for p in exc.problems))
        return
    counts = chk.per_class(task.class_names)
    if chk.rows:
        st.markdown(f"{md_escape(chk.name)}: **{len(chk.rows)}** usable rows of {chk.total}. Per class: "
                    + " · ".join(f"{quote(c)} {n}" for c, n in counts.items()))
    if chk.problems:
        with st.container(border=True):
            st.markdown(f":red[:material/error:] **{len(chk.problems)} row(s) refused**")
            st.markdown("\n".join(f"- {md_escape(p)}" for p in chk.listed_problems()))
    for note in chk.notes:
        st.caption(f":material/info: {md_escape(note)}")
    if not chk.rows:
        st.error("No usable rows: nothing to save.")
        return
    label = (f"Use the {len(chk.rows)} usable rows as the test set" if chk.problems
             else f"Use these {len(chk.rows)} rows as the test set")
    st.button(label, type="primary", key=f"{key}_save", icon=":material/check:",
              on_click=_save_test_set, args=(store, chk.rows, chk.name, flash_key, upload_key))
