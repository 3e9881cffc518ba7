"""Round three, item 1: a key is bound to its endpoint. The operator's key (``OPENAI_API_KEY`` /
``PROMPTMIX_API_KEY`` / ``st.secrets``) goes only to the endpoint configured beside it
(``OPENAI_BASE_URL``, else the OpenAI API); a URL typed in the app needs a key typed with it. Two
header-logging servers on 127.0.0.1 (``FakeLLM.auth_headers``) show which key reached which server."""

from __future__ import annotations

import pytest

from rel_helpers import wait_for
from promptmix_core import jobs, projects
from promptmix_core.llm import LLMClient, resolve_llm_config
from promptmix_core.llm.config import OPENAI_BASE_URL, bound_key, same_endpoint
from promptmix_core.store import JOB_FINAL

OPERATOR_KEY = "sk-operator-KEY-0a1b2c3d4e5f"
TYPED_KEY = "sk-typed-KEY-99887766"


def _carried(fake, key: str) -> list[str]:
    return [h for h in fake.auth_headers if key in h]


def test_same_endpoint_and_bound_key():
    assert same_endpoint("http://127.0.0.1:8000/v1", "HTTP://127.0.0.1:8000/v1/")
    assert same_endpoint("https://api.openai.com/v1", "https://API.openai.com:443/v1")
    assert same_endpoint("http://u:p@h:1/v1", "http://h:1/v1")  # credentials in the URL do not matter
    assert not same_endpoint("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    assert not same_endpoint("http://h/v1", "http://h/v2")
    assert not same_endpoint("https://api.openai.com.evil.example/v1", OPENAI_BASE_URL)
    assert not same_endpoint("", OPENAI_BASE_URL)
    assert bound_key(None, "k", OPENAI_BASE_URL) == "k"  # no URL: the configured endpoint
    assert bound_key(OPENAI_BASE_URL, "k", OPENAI_BASE_URL) == "k"
    assert bound_key("http://attacker:9/v1", "k", OPENAI_BASE_URL) is None


def test_the_environment_key_never_goes_to_another_url(make_fake_llm, monkeypatch):
    home, other = make_fake_llm(), make_fake_llm()
    monkeypatch.setenv("OPENAI_API_KEY", OPERATOR_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", home.base_url)
    cfg = resolve_llm_config(base_url=other.base_url)  # the model is asked of the server: a GET
    assert cfg.api_key != OPERATOR_KEY
    LLMClient(cfg).chat([{"role": "user", "content": "Text: hello\nCategory: a"}])
    assert other.auth_headers and not _carried(other, OPERATOR_KEY)
    # its own endpoint still gets it
    cfg = resolve_llm_config(base_url=home.base_url + "/", model="fake-model")
    assert cfg.api_key == OPERATOR_KEY
    # with no OPENAI_BASE_URL the key belongs to the OpenAI API only
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert resolve_llm_config(base_url=other.base_url, model="fake-model").api_key != OPERATOR_KEY
    assert resolve_llm_config().api_key == OPERATOR_KEY and resolve_llm_config().base_url == OPENAI_BASE_URL
    # a key given with the URL goes there
    assert resolve_llm_config(base_url=other.base_url, model="m", api_key=TYPED_KEY).api_key == TYPED_KEY
    assert not _carried(other, OPERATOR_KEY)


@pytest.mark.slow
def test_a_worker_sends_a_key_only_to_the_endpoint_it_was_given_for(make_fake_llm, tmp_path, task, monkeypatch,
                                                                     workers):
    """A job (or a resumed job) whose URL is not the key's endpoint runs without the key."""
    other = make_fake_llm()
    monkeypatch.setenv("OPENAI_API_KEY", OPERATOR_KEY)  # inherited by the worker's environment
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("PROMPTMIX_CACHE", str(tmp_path / "cache.sqlite"))
    store = projects.create_project("p", tmp_path, task=task)
    config = {"per_class": 2, "group_size": 2, "relabel": False, "llm": {"base_url": other.base_url, "model": "fake-model",
                                                      "timeout": 5, "max_retries": 0}}
    job_id = jobs.start_job(store.path, "generate", config, api_key=OPERATOR_KEY, key_endpoint=OPENAI_BASE_URL)
    workers.append(store.get_job(job_id).pid)
    _first_calls_then_stop(store, job_id, other)
    assert other.auth_headers and not _carried(other, OPERATOR_KEY)
    store.close()


def _first_calls_then_stop(store, job_id: int, fake) -> None:
    """Wait for the job's first LLM calls (what a key would ride on), then ask it to stop: the rest of a
    job (the junk-flag pass loads an embedder) proves nothing here; the ``workers`` fixture kills what
    is left of it."""
    wait_for(lambda: fake.calls >= 2 or store.get_job(job_id).status in JOB_FINAL, 90, what="the first calls")
    store.request_cancel(job_id)
    assert fake.calls >= 1, store.get_job(job_id).message


def _generate_page(folder, monkeypatch, task):
    from app_session import open_app

    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(folder.parent)
    projects.create_project("keys", folder, task=task).close()
    return open_app("app_pages/2_generate.py", "keys")


def _widget(seq, key):
    return next(w for w in seq if w.key == key)


@pytest.mark.slow
def test_the_generate_page_never_sends_the_operators_key_to_a_typed_url(make_fake_llm, tmp_path, task,
                                                                         monkeypatch, workers):
    """The issue's break: "Any OpenAI-compatible URL", a URL of one's own, no key: the job runs against
    that URL without the operator's key, and the page says why."""
    attacker = make_fake_llm()
    monkeypatch.setenv("OPENAI_API_KEY", OPERATOR_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("PROMPTMIX_CACHE", str(tmp_path / "cache.sqlite"))
    folder = tmp_path / "projects"
    at = _generate_page(folder, monkeypatch, task)
    k = "gen::keys::"
    _widget(at.radio, k + "provider").set_value("compatible")
    at.run()
    _widget(at.text_input, k + "base_url").input(attacker.base_url)
    _widget(at.text_input, k + "model").input("fake-model")
    _widget(at.number_input, k + "per_class").set_value(2)
    _widget(at.toggle, k + "relabel").set_value(False)
    at.run()
    page = " ".join(str(c.value) for c in at.caption)
    assert "sent only to the endpoint it was configured for" in page
    assert "A key was found" not in page
    _widget(at.button, "gen_start").click()
    at.run()
    assert not at.exception, at.exception
    store = projects.open_project("keys", folder)
    job = store.list_jobs("generate")[0]
    workers.append(job.pid)
    _first_calls_then_stop(store, job.id, attacker)
    assert attacker.auth_headers and not _carried(attacker, OPERATOR_KEY)
    # "OpenAI" is the key's own endpoint: the key is offered there
    _widget(at.radio, k + "provider").set_value("openai")
    at.run()
    assert "A key was found in environment (OPENAI_API_KEY)" in " ".join(str(c.value) for c in at.caption)
    store.close()


def test_a_typed_url_equal_to_the_configured_one_gets_the_key(make_fake_llm, tmp_path, task, monkeypatch):
    home = make_fake_llm()
    monkeypatch.setenv("OPENAI_API_KEY", OPERATOR_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", home.base_url)
    at = _generate_page(tmp_path / "projects", monkeypatch, task)
    k = "gen::keys::"
    _widget(at.radio, k + "provider").set_value("compatible")
    at.run()
    _widget(at.text_input, k + "base_url").input(home.base_url + "/")
    at.run()
    assert "A key was found in environment (OPENAI_API_KEY)" in " ".join(str(c.value) for c in at.caption)
    # and "OpenAI" is now not the key's endpoint
    _widget(at.radio, k + "provider").set_value("openai")
    at.run()
    assert any("needs an API key" in w.value for w in at.warning)
