"""Batch runs over many scans: parallel workers, resume, and an errors file (scheduling only).

Every batch command (``preprocess``, ``detect``) works the same way:

- :func:`lungcad.io.find_scans` turns the inputs into :class:`lungcad.io.ScanRef` s with unique ids;
- :func:`run_batch` calls a per-scan function in worker processes; the function writes its own outputs
  atomically, so a finished scan is never half-written and a rerun skips it (``is_done``);
- a failing scan is recorded in ``errors.csv`` (``id,path,error``) with its one-line reason and the batch
  goes on; a rerun retries failed scans and drops them from the file when they succeed;
- :func:`output_folder` checks that the output folder can be written before any scan is read, and holds its lock
  (``OUT/.lock``) while the batch runs, so two runs never compute into (and overwrite the tables of) one folder.
"""

from __future__ import annotations

import csv
import io
import logging
import multiprocessing
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from lungcad import tfquiet
from lungcad.errors import ConfigError, LungcadError, OutputBusyError, OutputError
from lungcad.fileio import write_text_atomic
from lungcad.progress import progress

if TYPE_CHECKING:
    from lungcad.io import ScanRef

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a batch did: ids done now, skipped (already done), and failed with their reasons."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    #: seconds before the first scan's work began, model loading (TensorFlow) included, when measured
    startup_s: float | None = None
    #: what the models computed in, in words (e.g. "U-Net float32, FPR and risk bfloat16"), when known (the
    #: command's report says it after :meth:`line`)
    precision: str | None = None

    @property
    def exit_code(self) -> int:
        """0 when every scan succeeded, 3 when some failed."""
        return 3 if self.failed else 0

    def line(self) -> str:
        n = len(self.done)
        per = f", {self.seconds / n:.1f} s/scan" if n else ""
        startup = f", start-up {self.startup_s:.1f} s" if self.startup_s is not None else ""
        return (
            f"{n} scan{'' if n == 1 else 's'} done, {len(self.skipped)} already done, {len(self.failed)} failed "
            f"in {self.seconds:.1f} s{per}{startup}"
        )


_IMPORTED = time.perf_counter()


def process_age() -> float:
    """Seconds since this process started (Linux: ``/proc/self/stat``, to 10 ms), elsewhere since this module was
    imported."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        started = int(stat[stat.rindex(b")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


# ---------------------------------------------------------------------------------------------- output
#: The lock file a batch holds (``fcntl.flock``) in its output folder while it runs; its text names the holder.
LOCK_NAME = ".lock"


def check_writable(out: Path) -> None:
    """Create ``out`` (with its parents) and write and remove a file in it.

    Raises:
        OutputError: ``out`` cannot be created or written (read-only, a file, no permission).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"the output folder cannot be written ({exc.strerror or type(exc).__name__})",
            path=out,
            fix="choose a writable folder with -o, or make this one writable",
        ) from exc


@contextmanager
def output_folder(out: str | Path, command: str = "lungcad") -> Iterator[Path]:
    """Check that ``out`` can be written (:func:`check_writable`), then hold its lock ``out/.lock`` (non-blocking
    ``fcntl.flock``; the file says ``pid <pid> (<command>) started <time> on <host>``) until the block ends. Call it
    before any scan is read.

    Raises:
        OutputError: ``out`` cannot be written.
        OutputBusyError: another process holds the lock (the message names its pid and start time).
    """
    out = Path(out)
    check_writable(out)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield out
        return
    lock = out / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputError(
            f"cannot open the lock file {LOCK_NAME} ({exc.strerror or type(exc).__name__})",
            path=out,
            fix=f"make {lock} writable, or choose another folder with -o",
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "a process that is starting"
            raise OutputBusyError(
                f"another lungcad run is writing to this folder: {' '.join(holder.split())}",
                path=out,
                fix="wait until it ends, or write to another folder with -o",
            ) from exc
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({command}) started {started} on {socket.gethostname()}\n".encode(), 0)
        yield out
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would let two runs lock two files)


# ---------------------------------------------------------------------------------------------- errors
def read_errors(path: Path) -> dict[str, tuple[str, str]]:
    """``errors.csv`` as {id: (path, error)}; an absent file is empty."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8", errors="backslashreplace") as fh:
        return {row["id"]: (row["path"], row["error"]) for row in csv.DictReader(fh)}


def write_errors(path: Path, errors: dict[str, tuple[str, str]]) -> None:
    """Rewrite ``errors.csv`` atomically (header only when there are none)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "path", "error"])
    for sid in sorted(errors):
        writer.writerow([sid, *errors[sid]])
    write_text_atomic(path, buf.getvalue())


