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
    from .task import clash_message, confusable_skeleton, name_clash, normalize_text, show_name, strip_invisible

    out: list[Issue] = []
    if len(task.classes) < min_classes:
        n = len(task.classes)
        out.append(Issue("error", f"a task needs at least {min_classes} classes; it has {n}",
                         f"A task needs at least {min_classes} classes; it has {n}."))
    # names are compared after NFKC, removal of invisible characters and case folding, and look-alike
    # letters of other scripts (Cyrillic 'а' for Latin 'a') count as the same letter
    seen: dict[str, int] = {}
    for i, c in enumerate(task.classes):
        label = c.name or f"#{i + 1}"
        if not strip_invisible(c.name).strip():
            out.append(Issue("error", f"class #{i + 1} has a blank name", "Give this class a name.", i, "name"))
        else:
            key = confusable_skeleton(c.name)
            if key in seen:
                other = task.classes[seen[key]].name
                kind = name_clash(other, c.name) or "lookalike"
                hint = {
                    "same": f"The name '{c.name}' is used by another class.",
                    "case": f"'{c.name}' and '{other}' differ only in case, spaces or punctuation.",
                    "invisible": f"'{show_name(c.name)}' and '{show_name(other)}' differ only in invisible "
                                 "characters (zero-width spaces, joiners or marks).",
                    "lookalike": f"'{c.name}' and '{other}' look alike: '{show_name(c.name)}' has letters of another "
                                 "script that look the same.",
                }[kind]
                out.append(Issue("error", clash_message(other, c.name, kind), hint, i, "name"))
            else:
                seen[key] = i
            if strip_invisible(c.name) != c.name:
                out.append(Issue("warning", f"class '{show_name(c.name)}' has invisible characters in its name",
                                 f"The name has invisible characters: '{show_name(c.name)}'.", i, "name"))
            scripts = _scripts(c.name) & {"LATIN", "CYRILLIC", "GREEK"}
            if "LATIN" in scripts and len(scripts) > 1:
                mixed = " and ".join(x.title() for x in sorted(scripts))
                out.append(Issue("warning", f"class '{c.name}' mixes {mixed} letters ('{show_name(c.name)}'); check "
                                            "it is spelled as intended",
                                 f"The name mixes {mixed} letters: '{show_name(c.name)}'.", i, "name"))
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


def _scripts(name: str) -> set[str]:
    """The scripts of a name's letters (LATIN, CYRILLIC, GREEK, ...), from their Unicode names."""
    import unicodedata

    out = set()
    for ch in name:
        if ch.isalpha():
            uname = unicodedata.name(ch, "")
            out.add(uname.split(" ")[0] if uname else "?")
    return out


__all__ = ["Issue", "MAX_NAME_CHARS", "MAX_TEXT_CHARS", "check_task"]
