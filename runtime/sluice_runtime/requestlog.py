"""Per-request and per-batch records as JSON lines, for offline analysis of batching."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import IO, Any

log = logging.getLogger(__name__)


class RequestLog:
    """Writes one JSON object per line; times are Unix seconds.

    Callers pass monotonic times (what the batcher measures with); they are converted
    with one offset taken at start, so records stay consistent with each other.
    """

    def __init__(self, target: str | None) -> None:
        self.failed_writes = 0
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
        """Append one record; a log that cannot be written never fails a request.

        A full disk or a closed pipe loses records (counted in ``failed_writes`` and
        warned about once), not answers.
        """
        if self._out is None:
            return
        try:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:
            if not self.failed_writes:
                log.warning("request log: cannot write records, dropping them: %s", exc)
            self.failed_writes += 1

    def close(self) -> None:
        """Flush and close (stdout is only flushed)."""
        if self._out is None:
            return
        out, self._out = self._out, None
        # Lost records were already counted and warned about by write.
        with contextlib.suppress(OSError):
            out.flush()
            if out is not sys.stdout:
                out.close()
