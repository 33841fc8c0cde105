"""Replicas on nodes: placement, start-up, in-place resize with deferral, and what they cost.

Nodes have a number of cores; a replica holds its cores on one node from placement until it
goes away. A new replica goes to the node with the most free cores; with no room anywhere
it stays pending (not ready, holding nothing) until room appears. A resize up needs the
extra cores free on the replica's own node: the node reserves them at once (the kubelet's
allocated resources) and the replica computes with them after the resize delay; without
room the resize is *deferred* and retried whenever cores are freed, the replica keeping
its cores meanwhile. A resize outside the stage's CPU bounds, or beyond a whole node, is
*infeasible* and never happens. What the nodes hold, summed over time, is the run's cost.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice_core.profiles import ModelProfile
from sluice_core.scaling.types import (
    RESIZE_DEFERRED,
    RESIZE_IN_PROGRESS,
    RESIZE_INFEASIBLE,
    RESIZE_NONE,
)

if TYPE_CHECKING:
    from sluice_core.simulate.service import ServiceTable
    from sluice_core.simulate.stage import StageSim

#: Cores compared with this tolerance (quantities like 0.1 do not add up exactly).
EPS = 1e-9

Schedule = Callable[[float, Callable[[float, Any], None], Any], None]


class Replica:
    """One replica (a pod) of a stage: where it runs, its cores, and its runtime's state.

    The runtime part (queue, executors, running batches) is driven by
    :class:`~sluice_core.simulate.stage.StageSim`; this class only holds it, in slots, so
    the simulator's inner loop reads plain attributes.
    """

    __slots__ = (
        "busy", "cores", "desired", "draining", "end_slot_sum", "executors", "id", "inbatch",
        "lone_mean1", "lone_upper1", "mean1", "model", "node", "queue", "ready",
        "removed", "reserved", "resize", "stage", "tables", "timer_at", "token", "upper1",
        "variant",
    )

    def __init__(self, replica_id: int, stage: StageSim, variant: str, model: ModelProfile,
                 cores: float) -> None:
        self.id = replica_id
        self.stage = stage
        self.variant = variant
        self.model = model
        #: Cores in force (what it computes with), and asked for by the last resize.
        self.cores = cores
        self.desired = cores
        #: Cores the node holds for it (0 while unplaced).
        self.reserved = 0.0
        self.node: int | None = None
        self.resize = RESIZE_NONE
        #: Bumped by every resize request: a resize completion with an older token is stale.
        self.token = 0
        self.ready = False
        self.draining = False
        self.removed = False
        # Runtime state: EDF queue of requests, executors, running batches.
        self.queue: collections.deque[list[float]] = collections.deque()
        self.executors = 1
        self.busy = 0
        self.inbatch = 0
        #: Sum over running batches of end time x executors held: the backlog of running
        #: work in executor-seconds is ``end_slot_sum - now * busy``, in O(1).
        self.end_slot_sum = 0.0
        self.timer_at: float | None = None
        self.tables: list[ServiceTable] = []
        self.mean1: list[float] = []
        self.upper1: list[float] = []
        self.lone_mean1 = 0.0
        self.lone_upper1 = 0.0

    @property
    def placed(self) -> bool:
        """Holds cores on a node."""
        return self.node is not None

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing computing."""
        return not self.queue and self.busy == 0


