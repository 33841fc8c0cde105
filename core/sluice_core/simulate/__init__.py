"""A discrete-event simulator of a pipeline under a scaling policy (``sluice simulate``).

Requests arrive per second (a trace, Poisson, or a two-state MMPP), travel through the
stages with their end-to-end deadline, wait in each replica's earliest-deadline-first
queue, are batched and computed as the runtime does it, with service times drawn from the
measured profiles at the cores in force; replicas start, drain and resize with the
platform's delays on nodes of limited size; the policy sees what the real control loops
see and acts every ``interval_s``. Pure Python on seeded ``random.Random`` streams.
"""

from sluice_core.simulate.config import (
    DEFAULT_NODE_CORES,
    DEFAULT_NODES,
    DEFAULT_PLATFORM_START_S,
    DEFAULT_RESIZE_DELAY_S,
    SimConfig,
    SimulationError,
)
from sluice_core.simulate.engine import simulate
from sluice_core.simulate.results import SimResult, StageResult
from sluice_core.simulate.workload import mmpp_counts, poisson_counts, trace_counts

__all__ = [
    "DEFAULT_NODES",
    "DEFAULT_NODE_CORES",
    "DEFAULT_PLATFORM_START_S",
    "DEFAULT_RESIZE_DELAY_S",
    "SimConfig",
    "SimResult",
    "SimulationError",
    "StageResult",
    "mmpp_counts",
    "poisson_counts",
    "simulate",
    "trace_counts",
]
