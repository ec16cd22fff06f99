"""The batch runner's resume and error bookkeeping, worker processes and their threads."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lungcad.batch import BatchSummary, read_errors, run_batch, worker_threads
from lungcad.errors import CorruptScanError
from lungcad.io import ScanRef


def _work(ref: ScanRef, out) -> None:
    if "bad" in ref.id:
        raise CorruptScanError("broken on purpose", path=ref.path)
    (out / f"{ref.id}.done").write_text(os.environ.get("TF_NUM_INTRAOP_THREADS", "unset"))


def test_run_batch_records_errors_and_resumes(tmp_path):
    refs = [ScanRef(n, tmp_path / n) for n in ("a", "bad1", "c")]
    errors = tmp_path / "errors.csv"
    fn = functools.partial(_work, out=tmp_path)
    done = lambda r: (tmp_path / f"{r.id}.done").exists()  # noqa: E731
    first = run_batch(refs, fn, errors_csv=errors, is_done=done)
    assert first.done == ["a", "c"] and list(first.failed) == ["bad1"] and first.exit_code == 3
    assert read_errors(errors) == {"bad1": (str(tmp_path / "bad1"), f"{tmp_path / 'bad1'}: broken on purpose")}
    again = run_batch(refs, fn, errors_csv=errors, is_done=done)
    assert again.skipped == ["a", "c"] and list(again.failed) == ["bad1"]
    fixed = [ScanRef("a", refs[0].path), ScanRef("bad1".replace("bad", "good"), refs[1].path)]
    (tmp_path / "errors.csv").write_text("id,path,error\ngood1,x,old failure\n")
    last = run_batch(fixed, fn, errors_csv=errors, is_done=done)
    assert last.done == ["good1"] and read_errors(errors) == {} and last.exit_code == 0


def test_run_batch_in_worker_processes(tmp_path):
    refs = [ScanRef(n, tmp_path / n) for n in ("a", "b", "bad")]
    summary = run_batch(
        refs,
        functools.partial(_work, out=tmp_path),
        errors_csv=tmp_path / "errors.csv",
        is_done=lambda r: False,
        workers=2,
    )
    assert sorted(summary.done) == ["a", "b"] and list(summary.failed) == ["bad"]
    assert np.all([(tmp_path / f"{n}.done").exists() for n in ("a", "b")])
    # each worker's TensorFlow gets its share of the cores, not all of them
    assert (tmp_path / "a.done").read_text() == str(worker_threads(2)) == str(max(1, os.cpu_count() // 2))


def test_worker_threads_share_the_cpus():
    assert worker_threads(2, cpus=2) == 1 and worker_threads(4, cpus=16) == 4 and worker_threads(8, cpus=2) == 1


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a container's PID 1 may never reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_pool_workers_exit_when_the_batch_process_is_killed(tmp_path):
    """A batch killed with SIGKILL (a scheduler's time limit, the OOM killer) leaves no worker behind holding its
    memory: workers idle on the task queue used to wait for it forever."""
    import subprocess
    import sys
    import textwrap

    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            """
            import multiprocessing, os, time
            from concurrent.futures import ProcessPoolExecutor
            from lungcad.batch import _init_worker

            if __name__ == "__main__":
                ctx = multiprocessing.get_context("spawn")
                args = (1, os.getpid())
                with ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker, initargs=args) as pool:
                    print(pool.submit(os.getpid).result(), flush=True)
                    time.sleep(120)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(parent)], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    assert _running(worker)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker), f"worker {worker} outlived its killed parent"


def test_summary_line_counts_in_words_and_shows_the_start_up():
    one = BatchSummary(done=["a"], skipped=["b", "c"], seconds=12.34, startup_s=3.21)
    assert one.line() == "1 scan done, 2 already done, 0 failed in 12.3 s, 12.3 s/scan, start-up 3.2 s"
    two = BatchSummary(done=["a", "b"], failed={"c": "bad"}, seconds=4.0)
    assert two.line() == "2 scans done, 0 already done, 1 failed in 4.0 s, 2.0 s/scan"  # start-up unknown: not shown


def test_process_age_counts_from_the_process_start():
    code = "import time; time.sleep(0.5); from lungcad.batch import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.5 <= age < 60
