"""Variants benchmark: what quantized variants of Magika and of the example CNN cost and
keep, side by side with the originals, in one run (docs/bench.md#variants).

For each model, ``sluice variants`` makes every variant it knows and measures it as it
always does: size on disk, agreement with the original (top-1: both are classifiers) and
batch latency under real CPU quotas on a small grid. Magika is compared on the features
of real files of many types (this repository and the virtualenv's packages), computed by
``examples/magika_client.py``; the CNN, whose weights are random, on generated images.
Agreement on a sample set is not task accuracy.

Usage: .venv/bin/python bench/variants.py --models examples/models   (as root: quotas)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import ROOT, HarnessError, results_dir, run_main

#: Directories whose files are never samples (generated, or huge and alike).
SKIPPED_DIRS = {".git", ".venv", "__pycache__", "results", "models", ".venv-mlserver",
                "node_modules"}
#: Real files per suffix, so that no one type (Python, in a virtualenv) dominates.
FILES_PER_SUFFIX = 6


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    p.add_argument("--cores", default="1,2", help="CPU allocations (default %(default)s)")
    p.add_argument("--batches", default="1,8,32", help="batch sizes (default %(default)s)")
    p.add_argument("--seconds-per-point", type=float, default=0.2)
    p.add_argument("--min-samples", type=int, default=5)
    p.add_argument("--magika-files", type=int, default=300,
                   help="real files whose features Magika's variants are compared on")
    p.add_argument("--cnn-samples", type=int, default=64, help="generated CNN images")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return p


def real_files(roots: list[Path], limit: int) -> list[Path]:
    """Up to ``limit`` readable files under ``roots``, a few of each suffix, in a stable
    order."""
    by_suffix: dict[str, list[Path]] = defaultdict(list)
    for root in roots:
        for path in sorted(root.rglob("*")):
            if SKIPPED_DIRS.intersection(path.relative_to(root).parts) or not path.is_file():
                continue
            group = by_suffix[path.suffix.lower()]
            if len(group) < FILES_PER_SUFFIX and path.stat().st_size > 0:
                group.append(path)
    chosen = [path for group in by_suffix.values() for path in group]
    return sorted(chosen)[:limit]


def magika_samples(out: Path, limit: int) -> tuple[Path, int]:
    """The features of real files, saved for ``sluice variants --samples``."""
    site = Path(sys.prefix) / "lib"
    files = real_files([ROOT, site], limit)
    samples = out / "magika-samples.npy"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "magika_client.py"), "--features-out",
         str(samples), *map(str, files)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"magika features: {done.stderr.strip()}")
    return samples, len(files)


def variants(model: Path, out: Path, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """``sluice variants`` on one model; its JSON document."""
    argv = [sys.executable, "-m", "sluice_local", "variants", str(model), "--out", str(out),
            "--json", "--cores", args.cores, "--batches", args.batches,
            "--seconds-per-point", str(args.seconds_per_point),
            "--min-samples", str(args.min_samples), *extra]
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise HarnessError(f"sluice variants {model.name} failed (status {done.returncode})")
    return json.loads(done.stdout)


def table(reports: dict[str, dict[str, Any]]) -> list[str]:
    """One line per model and variant: size, agreement, p50 at each grid point, each with
    its ratio to the original's."""
    first = next(iter(reports.values()))["variants"][0]["latency"]
    grid = [(p["cores"], p["batch"]) for p in first]
    header = (f"{'model':<8}{'variant':<18}{'MB':>6}{'size x':>8}{'agree':>8}"
              + "".join(f"{f'{c:g}c b{b} ms':>17}" for c, b in grid))
    lines = [header]
    for name, report in reports.items():
        original = report["variants"][0]
        base = {(p["cores"], p["batch"]): p["p50_ms"] for p in original["latency"]}
        for variant in report["variants"]:
            p50 = {(p["cores"], p["batch"]): p["p50_ms"] for p in variant["latency"]}
            cells = "".join(f"{f'{p50[k]:.4g} ({p50[k] / base[k]:.2f}x)':>17}" for k in grid)
            lines.append(f"{name:<8}{variant['name']:<18}{variant['size_bytes'] / 1e6:>6.2f}"
                         f"{variant['size_ratio']:>8.2f}{variant['agreement']:>8.3f}{cells}")
    return lines


def main() -> int:
    """Both models' variants, measured; the table, and the documents in --out."""
    args = parser().parse_args()
    for name in ("magika.onnx", "cnn.onnx"):
        if not (args.models / name).is_file():
            raise HarnessError(f"no {args.models / name}: run `make models` (magika.onnx "
                               "needs the magika package, the dev extra)")
    out = results_dir(args.out, "variants")
    started = time.monotonic()
    samples, files = magika_samples(out, args.magika_files)
    reports = {
        "magika": variants(args.models / "magika.onnx", out / "magika", args,
                           "--samples", str(samples)),
        "cnn": variants(args.models / "cnn.onnx", out / "cnn", args,
                        "--samples-count", str(args.cnn_samples)),
    }
    (out / "variants.json").write_text(json.dumps(reports, indent=2))
    print("\n".join(table(reports)))
    print(f"\nagreement: top-1 with the original, Magika on the features of {files} real "
          f"files, the CNN on {args.cnn_samples} generated images (random weights): "
          "agreement on a sample set, not task accuracy")
    print(f"(total {time.monotonic() - started:.0f} s; documents in {out})")
    return 0


if __name__ == "__main__":
    run_main(main)
