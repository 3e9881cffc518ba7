"""Reading a labelled CSV/JSONL file: the one reader used by every face.

The app's import, ``promptmix generate/check/train/predict/relabel``, a training job's validation
file and the experiment runner all read files through :func:`read_labelled_file` (or
:func:`parse_labelled` for text already in memory, :func:`iter_labelled_file` for a stream), so one
file gives the same rows everywhere.

Rules: UTF-8 (a byte-order mark is fine; UTF-16 with a mark too), at most ``MAX_FILE_BYTES``;
CSV (``.csv``/``.tsv`` read as CSV) or JSONL (``.jsonl``, one object per line). Column names are
matched without regard to case or surrounding spaces. Texts and labels are stripped; a row with a
blank text (or, when a label is required, a blank label) is skipped. Texts and labels must be texts:
numbers are converted explicitly (``1`` -> ``"1"``), true/false, lists and objects are refused with
their line, and a number and a text that would become the same label (``1`` and ``"1"``) are refused
too. Files are read as a stream of lines, so memory does not grow with a file's raw size (a 200 MB
CSV imports at about 1.6 times its size). Every problem is a :class:`TaskError` with the file name
and line.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .errors import TaskError

MAX_FILE_BYTES = 200_000_000  # 200 MB (decimal, as the messages say)
MAX_LISTED_PROBLEMS = 20  # per file: the rest are counted, not listed
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}


def scalar_text(value: Any) -> tuple[str, str | None]:
    """``(text, None)`` for a text or a number (converted explicitly: ``1`` -> ``"1"``, ``2.5`` ->
    ``"2.5"``; blank, null and NaN give ``""``), else ``("", what it is)`` for anything that is not
    one: true/false, a list, a mapping, a date."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return value.strip(), None
    if isinstance(value, bool):  # before int: True is an int in Python
        return "", f"true/false ({str(value).lower()})"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float):
        return ("", None) if math.isnan(value) else (repr(value), None)
    if isinstance(value, (list, tuple)):
        return "", "a list"
    if isinstance(value, Mapping):
        return "", "a mapping (an object)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "", f"a date ({value.isoformat()})"
    return "", f"a {type(value).__name__}"


def capped(problems: list[str]) -> list[str]:
    """At most ``MAX_LISTED_PROBLEMS`` problems, then how many more there are."""
    if len(problems) <= MAX_LISTED_PROBLEMS:
        return problems
    return [*problems[:MAX_LISTED_PROBLEMS], f"... and {len(problems) - MAX_LISTED_PROBLEMS:,} more problems"]


def size_message(name: str, size: int, limit: int = MAX_FILE_BYTES) -> str:
    """"x.csv is 210 MB; the limit is 200 MB" (one decimal where whole megabytes would read equal)."""
    big, lim = f"{size / 1e6:,.0f}", f"{limit / 1e6:,.0f}"
    if big == lim:
        big, lim = f"{size / 1e6:,.1f}", f"{limit / 1e6:,.1f}".removesuffix(".0")
    return f"{name} is {big} MB; the limit is {lim} MB"


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


