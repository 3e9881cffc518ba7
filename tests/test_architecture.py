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


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_streamlit_internals_and_no_exec_anywhere():
    """The app uses Streamlit's public API only: no ``streamlit.runtime``, ``streamlit.web`` or
    ``streamlit.proto`` import and no ``exec`` of a script (deep links work through ``st.navigation``)."""
    internal = ("streamlit.runtime", "streamlit.web", "streamlit.proto")
    offenders = []
    files = [ROOT / "app.py", *(ROOT / "app_pages").rglob("*.py"), *(ROOT / "promptmix_core").rglob("*.py")]
    for path in files:
        bad = [n for n in _imports(path) if n.startswith(internal)]
        calls = [node for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exec"]
        if bad or calls:
            offenders.append((str(path.relative_to(ROOT)), bad, len(calls)))
    assert not offenders, offenders


def test_no_pages_folder_beside_the_app():
    """A folder named ``pages/`` beside app.py makes Streamlit run a v1 multipage app until the first
    ``st.navigation`` call of the process: a deep link as the first request after a server start ran the
    page without the app's shell. The pages live in ``app_pages/`` and are registered by ``st.navigation``."""
    assert not (ROOT / "pages").exists()
    assert "st.navigation(" in (ROOT / "app.py").read_text("utf-8")
