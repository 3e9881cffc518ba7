"""Round three, item 11: a project in a folder shared by several OS users. A user who may read the
project but not write it only views it, and leaves no ``-wal``/``-shm`` file behind (such a file,
owned by the viewer, made the project read-only for its owner). Run as root: each side is a forked
process that switches to another user id (``os.setuid``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from rel_helpers import ROOT, tiny_task
from promptmix_core.task import save_task

OWNER, VIEWER = 65534, 54321  # "nobody", and a user id with no account (as another person would be)

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="switching users needs root (the test acts as two OS users)")

_AS_USER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    # everything imported first, as root: the other users may not read this Python's standard library
    import json, sqlite3, urllib.parse, uuid, hashlib, shutil, errno, csv, io, codecs, encodings.utf_8_sig
    from promptmix_core import projects, store, paths, settings, redact, labelled, validation
    from promptmix_core.task import load_task
    uid, what, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    task = load_task(os.path.join(folder, "task.json"))
    os.setgroups([]); os.setgid(uid); os.setuid(uid)
    os.umask(0o022)
    if what == "create":
        store = projects.create_project("shared", folder, task=task)
        store.save_settings({{"owner": "wrote this"}})
    elif what == "view":
        store = projects.open_project("shared", folder)
        print(len(store.load_task().classes), store.read_only, store.get_settings().get("owner"))
    else:
        store = projects.open_project("shared", folder)
        store.save_settings({{"owner": "wrote again"}})
        print(store.read_only, store.get_settings().get("owner"))
    store.close()
""")


def _as(uid: int, what: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _AS_USER.format(root=str(ROOT)), str(uid), what, str(folder)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(folder)})


@pytest.fixture
def shared_folder():
    folder = Path(tempfile.mkdtemp(prefix="pmx-shared-"))
    os.chmod(folder, 0o1777)  # a shared folder everyone may write in (like /tmp)
    save_task(tiny_task(), folder / "task.json")
    os.chmod(folder / "task.json", 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_viewer_leaves_no_side_files_and_the_owner_still_writes(shared_folder):
    made = _as(OWNER, "create", shared_folder)
    assert made.returncode == 0, made.stderr
    db = shared_folder / "shared.pmx"
    assert db.stat().st_uid == OWNER and db.stat().st_mode & 0o022 == 0  # only its owner may write it
    viewed = _as(VIEWER, "view", shared_folder)
    assert viewed.returncode == 0, viewed.stderr
    assert viewed.stdout.split() == ["4", "True", "wrote", "this"]  # it reads everything, read-only
    left = sorted(p.name for p in shared_folder.iterdir() if p.name.startswith("shared.pmx"))
    assert left == ["shared.pmx"], left  # no -wal/-shm owned by the viewer
    again = _as(OWNER, "write", shared_folder)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["False", "wrote", "again"]


def test_a_viewer_reads_through_the_owners_open_side_files(shared_folder):
    """While the owner has the project open (its -wal/-shm exist), a viewer reads the latest commits
    through them and the owner keeps writing."""
    assert _as(OWNER, "create", shared_folder).returncode == 0
    script = textwrap.dedent(f"""
        import os, sys, json, sqlite3, urllib.parse, uuid, hashlib
        sys.path.insert(0, {str(ROOT)!r})
        from promptmix_core import projects, store, paths, settings, redact
        os.setgroups([]); os.setgid({OWNER}); os.setuid({OWNER})
        store = projects.open_project("shared", {str(shared_folder)!r})
        store.save_settings({{"owner": "live"}})
        sys.stdout.write("open\\n"); sys.stdout.flush()
        sys.stdin.readline()
        store.save_settings({{"owner": "after"}})
        print(store.get_settings()["owner"])
        store.close()
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout.readline().strip() == "open"
        viewed = _as(VIEWER, "view", shared_folder)
        assert viewed.returncode == 0, viewed.stderr
        assert viewed.stdout.split() == ["4", "True", "live"]
        out, _ = owner.communicate("go\n", timeout=60)
        assert out.strip() == "after"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
