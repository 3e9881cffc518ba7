"""Rules of the code base that keep the library reusable and the app quick to start."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_never_imports_streamlit():
    offenders = []
    for path in (ROOT / "promptmix_core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"promptmix_core must not import streamlit: {offenders}"


def test_importing_the_core_does_not_load_torch_or_transformers():
    code = (
        "import sys, promptmix_core, promptmix_core.task, promptmix_core.store, promptmix_core.generate, "
        "promptmix_core.relabel, promptmix_core.pipeline, promptmix_core.jobs, promptmix_core.cli, "
        "promptmix_core.llm\n"
        "heavy = [m for m in ('torch', 'transformers', 'streamlit') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""
