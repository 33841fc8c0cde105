"""Kubernetes resource quantities: parse, sum, and print them canonically."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import ROUND_CEILING, Decimal, InvalidOperation

_BINARY_SUFFIXES = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20),
                    ("Ki", 2**10))


_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(\d+(\.\d*)?|\.\d+))"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?(\d+(\.\d*)?|\.\d+))?$"
)
_DECIMAL_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
                     "": Decimal(1), "k": Decimal("1e3"), "M": Decimal("1e6"),
                     "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
                     "E": Decimal("1e18")}


def parse(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores or bytes); ValueError when malformed.

    The grammar is Kubernetes' (the CRD's pattern): a decimal number and an optional
    binary (Ki..Ei), decimal (n..E) or exponent (e3) suffix.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, int | float):
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from None
    suffix = match["suffix"] or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * Decimal(10) ** Decimal(suffix[1:])
    factor = dict(_BINARY_SUFFIXES).get(suffix)
    return number * (Decimal(factor) if factor else _DECIMAL_SUFFIXES[suffix])


def cores(value: str | int | float) -> float:
    """A CPU quantity in cores, as a float for arithmetic (planner, scaler)."""
    return float(parse(value))


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
