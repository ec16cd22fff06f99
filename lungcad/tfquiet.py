"""TensorFlow's native start-up lines kept off stderr: one helper, installed before anything imports TensorFlow.

Importing TensorFlow (and its first look at the devices) writes 3-8 lines from C++ straight to file descriptor 2
(absl's "WARNING: All log messages before absl::InitializeLog() ...", oneDNN, "Could not find cuda drivers",
``E0000 ... failed call to cuInit``); ``TF_CPP_MIN_LOG_LEVEL`` does not stop the ones absl writes before its
logging is set up. :func:`install` puts an import hook first in ``sys.meta_path``: when ``tensorflow`` is first
imported, the C-level stderr goes to a temporary file until TensorFlow is loaded and has listed its devices, then
comes back. Where a GPU is visible (``/dev/nvidia*``, ``CUDA_VISIBLE_DEVICES`` not hiding it) and TensorFlow found
none, one warning of ours names the first error it wrote.

Only C-level writes are caught: :func:`install` first points ``sys.stderr`` at a copy of file descriptor 2
(:func:`own_stderr`), so Python's own stderr writes (lungcad's log lines, warnings, a traceback) still arrive while
TensorFlow loads, also when another thread loads it (:func:`lungcad.pipeline.models.preload`) beside the first
scan's preprocess. Call it before logging is set up: a logging handler keeps the stream it was given.

:func:`install` also sets :data:`ENV_FLAG`, so processes started from this one (``spawn`` workers) can call
:func:`install_from_env` before they import TensorFlow (:func:`lungcad.batch._init_worker` does).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: Set to "1" by :func:`install`: child processes silence TensorFlow too (:func:`install_from_env`).
ENV_FLAG = "LUNGCAD_QUIET_TF"
#: Environment variables that quieten TensorFlow's own logging once absl is set up (set unless the user did).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "3", "ABSL_MIN_LOG_LEVEL": "3"}
#: Words of TensorFlow's captured lines that mean it could not use a GPU.
GPU_PROBLEM_WORDS = ("cuinit", "cuda error", "cannot dlopen", "could not load dynamic library", "cuda driver")


def gpu_visible() -> bool:
    """Whether this process could see an NVIDIA GPU: a ``/dev/nvidia<N>`` device and ``CUDA_VISIBLE_DEVICES``
    not set to nothing or -1."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def gpu_problem(captured: str, gpus_found: int, visible: bool) -> str | None:
    """The one warning line to show for TensorFlow's ``captured`` start-up text, or None: only when a GPU is
    ``visible`` and TensorFlow found none."""
    if not visible or gpus_found:
        return None
    lines = [line.strip() for line in captured.splitlines() if line.strip()]
    problem = next((line for line in lines if any(w in line.lower() for w in GPU_PROBLEM_WORDS)), None)
    why = f": {problem[-200:]}" if problem else ""
    return f"a GPU is visible but TensorFlow cannot use it, running on the CPU{why} (-v shows TensorFlow's messages)"


class _Redirect:
    """File descriptor 2 sent to a temporary file until :meth:`restore`, which returns what was written there."""

    def __init__(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.saved = os.dup(2)
        self.file = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 - closed by restore()
        os.dup2(self.file.fileno(), 2)

    def restore(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        return text


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader with fd 2 redirected, then lists the devices (the CUDA lines come then)."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        redirect = _Redirect()
        gpus = 0
        try:
            self.loader.exec_module(module)
            try:
                gpus = len(module.config.list_physical_devices("GPU"))
            except Exception:  # noqa: BLE001 - no device listing: nothing to report
                gpus = 0
        except BaseException:
            sys.stderr.write(redirect.restore())  # TensorFlow failed to load: what it said may tell why
            raise
        captured = redirect.restore()
        line = gpu_problem(captured, gpus, gpu_visible())
        if line:
            log.warning("%s", line)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and wraps its loader in :class:`_QuietLoader`."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def own_stderr() -> None:
    """Point ``sys.stderr`` at a duplicate of file descriptor 2 when it writes to fd 2 itself (same encoding, line
    buffered): :class:`_Redirect` then moves only what C code writes to fd 2. A ``sys.stderr`` that is not fd 2
    (a test's capture, a ``StringIO``, a copy made before) stays."""
    try:
        if sys.stderr.fileno() != 2:
            return
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # no file descriptor (io.UnsupportedOperation is an OSError)
        return
    old = sys.stderr
    sys.stderr = open(os.dup(2), "w", buffering=1, encoding=old.encoding, errors=old.errors)  # noqa: SIM115


def install(verbose: bool = False) -> None:
    """Keep TensorFlow's native start-up lines off stderr in this process (and, through :data:`ENV_FLAG`, in the
    processes it starts), Python's own stderr writes on it (:func:`own_stderr`: call this before logging is set
    up); ``verbose``: change nothing, TensorFlow's lines are shown. Does nothing once TensorFlow is imported."""
    if verbose:
        os.environ.pop(ENV_FLAG, None)
        return
    os.environ[ENV_FLAG] = "1"
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    own_stderr()
    sys.meta_path.insert(0, _QuietFinder())


def install_from_env() -> None:
    """:func:`install` in a process whose parent installed it (:data:`ENV_FLAG` set)."""
    if os.environ.get(ENV_FLAG) == "1":
        install()


def uninstall() -> None:
    """Remove the import hook (tests)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
