"""The built-in demo project: a small banking-support task, created on the app's first start.

Five classes with one-sentence descriptions and two seed examples each, plus a handful of
pre-written borderline examples (already "relabelled") so the Review, Train and Results pages
show a complete walk-through before any LLM is configured. The pre-written examples are marked
as such in their provenance (model ``demo (pre-written)``); nothing here calls an LLM.
"""

from __future__ import annotations

from pathlib import Path

from .lifecycle import JobLifecycle
from .generate import GenerationConfig
from .specs import GenerationSpec, LLMSpec
from .store import ProjectStore
from .task import ClassSpec, Task, normalize_text

DEMO_NAME = "Banking support demo"
DEMO_MODEL = "demo (pre-written)"

DEMO_TASK = Task(
    name="Banking support",
    classes=[
        ClassSpec(
            name="card_lost_or_stolen",
            description="The customer's card is lost, stolen or missing and they want it blocked or replaced.",
            examples=[
                "I think someone stole my card on the train this morning, please freeze it.",
                "My debit card is gone and I can't find it anywhere. How do I get a new one?",
            ],
        ),
        ClassSpec(
            name="declined_card_payment",
            description="A card payment in a shop or online was declined and the customer wants to know why.",
            examples=[
                "The supermarket till said my card was declined even though I have money in my account.",
                "Why does my card keep getting rejected when I try to pay online?",
            ],
        ),
        ClassSpec(
            name="transfer_not_received",
            description="A bank transfer the customer sent or expects has not arrived in the receiving account.",
            examples=[
                "I sent money to my landlord three days ago and he still hasn't received it.",
                "My salary transfer was supposed to arrive on Friday but nothing is in my account.",
            ],
        ),
        ClassSpec(
            name="exchange_rate",
            description="Questions about the exchange rate applied to a payment or how currency conversion works.",
            examples=[
                "What exchange rate do you use when I pay in euros abroad?",
                "The rate I got for converting dollars was much worse than the one on Google.",
            ],
        ),
        ClassSpec(
            name="refund_not_showing",
            description="A merchant promised a refund but it has not appeared on the customer's account yet.",
            examples=[
                "The shop says they refunded me last week but I don't see the money.",
                "I returned a jacket online and the refund still isn't showing up.",
            ],
        ),
    ],
)

# (text, intended class, class mixed in, alpha, LLM relabel)
DEMO_EXAMPLES: list[tuple[str, str, str, float, str]] = [
    ("I can't find my card and a payment I didn't make was just declined at a petrol station.",
     "card_lost_or_stolen", "declined_card_payment", 0.8, "card_lost_or_stolen"),
    ("My wallet was stolen yesterday; please block the card before anyone uses it.",
     "card_lost_or_stolen", "transfer_not_received", 0.95, "card_lost_or_stolen"),
    ("I lost my card abroad, and I'd like to know what rate I'll be charged for the emergency cash.",
     "card_lost_or_stolen", "exchange_rate", 0.6, "exchange_rate"),
    ("Someone took my card from my bag, and the refund from last week hasn't arrived either.",
     "card_lost_or_stolen", "refund_not_showing", 0.85, "card_lost_or_stolen"),
    ("My card was declined at the hotel and now I'm worried it's been cloned.",
     "declined_card_payment", "card_lost_or_stolen", 0.8, "declined_card_payment"),
    ("Online checkout keeps declining my card when I pay in dollars.",
     "declined_card_payment", "exchange_rate", 0.85, "declined_card_payment"),
    ("The restaurant terminal rejected my card twice tonight. What is going on?",
     "declined_card_payment", "transfer_not_received", 0.9, "declined_card_payment"),
    ("My card got declined, which is odd since the shop's refund should have topped up my balance.",
     "declined_card_payment", "refund_not_showing", 0.65, "refund_not_showing"),
    ("I transferred rent to my flatmate on Monday and it hasn't reached her, and my card was declined too.",
     "transfer_not_received", "declined_card_payment", 0.8, "transfer_not_received"),
    ("The international transfer I sent to my sister in Spain has not arrived; did the conversion fail?",
     "transfer_not_received", "exchange_rate", 0.85, "transfer_not_received"),
    ("Money I moved from my savings account two days ago still isn't in my current account.",
     "transfer_not_received", "refund_not_showing", 0.95, "transfer_not_received"),
    ("The payment I'm expecting from the seller is missing; they say it's a refund but I can't see it.",
     "transfer_not_received", "refund_not_showing", 0.6, "refund_not_showing"),
    ("Why did my card payment in yen cost so much more than the rate shown in the app?",
     "exchange_rate", "declined_card_payment", 0.9, "exchange_rate"),
    ("When I send pounds to a euro account, which exchange rate is applied and when?",
     "exchange_rate", "transfer_not_received", 0.85, "exchange_rate"),
    ("My refund came back in a different currency and the amount is lower. Which rate did you use?",
     "exchange_rate", "refund_not_showing", 0.7, "refund_not_showing"),
    ("Is there a markup on the weekend exchange rate for card payments?",
     "exchange_rate", "card_lost_or_stolen", 1.0, "exchange_rate"),
    ("The airline cancelled my flight and promised a refund ten days ago, but there's nothing yet.",
     "refund_not_showing", "transfer_not_received", 0.9, "refund_not_showing"),
    ("A store refunded me in euros but my account still shows no credit.",
     "refund_not_showing", "exchange_rate", 0.85, "refund_not_showing"),
    ("I returned the shoes and the refund isn't there, and now my card is being declined.",
     "refund_not_showing", "declined_card_payment", 0.65, "declined_card_payment"),
    ("The refund for the order I cancelled hasn't appeared; I also reported my old card as stolen.",
     "refund_not_showing", "card_lost_or_stolen", 0.9, "refund_not_showing"),
]


def demo_task() -> Task:
    """A fresh copy of the demo task."""
    return Task.from_dict(DEMO_TASK.to_dict())


def create_demo(path: str | Path, *, with_examples: bool = True) -> ProjectStore:
    """Create the demo project at ``path`` (a new ``.pmx`` file)."""
    store = ProjectStore(path, create=True)
    store.save_task(demo_task())
    if with_examples:
        life = JobLifecycle.create(
            store, "generate",
            GenerationSpec(generation=GenerationConfig(per_class=4, mixup=True), demo=True, relabel=True,
                           llm=LLMSpec(model=DEMO_MODEL)).to_dict(),
        )
        job_id = life.job_id
        store.add_examples(
            {
                "job_id": job_id,
                "slot": f"demo-{i}",
                "text": text,
                "norm_text": normalize_text(text),
                "intended_label": intended,
                "mixed_with": mixed,
                "alpha": alpha,
                "mixup": True,
                "model": DEMO_MODEL,
                "endpoint": "none",
            }
            for i, (text, intended, mixed, alpha, _) in enumerate(DEMO_EXAMPLES)
        )
        by_text = {e.text: e for e in store.list_examples(job_id=job_id)}
        for text, intended, _mixed, _alpha, llm in DEMO_EXAMPLES:
            ex = by_text[text]
            store.set_relabel(ex.id, llm_label=llm, status="agree" if llm == intended else "changed", raw=llm)
        n = len(DEMO_EXAMPLES)
        life.done(f"{n} pre-written demo examples (no LLM was called); generate more on this page",
                  {"phase": "relabel", "done": n, "total": n, "calls": 0, "cache_hits": 0, "retries": 0,
                   "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None, "kept": n})
    return store


__all__ = ["DEMO_EXAMPLES", "DEMO_MODEL", "DEMO_NAME", "DEMO_TASK", "create_demo", "demo_task"]
