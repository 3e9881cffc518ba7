"""One error hierarchy for the library.

Every error the library raises on purpose derives from :class:`PromptMixError`, so a face (app,
CLI, worker) can catch "anything PromptMix says is wrong" in one place and show the message. The
classes keep their historical built-in bases (``ValueError`` for bad input, ``RuntimeError`` for
things that went wrong while running) so existing ``except ValueError`` handlers keep working.

Modules that raised these before re-export them under the old names (``task.TaskError``,
``llm.LLMError``, ``store.StoreError`` ...), so imports written against earlier versions still work.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Sequence


class PromptMixError(Exception):
    """Base of every error PromptMix raises on purpose; the message is meant for the user."""


class InvalidInput(PromptMixError, ValueError):
    """Bad input; ``problems`` holds one message per problem (all of them, not just the first)."""

    default_message = "invalid input"

    def __init__(self, problems: Sequence[str] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else self.default_message)


class TaskError(InvalidInput):
    """A task (classes, descriptions, seeds) or a labelled file is invalid."""

    default_message = "invalid task"


class SpecError(InvalidInput):
    """A job spec (generation, relabel or training settings) is invalid; lists every problem."""

    default_message = "invalid settings"


class Cancelled(PromptMixError, RuntimeError):
    """The job was asked to stop; what was finished is kept."""


class LLMError(PromptMixError, RuntimeError):
    """Base class for LLM failures; messages never contain the API key."""


class LLMConfigError(PromptMixError, ValueError):
    """The endpoint settings are unusable (bad URL, out-of-range option, ...)."""


class StoreError(PromptMixError, RuntimeError):
    """The file is not a usable PromptMix project, or it cannot be written."""


class StoreFullError(StoreError):
    """The disk holding the project is full; the write was rolled back (the file stays intact)."""


class StoreReadOnlyError(StoreError):
    """The project's folder or file cannot be written (read-only folder, file system or permissions)."""


class JobBusyError(StoreError):
    """A job of the same kind is already running on the project (one writer per job kind)."""

    def __init__(self, message: str, job_id: int):
        super().__init__(message)
        self.job_id = job_id


class ModelLoadError(PromptMixError, RuntimeError):
    """A model could not be loaded (missing, pickled weights only, not downloadable offline...)."""


# --------------------------------------------------------------------------- storage wording
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN = 13, 8, 14


def can_write(path: Path) -> bool:
    """Whether this process may write ``path`` (a file that exists, else its folder)."""
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK) and (target == path.parent or os.access(path.parent, os.W_OK))


def storage_error(exc: BaseException, path: str | Path) -> StoreError | None:
    """Words for a write that failed because of the disk or the folder, or None for other errors.

    "the disk holding FOLDER is full" / "cannot write to folder FOLDER"."""
    path = Path(path)
    folder = path.parent
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    err = getattr(exc, "errno", None)
    text = str(exc).lower()
    if base == _SQLITE_FULL or err == errno.ENOSPC or "disk is full" in text or "no space left" in text:
        return StoreFullError(
            f"the disk holding {folder} is full: {path.name} could not be written; what was saved before is "
            "kept. Free some space, then resume"
        )
    if (
        base == _SQLITE_READONLY or err in (errno.EROFS, errno.EACCES, errno.EPERM) or "readonly" in text
        or "read-only" in text or (base == _SQLITE_CANTOPEN and not can_write(path))
    ):
        return StoreReadOnlyError(f"cannot write to folder {folder}: {path.name} is read-only here")
    return None


_can_write = can_write  # the name the store used


__all__ = [
    "Cancelled",
    "InvalidInput",
    "JobBusyError",
    "LLMConfigError",
    "LLMError",
    "ModelLoadError",
    "PromptMixError",
    "SpecError",
    "StoreError",
    "StoreFullError",
    "StoreReadOnlyError",
    "TaskError",
    "can_write",
    "storage_error",
]
