"""Export: the curated data set as CSV (formula-safe), JSONL or Parquet, and a model folder as zip.

Pure functions returning bytes, so the app can hand them to a download button and the CLI can write
them to files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .task import Task

LABEL_SOURCES = ("a1", "a2", "reviewed")
COLUMNS = [
    "text",
    "label",
    "source",
    "intended_label",
    "mixed_with",
    "alpha",
    "llm_label",
    "llm_confidence",
    "relabel_status",
    "flag",
    "review_status",
    "example_id",
]
# a second, no-LLM judge's suggestion: in a row only once a judge has spoken, beside llm_confidence
_JUDGE_COLUMNS = ("judge_label", "judge_confidence")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def label_for(example: Any, label_source: str = "reviewed", *, pending: str = "a2") -> str | None:
    """The label an example gets in the exported data set (None: left out).

    Same rules as training (:func:`promptmix_core.training.data.example_label`): ``a1`` the class the
    generator was asked for; ``a2`` the LLM relabel (examples it could not relabel are left out);
    ``reviewed`` the human decision (rejected left out, pending ones follow ``pending``: ``"a2"``,
    ``"a1"`` or ``"drop"``).
    """
    from .training.data import example_label

    if label_source not in LABEL_SOURCES:
        raise ValueError(f"label source must be one of {', '.join(LABEL_SOURCES)}")
    label, _reason = example_label(example, label_source, pending=pending, unparseable="drop")
    return label


def curated_records(
    task: Task | None,
    examples: Iterable[Any],
    *,
    label_source: str = "reviewed",
    pending: str = "a2",
    include_seeds: bool = True,
) -> list[dict[str, Any]]:
    """Rows of the curated data set: the seeds, then every generated example that keeps a label.

    ``examples`` are the store's ``Example`` objects or plain mappings with the same names
    (:meth:`ProjectStore.export_rows`)."""
    rows: list[dict[str, Any]] = []
    if include_seeds and task is not None:
        for c in task.classes:
            for text in c.examples:
                rows.append({
                    "text": text, "label": c.name, "source": "seed", "intended_label": c.name,
                    "mixed_with": None, "alpha": None, "llm_label": None, "llm_confidence": None,
                    "relabel_status": None, "flag": None, "review_status": None, "example_id": None,
                })
    for ex in examples:
        label = label_for(ex, label_source, pending=pending)
        if label is None:
            continue
        rows.append({
            "text": _get(ex, "text"),
            "label": label,
            "source": "generated",
            "intended_label": _get(ex, "intended_label"),
            "mixed_with": _get(ex, "mixed_with"),
            "alpha": _get(ex, "alpha"),
            "llm_label": _get(ex, "llm_label"),
            "llm_confidence": _get(ex, "llm_confidence"),
            "relabel_status": _get(ex, "relabel_status"),
            "flag": _get(ex, "flag") or None,
            "review_status": _get(ex, "review_status"),
            "example_id": _get(ex, "id"),
        })
        # the second judge's suggestion only once a judge has spoken (exports without one are unchanged)
        for name in _JUDGE_COLUMNS:
            if _get(ex, name) is not None:
                rows[-1][name] = _get(ex, name)
    return rows


def _get(ex: Any, name: str) -> Any:
    return ex.get(name) if isinstance(ex, Mapping) else getattr(ex, name, None)


def neutralize_formula(value: Any) -> Any:
    """Make a cell safe to open in a spreadsheet: text starting with = + - @ (or tab/CR) gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = [c for c in COLUMNS if any(c in r for r in records)] if records else list(COLUMNS)
    for r in records:
        for k in r:
            if k not in cols:
                cols.append(k)
    judge = [c for c in _JUDGE_COLUMNS if c in cols]
    if judge and "llm_confidence" in cols:
        cols = [c for c in cols if c not in judge]
        at = cols.index("llm_confidence") + 1
        cols[at:at] = judge
    return cols


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_csv_bytes(records: Sequence[Mapping[str, Any]], *, safe: bool = True) -> bytes:
    """UTF-8 CSV with a header row (BOM-free); every text cell is formula-neutralised when ``safe``."""
    cols = _columns(records)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([neutralize_formula(c) if safe else c for c in cols])
    for r in records:
        row = []
        for c in cols:
            v = _plain(r.get(c))
            v = "" if v is None else v
            row.append(neutralize_formula(v) if safe else v)
        writer.writerow(row)
    return buf.getvalue().encode("utf-8")


def to_jsonl_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """One JSON object per line, UTF-8, non-ASCII kept as is."""
    return "".join(
        json.dumps({k: _plain(v) for k, v in r.items()}, ensure_ascii=False) + "\n" for r in records
    ).encode("utf-8")


