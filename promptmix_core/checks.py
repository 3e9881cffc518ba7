"""The small value checks every step config uses to word its rules alike ("X must be between A and B
(got V)"). Each rule itself lives once, in its config's ``problems()``: :class:`GenerationConfig`,
:class:`RelabelConfig`, :class:`LLMConfig` (:func:`llm_problems`), :class:`TrainConfig`,
:class:`EmbedLRConfig`; the job specs hold those configs and never repeat a rule."""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidInput, SpecError


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def int_in(p: list[str], v: Any, lo: int, hi: int | None, what: str) -> None:
    """Append "WHAT must be between LO and HI (got V)" (or "at least LO") unless ``v`` is such an integer."""
    if not (is_int(v) and v >= lo and (hi is None or v <= hi)):
        rng = f"between {lo:,} and {hi:,}" if hi is not None else f"at least {lo:,}"
        p.append(f"{what} must be {rng} (got {v!r})")


def raise_problems(problems: list[str]) -> None:
    """A config's ``__post_init__``: raise :class:`SpecError` listing every problem, if any."""
    if problems:
        raise SpecError(problems)


def build(cls: type, data: dict[str, Any], problems: list[str]):
    """``cls(**data)``, or None with its problems appended (every one, from the config's own rules)."""
    try:
        return cls(**data)
    except InvalidInput as exc:
        problems += exc.problems
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
    return None


__all__ = ["build", "int_in", "is_int", "is_num", "raise_problems"]
