"""Overload benchmark: goodput, late successes, refusals and memory at 0.7x, 2x and 3x capacity.

For each workload (the compute-bound CNN, the overhead-bound MLP, the dialogue pipeline
fused in one process and isolated as a router plus three stage runtimes) it first measures
capacity with a closed loop, then drives open-loop Poisson load at multiples of it with
every request carrying its budget (``sluice-budget-ms``). Servers run on ``--server-cpus``,
the load generator on ``--client-cpus``, so ratios from one run compare.

What a server that protects its SLO shows: goodput (answered within budget) near capacity at
any overload, late successes near zero (what it admits it finishes in time), refusals early
(their latency is short), nothing refused below capacity, and peak memory that does not
grow with the offered load.

Usage: .venv/bin/python bench/overload.py --models examples/models
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import (
    ROOT,
    Server,
    free_port,
    launch,
    models_ready,
    results_dir,
    run_load,
    run_main,
    start_sluice,
    vm_rss_mib,
)

PIPELINE = ROOT / "examples" / "pipelines" / "dialogue.yaml"
STAGES = ("intent", "policy", "response")
Report = dict[str, object]


@dataclass(frozen=True)
class Workload:
    """A model or pipeline under load: what to call, with how many rows, under what budget."""

    key: str
    model: str
    rows: int
    budget_ms: float
    clients: int  # closed-loop clients for the capacity run
    start: Callable[[argparse.Namespace, Path], list[Server]]


def single(model: str, batch: int) -> Callable[[argparse.Namespace, Path], list[Server]]:
    """One runtime serving one example model."""

    def start(args: argparse.Namespace, out: Path) -> list[Server]:
        return [start_sluice(
            f"{model}-{time.monotonic_ns()}", {model: args.models / f"{model}.onnx"},
            log_dir=out, cpus=args.server_cpus,
            extra=["--max-batch-size", str(batch), "--log-level", "WARNING"],
        )]

    return start


def fused(args: argparse.Namespace, out: Path) -> list[Server]:
    """The dialogue pipeline in one process."""
    models = {stage: args.models / f"{stage}.onnx" for stage in STAGES}
    return [start_sluice(
        f"fused-{time.monotonic_ns()}", models, log_dir=out, cpus=args.server_cpus,
        pipeline=PIPELINE, extra=["--log-level", "WARNING"],
    )]


def isolated(args: argparse.Namespace, out: Path) -> list[Server]:
    """The dialogue pipeline as three stage runtimes and a router that calls them."""
    servers: list[Server] = []
    try:
        for stage in STAGES:
            servers.append(start_sluice(
                f"{stage}-{time.monotonic_ns()}", {stage: args.models / f"{stage}.onnx"},
                log_dir=out, cpus=args.server_cpus, extra=["--log-level", "WARNING"],
            ))
        port, metrics_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "sluice_runtime", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(metrics_port),
            "--pipeline", str(PIPELINE), "--log-level", "WARNING",
            *(f"--remote={s.name.split('-')[0]}={s.target}" for s in servers),
        ]
        servers.append(launch(
            f"router-{time.monotonic_ns()}", argv, port=port, metrics_port=metrics_port,
            log_dir=out, ready=models_ready(["dialogue"]), cpus=args.server_cpus,
        ))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


WORKLOADS = (
    Workload("cnn", "cnn", 1, 300.0, 8, single("cnn", 8)),
    Workload("mlp", "mlp", 1, 100.0, 64, single("mlp", 32)),
    Workload("dialogue-fused", "dialogue", 256, 100.0, 8, fused),
    Workload("dialogue-isolated", "dialogue", 256, 100.0, 8, isolated),
)


def measure(args: argparse.Namespace, work: Workload, out: Path) -> dict[str, Report]:
    """Capacity, then each overload factor, against fresh servers for every run."""
    results: dict[str, Report] = {}

    def run(name: str, load: list[str]) -> Report:
        servers = work.start(args, out)
        try:
            report = run_load(servers[-1].target, work.model, [
                "--batch", str(work.rows), "--slo-ms", str(work.budget_ms), *load,
            ], cpus=args.client_cpus)
            report["peak_rss_mib"] = sum(vm_rss_mib(s.process.pid, "VmHWM") for s in servers)
        finally:
            for server in reversed(servers):
                server.stop()
        results[name] = report
        return report

    # Capacity is what the server completes when it is never idle: a closed loop whose
    # requests carry a budget far beyond the SLO, so nothing is refused. (With the real
    # budget a closed loop measures refusal storms: a refused client asks again at once.)
    capacity = run("capacity", [
        "--clients", str(work.clients), "--duration-s", str(args.capacity_s),
        "--warmup-s", "1", "--budget-ms", "60000",
    ])
    capacity["capacity"] = rate = float(capacity["throughput"])  # type: ignore[arg-type]
    print(f"  {work.key}: capacity {rate:.1f}/s", file=sys.stderr, flush=True)
    for factor in args.factors:
        report = run(f"x{factor:g}", [
            "--rate", f"{factor * rate:.2f}", "--duration-s", str(args.open_s),
            "--warmup-s", "1", "--budget-ms", str(work.budget_ms),
            "--timeout-s", str(args.timeout_factor * work.budget_ms / 1000),
        ])
        report["offered"] = factor * rate
        report["capacity"] = rate
        print(f"  {work.key} x{factor:g}: goodput {report['goodput']:.1f}/s "
              f"({report['goodput'] / rate:.0%} of capacity)", file=sys.stderr, flush=True)
    return results


def row(key: str, name: str, report: Report, budget_ms: float) -> str:
    """One line of the table."""
    capacity = float(report.get("capacity", report["goodput"]))  # type: ignore[arg-type]
    requests = int(report["requests"])  # type: ignore[arg-type]
    ok = int(report["ok"])  # type: ignore[arg-type]
    good = float(report["throughput" if name == "capacity" else "goodput"])  # type: ignore[arg-type]
    window = float(report["window_s"])  # type: ignore[arg-type]
    late = ok - round(good * window)
    errors: dict[str, int] = report["errors"]  # type: ignore[assignment]
    refused = sum(errors.values())
    return (f"{key:18} {name:>8} {float(report.get('offered', 0)):8.1f} "
            f"{good:8.1f} {good / capacity:7.0%} {1000 * max(late, 0) / max(requests, 1):8.1f} "
            f"{refused / max(requests, 1):8.1%} {float(report['p99_ms']):8.1f} "  # type: ignore[arg-type]
            f"{float(report['peak_rss_mib']):8.0f}  "  # type: ignore[arg-type]
            f"{', '.join(f'{k} {v}' for k, v in sorted(errors.items())) or '-'}"
            f"  (budget {budget_ms:g} ms)")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    p.add_argument("--server-cpus", default="1", help="taskset CPU list for every server")
    p.add_argument("--client-cpus", default="0", help="taskset CPU list for the load generator")
    p.add_argument("--factors", type=float, nargs="+", default=[0.7, 2.0, 3.0],
                   help="offered load as multiples of the measured capacity")
    p.add_argument("--capacity-s", type=float, default=8.0)
    p.add_argument("--open-s", type=float, default=10.0)
    p.add_argument("--timeout-factor", type=float, default=1.0,
                   help="client gRPC timeout as a multiple of the budget: 1 is a client whose "
                        "deadline is its SLO, so time spent in the transport counts")
    p.add_argument("--only", nargs="+", choices=[w.key for w in WORKLOADS],
                   help="run only these workloads")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return p


def main() -> int:
    """Run every workload and print the table."""
    args = parser().parse_args()
    out = results_dir(args.out, "overload")
    started = time.monotonic()
    chosen = [w for w in WORKLOADS if not args.only or w.key in args.only]
    results = {w.key: measure(args, w, out) for w in chosen}
    print(f"\nOverload (servers on CPUs {args.server_cpus}, load generator on "
          f"{args.client_cpus}; Poisson, open loop; goodput = answered within budget)")
    header = (f"{'workload':18} {'load':>8} {'offered':>8} {'goodput':>8} {'of cap':>7} "
              f"{'late/1k':>8} {'refused':>8} {'p99 ms':>8} {'peakMiB':>8}  errors")
    print(header)
    print("-" * len(header))
    for work in chosen:
        for name, report in results[work.key].items():
            print(row(work.key, name, report, work.budget_ms))
    (out / "overload.json").write_text(json.dumps(results, indent=2))
    print(f"\n(total {time.monotonic() - started:.0f} s; logs and overload.json in {out})")
    return 0


if __name__ == "__main__":
    run_main(main)
