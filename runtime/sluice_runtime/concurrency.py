"""How many requests a downstream stage can hold and still answer in time, learned online.

A pipeline cannot see a remote stage's queue, but it sees what comes back: answers, and
refusals because a stage's work ahead would miss the deadline. It starts unlimited; a
refusal sets the limit just below the concurrency at which it happened, additive increase
on answers probes upwards again, and decreases come at most once per round trip (one
burst of refusals counts once). The limit is the signal to refuse at the pipeline's
entrance, before any stage works on a request the bottleneck would refuse anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

# How much of the limit one refusal takes away.
DECREASE_FACTOR = 0.8


@dataclass
class ConcurrencyLimit:
    """An AIMD concurrency limit; times are monotonic seconds passed in by the caller."""

    limit: float = 4096.0
    minimum: float = 1.0
    maximum: float = 4096.0
    in_flight: int = 0
    _last_decrease_s: float = float("-inf")
    _round_trip_s: float = 0.0

    @property
    def full(self) -> bool:
        """True when another request now would exceed what the stage sustains."""
        return self.in_flight >= self.limit

    def answered(self, round_trip_s: float) -> None:
        """A request came back answered: widen, if the limit was what held it back."""
        self._round_trip_s = round_trip_s
        if self.in_flight + 1 >= self.limit / 2:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)

    def refused(self, now_s: float) -> None:
        """A request was refused for lack of time while ``in_flight`` were held (itself
        included): narrow to below that, once per round trip."""
        if now_s - self._last_decrease_s < self._round_trip_s:
            return
        self._last_decrease_s = now_s
        self.limit = max(self.minimum, min(self.limit, self.in_flight) * DECREASE_FACTOR)
