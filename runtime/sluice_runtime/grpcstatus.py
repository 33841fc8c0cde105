"""The one table between data-plane statuses and gRPC status codes (their names agree)."""

from __future__ import annotations

import grpc

from sluice_runtime.errors import Status


def grpc_code(status: Status) -> grpc.StatusCode:
    """The gRPC status a data-plane status is answered with."""
    return grpc.StatusCode[status.name]


def data_plane_status(code: grpc.StatusCode) -> Status:
    """The data-plane status of a gRPC code a remote stage answered with."""
    return Status[code.name] if code.name in Status.__members__ else Status.UNKNOWN
