"""Reading a labelled CSV/JSONL file: the one reader used by every face.

The app's import, ``promptmix generate/check/train/predict/relabel``, a training job's validation
file and the experiment runner all read files through :func:`read_labelled_file` (or
:func:`parse_labelled` for bytes already in memory), so one file gives the same rows everywhere.

Rules: UTF-8 (a byte-order mark is fine; UTF-16 with a mark too), at most ``MAX_FILE_BYTES``;
CSV (``.csv``/``.tsv`` read as CSV) or JSONL (``.jsonl``, one object per line). Column names are
matched without regard to case or surrounding spaces. Texts and labels are stripped; a row with a
blank text (or, when a label is required, a blank label) is skipped. Every problem is a
:class:`TaskError` with the file name and line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from .errors import TaskError

MAX_FILE_BYTES = 200 * 1024 * 1024
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return not str(value).strip()


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


def read_text_file(path: Path) -> str:
    """A text file's content, refusing missing, empty, too large and non-UTF-8 files clearly."""
    path = Path(path)
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


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise TaskError(f"{Path(path).name}: use a .csv or .jsonl file (text,label columns)")
    return FORMATS[suffix]


def parse_labelled(
    text: str, fmt: str, name: str = "the file", *, require_label: bool = True, keep_fields: bool = False,
    with_lines: bool = False,
) -> list[dict[str, Any]]:
    """Rows of CSV or JSONL text (see the module docstring).

    Returns ``{"text", "label"}`` rows; with ``require_label=False`` the label may be missing
    (``None``); with ``keep_fields=True`` every other field of the row is kept as well (generated
    examples carry ``intended_label``, ``llm_label``...). With ``with_lines=True`` (a checker that
    reports problems row by row, e.g. the test-set upload) every row gains ``"_line"`` (its line in
    the file) and rows with a blank text or label are kept (``None``) instead of skipped; a file
    with no rows at all is still refused."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
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
            lines.append(i)
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
    elif fmt == "csv":
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            columns = set(reader.fieldnames or [])
            for r in reader:
                if with_lines and all(_blank(v) for v in r.values()):
                    continue  # an empty line of commas: nothing to report
                rows.append(r)
                lines.append(reader.line_num)
        except csv.Error as exc:
            raise TaskError(f"{name} is not a readable CSV file: {exc}") from None
    else:
        raise TaskError(f"{name}: unknown format {fmt!r}; use csv or jsonl")
    lower = {str(c).strip().lower(): c for c in columns if c is not None}
    needed = ("text", "label") if require_label else ("text",)
    missing = [c for c in needed if c not in lower]
    if missing:
        found = ", ".join(sorted(str(c) for c in columns if c)) or "none"
        what = "'text' and 'label'" if require_label else "'text'"
        raise TaskError(
            f"{name} is missing the column(s) {', '.join(missing)}; it needs {what} (found: {found})"
        )
    tcol, lcol = lower["text"], lower.get("label")
    out = []
    for line, r in zip(lines, rows):
        t = r.get(tcol)
        lab = r.get(lcol) if lcol is not None else None
        if with_lines:
            row = dict(r) if keep_fields else {}
            row.update({"text": None if _blank(t) else str(t).strip(), "label": None if _blank(lab) else str(lab).strip(),
                        "_line": line})
            out.append(row)
            continue
        if _blank(t) or (require_label and _blank(lab)):
            continue
        row: dict[str, Any] = dict(r) if keep_fields else {}
        if keep_fields and tcol != "text":
            row.pop(tcol, None)
        if keep_fields and lcol is not None and lcol != "label":
            row.pop(lcol, None)
        row["text"] = str(t).strip()
        row["label"] = None if _blank(lab) else str(lab).strip()
        if not require_label and not keep_fields and row["label"] is None:
            row.pop("label")
        out.append(row)
    if not out:
        raise TaskError(f"{name} has no rows with both a text and a label" if require_label
                        else f"{name} has no rows with a text")
    return out


def read_labelled_file(
    path: str | Path, *, require_label: bool = True, keep_fields: bool = False
) -> list[dict[str, Any]]:
    """Rows of a labelled ``.csv``/``.jsonl`` file (see :func:`parse_labelled`)."""
    p = Path(path)
    return parse_labelled(read_text_file(p), file_format(p), p.name, require_label=require_label,
                          keep_fields=keep_fields)


__all__ = ["decode_bytes", "file_format", "parse_labelled", "read_labelled_file", "read_text_file"]
