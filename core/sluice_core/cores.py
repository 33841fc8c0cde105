"""How the runtime spends an allocation of cores: the rule the runtime applies and the
profiler reproduces, kept in one place."""

from __future__ import annotations

import math


def executors_for(cores: float) -> int:
    """Concurrent batch executions for a CPU allocation: one per whole core, at least one.

    A fractional core rounds to nearest: 1.5 cores run two executors that the kernel
    throttles a little, which beats leaving half a core idle.
    """
    return max(1, math.floor(cores + 0.5))
