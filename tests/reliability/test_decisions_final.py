"""Round three, items 2, 3 and 4: a person's decision is final until a person changes it. A relabel or a
flag after a decision is kept as a suggestion (the decided label and the export stay; the version moves
on); crafted card operations (no ``base``, another tab's logged id, an undo of another tab's decision)
and operations made on another project of the same name are refused as conflicts, nothing written."""

from __future__ import annotations

import sqlite3

from promptmix_core import projects
from promptmix_core.export import curated_records
from promptmix_core.pipeline import run_relabel_job


def _generated(project) -> int:
    """12 generated examples, not relabelled yet (as a generation job without relabel leaves them)."""
    from promptmix_core.task import normalize_text

    job = project.create_job("generate", {"per_class": 3, "relabel": False}, status="done")
    rows = []
    for cls in project.load_task().class_names:
        for i in range(3):
            text = f"about {cls.replace('_', ' ')}, case {i}"
            rows.append({"job_id": job, "slot": f"{cls}|{i}", "text": text, "norm_text": normalize_text(text),
                         "intended_label": cls})
    project.add_examples(rows)
    return job


def _exported(project) -> dict[str, str]:
    rows = curated_records(project.load_task(), project.export_rows(), label_source="reviewed", pending="drop",
                           include_seeds=False)
    return {r["text"]: r["label"] for r in rows}


def test_a_relabel_never_changes_what_a_person_accepted(make_fake_llm, project, fast_backoff):
    """The issue's break: accept examples (the card says "saved as X"), then run a relabel over the job:
    15 of 20 accepted examples exported with another label, version unchanged."""
    fake = make_fake_llm(classify=lambda text, cats: cats[-1])  # the relabel disagrees with most
    job = _generated(project)
    examples = project.list_examples(job_id=job)
    assert len(examples) == 12
    accepted = {e.text: e.label for e in examples[:8]}
    res = project.apply_review_batch([{"cid": f"a{e.id}", "id": e.id, "action": "accepted", "base": e.version}
                                      for e in examples[:8]], tab="T1")
    assert all(r["ok"] for r in res.values())
    versions = {e.id: e.version for e in project.list_examples(job_id=job)}
    rel = project.create_job("relabel", {"source_job": job, "llm": {"base_url": fake.base_url, "model": "fake-model"}})
    run_relabel_job(project, project.get_job(rel))
    after = {e.text: e for e in project.list_examples(job_id=job)}
    changed = [t for t in accepted if after[t].llm_label != accepted[t]]
    assert changed, "the relabel should disagree with some accepted labels for this test to mean anything"
    for text, label in accepted.items():
        e = after[text]
        assert (e.review_status, e.label, e.final_label) == ("accepted", label, label)
        assert e.relabel_status in ("agree", "changed") and e.llm_label  # the suggestion is kept and shown
        assert e.version == versions[e.id] + 1  # a change: the version moved on
    assert {t: lab for t, lab in _exported(project).items() if t in accepted} == accepted
    # pending examples still follow the chosen judge's suggestion (the LLM relabel or the embedding judge,
    # whichever the relabel step picked for this endpoint and recorded in the project)
    import json

    from promptmix_core.judge import LABEL_SOURCE_META, LabelSource, chosen_label

    choice = LabelSource.from_dict(json.loads(project.get_meta(LABEL_SOURCE_META) or "{}"))
    assert choice is not None
    pending = [e for e in after.values() if e.review_status == "pending"]
    assert pending and all(
        e.label == chosen_label(choice.source, e.judge_label, e.llm_label, e.intended_label)[0] for e in pending)


def test_a_decision_made_before_a_relabel_is_refused_as_a_conflict(project, task):
    from promptmix_core.task import normalize_text

    job = project.create_job("generate", {"per_class": 1}, status="done")
    project.add_examples([{"job_id": job, "slot": "s1", "text": "my card is gone", "norm_text":
                           normalize_text("my card is gone"), "intended_label": "card_lost"}])
    ex = project.list_examples()[0]
    assert project.apply_review_batch([{"cid": "d1", "id": ex.id, "action": "accepted", "base": 0}], tab="T1")["d1"]["ok"]
    project.set_relabel(ex.id, llm_label="pin_blocked", status="changed")
    project.set_flags({ex.id: "junk"})
    got = project.get_example(ex.id)
    assert (got.label, got.review_label, got.version) == ("card_lost", "card_lost", 3)
    # the same tab, still on version 0, changing its mind: the example changed meanwhile
    res = project.apply_review_batch([{"cid": "d2", "id": ex.id, "action": "rejected", "base": 0}], tab="T1")["d2"]
    assert res["conflict"] and project.get_example(ex.id).review_status == "accepted"
    assert project.apply_review_batch([{"cid": "d3", "id": ex.id, "action": "rejected", "base": 3}],
                                      tab="T1")["d3"]["ok"]


