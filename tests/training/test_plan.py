"""The plan shown before a run is the one it follows; per-class counts and their warnings."""

from __future__ import annotations

from promptmix_core.training import TrainConfig
from promptmix_core.training.plan import data_report, default_label_source, train_plan


def test_plan_says_what_min_steps_does():
    plan = train_plan(TrainConfig(epochs=5, batch_size=8, min_steps=100), 16, num_labels=4)
    assert plan.headline() == "100 steps = 50 epochs over 16 examples"
    assert plan.details() == "batch 8, 2 steps per epoch, learning rate 4e-05 (auto)"
    assert plan.raised_by_min_steps and "raises the 5 epochs you asked for to 50" in plan.notes()[0]
    assert plan.run_name("reviewed") == "reviewed · 100 steps = 50 epochs"
    # the trainer follows exactly this plan
    assert (plan.epochs, plan.steps_per_epoch, plan.total_steps) == TrainConfig(epochs=5, min_steps=100).plan(16)
    exact = train_plan(TrainConfig(epochs=5, batch_size=8, min_steps=0, learning_rate=5e-5), 16, num_labels=4)
    assert exact.headline() == "10 steps = 5 epochs over 16 examples" and not exact.notes()
    assert exact.details().endswith("learning rate 5e-05")
    capped = train_plan(TrainConfig(epochs=5, batch_size=8, min_steps=0, max_steps=3), 16, num_labels=77)
    assert capped.headline() == "3 steps = 1.5 epochs over 16 examples"
    assert "cuts the run to 1.5 epochs" in capped.notes()[0] and "6e-05" in capped.details()


def test_data_report_counts_and_warnings():
    seeds = [{"text": f"s{c}{i}", "label": c, "source": "seed"} for c in "abc" for i in range(2)]
    gen = ([{"text": f"a{i}", "label": "a", "source": "generated"} for i in range(12)]
           + [{"text": "b0", "label": "b", "source": "generated"}])
    val = [{"text": "av", "label": "a", "source": "generated"}]
    rep = data_report(["a", "b", "c", "d"], {"a": 2, "b": 2, "c": 2, "d": 2}, seeds + gen, val)
    assert rep.table()[0] == {"class": "a", "seeds": 2, "generated": 13, "train": 14, "validation": 1}
    assert rep.n_train == 19 and rep.n_val == 1
    text = "\n".join(rep.warnings)
    assert "No training examples for 'd'" in text
    assert "Fewer generated examples than seeds for 'b' (1 generated, 2 seeds), 'c' (0 generated, 2 seeds)" in text
    assert "badly unbalanced: 'a' has 14 training examples, 'c' only 2 (7.0x)" in text
    ok = data_report(["a", "b"], {"a": 2, "b": 2}, seeds[:4] + [{"text": f"{c}{i}", "label": c, "source": "generated"}
                                                                for c in "ab" for i in range(3)])
    assert ok.warnings == []
    none = data_report(["a", "b"], {"a": 2, "b": 2}, seeds[:4])  # the curation left every generated one out
    assert none.warnings == ["No generated examples are in the training data: this run trains on the seeds alone. "
                             "Review generated examples (3 · Review) to add them, or generate more."]


def test_default_label_source_follows_the_review():
    assert default_label_source([{"review_status": "pending"}]) == "a2"
    assert default_label_source([{"review_status": "pending"}, {"review_status": "rejected"}]) == "reviewed"
    assert default_label_source([]) == "a2"
