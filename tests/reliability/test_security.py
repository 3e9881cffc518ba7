"""Security: API keys never reach the store, logs, exports, messages or command lines; CSV exports
are formula-safe; models load only from safetensors; paths are checked; the app binds to 127.0.0.1."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rel_helpers import ROOT, kill_and_reap, run_cli, wait_for
from promptmix_core import jobs
from promptmix_core.store import JOB_FINAL, ProjectStore, scrub_secrets
from promptmix_core.task import save_task

KEY = "sk-test-SECRET-4f9a8b7c6d5e4f3a2b1c"
WRONG = "tok_WRONGSECRET_0a1b2c3d4e5f6a7b"  # not "sk-" shaped: scrubbing must not rely on the pattern


def _all_bytes_under(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_no_secret(blobs: dict, *secrets: str) -> None:
    for s in secrets:
        for needle in {s, s[6:-4]}:  # the whole key and its distinctive middle
            for where, data in blobs.items():
                raw = data if isinstance(data, bytes) else str(data).encode()
                assert needle.encode() not in raw, f"secret found in {where}"
                assert needle.encode("utf-16-le") not in raw, f"secret (UTF-16) found in {where}"


def _final(store, job_id, timeout=180):
    return wait_for(lambda: (j := store.get_job(job_id)) and j.status in JOB_FINAL and j, timeout, 0.1,
                    f"job {job_id}")


def test_api_key_never_written_to_store_logs_or_exports(make_fake_llm, project, workers, tmp_path):
    from promptmix_core import export

    fake = make_fake_llm(api_key=KEY, latency=0.1)
    cfg = {"base_url": fake.base_url, "model": "fake-model", "per_class": 4, "concurrency": 2, "timeout": 5}

    # a job with the right key, through a real detached worker process
    ok_job = jobs.start_job(project.path, "generate", {**cfg, "relabel": False}, api_key=KEY)
    pid = project.get_job(ok_job).pid
    workers.append(pid)
    try:  # the key is not on the worker's command line
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert KEY.encode() not in cmdline
    except FileNotFoundError:
        pass
    assert _final(project, ok_job).status == "done"

    # a job with a wrong key fails with a clear message that does not repeat either key
    bad_job = jobs.start_job(project.path, "relabel", {**cfg, "source_job": ok_job}, api_key=WRONG)
    workers.append(project.get_job(bad_job).pid)
    failed = _final(project, bad_job)
    assert failed.status == "failed" and "refused the API key" in failed.message

    # the relabel again, with the right key; then everything the project wrote is searched
    again = jobs.start_job(project.path, "relabel", {**cfg, "source_job": ok_job}, api_key=KEY)
    workers.append(project.get_job(again).pid)
    assert _final(project, again).status == "done"
    assert project.count_examples()["relabelled"] == 16
    project.save_settings({"base_url": fake.base_url, "api_key": KEY, "model": "fake-model"})
    assert "api_key" not in project.get_settings()

    records = export.curated_records(project.load_task(), project.list_examples(), label_source="a2")
    job_rows = [json.dumps([j.config, j.progress, j.message]) for j in project.list_jobs()]
    project.close()  # every worker has exited; read the raw files only with no SQLite handle open here
    blobs: dict = _all_bytes_under(tmp_path)  # project file, -wal, -shm, PROJECT.pmx.logs/, caches
    assert any(p.name.endswith(".pmx-wal") or p.suffix == ".pmx" for p in blobs)
    assert any(".logs" in str(p) for p in blobs), "the job logs were written"
    for fmt in ("csv", "jsonl", "parquet"):
        blobs[f"export.{fmt}"] = export.dataset_bytes(records, fmt)
    for i, row in enumerate(job_rows):
        blobs[f"job row {i}"] = row
    _assert_no_secret(blobs, KEY, WRONG)


def test_cli_never_prints_or_stores_the_key(make_fake_llm, tmp_path, task):
    fake = make_fake_llm(api_key=KEY)
    save_task(task, tmp_path / "task.json")
    common = ["generate", str(tmp_path / "task.json"), "--per-class", "3", "--base-url", fake.base_url,
              "--model", "fake-model", "--project", str(tmp_path / "cli.pmx"), "--relabel"]
    ok = run_cli(*common, "--out", str(tmp_path / "ok.jsonl"),
                 env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url,  # the key's own endpoint
                      "PROMPTMIX_CACHE": str(tmp_path / "c.sqlite")})
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(*common, "--out", str(tmp_path / "bad.jsonl"), "--seed", "5",
                  env={"OPENAI_API_KEY": WRONG, "OPENAI_BASE_URL": fake.base_url,
                       "PROMPTMIX_CACHE": str(tmp_path / "c.sqlite")})
    assert bad.returncode == 1 and "refused the API key" in bad.stderr and "Traceback" not in bad.stderr
    store = ProjectStore(tmp_path / "cli.pmx", create=False)
    assert [j.status for j in store.list_jobs()] == ["failed", "done"]  # the CLI records its jobs' ends
    store.close()
    blobs = _all_bytes_under(tmp_path)
    blobs.update({"stdout ok": ok.stdout, "stderr ok": ok.stderr, "stdout bad": bad.stdout, "stderr bad": bad.stderr})
    _assert_no_secret(blobs, KEY, WRONG)


def test_store_scrubs_keys_from_everything_it_writes(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", WRONG)  # a key in the environment is scrubbed by value
    job = project.create_job("generate", {"api_key": KEY, "headers": {"Authorization": f"Bearer {KEY}"},
                                           "note": f"key is {WRONG}"})
    project.update_job(job, message=f"HTTP 401 for key {KEY} / {WRONG}")
    run = project.create_run({"token": KEY, "train": {"note": KEY}}, job_id=job)
    project.update_run(run, error=f"Incorrect API key provided: {KEY}")
    project.set_meta("note", f"Authorization: Bearer {WRONG}")
    project.save_settings({"model": "m", "apikey": KEY, "password": KEY})
    assert "***" in project.get_job(job).message
    project._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    project.close()
    _assert_no_secret(_all_bytes_under(project.path.parent), KEY, WRONG)
    assert scrub_secrets(f"x {KEY} y") == "x *** y"


def test_client_error_messages_never_contain_the_key(make_fake_llm):
    from promptmix_core.llm import LLMClient, LLMConfig

    fake = make_fake_llm(api_key=KEY)
    c = LLMClient(LLMConfig(base_url=fake.base_url, model="fake-model", api_key=WRONG, timeout=1))
    assert WRONG not in repr(c.config) and "api_key" not in c.config.public_dict()
    assert WRONG not in c._clean(f"Incorrect API key provided: {WRONG}")
    with pytest.raises(Exception) as err:
        c.chat([{"role": "user", "content": "hi"}])
    assert WRONG not in str(err.value) and KEY not in str(err.value)


# ------------------------------------------------------------------------- CSV formula injection
FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "=cmd|' /C calc'!A0"]


def test_csv_export_neutralises_spreadsheet_formulas(project):
    from promptmix_core import export
    from promptmix_core.task import ClassSpec, Task, normalize_text

    task = Task("t", [ClassSpec("=evil_label", "", ["=1+1", "safe seed"]), ClassSpec("ok", "", ["@x", "fine"])])
    job = project.create_job("generate", {})
    project.add_examples({"job_id": job, "slot": str(i), "text": t, "norm_text": normalize_text(t) + str(i),
                          "intended_label": "=evil_label"} for i, t in enumerate(FORMULAS + ["plain text", "a=b", "x@y.z"]))
    records = export.curated_records(task, project.list_examples(), label_source="a1")
    data = export.dataset_bytes(records, "csv").decode("utf-8")
    rows = list(csv.reader(io.StringIO(data, newline="")))
    for row in rows:
        for cell in row:
            assert not cell[:1] in ("=", "+", "-", "@", "\t", "\r"), f"live formula cell {cell!r}"
    texts = [r[0] for r in rows[1:]]
    for f in FORMULAS + ["=1+1", "@x"]:
        assert "'" + f in texts  # kept, visibly, with a leading apostrophe
    assert "plain text" in texts and "a=b" in texts and "x@y.z" in texts  # others untouched
    assert all(r[1] == "'=evil_label" for r in rows[1:] if r[0] in ("'=1+1", "'=HYPERLINK(\"http://evil\",\"x\")"))
    # JSONL is data, not a spreadsheet: kept exactly
    jl = [json.loads(x) for x in export.dataset_bytes(records, "jsonl").decode().splitlines()]
    assert {r["text"] for r in jl} >= set(FORMULAS)


# ----------------------------------------------------------------- models: safetensors, never pickles
class _Boom:
    """Unpickling this creates a marker file: proof that a pickle was (not) executed."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _malicious_pickle(folder: Path, name: str, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(pickle.dumps(_Boom(str(marker))))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "model.pkl", "model.ckpt"])
