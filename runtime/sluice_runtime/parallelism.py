"""How many intra-op threads a batch gets: the choice that ends the waiting work soonest.

A core can run one thread of one batch. Given the free cores, the batches ready to run
and the measured compute time of a batch by thread count, each option ``threads`` runs
``free // threads`` batches side by side, in rounds; the option whose last round ends
first wins, and fewer threads win a tie (they cost less CPU for the same answer). So a
lone batch takes every free core that makes it faster, several waiting batches share the
cores one thread each unless threads scale almost perfectly, and a model that threads
slow down keeps one — from the measurements, not a fixed rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# predict(threads, rows): mean compute seconds measured for that setting, None if never.
Predict = Callable[[int, int], float | None]


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
