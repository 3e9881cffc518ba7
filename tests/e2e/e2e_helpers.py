"""Helpers for the browser tests."""

from __future__ import annotations

from pathlib import Path


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the current script run has finished."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
    page.wait_for_timeout(300)


# Counts the script runs the page has started (each switch of stApp's script state to "running"), so a
# test can wait for the run its own action starts rather than for a moment when no run is going: an
# upload, for one, sends its file first and asks for the rerun only afterwards, so "no run is going"
# right after it says nothing.
_COUNT_RUNS = """() => {
  if (window.__pmRunObserver) return;
  window.__pmRuns = 0;
  window.__pmRunObserver = new MutationObserver(records => {
    for (const r of records) {
      if (r.target.getAttribute('data-test-script-state') === 'running' && r.oldValue !== 'running') window.__pmRuns++;
    }
  });
  window.__pmRunObserver.observe(document.body, {subtree: true, attributes: true, attributeOldValue: true,
                                                 attributeFilter: ['data-test-script-state']});
}"""

_RUN_DONE = """n => window.__pmRuns > n && (document.querySelector("[data-testid='stApp']") || {dataset: {}})
  .dataset.testScriptState === 'notRunning'"""


def act_and_wait(page, action, timeout: float = 60_000) -> None:
    """Do ``action`` (a click, an upload: anything that reruns the script) and wait until the run it
    started has finished."""
    page.evaluate(_COUNT_RUNS)
    before = page.evaluate("() => window.__pmRuns")
    action()
    page.wait_for_function(_RUN_DONE, arg=before, timeout=timeout)
    page.wait_for_timeout(300)


def screenshot(page, path: Path) -> None:
    """A screenshot of the whole page (the main area scrolls inside the viewport)."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.body.scrollHeight }"
    )
    page.set_viewport_size({"width": 1440, "height": int(min(max(1000, height + 40), 6000))})
    page.wait_for_timeout(700)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})

