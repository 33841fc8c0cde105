"""A plain-text progress bar with an ETA, on stderr, without any dependency.

Work is counted in estimated seconds per job (:func:`sluice_local.profiling.grid.
estimate_job_s`), and the ETA is recalibrated by how long finished jobs really took.
On a terminal the bar is redrawn in place; elsewhere (a log, a CI job) one line is
printed per finished job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

#: Redraws on a terminal at most this often.
REDRAW_EVERY_S = 0.2
#: A running job never shows more than this share of its estimate done: it may overrun.
MAX_RUNNING_SHARE = 0.95


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``1m15s``; ``9.2`` -> ``9s``; ``3725`` -> ``1h02m``."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def eta_s(done_work_s: float, total_work_s: float, elapsed_s: float) -> float:
    """Seconds left: the work left at the pace so far (the estimate itself before any)."""
    left = max(0.0, total_work_s - done_work_s)
    if done_work_s <= 0 or elapsed_s <= 0:
        return left
    return left * elapsed_s / done_work_s


def render(done_work_s: float, total_work_s: float, elapsed_s: float, jobs_done: int,
           jobs_total: int, label: str, width: int = 30) -> str:
    """One line: ``[#####.....]  40% 4/10 intent/default 1c  elapsed 12s  ETA 18s``."""
    share = 0.0 if total_work_s <= 0 else min(1.0, done_work_s / total_work_s)
    filled = round(share * width)
    bar = "#" * filled + "." * (width - filled)
    left = eta_s(done_work_s, total_work_s, elapsed_s)
    return (f"[{bar}] {share * 100:3.0f}% {jobs_done}/{jobs_total} {label}  "
            f"elapsed {format_duration(elapsed_s)}  ETA {format_duration(left)}")


class Progress:
    """Progress over jobs whose work is estimated in seconds."""

    def __init__(self, estimates_s: list[float], stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 interactive: bool | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._interactive = (self._stream.isatty() if interactive is None else interactive)
        self._total = sum(estimates_s)
        self._jobs_total = len(estimates_s)
        self._jobs_done = 0
        self._done = 0.0
        self._started = clock()
        self._job_estimate = 0.0
        self._job_started = self._started
        self._label = ""
        self._drawn = -REDRAW_EVERY_S

    def start(self, label: str, estimate_s: float) -> None:
        """A job begins."""
        self._label, self._job_estimate, self._job_started = label, estimate_s, self._clock()
        self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        """Redraw on a terminal (rate-limited unless ``force``)."""
        now = self._clock()
        if not self._interactive or (not force and now - self._drawn < REDRAW_EVERY_S):
            return
        self._drawn = now
        running = min(MAX_RUNNING_SHARE * self._job_estimate, now - self._job_started)
        line = render(self._done + running, self._total, now - self._started,
                      self._jobs_done, self._jobs_total, self._label)
        self._stream.write("\r" + line + "\x1b[K")
        self._stream.flush()

    def finish(self, note: str = "") -> None:
        """The running job ended (``note``: its outcome, shown in logs)."""
        self._jobs_done += 1
        self._done += self._job_estimate
        now = self._clock()
        line = render(self._done, self._total, now - self._started, self._jobs_done,
                      self._jobs_total, f"{self._label} {note}".strip())
        if self._interactive:
            self._stream.write("\r" + line + "\x1b[K")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()
