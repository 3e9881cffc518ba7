"""The project's test set: real labelled examples that every training run is scored on.

A test set comes from an uploaded CSV/JSONL file (``text,label``), checked row by row against the
task, or is split off a labelled file the task was imported from (the rows not drawn as seeds).
It never overlaps the seeds: a row that repeats a seed is refused (it would be training data).
Generated examples that repeat a test row are left out of training by the training job instead,
so real labelled data is never thrown away for a generated one.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import TaskError
from .labelled import check_file, decode_bytes, iter_labelled, utf8_lines
from .task import MAX_TEXT_CHARS, Task, _is_blank, normalize_name, normalize_text, strip_invisible

TEST_SET_TYPES = ("csv", "jsonl")
MAX_LISTED_PROBLEMS = 20
#: the most rows a test set file may have: memory stays bounded (every usable row is kept to score on),
#: and a few thousand rows already measure accuracy to about a point
MAX_TEST_ROWS = 100_000


@dataclass
class TestSetCheck:
    """The result of checking a labelled file against a task.

    ``rows`` are the usable rows (class names spelled as in the task); ``problems`` has one message
    per refused row ("row 7: ..."), ``notes`` things worth knowing that refuse nothing.
    """

    name: str
    rows: list[dict[str, str]]
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    total: int = 0  # rows read from the file (blank lines excluded)

    __test__ = False  # not a pytest test class

    def per_class(self, classes: Sequence[str]) -> dict[str, int]:
        c = Counter(r["label"] for r in self.rows)
        return {name: c.get(name, 0) for name in classes}

    def listed_problems(self, limit: int = MAX_LISTED_PROBLEMS) -> list[str]:
        """The first ``limit`` problems, plus one line saying how many more there are."""
        out = self.problems[:limit]
        if len(self.problems) > limit:
            out.append(f"… and {len(self.problems) - limit} more row(s) with problems")
        return out


def _raw_rows(lines: Iterable[str], fmt: str, name: str) -> Iterator[tuple[int, Any, Any]]:
    """(line as the user sees it, text, label) for every record, blank ones included, one at a time (the
    one labelled-file reader, :func:`promptmix_core.labelled.iter_labelled`, with line numbers)."""
    for r in iter_labelled(lines, fmt, name, with_lines=True):
        yield r["_line"], r["text"], r["label"]


def _text_key(text: str) -> bytes:
    """A 16-byte fingerprint of a text's normalised form: what the duplicate check keeps per row, so
    a big test file is not held twice."""
    return hashlib.blake2b(_norm(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _norm(text: str) -> str:
    """The form two texts are compared in: :func:`normalize_text` after invisible characters (zero-width
    spaces, soft hyphens, direction marks) are removed, so a near-copy of a seed is still a copy."""
    return normalize_text(strip_invisible(text))


def _short(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def check_test_rows(
    raw: Iterable[tuple[int, Any, Any]], task: Task, *, name: str = "the file",
    generated_texts: Iterable[str] = (),
) -> TestSetCheck:
    """Check ``(row number, text, label)`` records against ``task``: see :func:`read_test_set`."""
    classes = task.class_names
    by_norm = {normalize_name(c): c for c in classes}
    seeds = {_norm(r["text"]): r["label"] for r in task.seed_rows()}
    generated = {_text_key(t) for t in generated_texts}
    seen: dict[bytes, int] = {}  # fingerprint of a kept row's text -> its line
    rows: list[dict[str, str]] = []
    problems: list[str] = []
    refused: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    in_generated = 0

    def refuse(reason: str, msg: str) -> None:
        refused[reason] += 1
        problems.append(msg)

    total = 0
    for line, text, label in raw:
        total += 1
        where = f"row {line}"
        if _is_blank(text):
            refuse("empty_text", f"{where}: the text is empty")
            continue
        if _is_blank(label):
            refuse("empty_label", f"{where}: the label is empty ({_short(text)!r})")
            continue
        text, label = str(text).strip(), str(label).strip()
        if len(text) > MAX_TEXT_CHARS:
            refuse("too_long", f"{where}: the text is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}")
            continue
        cls = label if label in classes else by_norm.get(normalize_name(label))
        if cls is None:
            unknown[label] += 1
            shown = ", ".join(classes[:8]) + (", …" if len(classes) > 8 else "")
            refuse("unknown_label", f"{where}: {label!r} is not a class of the task (classes: {shown})")
            continue
        norm = _norm(text)
        if norm in seeds:
            refuse("seed", f"{where}: this text is a seed example of {seeds[norm]!r}; a test set must not "
                           "contain training data")
            continue
        key = _text_key(text)
        if key in seen:
            refuse("duplicate", f"{where}: repeats row {seen[key]} ({_short(text)!r})")
            continue
        seen[key] = line
        in_generated += key in generated
        rows.append({"text": text, "label": cls})

    notes: list[str] = []
    if rows:
        missing = [c for c in classes if not any(r["label"] == c for r in rows)]
        if missing:
            notes.append("No test rows for " + ", ".join(repr(c) for c in missing)
                         + ": the recall of those classes cannot be measured.")
        if in_generated:
            notes.append(f"{in_generated} generated example(s) repeat a test row; training leaves them out.")
    if len(unknown) > 1 or (unknown and sum(unknown.values()) > 1):
        notes.append("Labels that are not classes of the task: "
                     + ", ".join(f"{lab!r} ({n} rows)" for lab, n in unknown.most_common(10)) + ".")
    return TestSetCheck(name=name, rows=rows, problems=problems, notes=notes, refused=dict(refused),
                        total=total)


def read_test_set(
    data: bytes, filename: str, task: Task, *, generated_texts: Iterable[str] = ()
) -> TestSetCheck:
    """Read an uploaded CSV/JSONL test file and check every row against ``task``.

    Refused rows, each with its own message: an empty text or label, a label that is not a class
    of the task (labels that differ only in case, spaces, ``_`` or ``-`` are mapped onto the class),
    a text that is one of the seeds, a repeat of an earlier row. Raises :class:`TaskError` for a
    file that cannot be read at all (not UTF-8, not CSV/JSONL, no ``text``/``label`` columns).
    """
    name = str(filename or "the file").replace("\\", "/").rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in TEST_SET_TYPES:
        raise TaskError(f"{name}: a test set is a .csv or .jsonl file with text and label columns")
    return _check_stream(utf8_lines(io.BytesIO(data), name), suffix, name, task, generated_texts)


def _check_stream(lines: Iterable[str], fmt: str, name: str, task: Task, generated_texts: Iterable[str]) -> TestSetCheck:
    chk = check_test_rows(_raw_rows(lines, fmt, name), task, name=name, generated_texts=generated_texts)
    if not chk.total:
        raise TaskError(f"{name} has no rows")
    return chk


def read_test_set_file(path: str, task: Task, *, generated_texts: Iterable[str] = ()) -> TestSetCheck:
    """:func:`read_test_set` for a file on disk (the command line's ``--test FILE``), read as a stream
    of lines: only the usable rows are kept, never the file's bytes or text."""
    from pathlib import Path

    p = Path(path)
    check_file(p)  # the clear errors for a missing, empty or oversized file
    suffix = p.name.rsplit(".", 1)[-1].lower() if "." in p.name else ""
    if suffix not in TEST_SET_TYPES:
        raise TaskError(f"{p.name}: a test set is a .csv or .jsonl file with text and label columns")
    with open(p, "rb") as fh:
        return _check_stream(_at_most(utf8_lines(fh, p.name), MAX_TEST_ROWS + 1, p.name), suffix, p.name, task,
                             generated_texts)


def _at_most(lines: Iterable[str], limit: int, name: str) -> Iterator[str]:
    """The lines of a test set file, refusing one of more than ``limit`` lines (header included) as
    soon as that line is read, so memory stays bounded whatever the file's size."""
    for n, line in enumerate(lines, 1):
        if n > limit:
            raise TaskError(f"{name} has more than {MAX_TEST_ROWS:,} rows (lines); a test set of a few thousand rows "
                            "measures accuracy to about a point: score on a random sample of it")
        yield line


def split_off_test_set(
    rows: Sequence[Mapping[str, str]], task: Task, *, max_per_class: int | None = None, seed: int = 0
) -> list[dict[str, str]]:
    """The rows of a labelled file that are not seeds of ``task``: its test set.

    Only rows of the task's classes are kept, duplicates once; with ``max_per_class`` a seeded
    sample of at most that many per class.
    """
    raw = [(i + 2, r.get("text"), r.get("label")) for i, r in enumerate(rows)]
    checked = check_test_rows(raw, task).rows
    if max_per_class is None:
        return checked
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in checked:
        by_label.setdefault(r["label"], []).append(r)
    out: list[dict[str, str]] = []
    for label in task.class_names:
        group = by_label.get(label, [])
        out.extend(group if len(group) <= max_per_class else rng.sample(group, max_per_class))
    return out


def split_test_from_import(
    data: bytes, filename: str, task: Task, *, max_per_class: int | None = None, seed: int = 0
) -> list[dict[str, str]]:
    """The test set split off an uploaded labelled file that ``task`` was imported from: every row
    that did not become a seed (see :func:`split_off_test_set`). Empty for a task file (JSON/YAML)."""
    from .task import read_labelled_rows

    name = str(filename or "the file").replace("\\", "/").rsplit("/", 1)[-1]
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix not in TEST_SET_TYPES:
        return []
    rows = read_labelled_rows(decode_bytes(data, name), suffix, name)
    return split_off_test_set(rows, task, max_per_class=max_per_class, seed=seed)


def rows_fingerprint(rows: Sequence[Mapping[str, str]]) -> str:
    """A short hash of a test set's content, so runs scored on the same set can be told apart."""
    import hashlib

    h = hashlib.sha256()
    for r in sorted((normalize_text(r["text"]), str(r["label"])) for r in rows):
        h.update(json.dumps(r).encode("utf-8"))
    return h.hexdigest()[:12]


__all__ = [
    "TEST_SET_TYPES",
    "TestSetCheck",
    "check_test_rows",
    "read_test_set",
    "read_test_set_file",
    "split_off_test_set",
    "split_test_from_import",
    "rows_fingerprint",
]
