"""A resizable count of the cores batches compute on, shared by all models of a pod."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Threads are cheap and created lazily; the limit, not the pool size, caps parallelism,
# so growing the limit after an in-place resize needs no new pool.
_MAX_THREADS = 64
# Compute threads yield to the event loop: receiving, admitting and refusing requests is
# short and must happen when they arrive, or under overload requests wait unseen in the
# transport and everything served is late. Nice 5 still leaves compute a quarter of a
# contended core (CFS weights 335 against 1024), so a flood of arrivals cannot starve it.
COMPUTE_NICE = 5


def _lower_priority() -> None:
    """Run the calling thread (a compute thread) at a lower priority than the event loop."""
    # Not Linux, or not permitted: then compute runs at the loop's priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), COMPUTE_NICE)


def in_compute_thread(fn: Callable[..., T], *args: object) -> T:
    """Call ``fn(*args)`` on a new thread at compute priority and return its result.

    For making onnxruntime sessions: their intra-op worker threads are created then and
    inherit the creating thread's priority, so they yield to the event loop too.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def call() -> None:
        _lower_priority()
        try:
            result.append(fn(*args))
        except BaseException as exc:  # handed to the caller's thread as is
            error.append(exc)

    thread = threading.Thread(target=call, name="sluice-session")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class ExecutorPool:
    """Hands out at most ``limit`` cores at a time to batch computations.

    Waiting batches get cores earliest deadline first, across models: the stages of a
    fused pipeline share the cores, and a later stage's batch for a request near its
    deadline must not queue behind a first stage's batch for a newer one. Equal
    deadlines are served in the order they came.

    A batch waits for one core (:meth:`acquire`), then may take more that are free at that
    moment (:meth:`take_free`) for intra-op threads: it never waits for several at once,
    so a wide batch cannot hold cores idle while it collects them. Lowering the limit
    never interrupts running batches: they finish, and new ones are admitted only once
    fewer cores than the new limit are in use.
    """

    def __init__(self, limit: int) -> None:
        self._threads = ThreadPoolExecutor(
            _MAX_THREADS, thread_name_prefix="sluice-exec", initializer=_lower_priority
        )
        self._limit = limit
        self._busy = 0
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    @property
    def limit(self) -> int:
        """Cores batches may use at once."""
        return self._limit

    @property
    def busy(self) -> int:
        """Cores in use now."""
        return self._busy

    @property
    def free(self) -> int:
        """Cores a batch could take now without anyone waiting first."""
        return 0 if self._waiters else max(self._limit - self._busy, 0)

    def resize(self, limit: int) -> None:
        """Change the limit; takes effect for the next admissions."""
        self._limit = max(1, limit)
        self._admit_waiters()

    def try_acquire(self) -> bool:
        """Take a free core if there is one and nobody waits for it."""
        return self.take_free(1) == 1

    def take_free(self, cores: int) -> int:
        """Take up to ``cores`` more of the free ones at once; how many were taken."""
        taken = min(max(cores, 0), self.free)
        self._busy += taken
        return taken

    async def acquire(self, timeout_s: float | None = None, order: float = math.inf) -> bool:
        """Wait for a free core and take it; False if ``timeout_s`` passed first.

        ``order`` ranks this waiter among the others: the (end-to-end) deadline of the
        work it is for; the earliest is served first.

        Every path leaves the count right: a waiter admitted just as it is cancelled or
        times out hands its slot on, and one cancelled after admission skipped it is
        simply forgotten.
        """
        if self.try_acquire():
            return True
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (order, next(self._sequence), waiter))
        try:
            await asyncio.wait({waiter}, timeout=timeout_s)
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        if waiter.done() and not waiter.cancelled():
            return True
        self._abandon(waiter)
        return False

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self._busy -= 1  # admitted as we gave up: hand the slot on
            self._admit_waiters()
            return
        waiter.cancel()
        # _admit_waiters may already have popped it.
        self._waiters = [entry for entry in self._waiters if entry[2] is not waiter]
        heapq.heapify(self._waiters)

    def release(self, cores: int = 1) -> None:
        """Return cores taken with :meth:`acquire` and :meth:`take_free`."""
        self._busy -= cores
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        while self._waiters and self._busy < self._limit:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                self._busy += 1
                waiter.set_result(None)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a compute thread (the caller holds its cores)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def shutdown(self) -> None:
        """Stop the threads once running work finishes."""
        self._threads.shutdown(wait=True)
