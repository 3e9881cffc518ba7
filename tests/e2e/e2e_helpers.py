"""Helpers for the browser tests."""

from __future__ import annotations

from pathlib import Path


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the current script run has finished."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout)
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

