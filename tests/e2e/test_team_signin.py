"""Team review in a real browser with a real sign-in: a mock OpenID provider (``oidc-provider-mock``)
on 127.0.0.1, the app with ``[auth]`` pointing at it (``streamlit run app.py --secrets.files F``),
Chromium through the whole login. Nothing of any project shows before sign-in or with a forged
cookie; two reviewers in two browser contexts decide on a project that needs two reviews per example;
the agreement figures show; ``promptmix export --decisions`` has each decision with its reviewer;
a reviewer is kept off the owners' pages.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from e2e_helpers import screenshot, wait_idle
from playwright.sync_api import Browser, Page, expect

from promptmix_core.demo import create_demo
from promptmix_core.store import ProjectStore
from streamlit_server import StreamlitServer, free_port

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
PROJECT = "zebra-claims"
CARD = ".pmx-card"
USERS = [{"sub": "alice", "email": "alice@example.com"}, {"sub": "bob", "email": "bob@example.com"},
         {"sub": "mallory", "email": "mallory@elsewhere.org"}]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    port = free_port()
    exe = Path(sys.executable).parent / "oidc-provider-mock"
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "oidc_provider_mock"]),
           "--port", str(port), "--host", "127.0.0.1"]
    for u in USERS:
        cmd += ["--user-claims", json.dumps(u)]
    log = open(tmp_path_factory.mktemp("oidc") / "oidc.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("oidc-provider-mock exited")
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("oidc-provider-mock did not start")
    try:
        yield {"url": url, "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def team_app(provider, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("team")
    projects = tmp / "projects"
    projects.mkdir()
    store = create_demo(projects / f"{PROJECT}.pmx")
    store.set_reviews_per_example(2)
    texts = {e.id: e.text for e in store.list_examples()}
    store.close()
    port = free_port()
    secrets = tmp / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-long-random-cookie-secret-for-the-test-only"\n'
        'client_id = "promptmix-test"\n'
        'client_secret = "promptmix-test-secret"\n'
        f'server_metadata_url = "{provider["url"]}/.well-known/openid-configuration"\n'
        "[promptmix]\n"
        'allowed = ["example.com"]\n'
        'owners = ["alice@example.com"]\n', "utf-8")
    server = StreamlitServer(projects, tmp / "streamlit.log", port=port, extra_args=("--secrets.files", str(secrets)))
    try:
        yield {"server": server, "path": projects / f"{PROJECT}.pmx", "texts": texts, "tmp": tmp}
    finally:
        server.stop()


def _everything(page: Page) -> str:
    """All the page holds: its HTML and its text, shadow roots included."""
    shadow = page.evaluate("""() => { const out = [];
      const visit = r => { for (const el of r.querySelectorAll('*')) { if (el.shadowRoot) {
        out.push(el.shadowRoot.textContent); visit(el.shadowRoot); } } };
      visit(document); return out.join('\\n'); }""")
    return page.content() + "\n" + shadow


def _assert_nothing_shown(page: Page, app) -> None:
    everything = _everything(page)
    assert PROJECT not in everything
    for text in list(app["texts"].values())[:20]:
        assert text[:40] not in everything
    assert "Team review" not in everything and "Review" not in page.locator("[data-testid='stMain']").inner_text()


def _sign_in(page: Page, app, provider, sub: str) -> None:
    server = app["server"]
    page.goto(server.url)
    wait_idle(page)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**:{provider['port']}/**", timeout=30_000)
    page.fill("input[name='sub']", sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"**:{server.port}/**", timeout=30_000)
    wait_idle(page)


def _open_review(page: Page, app) -> None:
    page.goto(f"{app['server'].url}/review?project={PROJECT}")
    wait_idle(page)
    expect(page.locator(f"{CARD}[data-ready='1']")).to_be_visible(timeout=30_000)


def _wait_saved(page: Page, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.locator(CARD).get_attribute("data-outbox") == "0":
            return
        page.wait_for_timeout(100)
    raise AssertionError("decisions still waiting")


def _current(page: Page) -> int:
    return int(page.locator(CARD).get_attribute("data-current-id"))


def _decide(page: Page, keys: str) -> list[int]:
    page.locator("[data-testid='stMain'] h1").first.click()  # the keys go to the card
    seen = []
    for k in keys:
        seen.append(_current(page))
        page.keyboard.press(k)
        page.wait_for_timeout(150)
    _wait_saved(page)
    return seen


def test_nothing_shows_before_sign_in_nor_with_a_forged_cookie(browser: Browser, team_app, shots):
    server = team_app["server"]
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = ctx.new_page()
    for path in ("", f"/review?project={PROJECT}", f"/results?project={PROJECT}", "/task"):
        page.goto(server.url + path)
        wait_idle(page)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        _assert_nothing_shown(page, team_app)
        assert "Page not found" not in page.locator("body").inner_text()
        assert not page.locator("[data-testid='stSidebarNav']").count()  # no list of the page files
    screenshot(page, shots / "team-sign-in.png")
    # a cookie made up by hand (not signed with the app's cookie secret) gets no access
    forged = json.dumps({"email": "alice@example.com", "sub": "alice", "is_logged_in": True})
    ctx.add_cookies([{"name": "_streamlit_user", "value": forged, "domain": "127.0.0.1", "path": "/"}])
    page.goto(f"{server.url}/review?project={PROJECT}")
    wait_idle(page)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    _assert_nothing_shown(page, team_app)
    ctx.close()


def test_two_reviewers_two_reviews_per_example(browser: Browser, team_app, provider, tmp_path, shots):
    contexts = {who: browser.new_context(viewport={"width": 1440, "height": 1000}) for who in ("alice", "bob")}
    pages = {who: ctx.new_page() for who, ctx in contexts.items()}
    try:
        for who, page in pages.items():
            _sign_in(page, team_app, provider, who)
            expect(page.locator("[data-testid='stSidebar']")).to_contain_text(f"{who}@example.com")
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        alice, bob = pages["alice"], pages["bob"]

        _open_review(alice, team_app)
        a_ids = _decide(alice, "aaa")
        _open_review(bob, team_app)
        # alice's decisions leave the examples in bob's queue: each needs two
        assert _current(bob) == a_ids[0]
        b_ids = _decide(bob, "axa")
        assert b_ids == a_ids

        # a cookie of a real session, tampered with, is refused like no cookie at all
        cookie = next(c for c in contexts["bob"].cookies() if c["name"] == "_streamlit_user")
        forged_ctx = browser.new_context()
        forged_ctx.add_cookies([{**cookie, "value": cookie["value"][:-6] + ("AAAAAA" if not cookie["value"].endswith(
            "AAAAAA") else "BBBBBB")}])
        fpage = forged_ctx.new_page()
        fpage.goto(f"{team_app['server'].url}/review?project={PROJECT}")
        wait_idle(fpage)
        expect(fpage.get_by_role("button", name="Sign in")).to_be_visible()
        _assert_nothing_shown(fpage, team_app)
        forged_ctx.close()

        store = ProjectStore(team_app["path"], create=False)
        try:
            status = {i: store.get_example(i).review_status for i in a_ids}
            conflicts = [c["id"] for c in store.adjudication_queue()]
        finally:
            store.close()
        assert status[a_ids[0]] == "accepted" and status[a_ids[2]] == "accepted"
        assert status[a_ids[1]] == "pending" and conflicts == [a_ids[1]]  # alice accepted, bob rejected

        # the agreement figures, on the Review page
        bob.reload()
        wait_idle(bob)
        bob.locator("[data-testid='stExpander'] summary").filter(has_text="Team review").click()
        panel = bob.locator("[data-testid='stExpander']").filter(has_text="Team review")
        expect(panel).to_contain_text("Krippendorff's alpha")
        expect(panel).to_contain_text("over 3 examples")
        expect(panel).to_contain_text("Conflicts waiting for an owner: 1")
        expect(panel).to_contain_text("An owner decides these")
        screenshot(bob, shots / "team-review-agreement.png")

        # bob is a reviewer: the owners' pages say so and offer nothing
        bob.goto(f"{team_app['server'].url}/generate?project={PROJECT}")
        wait_idle(bob)
        expect(bob.locator("[data-testid='stMain']")).to_contain_text("is for the project's owners")
        expect(bob.get_by_role("button", name="Generate", exact=False)).to_have_count(0)
        expect(bob.locator("[data-testid='stSidebar']")).not_to_contain_text("Delete this project")

        # alice owns the project: she settles the conflict
        alice.reload()
        wait_idle(alice)
        alice.locator("[data-testid='stExpander'] summary").filter(has_text="Team review").click()
        apanel = alice.locator("[data-testid='stExpander']").filter(has_text="Team review")
        expect(apanel).to_contain_text("Conflicts waiting for an owner: 1")
        screenshot(alice, shots / "team-adjudication.png")
        apanel.get_by_role("button", name="Decide").first.click()
        wait_idle(alice)
        expect(apanel).to_contain_text("Conflicts waiting for an owner: 0")
    finally:
        for ctx in contexts.values():
            ctx.close()

    out = tmp_path / "decisions.jsonl"
    proc = subprocess.run([sys.executable, "-m", "promptmix_core.cli", "export", str(team_app["path"]), "--decisions",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    votes = {(r["example_id"], r["reviewer"]): r for r in rows if not r["adjudication"]}
    for i in a_ids:
        assert votes[(i, "alice@example.com")]["decision"] == "accepted"
    assert [votes[(i, "bob@example.com")]["decision"] for i in a_ids] == ["accepted", "rejected", "accepted"]
    adj = [r for r in rows if r["adjudication"]]
    assert [(r["example_id"], r["reviewer"]) for r in adj] == [(a_ids[1], "alice@example.com")]
    assert all(r["time"].endswith("Z") and r["text"] for r in rows)
