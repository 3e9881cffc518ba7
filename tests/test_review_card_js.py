"""The review card's JavaScript: the unit tests of its outbox and acknowledgement logic
(``node --test tests/js/outbox.test.js``), the card module Streamlit gets (card.js with outbox.js inlined) parses, and
ESLint finds nothing. Node comes from the machine (``scripts/ensure_js.py`` installs it and ESLint for
``make test``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
ESLINT = ROOT / "scripts" / "jslint" / "node_modules" / ".bin" / "eslint"


def _need(what: bool, why: str) -> None:
    if not what:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def test_outbox_unit_tests_pass():
    _need(NODE is not None, "node not found (run scripts/ensure_js.py)")
    proc = subprocess.run([NODE, "--test", "--test-reporter=tap", "tests/js/outbox.test.js"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    passed = int(re.search(r"^# pass (\d+)$", out, re.MULTILINE).group(1))
    failed = int(re.search(r"^# fail (\d+)$", out, re.MULTILINE).group(1))
    assert failed == 0 and passed >= 6, out[-2000:]


def test_the_card_module_streamlit_gets_parses(tmp_path):
    from app_pages import _review_card

    js = _review_card.JS
    assert 'from "./outbox.js"' not in js and "\nexport function" not in js
    assert "function takeAcks(" in js and "export default function" in js
    _need(NODE is not None, "node not found (run scripts/ensure_js.py)")
    card = tmp_path / "card.mjs"
    card.write_text(js, "utf-8")
    proc = subprocess.run([NODE, "--check", str(card)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 'class="pmx-card"' in _review_card.HTML and ".pmx-card" in _review_card.CSS


def test_eslint_finds_nothing():
    _need(NODE is not None and ESLINT.exists(), "ESLint not installed (run scripts/ensure_js.py)")
    proc = subprocess.run([str(ESLINT), "--max-warnings=0", "-c", "scripts/jslint/eslint.config.js",
                           "app_pages/review_card/", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
