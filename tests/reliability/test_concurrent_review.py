"""Two app sessions (or processes) reviewing the same project at once: no decision is lost and none
is silently overwritten. Decisions carry the version they were made on (optimistic locking)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from app_session import card_data, open_app
from rel_helpers import ROOT
from promptmix_core.store import ConflictError, ProjectStore
from promptmix_core.task import normalize_text


def _seed_examples(store: ProjectStore, n: int, job_id: int = 1) -> list[int]:
    store.add_examples(
        {"job_id": job_id, "slot": f"s{i}", "text": f"example number {i}", "norm_text": normalize_text(f"example number {i}"),
         "intended_label": "card_lost" if i % 2 else "refund_request"}
        for i in range(n)
    )
    return [e.id for e in store.list_examples(job_id=job_id)]


def test_stale_decision_is_refused_not_overwritten(project):
    ids = _seed_examples(project, 3)
    alice = ProjectStore(project.path)  # two sessions: two connections to the one file
    bob = ProjectStore(project.path)
    seen_a = alice.get_example(ids[0])
    seen_b = bob.get_example(ids[0])
    assert seen_a.version == seen_b.version == 0

    v = alice.review(ids[0], "accepted", expected_version=seen_a.version, reviewer="alice")
    assert v == 1
    with pytest.raises(ConflictError, match="changed by someone else"):
        bob.review(ids[0], "overridden", label="pin_blocked", expected_version=seen_b.version, reviewer="bob")
    ex = project.get_example(ids[0])
    # an accept keeps the label it accepted (a later relabel never changes it)
    assert (ex.review_status, ex.review_label, ex.reviewed_by, ex.version) == ("accepted", ex.label, "alice", 1)

    # bob reloads, sees alice's decision, and may then change it knowingly
    fresh = bob.get_example(ids[0])
    assert bob.review(ids[0], "overridden", label="pin_blocked", expected_version=fresh.version, reviewer="bob") == 2
    ex = project.get_example(ids[0])
    assert (ex.review_status, ex.review_label, ex.reviewed_by) == ("overridden", "pin_blocked", "bob")


def test_bulk_review_does_not_overwrite_decisions_made_meanwhile(project):
    ids = _seed_examples(project, 6)
    other = ProjectStore(project.path)
    other.review(ids[2], "rejected", expected_version=0)
    n = project.bulk_review(ids, "accepted", only_pending=True)
    assert n == 5
    assert project.get_example(ids[2]).review_status == "rejected"


_REVIEWER = textwrap.dedent("""
    import json, sys
    from promptmix_core.store import ConflictError, ProjectStore
    path, who, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = ProjectStore(path, create=False)
    won, lost = [], []
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for i in ids:
        ex = store.get_example(i)
        try:
            store.review(i, "overridden", label=who, expected_version=ex.version, reviewer=who)
            won.append(i)
        except ConflictError:
            lost.append(i)
    print(json.dumps({"won": won, "lost": lost}), flush=True)
""")


def _run_reviewers(path, assignments: dict[str, list[int]]) -> dict[str, dict]:
    procs = {}
    try:
        for who, ids in assignments.items():
            procs[who] = subprocess.Popen(
                [sys.executable, "-c", _REVIEWER, str(path), who, json.dumps(ids)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT),
            )
        for p in procs.values():
            assert p.stdout.readline().strip() == "ready"
        for p in procs.values():
            p.stdin.write("go\n")
            p.stdin.flush()
        out = {}
        for who, p in procs.items():
            line = p.stdout.readline()
            assert p.wait(timeout=60) == 0
            out[who] = json.loads(line)
        return out
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_two_processes_reviewing_different_examples_both_land(project):
    ids = _seed_examples(project, 300)
    out = _run_reviewers(project.path, {"alice": ids[0::2], "bob": ids[1::2]})
    assert out["alice"]["lost"] == [] and out["bob"]["lost"] == []
    for ex in project.list_examples():
        who = "alice" if ex.id in set(ids[0::2]) else "bob"
        assert (ex.review_status, ex.review_label, ex.reviewed_by, ex.version) == ("overridden", who, who, 1)
    assert project.integrity_ok()


def test_two_processes_racing_on_the_same_examples_never_overwrite_silently(project):
    ids = _seed_examples(project, 200)
    out = _run_reviewers(project.path, {"alice": ids, "bob": list(reversed(ids))})
    won_a, won_b = set(out["alice"]["won"]), set(out["bob"]["won"])
    # every example has exactly one decision per version, and every loser was told
    for ex in project.list_examples():
        winners = [w for w, s in (("alice", won_a), ("bob", won_b)) if ex.id in s]
        assert ex.version == len(winners) >= 1
        # the stored decision is the last one made, and its author knew the version it replaced
        assert ex.reviewed_by in winners and ex.review_label == ex.reviewed_by
    assert len(won_a) + len(out["alice"]["lost"]) == len(ids) == len(won_b) + len(out["bob"]["lost"])
    assert project.integrity_ok()


def test_two_app_sessions_on_the_review_page(tmp_path, monkeypatch):
    """Two browser sessions (AppTest) open the same example; the second decision is refused with a
    message, not written over the first. The sessions speak the review card's protocol (AppTest cannot
    run its JavaScript): each sends its decision with the example's version it loaded and its tab id."""
    pytest.importorskip("streamlit")
    from rel_helpers import tiny_task
    from promptmix_core import projects

    if not (ROOT / "app_pages" / "3_review.py").exists():
        pytest.skip("the Review page is not there yet")
    folder = tmp_path / "projects"
    monkeypatch.setenv(projects.ENV_DIR, str(folder))
    monkeypatch.chdir(tmp_path)
    store = projects.create_project("shared", folder, task=tiny_task())
    ids = _seed_examples(store, 4)
    key = "rv_card::shared"

    def session(tab):
        at = open_app("app_pages/3_review.py", "shared")
        first = card_data(at)["page"]["items"][0]
        return at, first

    def decide(at, tab, ex, action):
        op = {"cid": f"{tab}-1", "id": ex["id"], "action": action, "base": ex["version"], "tab": tab}
        at.session_state[key] = {"sync": {"project": "shared", "uid": card_data(at)["project_uid"], "inst": tab, "tab": tab, "req": 1,
                                          "qid": card_data(at)["qid"], "want": None, "ops": [op]}}
        at.run()
        assert not at.exception, at.exception
        return card_data(at)["acks"][op["cid"]]

    (alice, seen_a), (bob, seen_b) = session("alice"), session("bob")
    assert seen_a["id"] == seen_b["id"] == ids[0] and seen_a["version"] == seen_b["version"] == 0
    assert decide(alice, "alice", seen_a, "accepted")["ok"]
    assert store.get_example(ids[0]).review_status == "accepted"
    res = decide(bob, "bob", seen_b, "rejected")  # bob still sees the version before alice's decision
    assert not res["ok"] and "changed in another tab or by another person" in res["message"]
    ex = store.get_example(ids[0])
    assert (ex.review_status, ex.version) == ("accepted", 1)
