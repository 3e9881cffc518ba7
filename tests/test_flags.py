"""Junk flags on crafted texts: pure rules, the off-topic rule with a stand-in embedder, the store's
flag column and bulk rejection, and the generation job's flag step."""

from __future__ import annotations

import numpy as np
import pytest

from promptmix_core import flags
from promptmix_core.flags import FlagConfig, flag_project_examples, flag_summary, flag_texts
from promptmix_core.store import ProjectStore
from promptmix_core.task import normalize_text

NO_EMBED = FlagConfig(check_off_topic=False)


@pytest.mark.parametrize("text", [
    "I give you 5 examples, but you choose only to give 4 sentences.",
    "Here are some examples of a lost card.",
    "Title: Classification of Text by Category",
    "This sentence belongs 70% to the first one.",
    "Sure! My card is gone.",
    "Example 3: my card is gone",
    "As an AI language model I cannot do that.",
    "My card_lost problem again",  # a class identifier no user would type
])
def test_meta_text_is_flagged(small_task, text):
    reason = flag_texts(small_task, [text], config=NO_EMBED)[0]
    assert reason.startswith(flags.META), (text, reason)


@pytest.mark.parametrize("text", [
    "All updates are here, 46.45.28.14.454, you can have them.",
    "12345 6789 !!! ###",
    "$$$ 100 200 300",
    "ok",
])
def test_numbers_and_symbols_are_flagged(small_task, text):
    assert flag_texts(small_task, [text], config=NO_EMBED)[0].startswith(flags.NOISE)


def test_near_copies_of_seeds_are_flagged(small_task):
    got = flag_texts(small_task, ["I lost my card yesterday!", "i LOST my card, yesterday",
                                  "I lost my card at the cinema last night"], config=NO_EMBED)
    assert got[0].startswith(flags.NEAR_COPY) and got[1].startswith(flags.NEAR_COPY)
    assert "I lost my card yesterday" in got[0]
    assert got[2] == ""


def test_real_looking_texts_pass(small_task):
    texts = ["Somebody took my card from my bag on the train", "When does the new card get here?",
             "What rate do you give for dollars to pounds?", "Can I still get my money back for the shoes?",
             "Of course I want a refund, the order never came."]
    assert flag_texts(small_task, texts, config=NO_EMBED) == [""] * len(texts)


def _keyword_embed(words):
    """A stand-in embedder: one axis per keyword (card, rate, refund, pin, top), plus 'other'."""
    axes = ["card", "rate", "refund", "money", "pin", "top", "lost", "arrive"]

    def embed(texts):
        out = []
        for t in texts:
            low = t.lower().replace("_", " ")
            v = np.array([1.0 if w in low else 0.0 for w in axes] + [0.05], dtype="float32")
            out.append(v / np.linalg.norm(v))
        return np.stack(out)

    return embed


def test_texts_far_from_every_class_are_flagged(small_task):
    embed = _keyword_embed(None)
    texts = ["The weather in a small town is sunny.", "my card got lost at the shop", "refund my money please"]
    got = flag_texts(small_task, texts, embed=embed)
    assert got[0].startswith(flags.OFF_TOPIC) and "similarity" in got[0]
    assert got[1] == "" and got[2] == ""
    centroids, seed_sims = flags.class_centroids(small_task, embed)
    assert centroids.shape[0] == len(small_task.classes) and len(seed_sims) == 12
    threshold, median = flags.off_topic_threshold(seed_sims)
    assert 0 < threshold <= FlagConfig().max_similarity and threshold < median


def test_summary_counts_by_reason(small_task):
    reasons = flag_texts(small_task, ["Here are 5 examples:", "1234 5678 90", "I lost my card yesterday",
                                      "Somebody took my card from my bag on the train"], config=NO_EMBED)
    s = flag_summary(reasons)
    assert s["texts"] == 4 and s["flagged"] == 3 and s["share_flagged"] == 0.75
    assert s["by_reason"] == {flags.META: 1, flags.NEAR_COPY: 1, flags.NOISE: 1, flags.OFF_TOPIC: 0}


def _add(store, job, texts, label="card_lost"):
    store.add_examples([{"job_id": job, "slot": f"{label}|0|{i}", "text": t, "norm_text": normalize_text(t),
                         "intended_label": label} for i, t in enumerate(texts)])


def test_store_flags_and_bulk_reject(tmp_path, small_task):
    store = ProjectStore(tmp_path / "p.pmx")
    store.save_task(small_task)
    job = store.create_job("generate", {})
    _add(store, job, ["Here are 5 examples of it", "99.88.77.66.55 1 2", "Somebody took my card from my bag",
                      "I lost my card yesterday!"])
    s = flag_project_examples(store, small_task, job_id=job, config=NO_EMBED)
    assert s["flagged"] == 3
    ex = store.list_examples(job_id=job)
    assert [bool(e.flag) for e in ex] == [True, True, False, True]
    assert all(e.review_status == "pending" and e.label == "card_lost" for e in ex)  # flagged, not hidden
    assert [e.id for e in store.list_examples(flagged=True)] == [ex[0].id, ex[1].id, ex[3].id]
    assert [e.id for e in store.list_examples(flagged=False)] == [ex[2].id]
    counts = store.count_examples(job)
    assert counts["flagged"] == 3 and counts["flagged_pending"] == 3
    store.review(ex[1].id, "accepted")  # a person's decision stands
    assert store.reject_flagged(job_id=job, reviewer="me") == 2
    after = {e.id: e for e in store.list_examples(job_id=job)}
    assert after[ex[0].id].review_status == "rejected" and after[ex[3].id].review_status == "rejected"
    assert after[ex[1].id].review_status == "accepted" and after[ex[2].id].review_status == "pending"
    assert store.count_examples(job)["flagged_pending"] == 0
    rec = after[ex[0].id].to_record()
    assert rec["flag"].startswith(flags.META) and "llm_confidence" in rec
    # flagging again clears what no longer applies
    assert store.set_flags({ex[0].id: ""}) == 1 and store.get_example(ex[0].id).flag == ""


def test_generation_job_flags_its_examples(make_fake_llm, tmp_path, small_task):
    from promptmix_core.pipeline import run_generation_job

    import re

    def responder(body):
        prompt = body["messages"][-1]["content"]
        if "Generate a diverse set" in prompt:
            ci = re.search(r'belongs \d+% to category "([^"]+)"', prompt).group(1)
            if ci == "card_lost":
                return ("1. I give you 5 examples, but you choose only to give 4 sentences.\n"
                        "2. All updates are here, 46.45.28.14.454, you can have them.\n"
                        "3. Somebody stole my wallet with the card inside\n")
            return ("1. The card I ordered has not arrived after two weeks\n"
                    "2. Where is my new card, it should be here by now\n"
                    "3. My replacement card is still not in the post\n")
        return "card_lost"

    fake = make_fake_llm(responder=responder)
    small_task.classes = small_task.classes[:2]
    store = ProjectStore(tmp_path / "p.pmx")
    store.save_task(small_task)
    job_id = store.create_job("generate", {"per_class": 3, "base_url": fake.base_url, "model": "fake-model",
                                           "relabel": False})
    message = run_generation_job(store, store.get_job(job_id))
    assert "flagged" in message and "as probable junk" in message
    examples = store.list_examples(job_id=job_id)
    by_text = {e.text: e.flag for e in examples}
    assert by_text["I give you 5 examples, but you choose only to give 4 sentences."].startswith(flags.META)
    assert by_text["All updates are here, 46.45.28.14.454, you can have them."].startswith(flags.NOISE)
    assert by_text["Somebody stole my wallet with the card inside"] == ""
