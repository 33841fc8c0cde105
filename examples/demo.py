"""A half-minute tour of the Sluice runtime on this machine (``make demo``).

Starts ``sluice-runtime serve`` on loopback with the CNN, the MLP and the three-stage
dialogue pipeline (intent -> policy -> response, fused in one process), waits until it
reports SERVING, drives each model with the project's load generator (open-loop Poisson
arrivals), prints throughput, latency and the batch sizes the runtime chose (read from
its Prometheus ``/metrics``), then stops it with SIGTERM and checks that it exits 0.

Usage: .venv/bin/python examples/demo.py --models examples/models
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The server plumbing is shared with the benchmark (bench/harness.py).
sys.path.insert(0, str(ROOT / "bench"))

from harness import HarnessError, Server, histogram_mean, run_load, start_sluice  # noqa: E402

PIPELINE = ROOT / "examples" / "pipelines" / "dialogue.yaml"
STAGES = ("intent", "policy", "response")


@dataclass(frozen=True)
class Drive:
    """One model under load: what to call, how hard, and whose batches to report."""

    model: str
    rate: float
    batched: tuple[str, ...]  # models whose sluice_batch_size histogram to show


DRIVES = (
    Drive("cnn", 120.0, ("cnn",)),
    Drive("mlp", 500.0, ("mlp",)),
    Drive("dialogue", 250.0, STAGES),
)


def step(message: str) -> None:
    """One line of progress."""
    print(f"==> {message}", flush=True)


def batch_sizes(server: Server, models: tuple[str, ...]) -> str:
    """Mean rows per executed batch of each model, from /metrics."""
    samples = server.metrics()
    return ", ".join(
        f"{m} {histogram_mean(samples, 'sluice_batch_size', model=m):.1f}" for m in models
    )


def run(args: argparse.Namespace, log_dir: Path) -> int:
    """Start, drive, report, stop; the exit status of the demo."""
    models = {name: args.models / f"{name}.onnx" for name in ("cnn", "mlp", *STAGES)}
    missing = [str(p) for p in models.values() if not p.exists()]
    if missing:
        print(f"missing models {missing}: run `make models` first", file=sys.stderr)
        return 2
    step("starting sluice-runtime serve on 127.0.0.1 (cnn, mlp, dialogue pipeline)")
    started = time.monotonic()
    server = start_sluice(
        "demo-runtime", models, pipeline=PIPELINE, log_dir=log_dir,
        extra=["--max-batch-size", "16", "--max-delay-ms", "2", "--log-level", "WARNING"],
    )
    step(f"SERVING on {server.target} after {time.monotonic() - started:.1f} s "
         f"(metrics: http://127.0.0.1:{server.metrics_port}/metrics)")
    rows = []
    try:
        for drive in DRIVES:
            step(f"{drive.model}: Poisson {drive.rate:g} req/s for {args.seconds:g} s "
                 f"(SLO {args.slo_ms:g} ms, sent as the request's budget)")
            report = run_load(server.target, drive.model, [
                "--rate", str(drive.rate), "--duration-s", str(args.seconds), "--warmup-s", "1",
                "--slo-ms", str(args.slo_ms), "--budget-ms", str(args.slo_ms),
            ])
            rows.append((drive, report, batch_sizes(server, drive.batched)))
    finally:
        step("stopping with SIGTERM (drains in-flight requests)")
        status = server.stop()
    print()
    print(f"{'model':10} {'req/s':>8} {'goodput/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7}  mean batch size (rows)")
    for drive, report, batches in rows:
        errors = sum(report["errors"].values())  # type: ignore[union-attr]
        print(f"{drive.model:10} {report['throughput']:8.1f} {report['goodput']:10.1f} "
              f"{report['p50_ms']:8.2f} {report['p99_ms']:8.2f} {errors:7d}  {batches}")
    print()
    if status != 0:
        print(f"sluice-runtime exited with status {status}:\n{server.log_tail()}",
              file=sys.stderr)
        return 1
    step("sluice-runtime drained and exited 0")
    return 0


def main() -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per model")
    parser.add_argument("--slo-ms", type=float, default=100.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sluice-demo-") as log_dir:
        try:
            return run(args, Path(log_dir))
        except HarnessError as error:
            print(f"demo failed: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
