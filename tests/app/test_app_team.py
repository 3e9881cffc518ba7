"""Sign-in and roles in the app (AppTest, with ``at.secrets``/``at.user``): nothing of any project before
sign-in, a reviewer kept off the owners' actions even by a crafted rerun, decisions recorded under the
signed-in person (else the OS user), a typed API key kept in its own session. The real login through
a mock OpenID provider is in tests/e2e/test_team_signin.py."""

from __future__ import annotations

import getpass

from app_helpers import by_key, texts
from app_session import APP, card_data
from streamlit.testing.v1 import AppTest
from test_app_review import Card

from promptmix_core import access, projects
from promptmix_core.demo import DEMO_NAME

REVIEW = "app_pages/3_review.py"
AUTH = {"client_id": "x", "client_secret": "y", "cookie_secret": "z" * 32,
        "redirect_uri": "http://127.0.0.1:1/oauth2callback",
        "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}


def _signed(user: dict | None, page: str | None = None, owners=("boss@example.com",)) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.secrets["auth"] = AUTH
    at.secrets["promptmix"] = {"owners": list(owners), "allowed": ["example.com"]}
    at.user = {"is_logged_in": False} if user is None else {"is_logged_in": True, **user}
    at.query_params["project"] = DEMO_NAME
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def test_nothing_of_any_project_before_sign_in(projects_dir, demo_store):
    for page in (None, REVIEW, "app_pages/5_results.py"):
        at = _signed(None, page)
        said = texts(at)
        assert [b.label for b in at.button] == ["Sign in"]
        assert DEMO_NAME not in said and "Review" not in said
        assert not at.selectbox and not at.dataframe and not at.sidebar.children
        for ex in demo_store.list_examples():
            assert ex.text not in said


def test_someone_not_on_the_allow_list_gets_nothing(projects_dir, demo_store):
    at = _signed({"email": "eve@elsewhere.org"}, REVIEW)
    assert "not on this app's list" in texts(at) and DEMO_NAME not in texts(at)
    assert [b.label for b in at.button] == ["Sign out"]


def test_a_reviewer_reviews_but_takes_no_owner_action(projects_dir, demo_store):
    at = _signed({"email": "rev@example.com", "sub": "r1"})
    sidebar = " ".join(str(getattr(e, "value", "")) for e in at.sidebar.caption)
    assert "rev@example.com" in sidebar and "reviewer" in sidebar
    labels = [b.label for b in at.button]
    assert "Sign out" in labels and "Create project" not in labels and "Delete project" not in labels
    for page in ("app_pages/1_task.py", "app_pages/2_generate.py", "app_pages/4_train.py"):
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
        assert "is for the project's owners" in texts(at)
        assert not any(k and k.startswith(("gen_", "train_")) for k in (getattr(b, "key", None) for b in at.button))

    at.switch_page(REVIEW)
    at.run()
    card = Card(at)
    ex = card.item(0)
    assert card.decide(ex, "accepted")["ok"]
    assert demo_store.get_example(ex["id"]).reviewed_by == "rev@example.com"
    # a crafted rerun: widget state for the owners' settings and a ticked delete, sent anyway
    at.session_state[f"rv_needed::{DEMO_NAME}"] = 3
    at.session_state["sb_delete_confirm"] = True
    at.run()
    assert demo_store.reviews_per_example() == 1
    assert projects.project_exists(DEMO_NAME, projects_dir)


def test_the_job_helper_refuses_a_reviewer(projects_dir, demo_store):
    def script():
        import streamlit as st

        from app_pages._ui import get_store, start_job
        from promptmix_core.access import AccessDenied

        st.session_state["_pmx_role"] = "reviewer"
        try:
            start_job(get_store(), "train", {})
        except AccessDenied as exc:
            st.write(f"refused: {exc}")

    at = AppTest.from_function(script, default_timeout=60)
    at.session_state["project"] = DEMO_NAME
    at.run()
    assert not at.exception, at.exception
    assert any("refused: Reviewers cannot train" in str(m.value) for m in at.markdown)
    assert demo_store.list_jobs("train") == []


def test_an_owner_manages(projects_dir, demo_store):
    at = _signed({"email": "boss@example.com"}, REVIEW)
    assert "Create project" in [b.label for b in at.button]
    by_key(at.number_input, f"rv_needed::{DEMO_NAME}").set_value(2)
    at.run()
    assert not at.exception, at.exception
    assert demo_store.reviews_per_example() == 2
    assert "2 reviews per example" in " ".join(e.label for e in at.expander)


def test_without_sign_in_the_one_person_flow_records_the_os_user(make_app, demo_store):
    at = make_app(REVIEW)
    assert "Sign out" not in [b.label for b in at.button]
    card = Card(at)
    ex = card.item(0)
    assert card.decide(ex, "rejected")["ok"]
    assert demo_store.get_example(ex["id"]).reviewed_by == access.local_reviewer() == getpass.getuser()
    assert card_data(at)["counts"]["rejected"] == 1


def test_a_typed_api_key_stays_in_its_session(make_app, demo_store):
    key = "sk-typed-in-one-session-0123456789"
    a = make_app("app_pages/2_generate.py")
    by_key(a.radio, f"gen::{DEMO_NAME}::provider").set_value("compatible")
    a.run()
    by_key(a.text_input, f"gen::{DEMO_NAME}::api_key").input(key)
    a.run()
    b = make_app("app_pages/2_generate.py")
    by_key(b.radio, f"gen::{DEMO_NAME}::provider").set_value("compatible")
    b.run()
    assert by_key(b.text_input, f"gen::{DEMO_NAME}::api_key").value == ""
    assert key not in texts(b) and key not in str(demo_store.get_settings())


def test_agreement_on_the_review_page(make_app, demo_store):
    ids = demo_store.matching_ids(review_status="pending")[:4]
    demo_store.review(ids[0], "accepted", reviewer="ann")
    at = make_app(REVIEW)
    assert "once two people have made decisions" in texts(at)  # one person: no figures, nothing computed
    demo_store.set_reviews_per_example(2)
    for who, acts in (("ann", ["accepted", "accepted", "rejected", "accepted"]),
                      ("ben", ["accepted", "rejected", "rejected", "accepted"])):
        for i, act in zip(ids, acts):
            demo_store.review(i, act, reviewer=who)
    at = make_app(REVIEW)
    said = texts(at)
    assert "Krippendorff's alpha (nominal)" in said and "over 4 examples with two or more decisions" in said
    assert "Conflicts waiting for an owner: 1" in said
    pairs = next(df.value for df in at.dataframe if "Cohen's kappa" in df.value.columns)
    assert list(pairs["examples"]) == [4] and list(pairs["reviewers"]) == ["ann / ben"]
