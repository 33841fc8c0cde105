"""A resizable limit on how many batches compute at once, shared by all models of a pod."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
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


class ExecutorPool:
    """Admits at most ``limit`` batch computations at a time, FIFO across models.

    Lowering the limit never interrupts running batches: they finish, and new ones are
    admitted only once fewer than the new limit run.
    """

    def __init__(self, limit: int) -> None:
        self._threads = ThreadPoolExecutor(
            _MAX_THREADS, thread_name_prefix="sluice-exec", initializer=_lower_priority
        )
        self._limit = limit
        self._busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """Batches allowed to run at once."""
        return self._limit

    @property
    def busy(self) -> int:
        """Batches running now."""
        return self._busy

    def resize(self, limit: int) -> None:
        """Change the limit; takes effect for the next admissions."""
        self._limit = max(1, limit)
        self._admit_waiters()

    def try_acquire(self) -> bool:
        """Take a free executor if there is one and nobody waits for it."""
        if self._busy < self._limit and not self._waiters:
            self._busy += 1
            return True
        return False

    async def acquire(self, timeout_s: float | None = None) -> bool:
        """Wait for a free executor and take it; False if ``timeout_s`` passed first.

        Every path leaves the count right: a waiter admitted just as it is cancelled or
        times out hands its slot on, and one cancelled after admission skipped it is
        simply forgotten.
        """
        if self.try_acquire():
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
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
        if waiter in self._waiters:  # _admit_waiters may already have popped it
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Return an executor taken with :meth:`acquire`."""
        self._busy -= 1
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        while self._waiters and self._busy < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._busy += 1
                waiter.set_result(None)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on a thread (the caller holds an executor)."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    def shutdown(self) -> None:
        """Stop the threads once running work finishes."""
        self._threads.shutdown(wait=True)
