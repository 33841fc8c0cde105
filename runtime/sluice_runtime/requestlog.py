"""Per-request and per-batch records as JSON lines, for offline analysis of batching."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


class RequestLog:
    """Writes one JSON object per line; times are Unix seconds.

    Callers pass monotonic times (what the batcher measures with); they are converted
    with one offset taken at start, so records stay consistent with each other.
    """

    def __init__(self, target: str | None) -> None:
        self._offset = time.time() - time.monotonic()
        self._out: IO[str] | None
        if target is None:
            self._out = None
        elif target == "-":
            self._out = sys.stdout
        else:
            self._out = open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    @property
    def enabled(self) -> bool:
        """True when records are being written."""
        return self._out is not None

    def wall(self, monotonic_s: float) -> float:
        """A monotonic time as Unix seconds."""
        return round(self._offset + monotonic_s, 6)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if self._out is not None:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Flush and close (stdout is only flushed)."""
        if self._out is None:
            return
        self._out.flush()
        if self._out is not sys.stdout:
            self._out.close()
        self._out = None
