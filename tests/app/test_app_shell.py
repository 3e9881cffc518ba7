"""The app shell: first start with the demo, the sidebar, project create/switch/delete, the URL."""

from __future__ import annotations

from app_helpers import by_key, texts

from promptmix_core import projects
from promptmix_core.demo import DEMO_NAME


def test_first_start_creates_and_opens_the_demo(make_app, projects_dir):
    at = make_app()
    assert [p.name for p in projects.list_projects(projects_dir)] == [DEMO_NAME]
    assert at.title[0].value == "1 · Task"
    assert by_key(at.sidebar.selectbox, "sb_project").value == DEMO_NAME
    assert at.query_params["project"] == [DEMO_NAME] or at.query_params["project"] == DEMO_NAME
    side = "\n".join(m.value for m in at.sidebar.markdown)
    assert "5 classes, 10 seeds" in side and "Generated" in side and "0 of 20" in side


def test_every_page_renders_for_the_demo(make_app):
    at = make_app()
    for page, title in [("app_pages/2_generate.py", "2 · Generate"), ("app_pages/3_review.py", "3 · Review"),
                        ("app_pages/4_train.py", "4 · Train"), ("app_pages/5_results.py", "5 · Results"),
                        ("app_pages/1_task.py", "1 · Task")]:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, at.exception)
        assert at.title[0].value == title


def test_create_switch_and_delete_projects(make_app, projects_dir):
    at = make_app()
    by_key(at.sidebar.text_input, "sb_new_name").input("tickets")
    next(b for b in at.sidebar.button if b.label == "Create project").click()
    at.run()
    assert not at.exception
    assert "Created project" in texts(at) or any("Created project" in s.value for s in at.sidebar.success)
    assert by_key(at.sidebar.selectbox, "sb_project").value == "tickets"
    assert at.query_params["project"] in ("tickets", ["tickets"])
    # a new empty project: the task page starts with two blank classes
    assert at.metric[0].value == "0"

    # switch back to the demo
    by_key(at.sidebar.selectbox, "sb_project").select(DEMO_NAME)
    at.run()
    assert by_key(at.sidebar.selectbox, "sb_project").value == DEMO_NAME
    assert at.metric[0].value == "5"

    # delete needs the confirmation box
    next(b for b in at.sidebar.button if b.label == "Delete project").click()
    at.run()
    assert any("Tick the box" in w.value for w in at.sidebar.warning)
    assert projects.project_exists(DEMO_NAME, projects_dir)
    by_key(at.sidebar.checkbox, "sb_delete_confirm").check()
    next(b for b in at.sidebar.button if b.label == "Delete project").click()
    at.run()
    assert not at.exception
    assert not projects.project_exists(DEMO_NAME, projects_dir)
    assert by_key(at.sidebar.selectbox, "sb_project").value == "tickets"


def test_bad_project_names_are_refused(make_app, projects_dir):
    at = make_app()
    for bad, words in [("../escape", "may not contain"), ("", "give the project a name"),
                       (DEMO_NAME, "already exists")]:
        by_key(at.sidebar.text_input, "sb_new_name").input(bad)
        next(b for b in at.sidebar.button if b.label == "Create project").click()
        at.run()
        assert any(words in e.value for e in at.sidebar.error), (bad, [e.value for e in at.sidebar.error])
    assert [p.name for p in projects.list_projects(projects_dir)] == [DEMO_NAME]
    assert not (projects_dir.parent / "escape.pmx").exists()


def test_new_project_from_the_demo_template(make_app):
    at = make_app()
    by_key(at.sidebar.text_input, "sb_new_name").input("copy")
    by_key(at.sidebar.radio, "sb_new_template").set_value("Copy of the banking demo task")
    next(b for b in at.sidebar.button if b.label == "Create project").click()
    at.run()
    assert by_key(at.sidebar.selectbox, "sb_project").value == "copy"
    assert at.metric[0].value == "5"  # 5 classes, but no generated examples
    assert "Generated** · 0" in "\n".join(m.value for m in at.sidebar.markdown)


def test_project_in_the_url_is_opened(make_app, projects_dir):
    projects.ensure_demo(projects_dir)
    projects.create_project("other", projects_dir).close()
    at = make_app(project="other")
    assert by_key(at.sidebar.selectbox, "sb_project").value == "other"
    at2 = make_app(project="does-not-exist")
    assert any("no project called" in w.value for w in at2.sidebar.warning)