# ------------------------------------------------------------------------------------------------- run
def _call(fn: Callable[[ScanRef], object], ref: ScanRef) -> str | None:
    """Run ``fn`` on one scan in a worker; a lungcad error (or any crash) becomes its one-line text."""
    try:
        fn(ref)
        return None
    except LungcadError as exc:
        return str(exc)
    except Exception as exc:  # a bug must not stop the batch: record it with its type
        return f"{ref.path}: {type(exc).__name__}: {' '.join(str(exc).split())}"


def run_batch(
    refs: Sequence[ScanRef],
    fn: Callable[[ScanRef], object],
    *,
    errors_csv: Path,
    is_done: Callable[[ScanRef], bool],
    workers: int = 1,
    desc: str = "scans",
    scheduler: str | None = None,
) -> BatchSummary:
    """Run ``fn(ref)`` for every scan not yet done; record failures in ``errors_csv``.

    ``fn`` must be picklable (a module-level function or ``functools.partial``) when ``workers > 1`` or with a
    Dask ``scheduler`` address (``tcp://host:8786``): then scans run as tasks on that cluster's workers, which must
    see the same paths (shared filesystem); progress, errors and resume stay here.
    """
    t0 = time.perf_counter()
    summary = BatchSummary()
    errors = read_errors(errors_csv)
    todo: list[ScanRef] = []
    for ref in refs:
        if is_done(ref):
            summary.skipped.append(ref.id)
            errors.pop(ref.id, None)
        else:
            todo.append(ref)

    def record(ref: ScanRef, error: str | None) -> None:
        if error is None:
            summary.done.append(ref.id)
            errors.pop(ref.id, None)
        else:
            summary.failed[ref.id] = error
            errors[ref.id] = (str(ref.path), error)
            log.error("%s", error)
        write_errors(errors_csv, errors)

    # one scan: no bar (a long single-scan run logs its stages instead, e.g. lungcad.pipeline.batch)
    with progress(total=len(todo), desc=desc, unit="scan", show=len(todo) > 1) as bar:
        if scheduler:
            _run_dask(todo, fn, scheduler, record, bar)
        elif workers <= 1:
            for ref in todo:
                record(ref, _call(fn, ref))
                bar.update(1)
        else:
            _run_pool(todo, fn, workers, record, bar)
    write_errors(errors_csv, errors)
    summary.seconds = time.perf_counter() - t0
    return summary


THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker_threads(workers: int, cpus: int | None = None) -> int:
    """Compute threads per worker process: the machine's CPUs shared out (at least 1), so N workers each
    running TensorFlow do not fight over the cores (measured on 2 cores: docs/benchmarks.md)."""
    return max(1, (cpus or os.cpu_count() or 1) // max(workers, 1))


#: How often (s) a worker checks that the batch process that started it is still there.
PARENT_CHECK_S = 1.0


def _init_worker(threads: int, parent: int) -> None:
    """Pool initializer (runs before the worker imports TensorFlow): cap the thread pools, unless the
    user set these variables already, and exit when process ``parent`` is gone. A batch killed with SIGKILL or an
    unhandled SIGTERM cannot shut its pool down, and a worker idle on the task queue would wait forever, holding
    its model's memory."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    tfquiet.install_from_env()  # before the task's function imports TensorFlow

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="lungcad-parent-watch", daemon=True).start()


def _run_pool(todo: list[ScanRef], fn, workers: int, record, bar) -> None:
    ctx = multiprocessing.get_context("spawn")
    args = (worker_threads(workers), os.getpid())
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=args) as pool:
        pending: dict[Future, ScanRef] = {pool.submit(_call, fn, ref): ref for ref in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                ref = pending.pop(fut)
                try:
                    error = fut.result()
                except Exception as exc:  # the worker process died (out of memory, ...)
                    error = f"{ref.path}: worker failed: {type(exc).__name__}: {exc}"
                record(ref, error)
                bar.update(1)


def _run_dask(todo: list[ScanRef], fn, scheduler: str, record, bar) -> None:
    """One task per scan on the Dask distributed cluster at ``scheduler``."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ConfigError(
            "--scheduler needs Dask distributed", fix="pip install 'lungcad[dask]' (or: pip install distributed)"
        ) from exc
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    with client:
        futures = {client.submit(_call, fn, ref, pure=False): ref for ref in todo}
        for fut in as_completed(futures):
            ref = futures[fut]
            try:
                error = fut.result()
            except Exception as exc:  # the worker died or the task could not run
                error = f"{ref.path}: Dask task failed: {type(exc).__name__}: {exc}"
            record(ref, error)
            bar.update(1)
