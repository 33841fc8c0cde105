"""Shared pytest configuration.

The pytest process talks to runtimes only through ``tritonclient``; it must never import
``sluice_runtime.protocol`` (both register ``inference.*`` protobuf messages, and one
process cannot hold two definitions of the same message).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.controlplane.fixtures"]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example models, generated fresh by the project's own generator."""
    out = tmp_path_factory.mktemp("example-models")
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_models.py"), "--out", str(out)],
        check=True, capture_output=True,
    )
    return out
