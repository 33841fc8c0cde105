"""The node's accounting: whether a pod, or a pod's resize, fits what the node can
allocate beside the other pods' allocated requests. Pure."""

from __future__ import annotations

from collections.abc import Mapping

#: Below this a sum of requests counts as fitting (quantities are rounded to millicores).
_EPS = 1e-6


def does_not_fit(wanted: Mapping[str, float], pod_uid: str, allocatable: Mapping[str, float],
                 allocated: Mapping[str, Mapping[str, float]]) -> tuple[str, str] | None:
    """None when ``wanted`` (requests of pod ``pod_uid``: resource -> amount) fits beside
    every other pod's ``allocated`` requests; else (reason, message): ``Infeasible`` when
    it exceeds the node's allocatable alone, ``Deferred`` when only the others are in the
    way (it may fit once they shrink or leave)."""
    for resource, amount in wanted.items():
        room = allocatable.get(resource)
        if room is None:
            continue
        if amount > room + _EPS:
            return "Infeasible", (f"Node didn't have enough capacity: {resource}, requested: "
                                  f"{amount:g}, capacity: {room:g}")
        others = sum(requests.get(resource, 0.0) for uid, requests in allocated.items()
                     if uid != pod_uid)
        if others + amount > room + _EPS:
            return "Deferred", (f"Node didn't have enough resource: {resource}, requested: "
                                f"{amount:g}, used: {others:g}, capacity: {room:g}")
    return None
