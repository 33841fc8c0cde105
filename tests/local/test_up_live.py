"""The live view of `sluice up`: what it shows from the timeline, the plain log lines when
the output is not a terminal, and the rich table when it is."""

import io
from dataclasses import replace

from rich.console import Console
from sluice_local.up.live import LiveView, action_line, render_rows, tick_line
from sluice_local.up.timeline import ActionRecord, RunTimeline, StageSample, Tick

STAGES = ("intent", "policy", "response")


def sample(stage: str, *, ready: int = 1, starting: int = 0, cores: float = 0.5,
           queue: int = 0, batch: int = 32, delay_ms: float = 2.0, rps: float = 85.0,
           latency_ms: float | None = 20.0) -> StageSample:
    return StageSample(
        stage=stage, replicas_ready=ready, replicas_starting=starting, cores_per_replica=cores,
        cores_in_force=cores * ready, cores_allocated=cores * (ready + starting),
        max_batch_size=batch, max_delay_ms=delay_ms, queue_depth=queue, arrival_rps=rps,
        latency_ms=latency_ms, answered=80, late=1, refused=0)


def tick(t_s: float, *, ok: int = 90, missed: int = 10, latency_ms: float | None = 63.2,
         rps: float = 85.0, **overrides: StageSample) -> Tick:
    stages = tuple(overrides.get(name, sample(name)) for name in STAGES)
    return Tick(t_s=t_s, entrance_rps=rps, ok=ok, missed=missed, latency_ms=latency_ms,
                stages=stages)


def timeline(*ticks: Tick, actions: list[ActionRecord] | None = None) -> RunTimeline:
    return RunTimeline(pipeline="chatbot", policy="hybrid", slo_ms=100.0, percentile=99.0,
                       stages=STAGES, ticks=list(ticks), actions=list(actions or []))


SCALE_OUT = ActionRecord(t_s=11.0, stage="response", kind="replicas",
                         detail="2 replicas at 1 core", reason="queue growing")
RESIZE = ActionRecord(t_s=12.0, stage="intent", kind="resize", detail="1.5 cores",
                      reason="p99 near the SLO")


# --- what to show ---------------------------------------------------------------------


def test_nothing_yet_shows_dashes():
    rows = render_rows(timeline(), 0.0, 60.0)
    assert [row.stage for row in rows.stages] == list(STAGES)
    assert rows.attainment == "-"
    assert rows.entrance == "-"
    assert rows.latency == "-"
    assert rows.last_action == "-"
    assert all(row.replicas == "-" and row.latency == "-" for row in rows.stages)
    assert "chatbot" in rows.title
    assert "hybrid" in rows.title
    assert "100 ms" in rows.title
    assert "p99" in rows.title


def test_attainment_is_over_every_tick_so_far():
    rows = render_rows(timeline(tick(1.0, ok=90, missed=10), tick(2.0, ok=100, missed=0)),
                       2.0, 60.0)
    assert rows.attainment == "95.0%"


def test_attainment_with_no_requests_yet_is_a_dash():
    rows = render_rows(timeline(tick(1.0, ok=0, missed=0, latency_ms=None)), 1.0, 60.0)
    assert rows.attainment == "-"
    assert rows.latency == "-"


def test_stages_come_from_the_latest_tick():
    first = tick(1.0, rps=10.0, intent=sample("intent", queue=9, rps=10.0))
    latest = tick(2.0, rps=85.0, latency_ms=63.2,
                  intent=sample("intent", queue=3, batch=16, delay_ms=2.5, cores=0.5,
                                rps=84.5, latency_ms=42.1))
    rows = render_rows(timeline(first, latest), 2.0, 60.0)
    intent = rows.stages[0]
    assert intent.queue == "3"
    assert intent.batch == "16"
    assert intent.delay == "2.5 ms"
    assert intent.arrival == "84.5/s"
    assert intent.cores_per_replica == "0.50"
    assert intent.cores_in_force == "0.50"
    assert intent.latency == "42.1 / 100 ms"
    assert not intent.over_slo
    assert rows.entrance == "85.0/s"
    assert rows.latency == "63.2 / 100 ms"
    assert not rows.over_slo


def test_starting_replicas_are_shown():
    rows = render_rows(timeline(tick(
        1.0, response=sample("response", ready=1, starting=2, cores=1.0))), 1.0, 60.0)
    response = rows.stages[2]
    assert response.replicas == "1 +2 starting"
    assert response.cores_in_force == "1.00"
    assert rows.stages[0].replicas == "1"


def test_latency_over_the_slo_is_flagged():
    rows = render_rows(timeline(tick(
        1.0, latency_ms=130.0, policy=sample("policy", latency_ms=120.0))), 1.0, 60.0)
    assert rows.stages[1].over_slo
    assert rows.stages[1].latency == "120.0 / 100 ms"
    assert not rows.stages[0].over_slo
    assert rows.over_slo
    assert rows.latency == "130.0 / 100 ms"