class Cluster:
    """Nodes, the replicas placed on them, and the cores allocated over time.

    ``schedule(time, callback, argument)`` is the simulator's event queue; a replica's
    stage is told when it is placed (:meth:`StageSim.replica_placed`) and when a resize
    took effect (:meth:`StageSim.replica_resized`).
    """

    def __init__(self, nodes: int, node_cores: float, stages: int, resize_delay_s: float,
                 schedule: Schedule, end_s: float) -> None:
        self.node_cores = node_cores
        self.free = [node_cores] * nodes
        self.resize_delay_s = resize_delay_s
        self._schedule = schedule
        self._end_s = end_s
        #: Replicas waiting for room: to be placed, or with a deferred resize (FIFO).
        self.pending: list[Replica] = []
        self.deferred: list[Replica] = []
        self.total_cores = 0.0
        self.peak_cores = 0.0
        self.core_seconds = 0.0
        self.stage_cores = [0.0] * stages
        self.stage_peak = [0.0] * stages
        self.stage_core_seconds = [0.0] * stages
        self.resizes_deferred = [0] * stages
        self.resizes_infeasible = [0] * stages
        self._last_s = 0.0

    # Cost ---------------------------------------------------------------------------------

    def account(self, now: float) -> None:
        """Integrate the allocation up to ``now`` (clipped to the run's end)."""
        until = min(now, self._end_s)
        span = until - self._last_s
        if span > 0:
            self.core_seconds += self.total_cores * span
            for index, cores in enumerate(self.stage_cores):
                self.stage_core_seconds[index] += cores * span
            self._last_s = until

    def _hold(self, replica: Replica, cores: float, now: float) -> None:
        """Set what the node holds for ``replica`` (its node's free cores already checked)."""
        delta = cores - replica.reserved
        if abs(delta) <= EPS:
            return
        self.account(now)
        assert replica.node is not None
        self.free[replica.node] -= delta
        replica.reserved = cores
        self.total_cores += delta
        index = replica.stage.index
        self.stage_cores[index] += delta
        if now < self._end_s:
            self.peak_cores = max(self.peak_cores, self.total_cores)
            self.stage_peak[index] = max(self.stage_peak[index], self.stage_cores[index])

    # Placement ----------------------------------------------------------------------------

    def place(self, replica: Replica, now: float) -> bool:
        """Put ``replica`` on the node with the most free cores, or queue it as pending."""
        best = max(range(len(self.free)), key=lambda n: (self.free[n], -n))
        if self.free[best] + EPS < replica.cores:
            if replica not in self.pending:
                self.pending.append(replica)
            return False
        replica.node = best
        self._hold(replica, replica.cores, now)
        return True

    def release(self, replica: Replica, now: float) -> None:
        """``replica`` is gone: free its cores and give them to whoever waits."""
        replica.removed = True
        if replica in self.pending:
            self.pending.remove(replica)
        if replica.node is not None:
            self._hold(replica, 0.0, now)
            replica.node = None
            self.retry(now)

    def retry(self, now: float) -> None:
        """Cores were freed: admit deferred resizes, then place pending replicas, in order."""
        for replica in list(self.deferred):
            settled = replica.removed or replica.resize != RESIZE_DEFERRED
            if settled or self._admit_resize(replica, now):
                self.deferred.remove(replica)
        for replica in list(self.pending):
            self.pending.remove(replica)
            if self.place(replica, now):
                replica.stage.replica_placed(replica, now)

    # Resize -------------------------------------------------------------------------------

    def resize(self, replica: Replica, cores: float, low: float, high: float,
               now: float) -> bool:
        """Ask ``replica`` to compute with ``cores`` (bounds ``[low, high]``); True when this
        changes what was asked before."""
        if abs(cores - replica.desired) <= EPS and replica.resize != RESIZE_NONE:
            return False  # the same resize is already under way, deferred or refused
        if abs(cores - replica.cores) <= EPS and replica.resize == RESIZE_NONE:
            return False
        replica.token += 1
        replica.desired = cores
        held = replica.reserved
        if not low - EPS <= cores <= high + EPS or cores > self.node_cores + EPS:
            replica.resize = RESIZE_INFEASIBLE
            self.resizes_infeasible[replica.stage.index] += 1
            if replica.node is not None:
                self._hold(replica, replica.cores, now)
        elif replica.node is None:  # not placed yet: it will start with these cores
            replica.cores = cores
            replica.resize = RESIZE_NONE
        elif abs(cores - replica.cores) <= EPS:  # back to what it has: cancel the resize
            replica.resize = RESIZE_NONE
            self._hold(replica, replica.cores, now)
        elif not self._admit_resize(replica, now):
            replica.resize = RESIZE_DEFERRED
            self.resizes_deferred[replica.stage.index] += 1
            self._hold(replica, replica.cores, now)
            if replica not in self.deferred:
                self.deferred.append(replica)
        if replica.reserved < held - EPS:
            self.retry(now)
        return True

    def _admit_resize(self, replica: Replica, now: float) -> bool:
        """Reserve what the resize needs on the replica's node and start it, if there is room."""
        assert replica.node is not None
        need = max(replica.cores, replica.desired)
        if need - replica.reserved > self.free[replica.node] + EPS:
            return False
        self._hold(replica, need, now)
        replica.resize = RESIZE_IN_PROGRESS
        self._schedule(now + self.resize_delay_s, self._resized, (replica, replica.token))
        return True

    def _resized(self, now: float, argument: tuple[Replica, int]) -> None:
        replica, token = argument
        if replica.removed or token != replica.token:
            return
        replica.cores = replica.desired
        replica.resize = RESIZE_NONE
        shrunk = replica.reserved > replica.cores + EPS
        self._hold(replica, replica.cores, now)
        replica.stage.replica_resized(replica, now)
        if shrunk:
            self.retry(now)
