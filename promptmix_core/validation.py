"""Task validation: the one set of rules, with two renderings.

:func:`check_task` finds every issue of a task once. Each :class:`Issue` says where it is (the
class index and field, or the whole task), whether it blocks (``error``) or only advises
(``warning``), and carries two wordings: ``message`` for a whole-task report (CLI, job errors:
``task.validate``) and ``hint`` for the field at fault (the Task page: ``projects.field_problems``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .task import Task

MAX_TEXT_CHARS = 20_000  # seeds longer than this are refused (prompts must stay small)
MAX_NAME_CHARS = 200
MIN_CLASSES = 2


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" | "warning"
    message: str  # for a report of the whole task
    hint: str  # for the field at fault
    index: int | None = None  # class index (0-based); None: the whole task
    field: str | None = None  # "name" | "description" | "examples"; None: the whole task


def check_task(task: "Task", *, min_classes: int = MIN_CLASSES) -> list[Issue]:
    """Every problem and warning of ``task``, in class order."""
    from .task import normalize_name, normalize_text

    out: list[Issue] = []
    if len(task.classes) < min_classes:
        n = len(task.classes)
        out.append(Issue("error", f"a task needs at least {min_classes} classes; it has {n}",
                         f"A task needs at least {min_classes} classes; it has {n}."))
    seen: dict[str, int] = {}
    for i, c in enumerate(task.classes):
        label = c.name or f"#{i + 1}"
        if not c.name.strip():
            out.append(Issue("error", f"class #{i + 1} has a blank name", "Give this class a name.", i, "name"))
        else:
            key = normalize_name(c.name)
            if key in seen:
                other = task.classes[seen[key]].name
                if other == c.name:
                    out.append(Issue("error", f"class name '{c.name}' appears more than once",
                                     f"The name '{c.name}' is used by another class.", i, "name"))
                else:
                    out.append(Issue(
                        "error",
                        f"class names '{other}' and '{c.name}' differ only in case, spaces or punctuation; "
                        "give them distinct names",
                        f"'{c.name}' and '{other}' differ only in case, spaces or punctuation.", i, "name"))
            else:
                seen[key] = i
            if len(c.name) > MAX_NAME_CHARS:
                out.append(Issue("error", f"class '{c.name[:40]}...' has a name over {MAX_NAME_CHARS} characters",
                                 f"A class name may have at most {MAX_NAME_CHARS} characters.", i, "name"))
        if not c.examples:
            out.append(Issue("error", f"class '{label}' has no seed examples (it needs at least one)",
                             "Add at least one seed example (one per line).", i, "examples"))
        long = [e for e in c.examples if len(e) > MAX_TEXT_CHARS]
        if long:
            out.append(Issue("error", f"class '{label}' has a seed example of {len(long[0]):,} characters; "
                                      f"the limit is {MAX_TEXT_CHARS:,}",
                             f"An example has {len(long[0]):,} characters; the limit is {MAX_TEXT_CHARS:,}.",
                             i, "examples"))
        if not c.description.strip():
            if c.name:
                out.append(Issue("warning", f"class '{label}' has no description; the prompts will use its name only",
                                 "No description: the prompts will use the class name only. One sentence helps a lot.",
                                 i, "description"))
            else:
                out.append(Issue("warning", f"class '{label}' has no description; the prompts will use its name only",
                                 "", i, None))
        norm = [normalize_text(e) for e in c.examples]
        if len(set(norm)) != len(norm):
            out.append(Issue("warning", f"class '{label}' has duplicate seed examples",
                             "Some seed examples are duplicates.", i, "examples"))
    return out


__all__ = ["Issue", "MAX_NAME_CHARS", "MAX_TEXT_CHARS", "check_task"]
