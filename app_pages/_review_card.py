"""The review card: a bidirectional ``st.components.v2`` component. Its HTML, CSS and JavaScript are
files in ``app_pages/review_card/`` (no build step, nothing loaded from the network); this module reads
them, inlines ``outbox.js`` (the outbox and acknowledgement logic, unit-tested by ``node --test``)
into ``card.js``, and passes the page's data.

It holds a window of upcoming examples in the browser and answers keys there, so the next example
shows at once: **A** / Space / Enter accept, **X** reject, **1-9** override with that class, **O** a
class picker with type-ahead, **U** undo (this tab's history, repeatedly), **J**/**K** next/previous.

Protocol (one state value, ``sync``, sent by the browser; ``data`` sent back by the page):

- ``sync = {project, uid, inst, tab, req, qid, want, ops}``: ``uid`` is the project's identity (the
  store's ``project_uid``; a project deleted and re-created under the same name has another); ``ops`` are every operation the server has not
  answered yet (decisions ``{cid, id, action, label, base, tab}`` and undos ``{cid, undo, tab}``), so a
  rerun that Streamlit coalesces or interrupts never loses one; ``want`` asks for the next page of the
  queue after a sort key (``"start"`` for the first); ``tab`` identifies the browser tab (it survives a
  refresh: ``sessionStorage``); ``base`` is the example's version when this tab loaded it.
- ``data = {project, project_uid, classes, qid, page, acks, ack_req, history, counts, focus, ...}``: ``acks`` answers
  every operation in the last ``sync`` by its ``cid`` (applying is idempotent, so answering again is
  harmless); ``page`` is ``{qid, from, items, done}``.

Unanswered operations are also kept in ``localStorage`` (per project identity, tab and page load) and
sent again when the project is next opened in this browser (never to another project of the same name), so a refresh or a closed tab loses nothing; on ``pagehide`` and
when the tab is hidden the card sends what is waiting at once. The browser measures the time from each
key to the next card painted (``data-key-to-card-ms`` on the card, ``window.__pmxReview.timings``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st

CARD_DIR = Path(__file__).resolve().parent / "review_card"
_IMPORT = re.compile(r'^import \{[^}]*\} from "\./outbox\.js";\n', re.MULTILINE)
_EXPORT = re.compile(r"^export (?=(?:const|function|let|class) )", re.MULTILINE)


def _read(name: str) -> str:
    return (CARD_DIR / name).read_text("utf-8")


def card_js() -> str:
    """card.js with outbox.js inlined (the component takes one module, loaded from a string)."""
    card = _read("card.js")
    if not _IMPORT.search(card):
        raise RuntimeError("app_pages/review_card/card.js no longer imports ./outbox.js as the loader expects")
    outbox = _EXPORT.sub("", _read("outbox.js"))
    return _IMPORT.sub(lambda _m: "// ---- outbox.js (inlined)\n" + outbox + "// ---- card.js\n", card, count=1)


HTML = _read("card.html")
CSS = _read("card.css")
JS = card_js()

CARD = st.components.v2.component("promptmix_review_card", html=HTML, css=CSS, js=JS)


def review_card(data: dict[str, Any], *, key: str):
    """Mount the card; returns its result (``.sync`` is the browser's last state)."""
    return CARD(key=key, data=data, on_sync_change=lambda: None, height="content")


__all__ = ["CSS", "HTML", "JS", "review_card"]