def test_pickled_only_model_folders_are_refused_without_unpickling(tmp_path, name):
    mio = pytest.importorskip("promptmix_core.training.model_io")
    from promptmix_core.training import ModelLoadError

    folder, marker = tmp_path / "model", tmp_path / "PWNED"
    _malicious_pickle(folder, name, marker)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="only pickled weights .* loads only safetensors"):
        mio.load_classifier(folder)
    with pytest.raises(ModelLoadError, match="safetensors"):
        mio.load_base_model(str(folder), ["a", "b"])
    assert not marker.exists()


def test_model_paths_are_checked(tmp_path):
    mio = pytest.importorskip("promptmix_core.training.model_io")
    from promptmix_core.training import ModelLoadError

    with pytest.raises(ModelLoadError, match="model folder not found"):
        mio.load_classifier(tmp_path / "missing")
    (tmp_path / "f.safetensors").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file; give the model's folder"):
        mio.load_classifier(tmp_path / "f.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no model weights"):
        mio.load_classifier(tmp_path / "empty")


def test_a_safetensors_model_loads_and_a_pickle_beside_it_is_never_opened(tmp_path):
    mio = pytest.importorskip("promptmix_core.training.model_io")
    from promptmix_core.training import bundled_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tok = AutoTokenizer.from_pretrained(bundled_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
    folder, marker = tmp_path / "model", tmp_path / "PWNED"
    mio.save_model(BertForSequenceClassification(cfg), tok, ["a", "b"], folder)
    assert not list(folder.glob("*.bin")) and list(folder.glob("*.safetensors"))
    _malicious_pickle(folder, "pytorch_model.bin", marker)
    _malicious_pickle(folder, "training_args.bin", marker)
    clf = mio.load_classifier(folder, device="cpu")
    labels, _ = clf.predict(["hello"])
    assert labels[0] in ("a", "b") and not marker.exists()


# ------------------------------------------------------------------------------- project paths
@pytest.mark.parametrize("name", ["../outside", "..", ".", "/etc/passwd", "a/b", "a\\b", "nul\x00x", "con",
                                  "-dash", " ", "x" * 65, "trailing."])
def test_project_names_cannot_escape_the_projects_folder(tmp_path, name):
    from promptmix_core import projects

    with pytest.raises(projects.ProjectError):
        projects.project_path(name, tmp_path)
    with pytest.raises(projects.ProjectError):
        projects.create_project(name, tmp_path)
    assert not any(tmp_path.parent.glob("outside*"))


def test_symlinked_projects_are_not_listed(tmp_path):
    from promptmix_core import projects

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ProjectStore(elsewhere / "secret.pmx").close()
    folder = tmp_path / "projects"
    folder.mkdir()
    (folder / "link.pmx").symlink_to(elsewhere / "secret.pmx")
    projects.create_project("real", folder)
    assert [p.name for p in projects.list_projects(folder)] == ["real"]


# ------------------------------------------------------------------------------- bind address
def test_app_binds_to_loopback_by_default_config():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text("utf-8"))
    assert cfg["server"]["address"] == "127.0.0.1"
    assert 0 < cfg["server"].get("maxUploadSize", 200) <= 200
    make = (ROOT / "Makefile").read_text("utf-8")
    assert re.search(r"^ADDRESS \?= 127\.0\.0\.1$", make, re.M)  # overridable: make run ADDRESS=0.0.0.0
    assert "--server.address $(ADDRESS)" in make


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state = parts[1], parts[3]
            addr, p = local.split(":")
            if int(p, 16) == port and state == "0A":  # LISTEN
                found.add(addr)
    return found


def test_streamlit_really_listens_on_loopback_only(tmp_path):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PROMPTMIX_PROJECTS_DIR": str(tmp_path / "projects")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=str(ROOT), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        addrs = wait_for(lambda: _listening_addresses(port), 60, 0.2, "streamlit to listen")
        time.sleep(0.3)
        addrs = _listening_addresses(port)
        # 0100007F is 127.0.0.1; anything else (00000000 = every interface) would be exposed
        assert addrs == {"0100007F"}, addrs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_and_reap(proc.pid)
