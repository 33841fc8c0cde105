"""What ``sluice variants`` measured, as a table for people and a JSON document for tools:
pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice_core.profiles import PipelineProfile

from sluice_local.variants.agreement import CLASSIFIER

NOT_TASK_ACCURACY = ("agreement with the original model on these samples, not task accuracy: "
                     "measure that on labelled data before trusting a variant")


@dataclass(frozen=True)
class Made:
    """The original (``default``) or one variant, with what was measured of it."""

    name: str
    description: str
    path: Path
    size_bytes: int
    sha256: str
    agreement: float
    relative_error: float
    accuracy: float


def describe_samples(stated: dict[str, Any]) -> str:
    """``256 samples generated (seed 0; ...)`` or ``20 samples from FILE``."""
    if stated["source"] != "generated":
        return f"{stated['count']} samples from {stated['source']}"
    low, high = stated["int_range"]
    return (f"{stated['count']} samples generated (seed {stated['seed']}; floats standard "
            f"normal, integers uniform in [{low}, {high}))")


def latency_points(profile: PipelineProfile | None, stage: str,
                   variant: str) -> list[dict[str, float]]:
    """The measured points of one variant, for the JSON document."""
    if profile is None:
        return []
    return [{"cores": p.cores, "batch": p.batch, "p50_ms": p.p50_ms, "p99_ms": p.p99_ms}
            for p in profile.stage(stage).variant(variant).points]


def footnote(kind: str, samples: dict[str, Any]) -> str:
    """What the agreement column is, on what, and what it is not."""
    judged = "top-1 agreement" if kind == CLASSIFIER else "1 - relative error"
    return f"agreement ({kind}: {judged}) on {describe_samples(samples)}: {NOT_TASK_ACCURACY}"


def report_document(model: Path, stage: str, kind: str, samples: dict[str, Any],
                    made: Sequence[Made], profile: PipelineProfile | None,
                    warnings: Sequence[str], written: dict[str, Path | None]) -> dict[str, Any]:
    """Everything measured, for tools (``--json``)."""
    original = made[0].size_bytes
    return {
        "model": str(model), "stage": stage, "kind": kind,
        "samples": samples, "note": NOT_TASK_ACCURACY,
        "variants": [{"name": row.name, "description": row.description,
                      "file": str(row.path), "size_bytes": row.size_bytes,
                      "size_ratio": round(row.size_bytes / original, 4), "sha256": row.sha256,
                      "agreement": row.agreement, "relative_error": row.relative_error,
                      "accuracy": row.accuracy, "latency": latency_points(profile, stage, row.name)}
                     for row in made],
        "warnings": list(warnings),
        **{key: str(path) if path else None for key, path in written.items()},
    }


def table_lines(made: Sequence[Made], profile: PipelineProfile | None,
                stage: str) -> list[str]:
    """The table: size, agreement and p50 latency per batch at the allocation nearest one
    core, each with its ratio to the original's (the first row)."""
    header = (f"{'variant':<18}{'size MB':>9}{'size x':>8}{'agreement':>11}{'rel err':>9}"
              f"{'accuracy':>10}")
    cells: list[list[str]] = [[] for _ in made]
    if profile is not None:
        models = profile.stage(stage)
        reference = models.variant()
        cores = min(reference.cores_measured, key=lambda c: (abs(c - 1.0), c))
        for batch in reference.batches_measured:
            header += f"{f'p50 ms {cores:g}c b{batch}':>18}"
            base_ms = reference.latency_ms(batch, cores)
            for row, row_cells in zip(made, cells, strict=True):
                p50_ms = models.variant(row.name).latency_ms(batch, cores)
                row_cells.append(f"{p50_ms:.4g} ({p50_ms / base_ms:.2f}x)")
    lines = [header]
    for row, row_cells in zip(made, cells, strict=True):
        lines.append(f"{row.name:<18}{row.size_bytes / 1e6:>9.2f}"
                     f"{row.size_bytes / made[0].size_bytes:>8.2f}{row.agreement:>11.4f}"
                     f"{row.relative_error:>9.4f}{row.accuracy:>10.4f}"
                     + "".join(f"{cell:>18}" for cell in row_cells))
    return lines
