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
from .labelled import MAX_LISTED_PROBLEMS, capped as _capped, scalar_text  # noqa: E402,F401 - re-exported

MAX_NESTING = 32  # a task file is 4 levels deep; deeper JSON or YAML is refused before it can recurse
MAX_YAML_VALUES = 1_000_000  # values a YAML document may expand to through its aliases
# characters a YAML document may expand to through its aliases: a few aliases of one long string (50,000
# of a 20,000-character seed in 170 KB) would otherwise become a 1 GB task; a file without aliases
# expands to its own size, which the file size limit bounds
MAX_YAML_EXPANDED_CHARS = 20_000_000


def _basic_name_key(name: str) -> str:
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    for ch in "_-":
        text = text.replace(ch, " ")
    return " ".join(text.split())


def strip_invisible(text: str) -> str:
    """``text`` without zero-width and other invisible format characters (Unicode category Cf:
    zero-width space and joiners, word joiner, soft hyphen, byte-order mark, direction marks)."""
    return "".join(ch for ch in str(text) if unicodedata.category(ch) != "Cf")


def normalize_name(name: str) -> str:
    """Key used to compare class names: compatibility forms (NFKC), case (folded), spacing,
    underscores, hyphens and invisible characters ignored."""
    return _basic_name_key(strip_invisible(name))


# Letters of other scripts that look like Latin ones (after Unicode's confusables list, TR39), and the
# digits that pass for letters, as they are once case is folded. Two names whose skeletons match look
# the same to a reader.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "г": "r", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ү": "y", "ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ζ": "z", "η": "n", "ο": "o", "ν": "v", "ρ": "p", "ι": "i", "κ": "k",
    "μ": "u", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes and digits
    "ı": "i", "ɡ": "g", "ɑ": "a", "ʏ": "y", "ℓ": "l", "0": "o", "1": "l", "|": "l",
})


def confusable_skeleton(name: str) -> str:
    """What a name looks like: its comparison key (:func:`normalize_name`) with look-alike letters
    mapped to one Latin form. Names equal as names always have equal skeletons."""
    return normalize_name(name).translate(_CONFUSABLES)


def name_clash(a: str, b: str) -> str | None:
    """Why two different class names would be taken for one (None when they are distinct):
    case/spacing/punctuation, invisible characters, or look-alike letters of another script."""
    if a == b:
        return "same"
    if _basic_name_key(a) == _basic_name_key(b):
        return "case"
    if normalize_name(a) == normalize_name(b):
        return "invisible"
    if confusable_skeleton(a) == confusable_skeleton(b):
        return "lookalike"
    return None


