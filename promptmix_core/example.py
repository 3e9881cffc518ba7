"""An example's shape, once.

Examples reach the steps in three forms: the store's ``store.Example`` rows, the generator's
``generate.GeneratedExample`` and plain dicts (JSONL files, experiment caches). They share field
names; :class:`ExampleLike` is that shared shape, and :func:`example_view` reads any of the three
forms into one frozen :class:`ExampleView` (missing fields are ``None``), so no step needs its own
``_get`` helper.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, runtime_checkable


@runtime_checkable
class ExampleLike(Protocol):
    """What every example form has (store rows and generated examples have more)."""

    text: str
    intended_label: str | None


@dataclass(frozen=True)
class ExampleView:
    """The fields the steps read, from any example form."""

    text: str | None = None
    label: str | None = None
    intended_label: str | None = None
    mixed_with: str | None = None
    alpha: float | None = None
    llm_label: str | None = None
    relabel_status: str | None = None
    review_status: str | None = None
    review_label: str | None = None


_NAMES = tuple(f.name for f in fields(ExampleView))


def example_view(ex: Any) -> ExampleView:
    """``ex`` (a store row, a generated example or a dict) as an :class:`ExampleView`."""
    if isinstance(ex, ExampleView):
        return ex
    if isinstance(ex, Mapping):
        return ExampleView(**{n: ex.get(n) for n in _NAMES})
    return ExampleView(**{n: getattr(ex, n, None) for n in _NAMES})


__all__ = ["ExampleLike", "ExampleView", "example_view"]
