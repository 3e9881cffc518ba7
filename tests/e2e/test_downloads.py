"""Downloads on the Results page hold across reruns (issue 23, item 12): about 3 of 25 clicks on the
model zip, JSONL and Parquet buttons gave no file and no message while the server logged
``MediaFileStorageError: Deferred file ... not found`` (a deferred download's id changes on every
rerun and the old one is dropped when the rerun ends). Here 24 clicks, each right after a rerun was
started, all give a whole file."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from e2e_helpers import wait_idle
from playwright.sync_api import expect

from promptmix_core.paths import run_model_dir
from promptmix_core.store import ProjectStore
from synthetic_review import make_review_project

pytestmark = pytest.mark.browser


def _project_with_model(folder) -> str:
    name = "downloads"
    path = folder / f"{name}.pmx"
    store = make_review_project(path, 12, seed=5)
    run = store.create_run({"student": "finetune"}, name="first", method="finetune")
    model = run_model_dir(path, run)
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(300_000))
    (model / "config.json").write_text(json.dumps({"id2label": {"0": "a"}}), "utf-8")
    store.update_run(run, status="done", model_dir=str(model),
                     final_metrics={"accuracy": 0.8, "macro_f1": 0.75, "n_train": 12})
    store.close()
    return name


def test_download_clicks_between_reruns_all_give_a_file(app_server, page, tmp_path):
    name = _project_with_model(app_server.projects_dir)
    page.goto(f"{app_server.url}/results?project={name}")
    wait_idle(page)
    main = page.locator("[data-testid='stMain']")
    buttons = {
        "zip": main.locator("[data-testid='stDownloadButton'] button").filter(has_text="Model (zip)"),
        "jsonl": main.locator("[data-testid='stDownloadButton'] button").filter(has_text="JSONL"),
        "parquet": main.locator("[data-testid='stDownloadButton'] button").filter(has_text="Parquet"),
    }
    for b in buttons.values():
        expect(b).to_be_visible(timeout=30_000)
    text = main.get_by_role("textbox", name="Text", exact=True)
    got: dict[str, int] = {k: 0 for k in buttons}
    failures = []
    for i in range(24):
        kind = list(buttons)[i % 3]
        # start a rerun (a text typed in "Try the model" and left), then click while it runs
        text.fill(f"rerun {i}")
        text.blur()
        try:
            with page.expect_download(timeout=10_000) as dl:
                buttons[kind].click()
            path = dl.value.path()
            data = open(path, "rb").read()
        except Exception as exc:  # noqa: BLE001 - counted, reported below
            failures.append((i, kind, repr(exc)[:200]))
            wait_idle(page)
            continue
        if kind == "zip":
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
            assert any(n.endswith("model.safetensors") for n in names), names
        elif kind == "jsonl":
            rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
            assert rows and all("text" in r and "label" in r for r in rows)
        else:
            assert data[:4] == b"PAR1" and data[-4:] == b"PAR1"
        got[kind] += 1
        wait_idle(page)
    log = app_server.log.read_text("utf-8", errors="replace") if app_server.log.exists() else ""
    assert not failures, (failures, log[-2000:])
    assert got == {"zip": 8, "jsonl": 8, "parquet": 8}
    assert "Deferred file" not in log and "MediaFileStorageError" not in log
    # the store is untouched by downloads
    store = ProjectStore(app_server.projects_dir / f"{name}.pmx", create=False)
    assert store.list_runs()[0].status == "done"
    store.close()
