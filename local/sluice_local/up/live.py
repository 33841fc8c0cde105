"""The live view of `sluice up`: what the run looks like now, drawn from its timeline.

``render_rows`` computes every figure as strings (pure, testable without a terminal);
``LiveView`` shows them after each controller tick: a rich table redrawn in place on a
terminal, or plain log lines (one per tick, one per scaling action) anywhere else.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sluice_local.up.timeline import ActionRecord, RunTimeline, StageSample, Tick

#: What a figure shows when there is nothing to show yet.
NONE = "-"
_OVER = "bold red"


@dataclass(frozen=True)
class StageRow:
    """One stage's line of the view, as of the latest tick."""

    stage: str
    #: Ready replicas, with "+N starting" while some are.
    replicas: str
    cores_per_replica: str
    cores_in_force: str
    batch: str
    delay: str
    queue: str
    arrival: str
    #: Latency at the SLO's percentile against the SLO: "42.1 / 100 ms".
    latency: str
    over_slo: bool


@dataclass(frozen=True)
class LiveRows:
    """Everything the view shows, as strings."""

    #: Pipeline, policy, SLO and elapsed time, on one line.
    title: str
    stages: list[StageRow]
    entrance: str
    #: End-to-end latency at the percentile in the last tick against the SLO.
    latency: str
    over_slo: bool
    #: Answered in time over everything so far: "99.1%".
    attainment: str
    elapsed: str
    last_action: str


def render_rows(timeline: RunTimeline, elapsed_s: float, duration_s: float | None) -> LiveRows:
    """What to show ``elapsed_s`` seconds into a run of ``duration_s`` (None: serving until
    stopped): the latest tick per stage, the pipeline's figures and the last action."""
    last = timeline.ticks[-1] if timeline.ticks else None
    samples = {s.stage: s for s in last.stages} if last is not None else {}
    elapsed = (f"{elapsed_s:.0f}s / {duration_s:.0f}s" if duration_s is not None
               else f"{elapsed_s:.0f}s (serving until Ctrl-C)")
    quota = "" if timeline.quota else ", no quota"
    title = (f"{timeline.pipeline}, policy {timeline.policy}{quota}, SLO {timeline.slo_ms:g} ms "
             f"at {_percentile(timeline)}, {elapsed}")
    latency_ms = last.latency_ms if last is not None else None
    return LiveRows(
        title=title,
        stages=[_stage_row(name, samples.get(name), timeline.slo_ms) for name in timeline.stages],
        entrance=f"{last.entrance_rps:.1f}/s" if last is not None else NONE,
        latency=_against_slo(latency_ms, timeline.slo_ms),
        over_slo=_over(latency_ms, timeline.slo_ms),
        attainment=attainment(timeline),
        elapsed=elapsed,
        last_action=_last_action(timeline.actions),
    )


def attainment(timeline: RunTimeline) -> str:
    """Requests answered in time over all requests so far, as a percentage ("-": none)."""
    ok = sum(t.ok for t in timeline.ticks)
    total = ok + sum(t.missed for t in timeline.ticks)
    return f"{100.0 * ok / total:.1f}%" if total else NONE


def tick_line(timeline: RunTimeline, tick: Tick) -> str:
    """One log line for ``tick``: the pipeline's figures, then each stage briefly."""
    latency = NONE if tick.latency_ms is None else f"{tick.latency_ms:.1f}ms"
    if _over(tick.latency_ms, timeline.slo_ms):
        latency += "!"
    parts = [f"t={tick.t_s:.0f}s in {tick.entrance_rps:.1f}/s {_percentile(timeline)} "
             f"{latency} (SLO {timeline.slo_ms:g}) met {attainment(timeline)}"]
    for sample in tick.stages:
        starting = f"+{sample.replicas_starting}" if sample.replicas_starting else ""
        parts.append(f"{sample.stage} {sample.replicas_ready}r{starting} "
                     f"{sample.cores_per_replica:.2f}c q{sample.queue_depth} "
                     f"b{sample.max_batch_size}")
    return " | ".join(parts)


def action_line(action: ActionRecord) -> str:
    """A scaling action as decided: when, where, what and why."""
    return f"t={action.t_s:.1f}s {_what(action)} ({action.reason})"


def effective_line(action: ActionRecord) -> str:
    """A scaling action once in force, with how long it took ("pending" before)."""
    if action.effective_s is None or action.reaction_s is None:
        return f"{_what(action)} pending"
    return f"t={action.effective_s:.1f}s {_what(action)} in force after {action.reaction_s:.1f} s"


