"""Pure batch formation: an earliest-deadline-first queue, merge and split, when to dispatch.

Nothing here awaits or touches threads; :mod:`sluice_runtime.batcher` drives it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sluice_runtime.signature import InferenceRequest

# Shape-and-type fingerprint: only requests with equal keys can share a batch.
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]

# Start a little before the last moment: prediction is an average, not a bound.
DISPATCH_SLACK_S = 0.0005


def batch_key(request: InferenceRequest, batchable: bool) -> BatchKey | int:
    """Requests with the same key can be concatenated on the batch axis.

    A model without a batch axis gets a unique key per request, so it is never batched.
    """
    if not batchable:
        return id(request)
    return tuple(
        sorted((name, a.dtype.str, tuple(a.shape[1:])) for name, a in request.inputs.items())
    )


@dataclass(eq=False)
class PendingRequest:
    """A queued request with the future its caller awaits."""

    request: InferenceRequest
    future: Any  # asyncio.Future[dict[str, np.ndarray]]; typed loosely to keep this pure
    arrival: float
    key: BatchKey | int
    taken: bool = False
    # Admitted by an idle model on the mean estimate alone: a probe that teaches the
    # latency model, judged by the mean at dispatch too, or it would be refused there.
    probe: bool = False

    @property
    def deadline(self) -> float:
        """Absolute deadline on the monotonic clock."""
        return self.request.deadline

    @property
    def rows(self) -> int:
        """Rows this request adds to a batch."""
        return self.request.rows

    @property
    def live(self) -> bool:
        """Still waiting for an answer (not taken, not cancelled by its caller)."""
        return not self.taken and not self.future.done()


@dataclass
class _Group:
    heap: list[tuple[float, int, PendingRequest]] = field(default_factory=list)
    rows: int = 0


class EdfQueue:
    """Pending requests ordered by (end-to-end) deadline, grouped by batch key.

    A request leaves by being taken into a batch or, the moment its caller cancels it,
    from the counts (its heap entry is discarded lazily when it reaches the front of its
    group or of arrivals), so ``len`` and ``rows`` count only requests still wanted.
    """

    def __init__(self) -> None:
        self._groups: dict[BatchKey | int, _Group] = {}
        self._by_arrival: deque[PendingRequest] = deque()
        self._sequence = itertools.count()
        self._count = 0
        self._rows = 0

    def __len__(self) -> int:
        return self._count

    @property
    def rows(self) -> int:
        """Rows of every live queued request, all batch keys together."""
        return self._rows

    def push(self, pending: PendingRequest) -> None:
        """Queue a request."""
        group = self._groups.setdefault(pending.key, _Group())
        heapq.heappush(group.heap, (pending.request.order, next(self._sequence), pending))
        group.rows += pending.rows
        self._by_arrival.append(pending)
        self._count += 1
        self._rows += pending.rows
        pending.future.add_done_callback(lambda _: self._retire(pending))

    def _retire(self, pending: PendingRequest) -> None:
        if pending.taken:
            return
        pending.taken = True
        self._count -= 1
        self._rows -= pending.rows
        self._groups[pending.key].rows -= pending.rows

    def _front(self, key: BatchKey | int) -> PendingRequest | None:
        group = self._groups[key]
        while group.heap:
            pending = group.heap[0][2]
            if pending.live:
                return pending
            heapq.heappop(group.heap)
            self._retire(pending)
        del self._groups[key]
        return None

    def head(self) -> PendingRequest | None:
        """The live request served first: the earliest (end-to-end) deadline."""
        fronts = (self._front(key) for key in list(self._groups))
        return min((p for p in fronts if p is not None), key=lambda p: p.request.order,
                   default=None)

    def rows_with_key(self, key: BatchKey | int) -> int:
        """Rows queued that could share a batch with ``key``."""
        group = self._groups.get(key)
        return group.rows if group else 0

    def oldest_arrival(self) -> float | None:
        """Arrival time of the longest-waiting live request."""
        while self._by_arrival and not self._by_arrival[0].live:
            self._retire(self._by_arrival.popleft())
        return self._by_arrival[0].arrival if self._by_arrival else None

    def pop_batch(self, max_rows: int) -> list[PendingRequest]:
        """Take the request served first and the next ones with its key, up to max_rows.

        The first request is taken even when it alone exceeds ``max_rows``.
        """
        first = self.head()
        if first is None:
            return []
        batch: list[PendingRequest] = []
        rows = 0
        while (pending := self._front(first.key)) is not None:
            if batch and rows + pending.rows > max_rows:
                break
            heapq.heappop(self._groups[first.key].heap)
            self._retire(pending)
            batch.append(pending)
            rows += pending.rows
        return batch

    def drain(self) -> list[PendingRequest]:
        """Remove and return every live request (used when failing them all)."""
        live = [p for p in self._by_arrival if p.live]
        for pending in live:
            pending.taken = True
        self._groups.clear()
        self._by_arrival.clear()
        self._count = 0
        self._rows = 0
        return live


def batch_work_s(rows: int, max_batch_size: int, predict_s: Callable[[int], float]) -> float:
    """Mean compute seconds to serve ``rows`` queued rows in batches of ``max_batch_size``.

    Under load batches fill up, so the rows are charged as full batches plus one partial
    batch: on a compute-bound model that is proportional to the rows, on an overhead-bound
    one batching makes each row cheap, and both come from measured batches.
    """
    full, rest = divmod(rows, max_batch_size)
    work = full * predict_s(max_batch_size) if full else 0.0
    return work + (predict_s(rest) if rest else 0.0)


def dispatch_at(
    now: float,
    queued_rows: int,
    oldest_arrival: float,
    earliest_deadline: float,
    max_batch_size: int,
    max_delay_s: float,
    predict_s: Callable[[int], float],
    idle_executor: bool = False,
    arrival_rate_per_s: float = 0.0,
) -> float:
    """When the next batch should start (a time <= ``now`` means at once).

    Full batches go now. Otherwise wait for more requests until the oldest one has waited
    ``max_delay_s``, or until waiting longer would make the earliest deadline miss given
    the predicted compute time of the batch we would run. But when an executor sits idle
    and fewer than one more request is expected before then, waiting only adds latency:
    start now (at high load executors are busy, and batches grow while they are).
    """
    if queued_rows >= max_batch_size:
        return now
    rows = min(queued_rows, max_batch_size)
    latest_start = earliest_deadline - predict_s(rows) - DISPATCH_SLACK_S
    start = min(oldest_arrival + max_delay_s, latest_start)
    if idle_executor and arrival_rate_per_s * (start - now) < 1.0:
        return now
    return start


def merge_inputs(requests: Sequence[InferenceRequest]) -> dict[str, np.ndarray]:
    """Concatenate the inputs of same-key requests on the batch axis."""
    if len(requests) == 1:
        return requests[0].inputs
    names = requests[0].inputs.keys()
    return {name: np.concatenate([r.inputs[name] for r in requests]) for name in names}


def split_outputs(
    outputs: dict[str, np.ndarray], rows: Sequence[int]
) -> list[dict[str, np.ndarray]]:
    """Split batch outputs back into one dict per request, checking the row count."""
    if len(rows) == 1:
        return [outputs]
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ValueError(
                f"output '{name}' has shape {list(array.shape)} for a batch of {total} rows"
            )
    bounds = np.cumsum(rows)[:-1]
    per_output = {name: np.split(array, bounds) for name, array in outputs.items()}
    return [{name: parts[i] for name, parts in per_output.items()} for i in range(len(rows))]
