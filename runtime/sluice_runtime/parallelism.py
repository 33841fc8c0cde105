"""How many intra-op threads a batch gets: the choice that ends the waiting work soonest.

A core can run one thread of one batch. Given the free cores, the batches ready to run
and the measured compute time of a batch by thread count, each option ``threads`` runs
``free // threads`` batches side by side, in rounds; the option whose last round ends
first wins, and fewer threads win a tie (they cost less CPU for the same answer). So a
lone batch takes every free core that makes it faster, several waiting batches share the
cores one thread each unless threads scale almost perfectly, and a model that threads
slow down keeps one — from the measurements, not a fixed rule.

Batches that will arrive while this one runs count as ready too (:func:`arriving_batches`):
under a steady stream the queue is often short at the instant a batch starts although
the next batch is already on its way, and taking every core for one batch then costs
throughput (two threads do about 1.8x, not 2x, the work of one).
"""

from __future__ import annotations

import math
from collections.abc import Callable

# predict(threads, rows): mean compute seconds measured for that setting, None if never.
Predict = Callable[[int, int], float | None]


def arriving_batches(rate_per_s: float, one_thread_s: float | None, max_rows: int) -> int:
    """Full batches that arrivals at ``rate_per_s`` (requests) make while a batch runs for
    ``one_thread_s`` on one thread (None: not measured yet, nothing is assumed).

    Rounded down: a fraction of a batch is a request that may or may not come in time,
    and a lone request on an otherwise idle model should still go wide.
    """
    if one_thread_s is None:
        return 0
    return math.floor(rate_per_s * one_thread_s / max(max_rows, 1))


def choose_threads(free_cores: int, ready_batches: int, rows: int, predict: Predict) -> int:
    """Intra-op threads for the next batch of ``rows``, at most ``free_cores`` (>= 1).

    A thread count never measured is tried on a lone batch, where the cores would
    otherwise idle: measuring it costs nobody a wait. With several batches ready, only
    measured settings are considered.
    """
    free_cores = max(1, free_cores)
    ready_batches = max(1, ready_batches)
    best, best_end_s = 1, math.inf
    for threads in range(1, free_cores + 1):
        seconds = predict(threads, rows)
        if seconds is None:
            if ready_batches == 1:
                return threads
            continue
        rounds = math.ceil(ready_batches / (free_cores // threads))
        if rounds * seconds < best_end_s:
            best, best_end_s = threads, rounds * seconds
    return best