def _two_examples(project):
    from promptmix_core.task import normalize_text

    job = project.create_job("generate", {"per_class": 1}, status="done")
    project.add_examples([{"job_id": job, "slot": f"s{i}", "text": t, "norm_text": normalize_text(t),
                           "intended_label": "card_lost"} for i, t in enumerate(["card gone", "card stolen"])])
    return project.list_examples()


def test_crafted_operations_are_refused_as_conflicts(project):
    """Item 4: a decision with no ``base``, one naming another tab's id as read from the review log, and an
    undo of another tab's decision overwrite nothing."""
    a, b = _two_examples(project)
    assert project.apply_review_batch([{"cid": "v1", "id": a.id, "action": "accepted", "base": 0},
                                       {"cid": "v2", "id": b.id, "action": "accepted", "base": 0}],
                                      tab="victim-tab-secret")["v1"]["ok"]
    # no base: refused, whatever the tab
    res = project.apply_review_batch([{"cid": "x1", "id": a.id, "action": "rejected"}], tab="attacker")["x1"]
    assert not res["ok"] and res["conflict"]
    res = project.apply_review_batch([{"cid": "x1b", "id": a.id, "action": "rejected", "base": "junk"}],
                                     tab="attacker")["x1b"]
    assert not res["ok"] and res["conflict"]
    # the victim's tab as the review log holds it: acting as that id is acting as another tab
    conn = sqlite3.connect(project.path)
    logged = {r[0] for r in conn.execute("SELECT tab FROM review_log")}
    conn.close()
    assert logged and "victim-tab-secret" not in logged
    for i, tab in enumerate(logged):
        res = project.apply_review_batch([{"cid": f"x2{i}", "id": a.id, "action": "rejected", "base": 0}],
                                         tab=tab)[f"x2{i}"]
        assert not res["ok"] and res["conflict"]
        res = project.apply_review_batch([{"cid": f"x3{i}", "undo": "v2"}], tab=tab)[f"x3{i}"]
        assert not res["ok"] and res["conflict"]
    res = project.apply_review_batch([{"cid": "x4", "undo": "v1"}], tab="attacker")["x4"]
    assert not res["ok"] and res["conflict"]
    assert [(e.review_status, e.version) for e in project.list_examples()] == [("accepted", 1), ("accepted", 1)]
    # the victim's own tab still decides and undoes
    assert project.apply_review_batch([{"cid": "v3", "undo": "v1"}], tab="victim-tab-secret")["v3"]["ok"]
    assert [h["unit"] for h in project.review_history("victim-tab-secret")] == ["v2"]


def test_an_outbox_made_on_another_project_of_the_same_name_is_refused(tmp_path, task):
    """Item 3 (the store's side): decisions made on a project that was deleted and made again under the
    same name carry the old project's identity; the new project refuses them, nothing written."""
    first = projects.create_project("shared", tmp_path, task=task)
    old_uid = first.project_uid
    first.close()
    projects.delete_project("shared", tmp_path)
    store = projects.create_project("shared", tmp_path, task=task)
    assert store.project_uid and store.project_uid != old_uid
    a, b = _two_examples(store)
    res = store.apply_review_batch([{"cid": "o1", "id": a.id, "action": "rejected", "base": 0}], tab="T",
                                   project_uid=old_uid)["o1"]
    assert not res["ok"] and res["conflict"] and res["wrong_project"]
    res = store.apply_review_batch([{"cid": "o2", "id": b.id, "action": "rejected", "base": 0, "project_uid": old_uid}],
                                   tab="T")["o2"]
    assert not res["ok"] and res["wrong_project"]
    assert [e.review_status for e in store.list_examples()] == ["pending", "pending"]
    ok = store.apply_review_batch([{"cid": "o3", "id": a.id, "action": "rejected", "base": 0}], tab="T",
                                  project_uid=store.project_uid)["o3"]
    assert ok["ok"]
    store.close()
