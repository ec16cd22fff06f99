"""Progress of long loops: one helper for every bar lungcad shows (scans of a batch, synth, training steps).

On a terminal it is a tqdm bar on stderr. When stderr is not a terminal (a log file, a pipe, a notebook's captured
stream) a bar's ``\\r`` updates would fill the log, so progress is a log line instead (logger ``lungcad.progress``,
INFO) each time another :data:`EVERY_PERCENT` percent is done or :data:`EVERY_S` seconds have passed, and one at
the end. ``lungcad --no-progress`` and ``-q`` turn every bar off (:func:`set_enabled`).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

log = logging.getLogger("lungcad.progress")

#: A line per this many percent done, when stderr is not a terminal.
EVERY_PERCENT = 10
#: ... or per this many seconds, whichever comes first.
EVERY_S = 30.0

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Show progress (default) or not, for the whole process (``--no-progress``, ``-q``)."""
    global _enabled
    _enabled = bool(enabled)


def enabled() -> bool:
    """Whether progress is shown (:func:`set_enabled`)."""
    return _enabled


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """Progress as log lines: ``desc: 3/10 scans (30%), 12 s, ~28 s left``; the tqdm calls lungcad
    uses (``update``, ``close``, iteration, ``with``)."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        every_percent: float = EVERY_PERCENT,
        every_s: float = EVERY_S,
        leave: bool = True,
        clock=time.monotonic,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.every_percent, self.every_s, self.clock = every_percent, every_s, clock
        self.leave = leave  # False: lines every ``every_s`` only, none per percent or at the end
        self.n = 0
        self.start = self.last_time = clock()
        self.last_step = 0
        self.closed = False

    def _line(self) -> str:
        elapsed = self.clock() - self.start
        if self.total:
            text = f"{self.desc}: {self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)"
            left = elapsed / self.n * (self.total - self.n) if self.n else None
            tail = f", ~{left:.0f} s left" if left and self.n < self.total else ""
        else:
            text, tail = f"{self.desc}: {self.n} {self.unit}s", ""
        return f"{text}, {elapsed:.0f} s{tail}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        step = int(100 * self.n / self.total // self.every_percent) if self.total else 0
        if self.total and self.n >= self.total:
            return  # the closing line says it
        if (step > self.last_step and self.leave) or now - self.last_time >= self.every_s:
            self.last_step, self.last_time = step, now
            log.info("%s", self._line())

    def close(self) -> None:
        if not self.closed and self.n and self.leave:
            log.info("%s", self._line())
        self.closed = True

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NoProgress(LineProgress):
    """Progress turned off: counts, shows nothing."""

    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = True,
    show: bool = True,
    stream=None,
):
    """A progress bar over ``iterable`` (or updated by hand up to ``total``): tqdm on a terminal, log lines
    otherwise (:class:`LineProgress`), nothing when ``show`` is false or progress is off (:func:`set_enabled`).
    ``leave``: a terminal bar stays on screen when done; False (an inner loop, such as a
    training epoch's steps): no lines per percent or at the end off a terminal, only every :data:`EVERY_S`."""
    stream = sys.stderr if stream is None else stream
    if not (show and _enabled):
        return NoProgress(iterable, total=total, desc=desc, unit=unit)
    if _is_tty(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, leave=leave)
