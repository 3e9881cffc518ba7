"""Agreement figures (promptmix_core/agreement.py) against hand-worked values and the libraries."""

from __future__ import annotations

import math

import pytest

from promptmix_core.agreement import agreement, project_agreement


def _votes(table, t0=1000.0, gap=30.0):
    """table: {reviewer: [answer per example or None]} -> votes (answers are classes or "rejected")."""
    out = []
    for r, answers in table.items():
        for i, a in enumerate(answers):
            if a is None:
                continue
            if a == "rejected":
                out.append({"example_id": i, "reviewer": r, "action": "rejected", "label": None, "at": t0 + i * gap})
            else:
                out.append({"example_id": i, "reviewer": r, "action": "overridden", "label": a, "at": t0 + i * gap})
    return out


def test_perfect_agreement():
    table = {"a": ["x", "y", "x", "rejected"], "b": ["x", "y", "x", "rejected"]}
    ag = agreement(_votes(table), {i: {"label": "x"} for i in range(4)})
    assert ag.alpha == pytest.approx(1.0) and ag.alpha_n == 4
    assert ag.pairs == [{"a": "a", "b": "b", "n": 4, "kappa": pytest.approx(1.0), "agree": 1.0}]
    assert all(c["disagree"] == 0 for c in ag.per_class)


def test_kappa_and_alpha_by_hand():
    # 2 raters, 4 items: a = x x y y, b = x y y y. po = 3/4; pe = (2/4*1/4) + (2/4*3/4) = 1/2; kappa = 1/2.
    table = {"a": ["x", "x", "y", "y"], "b": ["x", "y", "y", "y"]}
    ag = agreement(_votes(table), {})
    assert ag.pairs[0]["kappa"] == pytest.approx(0.5)
    assert ag.pairs[0]["agree"] == pytest.approx(0.75)
    # Krippendorff (nominal): n = 8 values, x: 3, y: 5; observed disagreement Do = 2/8 (one split unit,
    # two off-diagonal pairs of 1/(2-1)); expected De = 2*3*5/(8*7) = 30/56; alpha = 1 - Do/De = 1 - 0.25*56/30
    assert ag.alpha == pytest.approx(1 - 0.25 * 56 / 30)
    per = {c["class"]: c for c in ag.per_class}
    assert per["x"]["n"] == 2 and per["x"]["disagree"] == 1 and per["y"]["n"] == 3 and per["y"]["disagree"] == 1


def test_figures_say_how_many_examples_they_rest_on():
    table = {"a": ["x", "y", "x", None], "b": [None, "y", "y", "x"], "c": ["x", None, None, None]}
    ag = agreement(_votes(table), {0: {"llm_label": "x", "judge_label": "y"}, 1: {"llm_label": "y"},
                                   2: {"llm_label": "x"}, 3: {}})
    pairs = {(p["a"], p["b"]): p for p in ag.pairs}
    assert pairs[("a", "b")]["n"] == 2 and pairs[("a", "c")]["n"] == 1 and pairs[("b", "c")]["n"] == 0
    assert pairs[("b", "c")]["kappa"] is None  # no overlap: no figure
    assert pairs[("a", "c")]["kappa"] is None  # one category only: undefined
    assert ag.alpha_n == 3 and ag.multi == 3 and ag.votes == 7 and ag.examples == 4
    rev = {r["reviewer"]: r for r in ag.reviewers}
    assert (rev["a"]["llm_n"], rev["a"]["llm_agree"]) == (3, 1.0)
    assert (rev["b"]["llm_n"], rev["b"]["llm_agree"]) == (2, 0.5)
    assert (rev["a"]["judge_n"], rev["a"]["judge_agree"]) == (1, 0.0)
    assert (rev["b"]["judge_n"], rev["b"]["judge_agree"]) == (0, None)
    assert rev["a"]["decisions"] == 3 and rev["c"]["decisions"] == 1


def test_pace_counts_breaks_out():
    votes = [{"example_id": i, "reviewer": "a", "action": "accepted", "label": None, "at": t}
             for i, t in enumerate([0, 60, 120, 5000, 5060])]  # one long break
    [r] = agreement(votes, {i: {"label": "x"} for i in range(5)}).reviewers
    # 4 gaps, the break counted as 600 s: 4 decisions in (60+60+600+60) s
    assert r["per_hour"] == pytest.approx(4 / (780 / 3600))
    [quick] = agreement(votes[:2][:1], {0: {"label": "x"}}).reviewers
    assert quick["per_hour"] is None


def test_accept_counts_as_the_examples_current_label():
    votes = [{"example_id": 1, "reviewer": "a", "action": "accepted", "label": None, "at": 0},
             {"example_id": 1, "reviewer": "b", "action": "overridden", "label": "x", "at": 1}]
    ag = agreement(votes, {1: {"label": "x"}})
    assert ag.pairs[0]["agree"] == 1.0 and ag.per_class == [{"class": "x", "n": 1, "disagree": 0, "share": 0.0}]


def test_project_agreement_reads_the_store(tmp_path):
    from promptmix_core.demo import create_demo

    store = create_demo(tmp_path / "d.pmx")
    try:
        assert project_agreement(store).votes == 0
        ids = store.matching_ids(review_status="pending")[:2]
        for who in ("a", "b"):
            for i in ids:
                store.review(i, "accepted", reviewer=who)
        ag = project_agreement(store)
        assert ag.votes == 4 and ag.alpha_n == 2 and ag.pairs[0]["agree"] == 1.0
        assert not math.isnan(ag.reviewers[0]["llm_agree"])
    finally:
        store.close()
