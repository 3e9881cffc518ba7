"""A run whose rows cannot be recorded (a full disk, any error) ends failed with the reason, never
"queued" for ever (issue 18)."""

from __future__ import annotations

import pytest

from promptmix_core.errors import StoreFullError
from promptmix_core.store import ProjectStore
from promptmix_core.task import ClassSpec, Task
from promptmix_core.training.jobs import train_job


class _FullWhenRecordingRows(ProjectStore):
    """A real project whose disk "fills up" exactly when a run records the rows it uses."""

    def record_run_examples(self, run_id, split, rows):
        raise StoreFullError("the disk holding /x is full: p.pmx could not be written")


def test_a_run_whose_rows_cannot_be_recorded_is_marked_failed(tmp_path, row_maker):
    store = _FullWhenRecordingRows(tmp_path / "p.pmx")
    seeds = row_maker(3, seed=5, classes=("sport", "food"))
    store.save_task(Task("tiny", [ClassSpec(lab, f"about {lab}", [r["text"] for r in seeds if r["label"] == lab])
                                  for lab in ("sport", "food")]))
    job = store.create_job("train", {"label_source": "a1", "val_fraction": 0.0, "student": "embed-lr",
                                     "use_test_set": False}, status="running")
    with pytest.raises(StoreFullError):
        train_job(store, store.get_job(job))
    (run,) = store.list_runs()
    assert run.status == "failed"
    assert "disk holding /x is full" in run.error and run.finished_at is not None