def to_parquet_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """A Parquet file with stable column types (text columns as strings, alpha as float)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns(records)
    types = {"alpha": pa.float64(), "example_id": pa.int64()}
    arrays = []
    fields = []
    for c in cols:
        t = types.get(c, pa.string())
        vals = [_plain(r.get(c)) for r in records]
        if t == pa.string():
            vals = [None if v is None else str(v) for v in vals]
        arrays.append(pa.array(vals, type=t))
        fields.append(pa.field(c, t))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def dataset_bytes(records: Sequence[Mapping[str, Any]], fmt: str) -> bytes:
    fmt = fmt.lower()
    if fmt == "csv":
        return to_csv_bytes(records)
    if fmt == "jsonl":
        return to_jsonl_bytes(records)
    if fmt == "parquet":
        return to_parquet_bytes(records)
    raise ValueError(f"unknown export format {fmt!r}; use csv, jsonl or parquet")


def zip_folder_bytes(folder: str | os.PathLike, *, root_name: str | None = None) -> bytes:
    """Zip a folder (a trained model) into bytes. Symbolic links and anything outside it are skipped."""
    base = Path(folder)
    if not base.is_dir():
        raise FileNotFoundError(f"no model folder at {base}")
    base = base.resolve()
    prefix = root_name if root_name is not None else base.name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(base.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            real = path.resolve()
            if base not in real.parents:
                continue
            rel = path.relative_to(base).as_posix()
            zf.write(path, f"{prefix}/{rel}" if prefix else rel)
    return buf.getvalue()


def safe_filename(name: str, ext: str) -> str:
    """A download file name from a project/run name: letters, digits, '-', '_' only."""
    stem = re.sub(r"[^\w\-]+", "_", str(name), flags=re.ASCII).strip("_") or "export"
    return f"{stem[:60]}.{ext.lstrip('.')}"


FORMATS = ("csv", "jsonl", "parquet")
PENDING_RULES = ("a2", "a1", "drop")


def export_project(
    project: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str | None = None,
    label_source: str = "reviewed",
    pending: str = "a2",
    include_seeds: bool = True,
) -> dict[str, Any]:
    """Write a project's curated data set to ``out`` (the rows the Results page exports by default).

    ``fmt`` defaults to the file's extension (csv, jsonl or parquet), else csv. The file is written
    whole or not at all. Returns counts: rows, seeds, generated and the format.
    """
    from .store import open_project

    if label_source not in LABEL_SOURCES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_SOURCES)}")
    if pending not in PENDING_RULES:
        raise ValueError(f"pending must be one of {', '.join(PENDING_RULES)}")
    from .paths import OutputPathError, check_output_file, write_file_atomically

    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use csv, jsonl or parquet")
    try:  # a folder, or (without a format) a name that says no format: one line, nothing written
        out = check_output_file(out, tuple(f".{f}" for f in FORMATS) if fmt is None else (Path(out).suffix.lower(),),
                                example=f"export.{fmt or 'csv'}")
    except OutputPathError as exc:
        raise OutputPathError(f"{exc}, or give --format" if fmt is None and "is a folder" not in str(exc)
                              else str(exc)) from None
    fmt = fmt or out.suffix.lower().lstrip(".")
    store = open_project(project)
    try:
        task = store.load_task()
        records = curated_records(task, store.export_rows(), label_source=label_source, pending=pending,
                                  include_seeds=include_seeds)
    finally:
        store.close()
    write_file_atomically(out, [dataset_bytes(records, fmt)])
    n_gen = sum(r["source"] == "generated" for r in records)
    return {"rows": len(records), "seeds": len(records) - n_gen, "generated": n_gen, "format": fmt, "path": str(out)}


DECISION_COLUMNS = ("example_id", "text", "reviewer", "decision", "label", "time", "adjudication")


def decision_records(store: Any) -> list[dict[str, Any]]:
    """One row per decision in force: example id, text, reviewer, decision, label (the class it says,
    empty for a reject), time (ISO 8601, UTC), whether it was an owner's adjudication."""
    return [{c: r[c] for c in DECISION_COLUMNS} for r in store.decision_rows()]


def export_decisions(project: str | os.PathLike, out: str | os.PathLike, *, fmt: str | None = None) -> dict[str, Any]:
    """Write every review decision of a project with its reviewer and time to ``out`` (CSV, JSONL or
    Parquet, by ``fmt`` or the extension), whole or not at all."""
    from .store import open_project

    out = Path(out)
    if fmt is None:
        ext = out.suffix.lower().lstrip(".")
        fmt = ext if ext in FORMATS else "csv"
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use csv, jsonl or parquet")
    store = open_project(project)
    try:
        records = decision_records(store)
    finally:
        store.close()
    if records:
        data = dataset_bytes(records, fmt)
    elif fmt == "csv":  # nobody has decided yet: the header alone
        data = (",".join(DECISION_COLUMNS) + "\n").encode("utf-8")
    elif fmt == "jsonl":
        data = b""
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({c: pa.array([], type=pa.string()) for c in DECISION_COLUMNS}), buf)
        data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return {"rows": len(records), "reviewers": len({r["reviewer"] for r in records}), "format": fmt,
            "path": str(out)}


__all__ = [
    "COLUMNS",
    "FORMATS",
    "export_project",
    "LABEL_SOURCES",
    "curated_records",
    "dataset_bytes",
    "decision_records",
    "export_decisions",
    "label_for",
    "neutralize_formula",
    "safe_filename",
    "to_csv_bytes",
    "to_jsonl_bytes",
    "to_parquet_bytes",
    "zip_folder_bytes",
]
