"""What the stages of one simulation share: events, randomness, the cluster, the router's
reserves, and the ledger every request ends in.

A request is a plain list indexed by the constants below (a list is the cheapest record in
the inner loop); its deadline is absolute and travels with it from stage to stage.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice_core.simulate.cluster import Cluster
from sluice_core.simulate.config import SimConfig
from sluice_core.simulate.results import BUCKETS_PER_S
from sluice_core.simulate.service import HopSampler, TableCache

if TYPE_CHECKING:
    from sluice_core.simulate.stage import StageSim

# The fields of a request.
STAGE_DEADLINE = 0  # absolute deadline at the current stage: EDF key
DEADLINE = 1  # absolute end-to-end deadline: arrival + SLO
ENTERED = 2  # when it reached the current stage (after the hop)
ARRIVAL = 3  # when the client sent it
CALLED = 4  # when the router called the current stage (before the hop)


class Flow:
    """What the stages of one run share: the event queue, randomness, the cluster, the
    router's latency reserves, and the ledger of requests' outcomes.

    Events are ``(time, sequence, callback, argument)`` in the ``heap``; ties run in the
    order they were scheduled. The hot paths push onto it directly.
    """

    def __init__(self, config: SimConfig, random: Callable[[], float],
                 hop: HopSampler | None, stages: int, end_s: float,
                 instant: bool = False) -> None:
        self.config = config
        #: Replicas start and resizes land at once (the clairvoyant bound pays no delay).
        self.instant = instant
        self.heap: list[tuple[float, int, Callable[[float, Any], None], Any]] = []
        self.sequence = itertools.count()
        self.cluster = Cluster(config.nodes, config.node_cores, stages,
                               0.0 if instant else config.resize_delay_s,
                               self.schedule, end_s)
        self.random = random
        self.hop = hop
        self.tables = TableCache()
        self.stages: list[StageSim] = []
        #: Per stage, what the router reserves for it: its moving average of a call's
        #: latency while the stage has requests in flight, else 0 (``RemoteModel``).
        self.reserve = [0.0] * stages
        # The ledger: every request ends exactly once, ok, late or rejected.
        self.requests = 0
        self.ok = 0
        self.late = 0
        self.rejected = 0
        self.latency: dict[int, int] = {}

    def schedule(self, when: float, callback: Callable[[float, Any], None],
                 argument: Any) -> None:
        """Call ``callback(when, argument)`` at simulated time ``when``."""
        heapq.heappush(self.heap, (when, next(self.sequence), callback, argument))

    def reserve_from(self, index: int) -> float:
        """What the router predicts stages ``index..`` take (0 past the last)."""
        return sum(self.reserve[index:])

    def finish(self, batch: list[list[float]], now: float) -> None:
        """The last stage answered ``batch``: count each in time or late."""
        latency = self.latency
        ok = 0
        for request in batch:
            bucket = int((now - request[ARRIVAL]) * BUCKETS_PER_S)
            latency[bucket] = latency.get(bucket, 0) + 1
            if now <= request[DEADLINE]:
                ok += 1
        self.ok += ok
        self.late += len(batch) - ok
