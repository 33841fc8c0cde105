from decimal import Decimal

import pytest
from sluice_core import quantities


@pytest.mark.parametrize(
    ("values", "cpu"),
    [
        (["1", "500m"], "1500m"),
        (["1", 1, "1000m"], "3"),
        (["0.25", "0.25"], "500m"),
        ([], "0"),
        (["1m", "0.0005"], "2m"),  # below a millicore rounds up, as Kubernetes does
    ],
)
def test_cpu_totals(values, cpu):
    assert quantities.format_cpu(quantities.total(values)) == cpu


@pytest.mark.parametrize(
    ("values", "memory"),
    [
        (["512Mi", "512Mi"], "1Gi"),
        (["512Mi", "256Mi"], "768Mi"),
        (["1Gi", "1G"], "2073741824"),
        (["1Ki"], "1Ki"),
    ],
)
def test_memory_totals(values, memory):
    assert quantities.format_memory(quantities.total(values)) == memory


def test_malformed_quantity_is_rejected():
    with pytest.raises(ValueError, match="abc"):
        quantities.parse("abc")


def test_parse_gives_base_units():
    assert quantities.parse("250m") == Decimal("0.25")
