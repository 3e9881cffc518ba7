"""Task model: classes with names, descriptions and seed examples.

A task is loaded from a task file (JSON or YAML), or imported from a labelled CSV/JSONL file
(``text,label`` columns) with an optional descriptions file. Every problem found is reported as
one clear message in a :class:`TaskError`; loading never surfaces a traceback to the user.
"""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .validation import MAX_TEXT_CHARS  # noqa: E402,F401 - re-exported


from .errors import TaskError  # noqa: E402 - re-exported: the one definition lives in errors.py


def normalize_name(name: str) -> str:
    """Key used to compare class names: case, spacing, underscores and hyphens ignored."""
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    for ch in "_-":
        text = text.replace(ch, " ")
    return " ".join(text.split())


def normalize_text(text: str) -> str:
    """Key used to detect duplicate examples: case, punctuation at the ends and spacing ignored."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = " ".join(text.split())
    return text.strip(" \t\"'`.,;:!?-*()[]{}")


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not str(value).strip()


@dataclass
class ClassSpec:
    name: str
    description: str = ""
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "examples": list(self.examples)}


@dataclass
class Task:
    name: str
    classes: list[ClassSpec]

    # ------------------------------------------------------------------ queries
    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def get(self, name: str) -> ClassSpec:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(name)

    def seed_rows(self) -> list[dict[str, str]]:
        return [{"text": ex, "label": c.name} for c in self.classes for ex in c.examples]

    @property
    def k(self) -> int:
        """Smallest number of seeds per class."""
        return min((len(c.examples) for c in self.classes), default=0)

    # ---------------------------------------------------------------- serialise
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "classes": [c.to_dict() for c in self.classes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: Any, *, validate_task: bool = True) -> "Task":
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise TaskError("a task must be an object with 'name' and 'classes'")
        raw_classes = data.get("classes")
        if raw_classes is None:
            raise TaskError("the task has no 'classes' list")
        if not isinstance(raw_classes, list):
            raise TaskError("'classes' must be a list")
        classes: list[ClassSpec] = []
        for i, rc in enumerate(raw_classes, start=1):
            if not isinstance(rc, Mapping):
                problems.append(f"class #{i}: must be an object with name, description and examples")
                continue
            name = rc.get("name")
            name = "" if _is_blank(name) else str(name).strip()
            desc = rc.get("description")
            desc = "" if _is_blank(desc) else str(desc).strip()
            examples_raw = rc.get("examples", [])
            if examples_raw is None:
                examples_raw = []
            if isinstance(examples_raw, str):
                examples_raw = [examples_raw]
            if not isinstance(examples_raw, list):
                problems.append(f"class {name or '#' + str(i)}: 'examples' must be a list of texts")
                examples_raw = []
            examples = [str(e).strip() for e in examples_raw if not _is_blank(e)]
            classes.append(ClassSpec(name=name, description=desc, examples=examples))
        if problems:
            raise TaskError(problems)
        name = data.get("name")
        task = cls(name="" if _is_blank(name) else str(name).strip() or "untitled", classes=classes)
        if not task.name:
            task.name = "untitled"
        if validate_task:
            validate(task)
        return task


def validate(task: Task, *, min_classes: int = 2) -> list[str]:
    """Check a task; raise :class:`TaskError` listing every problem. Returns warnings (not fatal).

    The rules live in :func:`promptmix_core.validation.check_task` (shared with the Task page)."""
    from .validation import check_task

    issues = check_task(task, min_classes=min_classes)
    problems = [i.message for i in issues if i.severity == "error"]
    if problems:
        raise TaskError(problems)
    return [i.message for i in issues if i.severity == "warning"]


# --------------------------------------------------------------------------- file loading
from .labelled import MAX_FILE_BYTES, decode_bytes  # noqa: E402,F401 - re-exported
from .labelled import read_text_file as _read_text  # noqa: E402


def parse_task_text(text: str, name: str = "task file") -> Task:
    """Parse a JSON or YAML task document."""
    data: Any
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise TaskError(f"{name} is neither JSON nor valid YAML{where}") from None
        if not isinstance(data, dict):
            raise TaskError(f"{name} is neither a JSON nor a YAML task (expected 'name' and 'classes')")
    return Task.from_dict(data)


def read_labelled_rows(text: str, fmt: str, name: str = "the file") -> list[dict[str, str]]:
    """Read ``text,label`` rows from CSV or JSONL text (the one reader: :mod:`promptmix_core.labelled`)."""
    from .labelled import parse_labelled

    return parse_labelled(text, fmt, name)


def read_descriptions(path: Path) -> dict[str, str]:
    """Descriptions file: JSON list of {name, description}, JSON/YAML mapping, or CSV name,description."""
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "name" not in cols or "description" not in cols:
            raise TaskError(f"{path.name} needs columns 'name' and 'description'")
        return {
            r[cols["name"]].strip(): (r[cols["description"]] or "").strip()
            for r in reader
            if r.get(cols["name"])
        }
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise TaskError(f"{path.name} is not JSON, YAML or CSV") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    if isinstance(data, list):
        out = {}
        for item in data:
            if isinstance(item, dict) and "name" in item:
                out[str(item["name"])] = str(item.get("description") or "")
        return out
    raise TaskError(f"{path.name}: descriptions must be a list of {{name, description}} or a mapping")


def task_from_rows(
    rows: Iterable[Mapping[str, str]],
    *,
    name: str = "imported",
    descriptions: Mapping[str, str] | None = None,
    k: int | None = None,
    seed: int = 0,
    keep_short: bool = False,
) -> Task:
    """Build a task from labelled rows; with ``k`` draw k seeds per class (:func:`seeds.draw_seeds`)."""
    from .seeds import draw_seeds, group_by_label

    descriptions = dict(descriptions or {})
    drawn = draw_seeds(group_by_label(rows), k, seed, keep_short=keep_short)
    classes = [ClassSpec(name=label, description=descriptions.get(label, ""), examples=texts)
               for label, texts in drawn.items()]
    task = Task(name=name, classes=classes)
    validate(task)
    return task


def load_task(
    path: str | Path,
    *,
    k: int | None = None,
    seed: int = 0,
    descriptions: str | Path | None = None,
) -> Task:
    """Load a task from a JSON/YAML task file, or import it from a CSV/JSONL labelled file.

    For a labelled file, ``descriptions`` defaults to a ``classes.json`` beside it when present.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    text = _read_text(path)
    if suffix in (".csv", ".jsonl", ".tsv"):
        rows = read_labelled_rows(text, "jsonl" if suffix == ".jsonl" else "csv", path.name)
        desc_path = Path(descriptions) if descriptions else path.with_name("classes.json")
        descs = read_descriptions(desc_path) if (descriptions or desc_path.exists()) else {}
        name = path.parent.name if path.stem in ("train", "test", "data") else path.stem
        return task_from_rows(rows, name=name, descriptions=descs, k=k, seed=seed)
    task = parse_task_text(text, path.name)
    if descriptions:
        descs = read_descriptions(Path(descriptions))
        for c in task.classes:
            if not c.description and c.name in descs:
                c.description = descs[c.name]
    if k is not None:  # the same draw as for a labelled file (seeds.draw_seeds)
        from .seeds import draw_seeds

        drawn = draw_seeds({c.name: c.examples for c in task.classes}, k, seed)
        for c in task.classes:
            c.examples = drawn[c.name]
    return task


def save_task(task: Task, path: str | Path) -> None:
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        path.write_text(yaml.safe_dump(task.to_dict(), allow_unicode=True, sort_keys=False), "utf-8")
    else:
        path.write_text(task.to_json() + "\n", "utf-8")


__all__ = [
    "ClassSpec",
    "Task",
    "TaskError",
    "decode_bytes",
    "load_task",
    "normalize_name",
    "normalize_text",
    "parse_task_text",
    "read_labelled_rows",
    "save_task",
    "task_from_rows",
    "validate",
]

