"""Texts from users or the LLM render as inert text in the app: HTML, script tags, Markdown links and
images are shown literally, never interpreted. Drives the real pages with Streamlit's AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_session import card_protos, open_app  # noqa: E402

from promptmix_core import projects  # noqa: E402
from promptmix_core.task import ClassSpec, Task, normalize_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert(1)</script>"
LINK = "[x](javascript:alert(1))"
IMAGE = "![img](http://x/y.png)"
HTML = '<img src=x onerror="alert(2)"><b>bold?</b>'
PHISH = "[click here](http://evil.example/phish)"
PAYLOADS = [SCRIPT, LINK, IMAGE, HTML, PHISH, f"Lost card {SCRIPT} then {LINK} and {IMAGE}"]
FRAGMENTS = ("alert(", "y.png", "onerror", "bold?", "evil.example")


def _md_to_html(body: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(body)


def _assert_inert(at: AppTest) -> None:
    """Every Markdown element (captions too) carrying hostile text, rendered by a CommonMark renderer
    that lets raw HTML through, yields no script, image, link or raw tag, and none allows HTML."""
    hostile = 0
    for md in list(at.markdown) + list(at.caption):
        body = md.proto.body
        if not any(f in re.sub(r"\\(.)", r"\1", body) for f in FRAGMENTS):  # as the reader sees it
            continue
        hostile += 1
        assert not md.proto.allow_html, f"hostile text rendered with unsafe_allow_html: {body!r}"
        rendered = _md_to_html(body).lower()
        for tag in ("<script", "<img", "<a ", "<b>"):
            assert tag not in rendered, (tag, body, rendered)
    return hostile


def test_the_checker_would_catch_raw_markdown():
    for p in PAYLOADS:
        rendered = _md_to_html(p).lower()
        assert any(t in rendered for t in ("<script", "<img", "<a ", "<b>")) or "javascript:" in p


def _literal_texts(at: AppTest) -> list[str]:
    """What the reader sees as plain text: dataframe cells, st.text, st.code, and escaped Markdown."""
    out: list[str] = []
    for df in at.dataframe:
        out.extend(str(v) for v in df.value.astype(str).to_numpy().ravel())
    out.extend(str(t.value) for t in at.text)
    out.extend(str(c.value) for c in at.code)
    for md in list(at.markdown) + list(at.caption):
        out.append(re.sub(r"\\(.)", r"\1", md.proto.body if hasattr(md, "proto") else str(md.value)))
    return out


@pytest.fixture
def hostile_project(tmp_path, monkeypatch):
    folder = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(tmp_path)
    task = Task("hostile", [
        ClassSpec("card_lost", f"lost cards {SCRIPT}", [f"I lost my card {LINK}", "My card was stolen"]),
        ClassSpec("refund_request", f"money back {IMAGE}", ["I want a refund", f"refund {HTML}"]),
    ])
    store = projects.create_project("hostile", folder, task=task)
    job = store.create_job("generate", {})
    store.add_examples({"job_id": job, "slot": f"s{i}", "text": t, "norm_text": normalize_text(t) + str(i),
                        "intended_label": "card_lost", "mixed_with": "refund_request", "alpha": 0.8,
                        "model": f"model {SCRIPT}"} for i, t in enumerate(PAYLOADS))
    ex = store.list_examples()
    store.set_relabel(ex[0].id, llm_label=None, status="unparseable", raw=f"I think {SCRIPT} {IMAGE}")
    store.set_relabel(ex[1].id, llm_label="refund_request", status="changed", raw="refund_request")
    store.update_job(job, status="done")
    store.close()
    return folder


def _app(page: str | None) -> AppTest:
    return open_app(page, "hostile")


def _card(at: AppTest):
    """The review card's element: its fixed markup and the examples it was given as data."""
    import json

    found = card_protos(at)
    assert len(found) == 1
    return found[0], json.loads(found[0].json)


def test_review_page_shows_hostile_text_literally(hostile_project):
    """The list shows every example literally; the review card gets them as data (JSON), never as
    markup, and its script writes texts with ``textContent`` only (the browser test checks the result:
    ``tests/e2e/test_review_card.py``)."""
    if not (ROOT / "app_pages" / "3_review.py").exists():
        pytest.skip("the Review page is not there yet")
    at = _app("app_pages/3_review.py")
    _assert_inert(at)  # any Markdown that carries hostile text is inert
    seen = _literal_texts(at)
    for p in PAYLOADS:  # every example is listed, character for character
        assert any(p == s for s in seen) or any(p in s for s in seen), p
    proto, data = _card(at)
    items = data["page"]["items"]
    # every example goes to the card, character for character, the first (a bare script tag) first
    assert [c["text"] for c in items] == PAYLOADS and items[0]["text"] == SCRIPT
    # the unparseable raw answer too
    raw = next(c["llm_raw"] for c in items if c["relabel_status"] == "unparseable")
    assert SCRIPT in raw and IMAGE in raw
    # the card's markup is fixed (no example text in it) and its script never parses text as HTML
    assert not any(f in proto.html_content for f in FRAGMENTS)
    assert "innerHTML" not in proto.js_content and "insertAdjacentHTML" not in proto.js_content
    assert "textContent" in proto.js_content


@pytest.mark.parametrize("page", ["app_pages/1_task.py", "app_pages/2_generate.py"])
def test_other_pages_render_hostile_text_inert(hostile_project, page):
    if not (ROOT / page).exists():
        pytest.skip(f"{page} is not there yet")
    at = _app(page)
    _assert_inert(at)
