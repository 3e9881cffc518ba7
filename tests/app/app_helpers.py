"""Helpers for the AppTest tests: find widgets by key or label, collect the page's text."""

from __future__ import annotations

import re

from streamlit.testing.v1 import AppTest


def by_key(elements, key: str):
    for e in elements:
        if getattr(e, "key", None) == key:
            return e
    raise KeyError(f"no element with key {key!r}; keys: {[getattr(e, 'key', None) for e in elements]}")


def by_label(elements, label: str):
    for e in elements:
        if getattr(e, "label", None) == label:
            return e
    raise KeyError(f"no element labelled {label!r}; labels: {[getattr(e, 'label', None) for e in elements]}")


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions, alerts and titles, as one string."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success"):
        parts.extend(str(e.value) for e in getattr(at, kind))
    return unescape("\n".join(parts))


def unescape(text: str) -> str:
    """Markdown source as the reader sees it: backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", str(text))