def show_name(name: str) -> str:
    """A name for a message, with invisible and look-alike characters made visible (U+200B, ...)."""
    out = []
    for ch in str(name):
        folded = ch.casefold()
        if unicodedata.category(ch) == "Cf" or (ord(ch) > 127 and folded.translate(_CONFUSABLES) != folded):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def clash_message(first: str, second: str, kind: str) -> str:
    if kind == "same":
        return f"class name '{first}' appears more than once"
    if kind == "case":
        return (f"class names '{first}' and '{second}' differ only in case, spaces or punctuation; give them "
                "distinct names")
    if kind == "invisible":
        return (f"class names '{show_name(first)}' and '{show_name(second)}' differ only in invisible characters "
                "(zero-width spaces, joiners or marks); give them distinct names")
    return (f"class names '{first}' and '{second}' look alike ('{show_name(first)}' and '{show_name(second)}' "
            "mix letters of different scripts that look the same); give them distinct names")


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
    def from_dict(cls, data: Any, *, validate_task: bool = True, lines: Sequence[Mapping[str, Any]] | None = None
                  ) -> "Task":
        """A task from a parsed task file. Names, descriptions and examples must be texts; numbers are
        taken as their text (``1`` -> ``"1"``), anything else (true/false, a list, a mapping, a date) is
        refused with where it is. ``lines`` (from a YAML file) gives each class's line numbers."""
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
            at = dict(lines[i - 1]) if lines is not None and i - 1 < len(lines) else {}
            where = f"class #{i}" + (f" (line {at['line']})" if at.get("line") else "")
            if not isinstance(rc, Mapping):
                problems.append(f"{where}: must be an object with name, description and examples")
                continue
            name, bad = scalar_text(rc.get("name"))
            if bad:
                problems.append(f"class #{i}{_line(at.get('name') or at.get('line'))}: the name is {bad}; a class "
                                "name must be a text (put it in quotes)")
            desc, bad = scalar_text(rc.get("description"))
            if bad:
                problems.append(f"class #{i}{_line(at.get('description') or at.get('line'))}: the description is "
                                f"{bad}; it must be a text")
            examples_raw = rc.get("examples", [])
            if examples_raw is None:
                examples_raw = []
            if isinstance(examples_raw, str):
                examples_raw = [examples_raw]
            if not isinstance(examples_raw, list):
                problems.append(f"class {name or '#' + str(i)}: 'examples' must be a list of texts")
                examples_raw = []
            examples = []
            ex_lines = at.get("examples") or []
            for j, e in enumerate(examples_raw, start=1):
                text, bad = scalar_text(e)
                if bad:
                    ln = ex_lines[j - 1] if j - 1 < len(ex_lines) else None
                    problems.append(f"class {name or '#' + str(i)}{_line(ln)}: example {j} is {bad}; "
                                    "examples must be texts")
                elif text:
                    examples.append(text)
            classes.append(ClassSpec(name=name, description=desc, examples=examples))
        task_name, bad = scalar_text(data.get("name"))
        if bad:
            problems.append(f"the task's name is {bad}; it must be a text")
        if problems:
            raise TaskError(_capped(problems))
        task = cls(name=task_name or "untitled", classes=classes)
        if validate_task:
            validate(task)
        return task


def _line(n: Any) -> str:
    return f" (line {n})" if n else ""


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


