#!/usr/bin/env python3
"""Prompts for small instruct models, measured: the bundled SmolLM2-135M generates and relabels
boundary examples for TREC6 and Banking77 (k = 2 seeds) with each prompt variant, and we count the
share of examples flagged as probable junk (``promptmix_core.flags``) and the share of relabels that
agree with the class the example was written for.

Variants (the same seed, the same server, a fresh response cache each):

* ``before``   -- the prompts as they were (copied below), relabel as it was: free-text answer, the
                  candidates in nearest-first order;
* ``relabel``  -- the same generated examples, relabelled the new way: constrained answer (scored by
                  the server), candidate order rotated per example;
* ``tuned``    -- the prompts in ``promptmix_core`` now (``build_generation_prompt``,
                  ``build_classifier_prompt``), relabelled the new way.

    .venv/bin/python benchmarks/prompt_tuning.py [--datasets trec6,banking77] [--per-class 5]
        [--banking-classes 8] [--variants before,relabel,tuned]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import promptmix_core.generate as gen_mod  # noqa: E402
import promptmix_core.relabel as rel_mod  # noqa: E402
from promptmix_core.flags import flag_summary, flag_texts  # noqa: E402
from promptmix_core.generate import GenerationConfig, GenerationFailed, generate  # noqa: E402
from promptmix_core.llm import LLMClient, LLMConfig  # noqa: E402
from promptmix_core.llm.local import LocalServer  # noqa: E402
from promptmix_core.relabel import RelabelConfig, relabel, relabel_summary  # noqa: E402
from promptmix_core.task import load_task  # noqa: E402
from shared_data import DATASETS  # noqa: E402


# ----------------------------------------------------------------------------- the prompts as they were
OLD_SYSTEM = ("You write realistic, varied examples for training a text classifier. "
              "Follow the requested format exactly and write nothing else.")


def old_generation_prompt(task, group, ci, cj, alpha, n, mixup):
    lines = ["Consider the task of classifying text into the following categories. "
             "Each category has a description and some examples.", ""]
    for name in group:
        spec = task.get(name)
        lines.append(f"Category: {spec.name}")
        if spec.description:
            lines.append(f"Description: {spec.description}")
        lines.append("Examples:")
        lines.extend(f"- {ex}" for ex in spec.examples)
        lines.append("")
    if mixup and cj is not None and alpha is not None:
        a = int(round(alpha * 100))
        lines.append(f'Generate a diverse set of {n} short examples where each example belongs {a}% to category '
                     f'"{ci}" and {100 - a}% to category "{cj}".')
    else:
        lines.append(f'Generate a diverse set of {n} short examples that belong to category "{ci}".')
    lines.append(f"Write each example on its own line, numbered 1 to {n}. Write only the examples.")
    return [{"role": "system", "content": OLD_SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


def old_classifier_prompt(task, candidates, text):
    lines = ["Classify the text into one of the following categories.", ""]
    for name in candidates:
        spec = task.get(name)
        lines.append(f"Category: {spec.name}")
        if spec.description:
            lines.append(f"Description: {spec.description}")
        if spec.examples:
            lines.append("Examples:")
            lines.extend(f"- {ex}" for ex in spec.examples)
        lines.append("")
    lines.append(f"Text: {text}")
    lines.append("")
    lines.append("Answer with the category name only, exactly as written above: " + ", ".join(candidates) + ".")
    return [{"role": "system", "content": "You are a careful text classifier. Answer with a category name only."},
            {"role": "user", "content": "\n".join(lines)}]


NEW_GEN, NEW_CLS = gen_mod.build_generation_prompt, rel_mod.build_classifier_prompt


def use_prompts(old: bool) -> None:
    gen_mod.build_generation_prompt = old_generation_prompt if old else NEW_GEN
    rel_mod.build_classifier_prompt = old_classifier_prompt if old else NEW_CLS


def measure(task, examples, llm, relabel_cfg) -> dict:
    t0 = time.perf_counter()
    rel = relabel(task, examples, llm, relabel_cfg)
    s = relabel_summary(rel)
    fl = flag_summary(flag_texts(task, [e.text for e in examples]))
    agree = sum(1 for r in rel if r.status == "agree") / max(1, len(rel))
    return {"examples": len(examples), "flagged": round(fl["share_flagged"], 3), "flags": fl["by_reason"],
            "agree": round(agree, 3), "unparseable": round(s["share_unparseable"], 3),
            "first_listed": None if s["share_first_listed"] is None else round(s["share_first_listed"], 3),
            "mean_candidates": s["mean_candidates"],
            "top_label_share": round(max(s["label_shares"].values()), 3) if s["label_shares"] else None,
            "mean_confidence": None if s["mean_confidence"] is None else round(s["mean_confidence"], 3),
            "relabel_s": round(time.perf_counter() - t0, 1)}


def run_generate(task, per_class, llm) -> list:
    try:
        return generate(task, GenerationConfig(per_class=per_class, seed=0), llm).examples
    except GenerationFailed as exc:  # a shortfall still leaves examples to measure
        return exc.result.examples


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="trec6,banking77")
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--banking-classes", type=int, default=8)
    ap.add_argument("--variants", default="before,relabel,tuned")
    args = ap.parse_args()
    variants = args.variants.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="pmx-prompts-"))
    results = []
    with LocalServer(backend="promptmix") as srv:
        def client(name):
            cfg = LLMConfig(base_url=srv.base_url, model=srv.model, api_key="local", local=True, concurrency=16,
                            timeout=900)
            return LLMClient(cfg, cache_path=tmp / f"{name}.sqlite")

        for ds in args.datasets.split(","):
            task = load_task(DATASETS / ds / "train.csv", k=2, seed=0)
            if ds == "banking77":
                task.classes = task.classes[: args.banking_classes]
            old_examples = None
            for v in variants:
                t0 = time.perf_counter()
                use_prompts(old=v in ("before", "relabel"))
                llm = client(f"{ds}-{'old' if v in ('before', 'relabel') else 'new'}")
                if v in ("before", "relabel"):
                    if old_examples is None:
                        old_examples = run_generate(task, args.per_class, llm)
                    examples = old_examples
                else:
                    examples = run_generate(task, args.per_class, llm)
                cfg = RelabelConfig(constrained=False, logprobs=False, shuffle=False) if v == "before" else RelabelConfig()
                r = {"dataset": ds, "classes": len(task.classes), "variant": v, **measure(task, examples, llm, cfg),
                     "seconds": round(time.perf_counter() - t0, 1)}
                results.append(r)
                print(json.dumps(r), flush=True)
    use_prompts(old=False)
    print("\n| data set | variant | examples | flagged | relabels agreeing with the written-for class | unparseable "
          "| first-listed class picked | largest class share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['dataset']} ({r['classes']} classes) | {r['variant']} | {r['examples']} | {r['flagged']:.0%} | "
              f"{r['agree']:.0%} | {r['unparseable']:.0%} | "
              f"{'-' if r['first_listed'] is None else format(r['first_listed'], '.0%')} | "
              f"{'-' if r['top_label_share'] is None else format(r['top_label_share'], '.0%')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