class LiveView:
    """Shows the run after each tick; used by the controller's loop as a context manager.

    On a terminal (``stream.isatty()``, or whenever ``console`` is given) it redraws a rich
    table in place, only when ``update`` is called. Elsewhere it logs plain lines: one per
    new tick, one per new action and one when an action comes into force, never twice.
    """

    def __init__(self, timeline: RunTimeline, duration_s: float | None, *,
                 stream: TextIO = sys.stdout, console: Console | None = None) -> None:
        self.timeline = timeline
        self.duration_s = duration_s
        self.stream = stream
        self.console = console if console is not None else (
            Console(file=stream) if stream.isatty() else None)
        self._live: Live | None = None
        self._ticks_shown = 0
        # By index: the controller appends actions in order and replaces one in place
        # (same index) when it comes into force.
        self._actions_shown = 0
        self._effective_shown: set[int] = set()

    def __enter__(self) -> LiveView:
        if self.console is not None:
            # No auto refresh: nothing changes between ticks, and no thread redraws behind
            # the controller's back.
            self._live = Live(self._renderable(0.0), console=self.console, auto_refresh=False,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start(refresh=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, elapsed_s: float) -> None:
        """Show what the timeline holds now, ``elapsed_s`` seconds into the run."""
        lines = self._new_lines()
        if self._live is not None:
            # Actions scroll above the table, so their history stays on the screen.
            for line in lines["actions"]:
                self._live.console.print(Text(line))
            self._live.update(self._renderable(elapsed_s), refresh=True)
            return
        for line in (*lines["ticks"], *lines["actions"]):
            print(line, file=self.stream)
        self.stream.flush()

    def _new_lines(self) -> dict[str, list[str]]:
        """The log lines not shown yet: the latest new tick, new and newly effective actions."""
        ticks: list[str] = []
        if len(self.timeline.ticks) > self._ticks_shown:
            self._ticks_shown = len(self.timeline.ticks)
            ticks.append(tick_line(self.timeline, self.timeline.ticks[-1]))
        actions: list[str] = []
        for index, action in enumerate(self.timeline.actions):
            if index >= self._actions_shown:
                actions.append(action_line(action))
            if action.effective_s is not None and index not in self._effective_shown:
                self._effective_shown.add(index)
                actions.append(effective_line(action))
        self._actions_shown = len(self.timeline.actions)
        return {"ticks": ticks, "actions": actions}

    def _renderable(self, elapsed_s: float) -> Group:
        rows = render_rows(self.timeline, elapsed_s, self.duration_s)
        # Borderless and unwrapped, to fit 80 columns without folding figures in two.
        table = Table(title=Text(rows.title, style="bold"), title_justify="left",
                      box=box.SIMPLE_HEAD, show_edge=False, padding=0)
        for header in ("stage", "replicas", "cores\neach", "cores\nin force", "batch",
                       "delay", "queue", "arrival", f"{_percentile(self.timeline)}\n/ SLO"):
            table.add_column(header, justify="left" if header == "stage" else "right",
                             no_wrap=True)
        for row in rows.stages:
            table.add_row(*(Text(cell) for cell in (
                row.stage, row.replicas, row.cores_per_replica, row.cores_in_force, row.batch,
                row.delay, row.queue, row.arrival)),
                Text(row.latency, style=_OVER if row.over_slo else ""))
        pipeline = Text.assemble(
            f"in {rows.entrance}  end-to-end ",
            (rows.latency, _OVER if rows.over_slo else ""),
            f"  SLO met {rows.attainment}")
        return Group(table, pipeline, Text(f"last action: {rows.last_action}"))


def _stage_row(name: str, sample: StageSample | None, slo_ms: float) -> StageRow:
    if sample is None:
        return StageRow(name, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, False)
    replicas = str(sample.replicas_ready)
    if sample.replicas_starting:
        replicas += f" +{sample.replicas_starting} starting"
    return StageRow(
        stage=name,
        replicas=replicas,
        cores_per_replica=f"{sample.cores_per_replica:.2f}",
        cores_in_force=f"{sample.cores_in_force:.2f}",
        batch=str(sample.max_batch_size),
        delay=f"{sample.max_delay_ms:g} ms",
        queue=str(sample.queue_depth),
        arrival=f"{sample.arrival_rps:.1f}/s",
        latency=_against_slo(sample.latency_ms, slo_ms),
        over_slo=_over(sample.latency_ms, slo_ms),
    )


def _against_slo(latency_ms: float | None, slo_ms: float) -> str:
    return NONE if latency_ms is None else f"{latency_ms:.1f} / {slo_ms:g} ms"


def _over(latency_ms: float | None, slo_ms: float) -> bool:
    return latency_ms is not None and latency_ms > slo_ms


def _percentile(timeline: RunTimeline) -> str:
    return f"p{timeline.percentile:g}"


def _what(action: ActionRecord) -> str:
    return f"{action.stage} {action.kind}: {action.detail}"


def _last_action(actions: list[ActionRecord]) -> str:
    if not actions:
        return NONE
    last = actions[-1]
    line = action_line(last)
    if last.reaction_s is not None:
        line += f", in force after {last.reaction_s:.1f} s"
    return line
