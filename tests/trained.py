"""Real trained models the tests use, from the wheels that ship them (never downloaded)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def magika_model() -> Path:
    """Magika's content-type classifier (Apache-2.0): int32 ``bytes`` [N, 2048] -> float
    ``target_label`` [N, 214] probabilities, as its wheel installs it."""
    path = Path(str(importlib.resources.files("magika") / "models" / "standard_v3_3"
                    / "model.onnx"))
    if not path.is_file():
        raise FileNotFoundError(f"magika's model is not at {path}: is magika installed "
                                "(the dev extra)?")
    return path
