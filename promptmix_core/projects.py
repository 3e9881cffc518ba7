"""Projects folder: list, create, open and delete projects (one SQLite ``.pmx`` file each).

The folder is ``$PROMPTMIX_PROJECTS_DIR`` or ``./projects``. Project names come from users, so every
name is checked and every path is confirmed to stay inside the folder before it is touched.
Also holds the small pure helpers the Task page needs: field-level validation of a task being
edited and decoding of uploaded task / labelled files.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .labelled import parse_labelled_bytes
from .store import ProjectStore, StoreError, storage_error
from .task import (
    MAX_TEXT_CHARS,
    Task,
    TaskError,
    decode_bytes,
    normalize_name,
    normalize_text,
    parse_task_text,
    read_labelled_rows,
    task_from_rows,
)

SUFFIX = ".pmx"
ENV_DIR = "PROMPTMIX_PROJECTS_DIR"
DEMO_MARKER = ".demo-created"
LAST_PROJECT_FILE = ".last-project"  # the project a new browser tab opens when its link names none
MAX_NAME_CHARS = 64
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_NAME_RE = re.compile(r"^[\w][\w .\-]*$", re.UNICODE)


class ProjectError(ValueError):
    """A project name or path was refused, or the project could not be created/opened/deleted."""


@dataclass
class ProjectInfo:
    name: str
    path: Path
    size_bytes: int
    modified: float


def projects_dir(path: str | os.PathLike | None = None) -> Path:
    """The projects folder: ``path``, else ``$PROMPTMIX_PROJECTS_DIR``, else ``./projects``."""
    from .settings import get_settings

    raw = path if path is not None else get_settings().projects_dir
    return Path(raw).expanduser().resolve()


def check_name(name: str) -> str:
    """Return the cleaned project name or raise :class:`ProjectError` saying what is wrong."""
    clean = unicodedata.normalize("NFC", str(name or "")).strip()
    if not clean:
        raise ProjectError("give the project a name")
    if len(clean) > MAX_NAME_CHARS:
        raise ProjectError(f"a project name may have at most {MAX_NAME_CHARS} characters")
    if clean in (".", "..") or "/" in clean or "\\" in clean or "\x00" in clean:
        raise ProjectError("a project name may not contain / or \\ or be . or ..")
    if not _NAME_RE.match(clean):
        raise ProjectError("use letters, digits, spaces, '-', '_' and '.' only, starting with a letter or digit")
    if clean.endswith(".") or clean.endswith(" "):
        raise ProjectError("a project name may not end with '.' or a space")
    if clean.lower().split(".")[0] in _RESERVED:
        raise ProjectError(f"'{clean}' is a reserved file name; choose another")
    return clean


def exact_name(name: str) -> str:
    """``name`` exactly as given (no trimming, no Unicode normalisation), checked only so that it names
    a file directly inside the projects folder. Opening and deleting go by the exact name, so
    ``'beta '`` never reaches ``beta.pmx`` and an NFD ``café`` never reaches the NFC one."""
    raw = str(name or "")
    check_name(raw)  # the rules of a name (the listing shows only files whose names pass them)
    if len(raw) > MAX_NAME_CHARS:
        raise ProjectError(f"a project name may have at most {MAX_NAME_CHARS} characters")
    if "/" in raw or "\\" in raw or "\x00" in raw:
        raise ProjectError("a project name may not contain / or \\ or be . or ..")
    return raw


def look_alike_key(name: str) -> str:
    """What two names that look the same share: NFKC, no invisible (format) characters, spaces
    collapsed and trimmed, case folded."""
    text = unicodedata.normalize("NFKC", str(name or ""))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split()).casefold()


def project_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """The file of project ``name`` (the exact name), guaranteed to lie directly inside the projects folder."""
    base = projects_dir(folder)
    exact = exact_name(name)
    path = (base / f"{exact}{SUFFIX}").resolve()
    if path.parent != base or path.name != f"{exact}{SUFFIX}":
        raise ProjectError("that name points outside the projects folder")
    return path


def check_new_name(name: str, folder: str | os.PathLike | None = None) -> str:
    """The cleaned name for a new project (NFC, trimmed, checked), refused when a project of that name
    or of a look-alike one (case, spaces, Unicode forms, invisible characters) exists already."""
    clean = check_name(name)
    if project_path(clean, folder).exists():
        raise ProjectError(f"a project called '{clean}' already exists")
    key = look_alike_key(clean)
    for other in list_projects(folder):
        if look_alike_key(other.name) == key:
            raise ProjectError(f"a project called '{other.name}' already exists (the names differ only in case, "
                               "spaces, accents' encoding or invisible characters); choose another name")
    return clean


def list_projects(folder: str | os.PathLike | None = None) -> list[ProjectInfo]:
    """Projects in the folder, most recently changed first (unreadable names are skipped)."""
    base = projects_dir(folder)
    if not base.is_dir():
        return []
    out = []
    for p in base.glob(f"*{SUFFIX}"):
        if not p.is_file() or p.is_symlink():
            continue
        try:
            check_name(p.stem)
        except ProjectError:
            continue
        wal = p.with_name(p.name + "-wal")
        mtime = max(p.stat().st_mtime, wal.stat().st_mtime if wal.exists() else 0)
        out.append(ProjectInfo(name=p.stem, path=p, size_bytes=p.stat().st_size, modified=mtime))
    out.sort(key=lambda i: (-i.modified, i.name.lower()))
    return out


def project_exists(name: str, folder: str | os.PathLike | None = None) -> bool:
    try:
        return project_path(name, folder).is_file()
    except ProjectError:
        return False


def check_writable(folder: str | os.PathLike | None = None) -> Path:
    """The projects folder, created if missing; :class:`ProjectError` "cannot write to folder X" when
    this process may not write there (a read-only folder or file system)."""
    base = projects_dir(folder)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        words = storage_error(exc, base / "x")
        raise ProjectError(str(words) if words else f"cannot create the folder {base}: {exc.strerror or exc}") from None
    if not os.access(base, os.W_OK):
        raise ProjectError(f"cannot write to folder {base}: new projects cannot be created there")
    return base


def create_project(name: str, folder: str | os.PathLike | None = None, task: Task | None = None) -> ProjectStore:
    """Create a new, empty project (optionally with a task); refuses an existing name, and says so
    when the folder cannot be written or the disk is full (no half-made file is left)."""
    path = project_path(check_new_name(name, folder), folder)
    check_writable(folder)
    try:
        store = ProjectStore(path, create=True)
        if task is not None:
            store.save_task(task)
    except StoreError as exc:
        raise ProjectError(str(exc)) from None
    return store


def open_project(name: str, folder: str | os.PathLike | None = None) -> ProjectStore:
    path = project_path(name, folder)
    if not path.is_file():
        raise ProjectError(f"there is no project called '{path.stem}'")
    try:
        return ProjectStore(path, create=False)
    except StoreError as exc:
        raise ProjectError(str(exc)) from None


def project_side_dirs(path: str | os.PathLike) -> list[Path]:
    """Folders that belong to a project file: trained models (``NAME.models``) and job logs
    (``NAME.pmx.logs``)."""
    p = Path(path)
    from .paths import project_side_dirs as side_dirs

    return side_dirs(p)


def delete_project(name: str, folder: str | os.PathLike | None = None, *, force: bool = False) -> None:
    """Delete a project file with its WAL/SHM side files, its models and its job logs.

    Refuses while a background job of the project is running unless ``force``.
    """
    path = project_path(name, folder)
    if not path.is_file():
        raise ProjectError(f"there is no project called '{path.stem}'")
    if not force:
        try:
            store = ProjectStore(path, create=False)
            store.reap_stale_jobs()
            active = [j.id for j in store.list_jobs() if j.active]
            store.close()
        except StoreError:
            active = []
        if active:
            raise ProjectError(
                f"'{path.stem}' has a job running (#{active[0]}); stop it before deleting the project"
            )
    for side in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                 path.with_name(path.name + ".reserve")):
        try:
            side.unlink()
        except FileNotFoundError:
            pass
    for side_dir in project_side_dirs(path):
        if side_dir.is_symlink():
            side_dir.unlink()
        elif side_dir.is_dir() and side_dir.resolve().parent == path.parent:
            shutil.rmtree(side_dir, ignore_errors=True)


def remember_last_project(name: str | None, folder: str | os.PathLike | None = None) -> None:
    """Note ``name`` as the project used last (best effort: a read-only folder just forgets)."""
    base = projects_dir(folder)
    path = base / LAST_PROJECT_FILE
    try:
        if not name:
            path.unlink(missing_ok=True)
            return
        clean = exact_name(name)
        if path.is_file() and path.read_text("utf-8").rstrip("\n") == clean:
            return
        tmp = base / f"{LAST_PROJECT_FILE}.{os.getpid()}.tmp"
        tmp.write_text(clean + "\n", "utf-8")
        os.replace(tmp, path)
    except (OSError, ProjectError):
        pass


def last_project(folder: str | os.PathLike | None = None) -> str | None:
    """The project used last, when it still exists."""
    try:
        name = (projects_dir(folder) / LAST_PROJECT_FILE).read_text("utf-8").rstrip("\n")
        return name if name and project_exists(name, folder) else None
    except (OSError, UnicodeDecodeError):
        return None


def unique_name(base: str, folder: str | os.PathLike | None = None) -> str:
    """``base``, or ``base 2``, ``base 3``... whichever is free."""
    name = check_name(base)
    if not project_exists(name, folder):
        return name
    for i in range(2, 1000):
        cand = f"{name[: MAX_NAME_CHARS - 5]} {i}"
        if not project_exists(cand, folder):
            return cand
    raise ProjectError("too many projects with that name")


def ensure_demo(folder: str | os.PathLike | None = None) -> str | None:
    """On first start (folder without projects and never seeded) create the demo project.

    Returns the demo's name when it was created, else None.
    """
    from .demo import DEMO_NAME, create_demo

    base = projects_dir(folder)
    base.mkdir(parents=True, exist_ok=True)
    marker = base / DEMO_MARKER
    if marker.exists() or list_projects(base) or not os.access(base, os.W_OK):
        return None  # a read-only folder gets no demo: its projects open read-only
    create_demo(base / f"{DEMO_NAME}{SUFFIX}")
    marker.write_text(f"demo project created {time.strftime('%Y-%m-%d %H:%M:%S')}\n", "utf-8")
    return DEMO_NAME


# --------------------------------------------------------------------------- task editing helpers
def lines_to_examples(text: str) -> list[str]:
    """One example per non-blank line."""
    return [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]


def field_problems(task: Task, *, min_classes: int = 2) -> tuple[list[str], dict[tuple[int, str], list[str]]]:
    """Problems of a task being edited, placed at the field at fault.

    Returns ``(task_level, per_field)`` where ``per_field`` maps ``(class_index, field)`` with field
    ``"name"`` or ``"examples"`` to messages. Empty lists mean the task can be saved. The rules are
    :func:`promptmix_core.validation.check_task`, the same as ``task.validate``.
    """
    from .validation import check_task

    task_level: list[str] = []
    per: dict[tuple[int, str], list[str]] = {}
    for issue in check_task(task, min_classes=min_classes):
        if issue.severity != "error":
            continue
        if issue.index is None:
            task_level.append(issue.hint)
        else:
            per.setdefault((issue.index, issue.field or "name"), []).append(issue.hint)
    return task_level, per


def field_warnings(task: Task) -> dict[tuple[int, str], list[str]]:
    """Non-blocking advice per field (missing description, duplicate seeds)."""
    from .validation import check_task

    out: dict[tuple[int, str], list[str]] = {}
    for issue in check_task(task, min_classes=0):
        if issue.severity == "warning" and issue.index is not None and issue.field and issue.hint:
            out.setdefault((issue.index, issue.field), []).append(issue.hint)
    return out


IMPORT_TYPES = ("csv", "jsonl", "json", "yaml", "yml")


def import_task_bytes(data: bytes, filename: str, *, k: int | None = None, seed: int = 0) -> Task:
    """Turn an uploaded file into a task.

    CSV/JSONL need ``text`` and ``label`` columns (with ``k``: keep k seeds per class, seeded);
    JSON/YAML are task files (``name`` and ``classes``). Raises :class:`TaskError` listing problems.
    """
    name = Path(filename or "upload").name
    stem = Path(name).stem or "imported"
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix not in IMPORT_TYPES:
        raise TaskError(f"{name}: use a .csv or .jsonl file with text,label columns, or a .json/.yaml task file")
    if suffix in ("csv", "jsonl"):
        if k is not None and k < 1:
            raise TaskError("keep at least 1 seed per class")
        # read line by line: an upload is never held decoded and parsed whole beside its bytes
        rows = parse_labelled_bytes(data, suffix, name)
        # the same draw as the CLI and experiments (seeds.draw_seeds); small classes are kept whole
        return task_from_rows(rows, name=stem, k=k, seed=seed, keep_short=True)
    task = parse_task_text(decode_bytes(data, name), name)
    if task.name == "untitled":
        task.name = stem
    return task


__all__ = [
    "ProjectError",
    "ProjectInfo",
    "check_name",
    "check_new_name",
    "exact_name",
    "look_alike_key",
    "check_writable",
    "create_project",
    "delete_project",
    "ensure_demo",
    "field_problems",
    "field_warnings",
    "import_task_bytes",
    "last_project",
    "lines_to_examples",
    "list_projects",
    "open_project",
    "project_exists",
    "project_side_dirs",
    "project_path",
    "projects_dir",
    "remember_last_project",
    "unique_name",
]
