"""A realistic project for the report's tests: the demo banking task and its 20 pre-written examples,
reviewed by two people, a hand-written test set of real-looking customer messages, and quick
(embed-lr) training runs scored on it. Shared by tests/test_report.py and the browser tests."""

from __future__ import annotations

from pathlib import Path

from promptmix_core.demo import create_demo
from promptmix_core.store import ProjectStore

TEST_SET = [
    ("Please cancel my card, it fell out of my pocket somewhere in town.", "card_lost_or_stolen"),
    ("I can't find my credit card since last night, can you block it?", "card_lost_or_stolen"),
    ("My purse was taken with my bank card inside.", "card_lost_or_stolen"),
    ("Lost my card at the airport, need a replacement sent to my hotel.", "card_lost_or_stolen"),
    ("Someone pickpocketed me and my card is gone.", "card_lost_or_stolen"),
    ("The card machine at the pharmacy said payment declined.", "declined_card_payment"),
    ("Why was my card refused at the petrol station this morning?", "declined_card_payment"),
    ("My online order failed because the card payment was rejected.", "declined_card_payment"),
    ("Card declined at the cinema even though my balance is fine.", "declined_card_payment"),
    ("Every time I try to pay with my card in the app it gets declined.", "declined_card_payment"),
    ("I made a transfer to my friend on Tuesday and she says nothing came through.", "transfer_not_received"),
    ("The money I sent to my other bank has not shown up.", "transfer_not_received"),
    ("My payment to the electricity company has not been received by them.", "transfer_not_received"),
    ("A transfer from my employer is missing from my account.", "transfer_not_received"),
    ("I wired money abroad four days ago and the recipient has not got it.", "transfer_not_received"),
    ("How is the conversion rate decided when I spend in dollars?", "exchange_rate"),
    ("Is the exchange rate different at weekends?", "exchange_rate"),
    ("Why did I get a worse rate than the market rate for my euro payment?", "exchange_rate"),
    ("Which rate do you apply when I withdraw cash in Japan?", "exchange_rate"),
    ("Do you add a fee on top of the currency exchange rate?", "exchange_rate"),
    ("The store said they sent my refund but my balance has not changed.", "refund_not_showing"),
    ("Still waiting for the refund for my cancelled hotel booking.", "refund_not_showing"),
    ("A merchant refunded my purchase a week ago and I can't see it.", "refund_not_showing"),
    ("My refund from the online shop is missing.", "refund_not_showing"),
    ("Where is the refund for the concert tickets I returned?", "refund_not_showing"),
]

# (index into the demo's examples, decision, override class, reviewer)
DECISIONS = [
    (0, "accepted", None, "alice@example.com"),
    (1, "accepted", None, "alice@example.com"),
    (2, "overridden", "card_lost_or_stolen", "alice@example.com"),
    (4, "accepted", None, "alice@example.com"),
    (5, "accepted", None, "bob@example.com"),
    (7, "overridden", "declined_card_payment", "bob@example.com"),
    (8, "accepted", None, "bob@example.com"),
    (9, "rejected", None, "bob@example.com"),
    (12, "accepted", None, "alice@example.com"),
    (14, "overridden", "exchange_rate", "alice@example.com"),
    (16, "accepted", None, "bob@example.com"),
    (18, "rejected", None, "bob@example.com"),
]


def build_report_project(path: Path, *, train: bool = True, test_set: bool = True) -> ProjectStore:
    """The demo project with people's decisions, a test set and (``train``) two quick runs."""
    store = create_demo(path)
    examples = store.list_examples()
    for i, decision, label, who in DECISIONS:
        store.review(examples[i].id, decision, label=label, reviewer=who)
    if test_set:
        store.set_test_set([{"text": t, "label": lab} for t, lab in TEST_SET], name="support-tickets-march.csv")
    if train:
        from promptmix_core.training.jobs import train_job

        for name, source in (("reviewed labels", "reviewed"), ("LLM relabels", "a2")):
            # control=False: runs recorded without a seeds-only control (the report must say so); the
            # control case is built by hand in the tests that need it
            job = store.create_job("train", {"label_source": source, "pending": "a2", "student": "embed-lr", "control": False,
                                             "val_fraction": 0.0, "name": name}, status="running")
            out = train_job(store, store.get_job(job))
            assert out["status"] == "done", out
            store.update_job(job, status="done")
    return store
