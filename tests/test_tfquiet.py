"""lungcad.tfquiet: TensorFlow's native start-up lines kept off stderr, a GPU problem said in one line of ours."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lungcad.tfquiet import ENV_FLAG, QUIET_ENV, gpu_problem

ROOT = Path(__file__).resolve().parents[1]

CUINIT = (
    "I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n"
    "E0000 00:00:1.1 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)\n"
)


def test_a_gpu_problem_is_one_line_only_when_a_gpu_is_visible_and_unused():
    line = gpu_problem(CUINIT, gpus_found=0, visible=True)
    assert line.startswith("a GPU is visible but TensorFlow cannot use it, running on the CPU: ")
    assert "failed call to cuInit" in line and "\n" not in line and "-v" in line
    assert gpu_problem(CUINIT, gpus_found=0, visible=False) is None  # a CPU-only machine: nothing to say
    assert gpu_problem(CUINIT, gpus_found=1, visible=True) is None
    assert "running on the CPU" in gpu_problem("", gpus_found=0, visible=True)


def _import_tensorflow(verbose: bool) -> subprocess.CompletedProcess:
    code = f"""
        from lungcad import tfquiet
        tfquiet.install(verbose={verbose})
        import keras  # imports tensorflow
        import tensorflow as tf
        tf.config.list_physical_devices()
        print("imported")
        """
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FLAG, *QUIET_ENV)}  # as a user's shell has it
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env
    )


def test_importing_tensorflow_writes_nothing_to_stderr_unless_verbose():
    quiet = _import_tensorflow(verbose=False)
    assert quiet.returncode == 0 and quiet.stdout == "imported\n"
    assert quiet.stderr == ""
    loud = _import_tensorflow(verbose=True)  # TensorFlow's own lines (absl, oneDNN, CUDA) come through
    assert loud.returncode == 0 and loud.stderr.strip()
