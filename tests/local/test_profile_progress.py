"""The progress bar: durations, ETA, what a terminal and a log see."""

from __future__ import annotations

import io

import pytest
from sluice_local.profiling.progress import Progress, eta_s, format_duration, render


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (9.4, "9s"), (59.6, "1m00s"), (75.4, "1m15s"), (3599, "59m59s"),
    (3725, "1h02m"), (-3, "0s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("done", "total", "elapsed", "expected"), [
    (0, 100, 0, 100),  # nothing done: the estimate itself
    (50, 100, 50, 50),  # on pace
    (50, 100, 100, 100),  # twice as slow as estimated: the rest is too
    (100, 100, 80, 0),
    (120, 100, 80, 0),
])
def test_eta_calibrates_by_the_pace_so_far(done, total, elapsed, expected):
    assert eta_s(done, total, elapsed) == pytest.approx(expected)


def test_render_shows_bar_share_jobs_and_times():
    line = render(25, 100, 30, 1, 4, "intent/default @ 1 cores", width=20)
    assert line.startswith("[#####...............]  25% 1/4 intent/default @ 1 cores")
    assert line.endswith("elapsed 30s  ETA 1m30s")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_log_gets_one_line_per_finished_job():
    stream, clock = io.StringIO(), Clock()
    progress = Progress([10.0, 30.0], stream, clock, interactive=False)
    progress.start("a @ 1 cores", 10.0)
    clock.now = 5.0
    progress.tick()
    progress.finish("(load 0.4 s)")
    progress.start("b @ 1 cores", 30.0)
    clock.now = 20.0
    progress.finish()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert " 25% 1/2 a @ 1 cores (load 0.4 s)" in lines[0]
    assert "ETA 15s" in lines[0]  # twice as fast as estimated
    assert "100% 2/2 b @ 1 cores" in lines[1]
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_the_bar_redrawn_in_place():
    stream, clock = io.StringIO(), Clock()
    progress = Progress([10.0], stream, clock, interactive=True)
    progress.start("a @ 1 cores", 10.0)
    clock.now = 5.0
    progress.tick()
    clock.now = 5.05
    progress.tick()  # too soon: not redrawn
    clock.now = 100.0
    progress.tick()  # overrunning: never shown done before it is
    progress.finish()
    progress.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 4
    assert "  0% 0/1" in frames[0]
    assert " 50% 0/1" in frames[1]
    assert " 95% 0/1" in frames[2]
    assert frames[3].startswith("[")
    assert "100% 1/1" in frames[3]
    assert stream.getvalue().endswith("\n")