def check_file(path: Path) -> int:
    """The file's size, refusing missing, empty and too large files (before reading a byte)."""
    path = Path(path)
    if not path.exists():
        raise TaskError(f"file not found: {path}")
    if path.is_dir():
        raise TaskError(f"{path} is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise TaskError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise TaskError(size_message(path.name, size, MAX_FILE_BYTES))
    return size


def read_text_file(path: Path) -> str:
    """A text file's content, refusing missing, empty, too large and non-UTF-8 files clearly."""
    path = Path(path)
    check_file(path)
    return decode_bytes(path.read_bytes(), path.name)


def utf8_lines(raw: Iterable[bytes], name: str) -> Iterator[str]:
    """Decoded lines of a byte stream (UTF-8 with or without a byte-order mark, or UTF-16 with one),
    one at a time: memory stays bounded whatever the file's size. A bad byte names its line."""
    it = iter(raw)
    first = next(it, b"")
    if first.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: decoded as one stream
        import codecs

        decoder = codecs.getincrementaldecoder("utf-16")()
        pending = ""
        try:
            for chunk in _chain(first, it):
                pending += decoder.decode(chunk)
                *done, pending = pending.split("\n")
                for line in done:
                    yield line + "\n"
            pending += decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise TaskError(f"{name} is not valid UTF-16; save it as UTF-8 and try again") from None
        if pending:
            yield pending
        return
    if first.startswith(b"\xef\xbb\xbf"):
        first = first[3:]
    for i, line in enumerate(_chain(first, it), start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskError(
                f"{name} is not valid UTF-8 (bad byte at line {i}); save it as UTF-8 and try again"
            ) from None


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise TaskError(f"{Path(path).name}: use a .csv or .jsonl file (text,label columns)")
    return FORMATS[suffix]


class _Rows:
    """The checks every row goes through, whatever the format (see the module docstring)."""

    def __init__(self, name: str, require_label: bool, keep_fields: bool, with_lines: bool = False):
        self.name, self.require_label, self.keep_fields = name, require_label, keep_fields
        self.with_lines = with_lines
        self.problems: list[str] = []
        self.kinds: dict[str, tuple[str, int]] = {}  # label -> (number/text, first line): 1 and "1" differ
        self.clashed: set[str] = set()
        self.yielded = False

    def row(self, t: Any, lab: Any, line: int, fields: Mapping[str, Any] | None = None,
            tcol: Any = None, lcol: Any = None) -> dict[str, Any] | None:
        text, bad_t = scalar_text(t)
        label, bad_l = scalar_text(lab)
        if bad_l:
            self.problems.append(f"{self.name}: line {line}: the label is {bad_l}; labels must be texts (or numbers)")
        if bad_t:
            self.problems.append(f"{self.name}: line {line}: the text is {bad_t}; texts must be texts (or numbers)")
        if bad_l or bad_t:
            return None
        if not self.with_lines and (not text or (self.require_label and not label)):
            return None
        if label:
            kind = "text" if isinstance(lab, str) else "number"
            first = self.kinds.setdefault(label, (kind, line))
            if first[0] != kind and label not in self.clashed:
                self.clashed.add(label)
                self.problems.append(
                    f"{self.name}: line {line}: the label {lab!r} ({kind}) and the label on line {first[1]} "
                    f"({first[0]}) would become the same class '{label}'; write every label the same way"
                )
        if self.problems:
            return None
        out: dict[str, Any] = dict(fields) if self.keep_fields and fields is not None else {}
        if self.keep_fields:
            if tcol is not None and tcol != "text":
                out.pop(tcol, None)
            if lcol is not None and lcol != "label":
                out.pop(lcol, None)
        if self.with_lines:  # a checker reporting row by row: blanks kept as None, each row's line
            out.update({"text": text or None, "label": label or None, "_line": line})
            self.yielded = True
            return out
        out["text"] = text
        if label or self.require_label or self.keep_fields:
            out["label"] = label or None
        self.yielded = True
        return out

    def finish(self) -> None:
        if self.problems:
            raise TaskError(capped(self.problems))
        if not self.yielded:
            raise TaskError(f"{self.name} has no rows with both a text and a label" if self.require_label
                            else f"{self.name} has no rows with a text")


def _missing(name: str, missing: list[str], found: Iterable[Any], require_label: bool) -> TaskError:
    shown = ", ".join(sorted(str(c) for c in found if c)) or "none"
    what = "'text' and 'label'" if require_label else "'text'"
    return TaskError(f"{name} is missing the column(s) {', '.join(missing)}; it needs {what} (found: {shown})")


def iter_labelled(
    lines: Iterable[str], fmt: str, name: str = "the file", *, require_label: bool = True, keep_fields: bool = False,
    with_lines: bool = False,
) -> Iterator[dict[str, Any]]:
    """Rows of CSV or JSONL lines, one at a time (see the module docstring); the problems of the
    whole file are raised once it has been read. ``with_lines``: see :func:`parse_labelled`."""
    needed = ("text", "label") if require_label else ("text",)
    rows = _Rows(name, require_label, keep_fields, with_lines)
    if fmt == "jsonl":
        cols_seen: set[str] = set()
        has = {"text": False, "label": False}
        content = False
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            content = True
            try:
                obj = json.loads(line)
            except RecursionError:
                raise TaskError(f"{name}: line {i} is nested too deeply") from None
            except json.JSONDecodeError:
                raise TaskError(f"{name}: line {i} is not valid JSON") from None
            if not isinstance(obj, dict):
                raise TaskError(f"{name}: line {i} is not a JSON object")
            tkey = lkey = None
            for k in obj:
                low = str(k).strip().lower()
                if len(cols_seen) < 50:
                    cols_seen.add(str(k))
                if low in ("text", "label") and (tkey if low == "text" else lkey) is not None:
                    raise TaskError(f"{name}: line {i} has the field '{low}' twice ({(tkey if low == 'text' else lkey)!r} "
                                    f"and {k!r}); keep one of them")
                if low == "text":
                    tkey = k
                elif low == "label":
                    lkey = k
            has["text"] |= tkey is not None
            has["label"] |= lkey is not None
            row = rows.row(obj.get(tkey) if tkey is not None else None, obj.get(lkey) if lkey is not None else None,
                           i, obj, tkey, lkey)
            if row is not None:
                yield row
        if not content:
            raise TaskError(f"{name} is empty")
        missing = [c for c in needed if not has[c]]
        if missing:
            raise _missing(name, missing, cols_seen, require_label)
    elif fmt == "csv":
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
            while header is not None and not any(h.strip() for h in header):
                header = next(reader, None)  # leading blank lines
            if header is None:
                raise TaskError(f"{name} is empty")
            lower: dict[str, int] = {}
            for idx, h in enumerate(header):
                key = str(h).strip().lower()
                if key in ("text", "label") and key in lower:  # which one is meant? never a silent pick
                    raise TaskError(f"{name} has the column '{key}' twice (columns {lower[key] + 1} and {idx + 1}); "
                                    "keep one of them")
                lower.setdefault(key, idx)
            missing = [c for c in needed if c not in lower]
            if missing:
                raise _missing(name, missing, header, require_label)
            ti, li = lower["text"], lower.get("label")
            for values in reader:
                if with_lines and not any(str(v).strip() for v in values):
                    continue  # an empty line of commas: nothing to report
                t = values[ti] if ti < len(values) else None
                lab = values[li] if li is not None and li < len(values) else None
                fields = None
                if keep_fields:
                    fields = {h: (values[j] if j < len(values) else None) for j, h in enumerate(header)}
                row = rows.row(t, lab, reader.line_num, fields, header[ti], header[li] if li is not None else None)
                if row is not None:
                    yield row
        except csv.Error as exc:
            raise TaskError(f"{name} is not a readable CSV file: {exc} (line {reader.line_num})") from None
    else:
        raise TaskError(f"{name}: unknown format {fmt!r}; use csv or jsonl")
    rows.finish()


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
    if not text.strip():
        raise TaskError(f"{name} is empty")
    return list(iter_labelled(io.StringIO(text, newline=""), fmt, name, require_label=require_label,
                              keep_fields=keep_fields, with_lines=with_lines))


def iter_labelled_file(
    path: str | Path, fmt: str | None = None, *, require_label: bool = True, keep_fields: bool = False
) -> Iterator[dict[str, Any]]:
    """The rows of a labelled ``.csv``/``.jsonl`` file as a stream (memory independent of its size)."""
    p = Path(path)
    check_file(p)
    fmt = fmt or file_format(p)
    with open(p, "rb") as fh:
        yield from iter_labelled(utf8_lines(fh, p.name), fmt, p.name, require_label=require_label,
                                 keep_fields=keep_fields)


def read_labelled_file(
    path: str | Path, *, require_label: bool = True, keep_fields: bool = False
) -> list[dict[str, Any]]:
    """Rows of a labelled ``.csv``/``.jsonl`` file (see :func:`parse_labelled`), read as a stream."""
    p = Path(path)
    return list(iter_labelled_file(p, file_format(p), require_label=require_label, keep_fields=keep_fields))


def parse_labelled_bytes(data: bytes, fmt: str, name: str = "the file") -> Iterator[dict[str, Any]]:
    """The rows of an uploaded file's bytes, read line by line (never decoded whole)."""
    if not data.strip():
        raise TaskError(f"{name} is empty")
    return iter_labelled(utf8_lines(io.BytesIO(data), name), fmt, name)


__all__ = ["MAX_FILE_BYTES", "capped", "check_file", "decode_bytes", "file_format", "iter_labelled",
           "iter_labelled_file", "parse_labelled", "parse_labelled_bytes", "read_labelled_file", "read_text_file",
           "scalar_text", "size_message", "utf8_lines"]
