"""Kubernetes resource quantities: parse, sum, and print them canonically."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal

from kubernetes.utils.quantity import parse_quantity

_BINARY_SUFFIXES = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                    ("Ki", 2**10))


def parse(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores or bytes); ValueError when malformed."""
    return parse_quantity(value)


def total(values: Iterable[str | int | float]) -> Decimal:
    """Sum of quantities, in base units."""
    return sum((parse(v) for v in values), Decimal(0))


def format_cpu(cores: Decimal) -> str:
    """Cores as Kubernetes prints them: whole cores plainly, otherwise millicores."""
    millis = (cores * 1000).to_integral_value(rounding=ROUND_CEILING)
    if millis % 1000 == 0:
        return str(int(millis // 1000))
    return f"{int(millis)}m"


def format_memory(size: Decimal) -> str:
    """Bytes with the largest binary suffix that divides them exactly."""
    whole = int(size.to_integral_value(rounding=ROUND_CEILING))
    for suffix, factor in _BINARY_SUFFIXES:
        if whole and whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)
