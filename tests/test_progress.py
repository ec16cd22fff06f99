"""lungcad.progress: a bar on a terminal, log lines (never a ``\\r``) elsewhere, nothing when turned off."""

from __future__ import annotations

import io
import logging

import pytest

from lungcad import progress as progress_module
from lungcad.progress import LineProgress, NoProgress, progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _enabled():
    progress_module.set_enabled(True)
    yield
    progress_module.set_enabled(True)


def test_off_a_terminal_progress_is_a_log_line_per_10_percent_and_never_a_carriage_return(caplog):
    stream = io.StringIO()  # a redirected stderr
    caplog.set_level(logging.INFO, logger="lungcad.progress")
    with progress(total=20, desc="synth", unit="scan", stream=stream) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(20):
            bar.update()
    assert stream.getvalue() == ""  # nothing written to the stream itself: log records only
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and all("\r" not in line for line in lines)
    assert lines[0].startswith("synth: 2/20 scans (10%), ") and "left" in lines[0]
    assert lines[-1].startswith("synth: 20/20 scans (100%), ") and "left" not in lines[-1]


def test_lines_every_30_s_when_percent_steps_are_slow(caplog):
    caplog.set_level(logging.INFO, logger="lungcad.progress")
    now = [0.0]
    bar = LineProgress(total=1000, desc="d", unit="step", clock=lambda: now[0])
    for _ in range(5):
        now[0] += 31
        bar.update()  # 0.1% each: below a 10% step, but 31 s passed
    assert len(caplog.records) == 5
    inner = LineProgress(range(3), desc="epoch", unit="step", leave=False, clock=lambda: now[0])
    assert list(inner) == [0, 1, 2]
    assert len(caplog.records) == 5  # an inner loop: no percent or closing lines, only the 30 s ones


def test_a_terminal_gets_a_tqdm_bar_and_turning_progress_off_shows_nothing(caplog):
    from tqdm import tqdm

    tty = Tty()
    bar = progress(range(3), desc="detect", unit="scan", stream=tty)
    assert isinstance(bar, tqdm) and list(bar) == [0, 1, 2]
    assert "detect" in tty.getvalue()
    progress_module.set_enabled(False)
    quiet_tty, log_stream = Tty(), io.StringIO()
    caplog.set_level(logging.INFO, logger="lungcad.progress")
    for stream in (quiet_tty, log_stream):
        bar = progress(range(3), total=3, desc="x", stream=stream)
        assert isinstance(bar, NoProgress) and list(bar) == [0, 1, 2]
    assert quiet_tty.getvalue() == "" and caplog.records == []
    progress_module.set_enabled(True)
    assert isinstance(progress(total=3, show=False, stream=tty), NoProgress)
