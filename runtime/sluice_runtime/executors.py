"""A resizable limit on how many batches compute at once, shared by all models of a pod."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Threads are cheap and created lazily; the limit, not the pool size, caps parallelism,
# so growing the limit after an in-place resize needs no new pool.
_MAX_THREADS = 64


class ExecutorPool:
    """Admits at most ``limit`` batch computations at a time, FIFO across models.

    Lowering the limit never interrupts running batches: they finish, and new ones are
    admitted only once fewer than the new limit run.
    """

    def __init__(self, limit: int) -> None:
        self._threads = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="sluice-exec")
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

    async def acquire(self) -> None:
        """Wait for a free executor and take it."""
        if self._busy < self._limit and not self._waiters:
            self._busy += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._busy -= 1  # admitted just as we were cancelled: hand the slot on
                self._admit_waiters()
            else:
                self._waiters.remove(waiter)
            raise

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