def _json_depth_problem(data: Any) -> str | None:
    """Walk parsed JSON/YAML without recursion; a message when it nests deeper than MAX_NESTING or (with
    YAML aliases) expands to more than MAX_YAML_VALUES values."""
    stack = [(data, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            return f"holds more than {MAX_YAML_VALUES:,} values"
        if isinstance(value, (list, tuple, Mapping)):
            if depth > MAX_NESTING:
                return f"is nested too deeply (more than {MAX_NESTING} levels)"
            items = value.values() if isinstance(value, Mapping) else value
            stack.extend((v, depth + 1) for v in items)
    return None


def load_json_text(text: str, name: str) -> Any:
    """``json.loads`` with its nesting bounded: a clear message, never a RecursionError."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise TaskError(f"{name} is nested too deeply (more than {MAX_NESTING} levels)") from None
    except json.JSONDecodeError as exc:
        raise TaskError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    problem = _json_depth_problem(data)
    if problem:
        raise TaskError(f"{name} {problem}")
    return data


def load_yaml_text(text: str, name: str) -> tuple[Any, list[dict[str, Any]] | None]:
    """``yaml.safe_load`` made safe for hostile files: a first pass over the parser's events (which
    never recurses and builds nothing) bounds the nesting depth and what aliases expand to (a 'billion
    laughs' file is refused in bytes of memory), then the document is built. Also returns the line
    numbers of each class entry (for messages), when the document has a ``classes`` list."""
    import yaml

    def where(mark: Any) -> str:
        return f" at line {mark.line + 1}" if mark is not None else ""

    try:
        anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, characters) it expands to
        stack: list[list[Any]] = []  # [anchor, values so far, characters so far]
        depth = 0
        total_chars = 0  # characters of the whole document once every alias is expanded
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            n = chars = 0
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_NESTING:
                    raise TaskError(f"{name} is nested too deeply (more than {MAX_NESTING} levels){where(ev.start_mark)}")
                stack.append([ev.anchor, 1, 0])
                continue
            if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                anchor, n, chars = stack.pop()
                if anchor:
                    anchors[anchor] = (n, chars)
            elif isinstance(ev, yaml.ScalarEvent):
                n, chars = 1, len(ev.value)
                total_chars += chars
                if ev.anchor:
                    anchors[ev.anchor] = (1, chars)
            elif isinstance(ev, yaml.AliasEvent):
                n, chars = anchors.get(ev.anchor, (1, 0))
                total_chars += chars
            if total_chars > MAX_YAML_EXPANDED_CHARS:
                raise TaskError(
                    f"{name}: its YAML aliases (*name) expand to more than {MAX_YAML_EXPANDED_CHARS:,} characters"
                    f"{where(ev.start_mark)}; write the values out instead"
                )
            if n and stack:
                stack[-1][1] += n
                stack[-1][2] += chars
                if stack[-1][1] > MAX_YAML_VALUES:
                    raise TaskError(
                        f"{name}: its YAML aliases (*name) expand to more than {MAX_YAML_VALUES:,} values"
                        f"{where(ev.start_mark)} (a 'billion laughs' file?); write the values out instead"
                    )
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except TaskError:
        raise
    except RecursionError:
        raise TaskError(f"{name} is nested too deeply (more than {MAX_NESTING} levels)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise TaskError(f"{name} is neither JSON nor valid YAML{where(mark)}") from None
    return data, _yaml_class_lines(node)


def _yaml_class_lines(node: Any) -> list[dict[str, Any]] | None:
    """For each entry of a top-level ``classes`` list: the line of the entry, of its name and
    description, and of each example (1-based), read from the composed YAML nodes."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "classes" and isinstance(value, yaml.SequenceNode):
            out = []
            for item in value.value:
                info: dict[str, Any] = {"line": item.start_mark.line + 1}
                if isinstance(item, yaml.MappingNode):
                    for k, v in item.value:
                        if not isinstance(k, yaml.ScalarNode):
                            continue
                        if k.value in ("name", "description"):
                            info[k.value] = v.start_mark.line + 1
                        elif k.value == "examples" and isinstance(v, yaml.SequenceNode):
                            info["examples"] = [e.start_mark.line + 1 for e in v.value]
                out.append(info)
            return out
    return None


def parse_task_text(text: str, name: str = "task file") -> Task:
    """Parse a JSON or YAML task document (nesting and YAML alias expansion bounded)."""
    stripped = text.lstrip()
    lines = None
    if stripped.startswith("{") or stripped.startswith("["):
        data = load_json_text(text, name)
    else:
        data, lines = load_yaml_text(text, name)
        if not isinstance(data, dict):
            raise TaskError(f"{name} is neither a JSON nor a YAML task (expected 'name' and 'classes')")
    return Task.from_dict(data, lines=lines)


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
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        data = load_json_text(text, path.name)
    else:
        data, _ = load_yaml_text(text, path.name)
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    out: dict[str, str] = {}
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = [(item.get("name"), item.get("description")) for item in data
                 if isinstance(item, dict) and "name" in item]
    else:
        raise TaskError(f"{path.name}: descriptions must be a list of {{name, description}} or a mapping")
    for k, v in items:
        key, bad_k = scalar_text(k)
        desc, bad_v = scalar_text(v)
        if bad_k or bad_v:
            raise TaskError(f"{path.name}: the description of '{key or k}' is not a text ({bad_k or bad_v})")
        if key:
            out[key] = desc
    return out


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

    A labelled file is read as a stream of lines (see :mod:`promptmix_core.labelled`).
    For a labelled file, ``descriptions`` defaults to a ``classes.json`` beside it when present.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".jsonl", ".tsv"):
        from .labelled import iter_labelled_file

        desc_path = Path(descriptions) if descriptions else path.with_name("classes.json")
        descs = read_descriptions(desc_path) if (descriptions or desc_path.exists()) else {}
        name = path.parent.name if path.stem in ("train", "test", "data") else path.stem
        # read as a stream: a 200 MB CSV stays within about 1.6 times its size in memory
        rows = iter_labelled_file(path, "jsonl" if suffix == ".jsonl" else "csv")
        return task_from_rows(rows, name=name, descriptions=descs, k=k, seed=seed)
    task = parse_task_text(_read_text(path), path.name)
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
    "confusable_skeleton",
    "decode_bytes",
    "load_json_text",
    "load_task",
    "load_yaml_text",
    "name_clash",
    "normalize_name",
    "normalize_text",
    "parse_task_text",
    "read_labelled_rows",
    "save_task",
    "scalar_text",
    "show_name",
    "strip_invisible",
    "task_from_rows",
    "validate",
]

