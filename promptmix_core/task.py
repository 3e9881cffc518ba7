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
import random
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MAX_TEXT_CHARS = 20_000  # seeds longer than this are refused (prompts must stay small)
MAX_FILE_BYTES = 200 * 1024 * 1024


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
    """Check a task; raise :class:`TaskError` listing every problem. Returns warnings (not fatal)."""
    problems: list[str] = []
    warnings: list[str] = []
    if len(task.classes) < min_classes:
        problems.append(
            f"a task needs at least {min_classes} classes; it has {len(task.classes)}"
        )
    seen: dict[str, str] = {}
    for i, c in enumerate(task.classes, start=1):
        label = c.name or f"#{i}"
        if not c.name:
            problems.append(f"class #{i} has a blank name")
        else:
            key = normalize_name(c.name)
            if key in seen:
                if seen[key] == c.name:
                    problems.append(f"class name '{c.name}' appears more than once")
                else:
                    problems.append(
                        f"class names '{seen[key]}' and '{c.name}' differ only in case, spaces or "
                        "punctuation; give them distinct names"
                    )
            else:
                seen[key] = c.name
            if len(c.name) > 200:
                problems.append(f"class '{c.name[:40]}...' has a name over 200 characters")
        if not c.examples:
            problems.append(f"class '{label}' has no seed examples (it needs at least one)")
        for ex in c.examples:
            if len(ex) > MAX_TEXT_CHARS:
                problems.append(
                    f"class '{label}' has a seed example of {len(ex):,} characters; "
                    f"the limit is {MAX_TEXT_CHARS:,}"
                )
                break
        if not c.description:
            warnings.append(f"class '{label}' has no description; the prompts will use its name only")
        norm = [normalize_text(e) for e in c.examples]
        if len(set(norm)) != len(norm):
            warnings.append(f"class '{label}' has duplicate seed examples")
    if problems:
        raise TaskError(problems)
    return warnings


# --------------------------------------------------------------------------- file loading
def _read_text(path: Path) -> str:
    if not path.exists():
        raise TaskError(f"file not found: {path}")
    if path.is_dir():
        raise TaskError(f"{path} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise TaskError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise TaskError(f"{path.name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
    return decode_bytes(path.read_bytes(), path.name)


def decode_bytes(data: bytes, name: str = "the file") -> str:
    """Decode UTF-8 (with or without a byte-order mark); a clear error for anything else."""
    if not data.strip():
        raise TaskError(f"{name} is empty")
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TaskError(
            f"{name} is not valid UTF-8 (bad byte at line {line}); save it as UTF-8 and try again"
        ) from None


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
    """Read ``text,label`` rows from CSV or JSONL text. Rows with blank text or label are skipped."""
    rows: list[dict[str, Any]] = []
    if fmt == "jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise TaskError(f"{name}: line {i} is not valid JSON") from None
            if not isinstance(obj, dict):
                raise TaskError(f"{name}: line {i} is not a JSON object")
            rows.append(obj)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
    else:
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            columns = set(reader.fieldnames or [])
            rows = list(reader)
        except csv.Error as exc:
            raise TaskError(f"{name} is not a readable CSV file: {exc}") from None
    lower = {str(c).strip().lower(): c for c in columns if c is not None}
    missing = [c for c in ("text", "label") if c not in lower]
    if missing:
        found = ", ".join(sorted(str(c) for c in columns if c)) or "none"
        raise TaskError(
            f"{name} is missing the column(s) {', '.join(missing)}; it needs 'text' and 'label' "
            f"(found: {found})"
        )
    tcol, lcol = lower["text"], lower["label"]
    out = []
    for r in rows:
        t, lab = r.get(tcol), r.get(lcol)
        if _is_blank(t) or _is_blank(lab):
            continue
        out.append({"text": str(t).strip(), "label": str(lab).strip()})
    if not out:
        raise TaskError(f"{name} has no rows with both a text and a label")
    return out


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
) -> Task:
    """Build a task from labelled rows; with ``k`` draw k seeds per class (seeded, without replacement)."""
    by_label: dict[str, list[str]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r["text"])
    if k is not None and k < 1:
        raise TaskError("k must be at least 1")
    descriptions = dict(descriptions or {})
    rng = random.Random(seed)
    classes = []
    for label in sorted(by_label):
        texts = list(dict.fromkeys(by_label[label]))  # drop exact duplicates, keep order
        if k is not None:
            texts = sorted(texts)
            if len(texts) < k:
                raise TaskError(f"class '{label}' has only {len(texts)} examples; --k {k} needs {k}")
            texts = rng.sample(texts, k)
        classes.append(ClassSpec(name=label, description=descriptions.get(label, ""), examples=texts))
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
    if k is not None:
        rng = random.Random(seed)
        for c in task.classes:
            if len(c.examples) > k:
                c.examples = rng.sample(sorted(c.examples), k)
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

