"""Shared fixtures: the scripted LLM server, a clean environment, small tasks and projects."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
DATASETS = ROOT.parent / "shared" / "datasets"

from fake_llm import FakeLLM  # noqa: E402

from promptmix_core.task import ClassSpec, Task  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path_factory):
    """No test talks to a real endpoint or writes outside its temp folders."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "PROMPTMIX_MODEL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PROMPTMIX_CACHE", str(tmp_path_factory.mktemp("cache") / "llm_cache.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def fake_llm():
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_fake_llm():
    started: list[FakeLLM] = []

    def make(**kwargs) -> FakeLLM:
        server = FakeLLM(**kwargs).start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def small_task() -> Task:
    return Task(
        name="banking-mini",
        classes=[
            ClassSpec("card_lost", "the customer lost their card or it was stolen",
                      ["I lost my card yesterday", "My card was stolen on the bus"]),
            ClassSpec("card_arrival", "the customer is waiting for a new card to arrive",
                      ["When will my new card arrive?", "My card still hasn't come in the post"]),
            ClassSpec("exchange_rate", "questions about currency exchange rates",
                      ["What exchange rate do you use?", "Is the euro rate good today?"]),
            ClassSpec("top_up_failed", "a top-up of the account did not go through",
                      ["My top up failed", "Why was my top-up declined?"]),
            ClassSpec("refund_request", "the customer wants money back for a purchase",
                      ["I want a refund for this order", "How do I get my money back?"]),
            ClassSpec("pin_blocked", "the card PIN is blocked after wrong attempts",
                      ["My PIN is blocked", "I entered the wrong PIN three times"]),
        ],
    )


@pytest.fixture
def datasets_dir() -> Path:
    if not DATASETS.exists():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    return DATASETS


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: Playwright's sync API keeps an event loop running in the main thread
    for the rest of the session, which would break every later asyncio.run in this process."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
