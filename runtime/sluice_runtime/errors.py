"""One error type for the data plane, carrying the status it maps to.

Every failure a caller can see is an :class:`InferenceError` with a :class:`Status`; the
servicer turns it into a gRPC status in one place (``servicer.grpc_code``), so the
batching and pipeline code never touches gRPC (an import-linter contract holds it).
"""

from __future__ import annotations

import enum


class Status(enum.Enum):
    """Protocol-neutral outcomes, named as the gRPC and Open Inference Protocol codes are."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"
    UNKNOWN = "UNKNOWN"


class StartupError(Exception):
    """The runtime cannot start as configured; the message says what to fix."""


class InferenceError(Exception):
    """A failure to report to the caller with a specific status."""

    code: Status = Status.INTERNAL

    def __init__(self, message: str, code: Status | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ModelNotFound(InferenceError):
    """The named model is not served here."""

    code = Status.NOT_FOUND


class InvalidInput(InferenceError):
    """The request does not fit the model's signature."""

    code = Status.INVALID_ARGUMENT


class DeadlineUnmeetable(InferenceError):
    """The request cannot finish before its deadline; rejected before wasting compute."""

    code = Status.DEADLINE_EXCEEDED


class Overloaded(InferenceError):
    """The model's queue is full: the request is shed explicitly."""

    code = Status.RESOURCE_EXHAUSTED


class ShuttingDown(InferenceError):
    """The server is draining and takes no new requests."""

    code = Status.UNAVAILABLE


class ModelFailure(InferenceError):
    """The model raised while computing a batch."""

    code = Status.INTERNAL


def refused_for_load(error: InferenceError) -> bool:
    """The error says there was more work than could be finished in time (not a fault)."""
    return error.code in (Status.DEADLINE_EXCEEDED, Status.RESOURCE_EXHAUSTED)