def test_a_link_opens_its_project_and_page_and_a_new_tab_the_last_one_used(make_app, projects_dir):
    """``?project=NAME`` with a page opens both (a link for a second reviewer); a new tab without a link
    opens the project used last, remembered in the projects folder."""
    projects.ensure_demo(projects_dir)
    projects.create_project("second", projects_dir).close()
    at = make_app("app_pages/3_review.py", project="second")
    assert by_key(at.sidebar.selectbox, "sb_project").value == "second"
    assert at.title[0].value == "3 · Review"
    assert projects.last_project(projects_dir) == "second"
    fresh = make_app()  # another tab, no link
    assert by_key(fresh.sidebar.selectbox, "sb_project").value == "second"
    assert fresh.query_params["project"] in ("second", ["second"])
    # switching in the sidebar changes the project a new tab opens
    by_key(fresh.sidebar.selectbox, "sb_project").select(DEMO_NAME)
    fresh.run()
    assert projects.last_project(projects_dir) == DEMO_NAME
    assert by_key(make_app().sidebar.selectbox, "sb_project").value == DEMO_NAME
    # a remembered project that was deleted since is skipped
    projects.remember_last_project("second", projects_dir)
    projects.delete_project("second", projects_dir)
    assert projects.last_project(projects_dir) is None
    assert by_key(make_app().sidebar.selectbox, "sb_project").value == DEMO_NAME


def test_all_projects_deleted_shows_a_way_back(make_app, projects_dir):
    at = make_app()
    projects.delete_project(DEMO_NAME, projects_dir)
    at.run()
    assert not at.exception
    assert "No project is open" in texts(at)
    next(b for b in at.sidebar.button if b.label == "Restore the banking demo").click()
    at.run()
    assert projects.project_exists(DEMO_NAME, projects_dir)


def test_running_job_is_shown_in_the_sidebar(make_app, demo_store):
    import os

    job = demo_store.create_job("generate", {"per_class": 3}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={"done": 4, "total": 15})
    at = make_app()
    assert any(f"Generation job #{job} is running · Generating 4 / 15 examples" in i.value for i in at.sidebar.info)


def test_a_link_and_delete_go_by_the_exact_project_never_a_look_alike(make_app, projects_dir):
    """Issue 23 item 6: ``?project=beta%20`` opened beta.pmx instead of "beta .pmx", and Delete of
    "café " removed café.pmx."""
    from promptmix_core.demo import demo_task
    from promptmix_core.store import ProjectStore

    projects.ensure_demo(projects_dir)
    projects.create_project("beta", projects_dir).close()  # an empty project: 0 classes
    spaced = ProjectStore(projects_dir / "beta .pmx")  # made outside the app
    spaced.save_task(demo_task())  # 5 classes
    spaced.close()
    at = make_app(project="beta ")
    assert not at.exception, at.exception
    assert by_key(at.sidebar.selectbox, "sb_project").value == "beta "
    assert at.metric[0].value == "5"  # the task of "beta .pmx", not the empty beta.pmx
    by_key(at.sidebar.checkbox, "sb_delete_confirm").check()
    next(b for b in at.sidebar.button if b.label == "Delete project").click()
    at.run()
    assert not at.exception, at.exception
    assert not (projects_dir / "beta .pmx").exists() and (projects_dir / "beta.pmx").is_file()
    # creating a look-alike of an existing name is refused with a reason
    by_key(at.sidebar.text_input, "sb_new_name").input("BETA")
    next(b for b in at.sidebar.button if b.label == "Create project").click()
    at.run()
    assert any("already exists" in e.value for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert sorted(p.name for p in projects.list_projects(projects_dir)) == sorted(["beta", DEMO_NAME])


def test_sidebar_job_line_in_words_and_not_stale_on_its_own_page(make_app, demo_store):
    """The sidebar said "is queued" on the Generate page while the job ran (it did not poll there) and
    the card said "Loading-model...": one status model, in words, on both."""
    import os

    job = demo_store.create_job("generate", {"per_class": 3}, status="running")
    demo_store.update_job(job, pid=os.getpid(), progress={"phase": "loading-model", "done": 0, "total": 0})
    at = make_app()
    assert any(i.value == f"Generation job #{job} is running · Loading the local model" for i in at.sidebar.info)
    at.switch_page("app_pages/2_generate.py").run()
    assert not at.exception
    side = [i.value for i in at.sidebar.info]
    assert f"Generation job #{job} is running: its progress is on this page" in side
    assert "queued" not in " ".join(side)
    bar = at.get("progress")[0].proto.text
    assert bar == "Loading the local model…" and "Loading-model" not in bar
