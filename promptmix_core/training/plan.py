"""What a training run will really do, said before it starts: the data per class (with warnings)
and the optimisation plan ("100 steps = 50 epochs over 16 examples"). Pure functions, no torch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .config import TrainConfig

UNBALANCED_RATIO = 3.0  # the biggest class at least this many times the smallest: "badly unbalanced"
STUDENTS = {"finetune": "fine-tuned transformer", "embed-lr": "quick student (embeddings + logistic regression)",
            "setfit": "SetFit (contrastive MiniLM + logistic regression, no LLM needed)"}
#: how a finished run of a student other than fine-tuning is named in messages (fine-tuning: its steps)
STUDENT_WORDS = {"embed-lr": "quick student", "setfit": "SetFit student"}
AUTO = "auto"
#: what a training spec's ``student`` may say: a student, or "auto" (:func:`choose_student` decides)
STUDENT_OPTIONS = {AUTO: "the student the measurements pick for this data", **STUDENTS}
#: at most this many training examples per class is "few-shot": SetFit is the default there
FEW_SHOT_PER_CLASS = 32
#: the default SetFit's cap on contrastive steps (setfit's own default draws 2 x 20 pairs per example: 250
#: steps for 100 examples). 100 steps keeps a run plus its seeds-only control within a minute on 2 cores
#: (docs/BENCHMARKS.md); with k = 2 seeds per class (the measured setting) the seeds never reach the cap
SETFIT_MAX_STEPS = 100
#: which training rows make SetFit's contrastive pairs (:mod:`.setfit_student`, ``body_rows``)
SETFIT_BODY_ROWS = {"trusted": "the seeds and reviewed examples; machine-labelled examples train the head only",
                    "all": "every training row (setfit's own way)"}
EVIDENCE = ("docs/RESULTS.md, k = 2 seeds per class, 3 runs: SetFit on the seeds beat fine-tuning on every "
            "data set (SUBJ 70.7 vs 68.6 %, Twitter complaints 67.5 vs 58.7 %, TREC6 43.9 vs 31.6 %, "
            "Banking77-10 88.9 vs 81.7 %, all 77 classes 67.7 vs 36.1 %)")


@dataclass
class StudentChoice:
    """The student a run uses and why (``auto``: picked by :func:`choose_student`, not by the user)."""

    student: str
    reason: str
    auto: bool

    @property
    def title(self) -> str:
        return STUDENTS.get(self.student, self.student)


def choose_student(asked: str, n_train: int, num_labels: int, *, gpu: bool = False) -> StudentChoice:
    """The student for ``n_train`` training rows over ``num_labels`` classes: ``asked`` unless it is
    "auto", else SetFit at few-shot sizes (at most :data:`FEW_SHOT_PER_CLASS` examples per class, where
    it measured best on every data set here) and fine-tuning above that (no measurement here shows
    SetFit ahead there; fine-tuning also keeps its live chart and uses a GPU well)."""
    if asked != AUTO:
        if asked not in STUDENTS:
            raise ValueError(f"student must be one of {', '.join(STUDENT_OPTIONS)} (got {asked!r})")
        return StudentChoice(asked, "chosen in the settings", auto=False)
    per_class = n_train / max(1, num_labels)
    if per_class <= FEW_SHOT_PER_CLASS:
        return StudentChoice("setfit", f"{per_class:.0f} training examples per class is few-shot (at most "
                             f"{FEW_SHOT_PER_CLASS}), where SetFit measured best: {EVIDENCE}", auto=True)
    where = " on the GPU" if gpu else ""
    return StudentChoice("finetune", f"{per_class:.0f} training examples per class is past the few-shot range "
                         f"(at most {FEW_SHOT_PER_CLASS}) where SetFit measured best, so the transformer is "
                         f"fine-tuned{where}", auto=True)


def run_name(label_source: str, student: str, n_generated: int, plan: "TrainPlan | None" = None) -> str:
    """The default name of a run: "seeds only · SetFit student" when no generated example is used,
    else the label source and the student (fine-tuning: its real plan)."""
    if student == "finetune" and plan is not None:
        what = plan.run_name("").lstrip(" ·")
    else:
        what = STUDENT_WORDS.get(student, student)
    if n_generated == 0:
        return f"seeds only · {what}"
    return f"{label_source} · {what}"


def default_label_source(examples: Iterable[Any]) -> str:
    """``"reviewed"`` once any example has a review decision, else ``"a2"`` (the paper's choice)."""
    for ex in examples:
        status = ex.get("review_status") if isinstance(ex, Mapping) else getattr(ex, "review_status", None)
        if status and status != "pending":
            return "reviewed"
    return "a2"


@dataclass
class ClassCounts:
    name: str
    seeds: int
    generated: int
    train: int  # what the run trains on (seeds + generated, after holding out validation)
    val: int = 0

    @property
    def total(self) -> int:
        return self.train + self.val


@dataclass
class DataReport:
    """Training rows per class, and the warnings worth showing before a run starts."""

    classes: list[ClassCounts]
    warnings: list[str] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return sum(c.train for c in self.classes)

    @property
    def n_val(self) -> int:
        return sum(c.val for c in self.classes)

    def table(self) -> list[dict[str, Any]]:
        return [{"class": c.name, "seeds": c.seeds, "generated": c.generated, "train": c.train,
                 "validation": c.val} for c in self.classes]


def data_report(class_names: Sequence[str], seeds_per_class: Mapping[str, int], train_rows: Sequence[Mapping[str, Any]],
                val_rows: Sequence[Mapping[str, Any]] = ()) -> DataReport:
    """Counts per class of the rows a run will use, with warnings: a class with no training data,
    a class with fewer generated examples than its seeds, classes badly unbalanced."""
    seeds = Counter(str(r["label"]) for r in train_rows if r.get("source") == "seed")
    gen = Counter(str(r["label"]) for r in list(train_rows) + list(val_rows) if r.get("source") != "seed")
    train = Counter(str(r["label"]) for r in train_rows)
    val = Counter(str(r["label"]) for r in val_rows)
    classes = [ClassCounts(c, seeds.get(c, 0), gen.get(c, 0), train.get(c, 0), val.get(c, 0)) for c in class_names]
    warnings: list[str] = []
    empty = [c.name for c in classes if c.train == 0]
    if empty:
        warnings.append("No training examples for " + ", ".join(repr(n) for n in empty)
                        + ": the model can never predict " + ("it." if len(empty) == 1 else "them."))
    few = [c for c in classes if c.train and c.generated < max(1, seeds_per_class.get(c.name, 0))]
    if few and not any(c.generated for c in classes):
        warnings.append("No generated examples are in the training data: this run trains on the seeds alone. "
                        "Review generated examples (3 · Review) to add them, or generate more.")
    elif few:
        warnings.append("Fewer generated examples than seeds for "
                        + ", ".join(f"{c.name!r} ({c.generated} generated, {seeds_per_class.get(c.name, 0)} seeds)"
                                    for c in few)
                        + ": review the examples of these classes (3 · Review), or generate more for them.")
    sizes = [c.train for c in classes if c.train]
    if len(sizes) >= 2 and max(sizes) >= UNBALANCED_RATIO * min(sizes):
        big = max(classes, key=lambda c: c.train)
        small = min((c for c in classes if c.train), key=lambda c: c.train)
        warnings.append(f"The classes are badly unbalanced: {big.name!r} has {big.train} training examples, "
                        f"{small.name!r} only {small.train} ({big.train / small.train:.1f}x).")
    return DataReport(classes, warnings)


@dataclass
class TrainPlan:
    """The real plan of a fine-tuning run (``min_steps`` and ``max_steps`` applied, never hidden)."""

    n_examples: int
    batch_size: int
    epochs_asked: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    learning_rate: float
    learning_rate_auto: bool
    min_steps: int
    max_steps: int | None
    world_size: int = 1

    @property
    def raised_by_min_steps(self) -> bool:
        return self.epochs > self.epochs_asked

    @property
    def capped_by_max_steps(self) -> bool:
        return self.max_steps is not None and self.total_steps < self.epochs_asked * self.steps_per_epoch

    @property
    def epochs_exact(self) -> float:
        """Passes over the data, fractional when ``max_steps`` cuts the last epoch short."""
        return self.total_steps / self.steps_per_epoch if self.steps_per_epoch else 0.0

    def headline(self) -> str:
        """e.g. "100 steps = 50 epochs over 16 examples"."""
        ep = self.epochs_exact
        ep_txt = f"{ep:g}" if ep == int(ep) else f"{ep:.1f}"
        return (f"{self.total_steps} step{'' if self.total_steps == 1 else 's'} = {ep_txt} "
                f"epoch{'' if ep == 1 else 's'} over {self.n_examples} example{'' if self.n_examples == 1 else 's'}")

    def details(self) -> str:
        lr = f"{self.learning_rate:g}" + (" (auto)" if self.learning_rate_auto else "")
        return (f"batch {self.batch_size}, {self.steps_per_epoch} step{'' if self.steps_per_epoch == 1 else 's'} "
                f"per epoch, learning rate {lr}")

    def notes(self) -> list[str]:
        out = []
        if self.raised_by_min_steps:
            out.append(f"Minimum steps {self.min_steps} raises the {self.epochs_asked} epoch"
                       f"{'' if self.epochs_asked == 1 else 's'} you asked for to {self.epochs} "
                       f"(an epoch is only {self.steps_per_epoch} step{'' if self.steps_per_epoch == 1 else 's'}). "
                       "Set Minimum steps to 0 to train exactly the epochs you asked for.")
        if self.capped_by_max_steps:
            out.append(f"Stopping after {self.max_steps} steps cuts the run to {self.epochs_exact:.1f} epochs.")
        return out

    def run_name(self, label_source: str) -> str:
        """The default run name: the label source and the real plan, e.g. "reviewed · 100 steps = 50 epochs"."""
        ep = self.epochs_exact
        ep_txt = f"{ep:g}" if ep == int(ep) else f"{ep:.1f}"
        return f"{label_source} · {self.total_steps} steps = {ep_txt} epoch{'' if ep == 1 else 's'}"


def train_plan(cfg: TrainConfig, n_examples: int, num_labels: int, world_size: int = 1) -> TrainPlan:
    """The plan :func:`.trainer.train` will follow for ``n_examples`` training rows (same arithmetic:
    :meth:`TrainConfig.plan`)."""
    epochs, per_epoch, total = cfg.plan(max(1, n_examples), world_size)
    lr = cfg.resolved(num_labels).learning_rate
    return TrainPlan(n_examples=n_examples, batch_size=cfg.batch_size, epochs_asked=cfg.epochs, epochs=epochs,
                     steps_per_epoch=per_epoch, total_steps=total, learning_rate=float(lr),
                     learning_rate_auto=cfg.learning_rate is None, min_steps=cfg.min_steps,
                     max_steps=cfg.max_steps, world_size=world_size)


__all__ = ["AUTO", "FEW_SHOT_PER_CLASS", "STUDENTS", "STUDENT_OPTIONS", "STUDENT_WORDS", "StudentChoice", "choose_student", "run_name", "ClassCounts", "DataReport", "TrainPlan", "data_report", "default_label_source", "train_plan"]
