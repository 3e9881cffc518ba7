"""AppTest sessions, shared by tests/app and tests/reliability: open the app on a page and project, and
read what the Review page handed to its review card."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
CARD_COMPONENT = "promptmix_review_card"


def open_app(page: str | None = None, project: str | None = None, timeout: float = 90) -> AppTest:
    """A fresh session of the app, run once (on ``?project=`` when given), then switched to ``page``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if project:
        at.query_params["project"] = project
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def card_protos(at: AppTest) -> list:
    """The review-card elements of the last run (their protos)."""
    found = []

    def walk(node):
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for c in children.values():
                walk(c)
        proto = getattr(node, "proto", None)
        if getattr(proto, "component_name", "") == CARD_COMPONENT:
            found.append(proto)

    walk(at._tree)
    return found


def card_data(at: AppTest) -> dict:
    """What the page handed to the (one) review card in the last run."""
    found = card_protos(at)
    assert len(found) == 1, f"expected one review card, found {len(found)}"
    return json.loads(found[0].json)