def test_elapsed_against_the_duration_or_until_stopped():
    assert render_rows(timeline(), 12.4, 60.0).elapsed == "12s / 60s"
    assert "Ctrl-C" in render_rows(timeline(), 12.4, None).elapsed


def test_last_action_pending_then_effective():
    pending = render_rows(timeline(tick(12.0), actions=[RESIZE, SCALE_OUT]), 12.0, 60.0)
    assert pending.last_action.startswith("t=11.0s response replicas: 2 replicas at 1 core")
    assert "queue growing" in pending.last_action
    assert "in force" not in pending.last_action
    effective = render_rows(
        timeline(tick(12.0), actions=[RESIZE, replace(SCALE_OUT, effective_s=11.8)]),
        12.0, 60.0)
    assert "in force after 0.8 s" in effective.last_action


def test_action_line():
    assert action_line(SCALE_OUT) == (
        "t=11.0s response replicas: 2 replicas at 1 core (queue growing)")


def test_tick_line():
    run = timeline(tick(12.0, response=sample("response", ready=2, starting=1, cores=1.0,
                                              queue=3, batch=16)))
    assert tick_line(run, run.ticks[-1]) == (
        "t=12s in 85.0/s p99 63.2ms (SLO 100) met 90.0% | intent 1r 0.50c q0 b32 "
        "| policy 1r 0.50c q0 b32 | response 2r+1 1.00c q3 b16")


def test_tick_line_flags_over_the_slo_and_no_answers():
    over = timeline(tick(3.0, latency_ms=150.0))
    assert "p99 150.0ms! (SLO 100)" in tick_line(over, over.ticks[-1])
    none = timeline(tick(3.0, latency_ms=None))
    assert "p99 -ms" not in tick_line(none, none.ticks[-1])
    assert "p99 - (SLO 100)" in tick_line(none, none.ticks[-1])


# --- plain mode -----------------------------------------------------------------------


def test_plain_mode_prints_a_line_per_tick_and_each_action_once():
    run = timeline()
    stream = io.StringIO()
    with LiveView(run, 60.0, stream=stream) as view:
        run.ticks.append(tick(1.0))
        view.update(1.0)
        run.ticks.append(tick(2.0))
        run.actions.append(SCALE_OUT)
        view.update(2.0)
        run.ticks.append(tick(3.0))
        run.actions.append(RESIZE)
        view.update(3.0)
        view.update(3.5)  # no new tick, no new action: nothing
        run.ticks.append(tick(4.0))
        run.actions[0] = replace(SCALE_OUT, effective_s=11.8)
        view.update(4.0)
        run.ticks.append(tick(5.0))
        view.update(5.0)
    lines = stream.getvalue().splitlines()
    assert [line.split()[0] for line in lines if " met " in line] == [
        "t=1s", "t=2s", "t=3s", "t=4s", "t=5s"]
    assert sum("2 replicas at 1 core" in line and "queue growing" in line
               for line in lines) == 1
    assert sum("1.5 cores" in line for line in lines) == 1
    assert sum("in force after 0.8 s" in line for line in lines) == 1
    assert len(lines) == 5 + 2 + 1


def test_plain_mode_prints_an_action_already_in_force_with_its_reaction():
    run = timeline(tick(1.0), actions=[replace(RESIZE, effective_s=12.25)])
    stream = io.StringIO()
    with LiveView(run, None, stream=stream) as view:
        view.update(1.0)
        view.update(1.0)
    text = stream.getvalue()
    assert text.count("1.5 cores") == 2  # decided, then in force
    assert text.count("in force after 0.2 s") == 1


def test_plain_mode_prints_nothing_before_the_first_tick():
    stream = io.StringIO()
    with LiveView(timeline(), 60.0, stream=stream) as view:
        view.update(0.5)
    assert stream.getvalue() == ""


# --- terminal mode --------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_mode_draws_a_table_with_the_stages_and_figures():
    run = timeline()
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    stream = Terminal()
    with LiveView(run, 60.0, stream=stream, console=console) as view:
        run.ticks.append(tick(1.0, response=sample("response", ready=1, starting=1,
                                                   latency_ms=142.1)))
        run.actions.append(SCALE_OUT)
        view.update(1.0)
    out = screen.getvalue()
    for name in (*STAGES, "chatbot", "hybrid"):
        assert name in out
    assert "142.1 / 100 ms" in out
    assert "+1 starting" in out
    assert "90.0%" in out
    assert "2 replicas at 1 core" in out
    assert "queue growing" in out
    assert stream.getvalue() == ""  # everything went to the console
    assert "| intent" not in out  # no plain log lines


def test_terminal_mode_writes_to_the_stream_by_default():
    run = timeline(tick(1.0))
    stream = Terminal()
    with LiveView(run, None, stream=stream) as view:
        view.update(1.0)
    out = stream.getvalue()
    for name in STAGES:
        assert name in out
