"""One error type for the data plane, carrying the gRPC status it maps to.

Every failure a caller can see is an :class:`InferenceError`; the servicer turns it into
a gRPC status in one place, so the batching and pipeline code never touches gRPC.
"""

from __future__ import annotations

import grpc


class StartupError(Exception):
    """The runtime cannot start as configured; the message says what to fix."""


class InferenceError(Exception):
    """A failure to report to the caller with a specific gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ModelNotFound(InferenceError):
    """The named model is not served here."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidInput(InferenceError):
    """The request does not fit the model's signature."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineUnmeetable(InferenceError):
    """The request cannot finish before its deadline; rejected before wasting compute."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Overloaded(InferenceError):
    """The model's queue is full: the request is shed explicitly."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ShuttingDown(InferenceError):
    """The server is draining and takes no new requests."""

    code = grpc.StatusCode.UNAVAILABLE


class ModelFailure(InferenceError):
    """The model raised while computing a batch."""

    code = grpc.StatusCode.INTERNAL


def refused_for_load(error: InferenceError) -> bool:
    """The error says there was more work than could be finished in time (not a fault)."""
    return error.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED)
