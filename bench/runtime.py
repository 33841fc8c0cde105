"""Runtime benchmark: the Sluice runtime against raw onnxruntime and MLServer, in one run.

For each model (the compute-bound CNN and the overhead-bound MLP) and each server:
saturation throughput (closed loop), latency at a fixed open-loop Poisson rate, and the
median latency at low load. Every server is pinned to the same CPUs (``--server-cpus``)
and the load generator to the others (``--client-cpus``), so ratios from one run are
comparable on a noisy machine; absolute numbers are not.

Usage: .venv/bin/python bench/runtime.py --models examples/models [--trace PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlserver_baseline
import onnxruntime as ort
import raw_ort
from harness import (
    ROOT,
    Server,
    free_port,
    histogram_mean,
    launch,
    models_ready,
    pss_mib,
    run_load,
    run_main,
    start_sluice,
)

# The RSS comparison reuses the runtime tests' weight-heavy model builder.
sys.path.insert(0, str(ROOT))
from tests.runtime.models import heavy

MODELS = ("cnn", "mlp")
Report = dict[str, object]
Starter = Callable[[argparse.Namespace, dict[str, Path], Path], Server]


@dataclass(frozen=True)
class Workload:
    """How one model is driven: open-loop rate and closed-loop clients."""

    rate: float
    clients: int


@dataclass(frozen=True)
class Contender:
    """A server configuration under test."""

    key: str
    label: str
    start: Starter
    replays_trace: bool = True


def sluice(max_batch_size: int | None) -> Starter:
    """Start the Sluice runtime with the run's batching (or with batching off)."""

    def start(args: argparse.Namespace, models: dict[str, Path], out: Path) -> Server:
        batch = args.max_batch_size if max_batch_size is None else max_batch_size
        extra = [
            "--max-batch-size", str(batch), "--max-delay-ms", str(args.max_delay_ms),
            "--executors", str(len(cpu_set(args.server_cpus))), "--log-level", "WARNING",
        ]
        name = f"sluice-batch{batch}"
        return start_sluice(name, models, log_dir=out, cpus=args.server_cpus, extra=extra)

    return start


def null(args: argparse.Namespace, models: dict[str, Path], out: Path) -> Server:
    """Start the null server: the gRPC stack alone, no model computed."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "null_server.py"), "--port", str(port)]
    argv += [f"--model={name}={path.resolve()}" for name, path in models.items()]
    return launch(
        "null-server", argv, port=port, metrics_port=None, log_dir=out,
        ready=models_ready(list(models)), cpus=args.server_cpus,
    )


def mlserver(args: argparse.Namespace, models: dict[str, Path], out: Path) -> Server:
    """Start MLServer with adaptive batching configured like the Sluice runtime."""
    config = mlserver_baseline.MLServerConfig(
        max_batch_size=args.max_batch_size,
        max_batch_time_s=args.max_delay_ms / 1000,
        intra_op_threads=len(cpu_set(args.server_cpus)),
        parallel_workers=args.mlserver_workers,
    )
    return mlserver_baseline.start(
        models, config, repository=out / "mlserver-repo", log_dir=out, cpus=args.server_cpus
    )


def cpu_set(text: str) -> set[int]:
    """Parse a taskset CPU list such as ``1`` or ``0,1`` or ``0-3``."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def drive(args: argparse.Namespace, server: Server, model: str, load: list[str]) -> Report:
    """One load-generator run from the client CPUs."""
    return run_load(server.target, model, load, cpus=args.client_cpus)


def measure_server(
    args: argparse.Namespace,
    server: Server,
    workloads: dict[str, Workload],
    trace_rate: Callable[[], float | None] | None,
    results: dict[str, dict[str, Report]],
) -> None:
    """Saturation, fixed-rate and low-load runs (and the trace, if asked) per model.

    Results go into ``results`` as each model finishes, so the trace rate can be derived
    from a saturation run of the same server.
    """
    slo = ["--slo-ms", str(args.slo_ms)]
    for model, work in workloads.items():
        phases: dict[str, Report] = {}
        phases["saturation"] = drive(args, server, model, [
            "--clients", str(work.clients), "--duration-s", str(args.saturation_s),
            "--warmup-s", str(min(2.0, args.saturation_s / 4)), *slo,
        ])
        phases["fixed"] = drive(args, server, model, [
            "--rate", str(work.rate), "--duration-s", str(args.open_s),
            "--warmup-s", str(min(1.0, args.open_s / 4)), *slo,
        ])
        before = server.metrics() if server.metrics_port is not None else None
        phases["low"] = drive(args, server, model, [
            "--rate", str(args.low_rate), "--duration-s", str(args.low_s), *slo,
        ])
        if before is not None:
            after = server.metrics()
            phases["low"]["server_ms"] = {
                part: 1e3 * histogram_mean(after, f"sluice_{part}_seconds", since=before,
                                           model=model)
                for part in ("request_duration", "queue_wait", "compute")
            }
        results[model] = phases
        rate = trace_rate() if trace_rate is not None and model == "mlp" else None
        if args.trace is not None and rate is not None:
            phases["trace"] = drive(args, server, model, [
                "--trace", str(args.trace), "--mean-rate", f"{rate:.1f}",
                "--duration-s", str(args.trace_s), *slo,
            ])
        progress(f"  {model}: saturation {phases['saturation']['throughput']:.0f}/s, "
                 f"p99 at {work.rate:g}/s {phases['fixed']['p99_ms']:.1f} ms")


def rss_by_executors(
    args: argparse.Namespace, models: dict[str, Path], out: Path
) -> dict[int, float]:
    """Memory (PSS) with 1 and with N executors, after every executor has run batches.

    PSS, not VmRSS: the sessions for each thread count map one weights file, which VmRSS
    would count once per mapping although the page cache holds it once.
    """
    rss = {}
    for executors in (1, args.rss_executors):
        server = start_sluice(
            f"sluice-rss-{executors}", models, log_dir=out,
            extra=["--executors", str(executors), "--log-level", "WARNING"],
        )
        try:
            for model in models:
                run_load(server.target, model, [
                    "--clients", str(4 * executors), "--duration-s", "2",
                ])
            rss[executors] = pss_mib(server.process.pid)
        finally:
            server.stop()
    return rss


def progress(message: str) -> None:
    """Progress goes to stderr so stdout keeps only the results."""
    print(message, file=sys.stderr, flush=True)


def noise_warning() -> str | None:
    """Say so when something else is eating the CPU (a compile, another benchmark)."""
    busy = subprocess.run(["pgrep", "-f", "go build"], capture_output=True, check=False)
    load = os.getloadavg()[0]
    if busy.returncode == 0 or load > 1.0:
        return f"WARNING: machine busy (load average {load:.1f}); absolute numbers are noisy"
    return None


def fmt(value: object, spec: str = ".1f") -> str:
    """A number for the table, or '-'."""
    return "-" if value is None else format(value, spec)


def print_table(
    model: str,
    raw: raw_ort.RawResult,
    results: dict[str, dict[str, dict[str, Report]]],
    contenders: list[Contender],
    work: Workload,
    args: argparse.Namespace,
) -> None:
    """One table per model: each server's saturation, fixed-rate and low-load numbers."""
    print(f"\n{model.upper()}  (server CPUs {args.server_cpus}; SLO {args.slo_ms:g} ms; "
          f"saturation: {work.clients} clients; fixed: Poisson {work.rate:g}/s; "
          f"low load: Poisson {args.low_rate:g}/s)")
    header = (f"{'server':34} {'sat thr/s':>9} {'sat good/s':>10} {'sat p99':>8} "
              f"{'fix p50':>8} {'fix p99':>8} {'fix good/s':>10} {'low p50':>8} {'errors':>8}")
    print(header)
    print("-" * len(header))
    print(f"{f'onnxruntime in-process, batch {raw.best_batch}':34} "
          f"{raw.best_rows_per_s:9.1f} {'-':>10} {'-':>8} {'-':>8} {'-':>8} {'-':>10} "
          f"{raw.single_row_p50_ms:8.2f} {'-':>8}")
    for contender in contenders:
        phases = results.get(contender.key, {}).get(model)
        if phases is None:
            continue
        sat, fixed, low = phases["saturation"], phases["fixed"], phases["low"]
        errors = sum(
            sum(p["errors"].values()) for p in (sat, fixed, low)  # type: ignore[union-attr]
        )
        print(f"{contender.label:34} {fmt(sat['throughput']):>9} {fmt(sat['goodput']):>10} "
              f"{fmt(sat['p99_ms']):>8} {fmt(fixed['p50_ms'], '.2f'):>8} "
              f"{fmt(fixed['p99_ms']):>8} {fmt(fixed['goodput']):>10} "
              f"{fmt(low['p50_ms'], '.2f'):>8} {errors:>8}")
    print("(latencies in ms; 'low p50' of onnxruntime is the compute time of one row)")


def print_breakdown(
    results: dict[str, dict[str, dict[str, Report]]], contenders: list[Contender],
    args: argparse.Namespace,
) -> None:
    """Where low-load latency goes: the client's p50 against the runtime's own timings."""
    print(f"\nLow load (Poisson {args.low_rate:g}/s): client p50 vs the Sluice runtime's "
          "mean times from /metrics (ms)")
    print(f"{'model':6} {'server':34} {'client p50':>10} {'in server':>10} {'queued':>8} "
          f"{'compute':>8}")
    for model in MODELS:
        for contender in contenders:
            low = results.get(contender.key, {}).get(model, {}).get("low")
            if not low or "server_ms" not in low:
                continue
            server_ms: dict[str, float] = low["server_ms"]  # type: ignore[assignment]
            print(f"{model:6} {contender.label:34} {low['p50_ms']:10.2f} "
                  f"{server_ms['request_duration']:10.2f} {server_ms['queue_wait']:8.2f} "
                  f"{server_ms['compute']:8.2f}")


def ratio_line(name: str, value: float | None, target: str, met: bool | None, why: str) -> str:
    """One line of the verdict: the measured ratio against its target."""
    verdict = "n/a" if met is None else ("met" if met else "NOT met")
    shown = "-" if value is None else f"{value:.2f}"
    return f"{name:44} {shown:>7}  target {target:8} {verdict:8} {why}"


def metric(results: dict[str, dict[str, dict[str, Report]]], key: str, model: str,
           phase: str, name: str) -> float | None:
    """One number from one run, or None when that server or model did not run."""
    report = results.get(key, {}).get(model, {}).get(phase)
    return None if report is None else float(report[name])  # type: ignore[arg-type]


def print_verdict(
    raw: dict[str, raw_ort.RawResult], results: dict[str, dict[str, dict[str, Report]]]
) -> None:
    """The brief's three targets as ratios from this run, and what bounds each one."""
    print("\nTargets (ratios from this run)")
    goodput = metric(results, "sluice", "cnn", "saturation", "goodput")
    if goodput is not None:
        limit = raw["cnn"].best_rows_per_s
        ratio = goodput / limit
        overhead_ms = (1 / goodput - 1 / limit) * 1e3 if goodput else float("nan")
        print(ratio_line("CNN goodput / raw onnxruntime (same cores)", ratio, ">= 0.9x",
                         ratio >= 0.9, f"{overhead_ms:.2f} ms of server CPU per request "
                         "beyond compute"))
    sluice_mlp = metric(results, "sluice", "mlp", "saturation", "throughput")
    mlserver_mlp = metric(results, "mlserver", "mlp", "saturation", "throughput")
    null_mlp = metric(results, "null", "mlp", "saturation", "throughput")
    if sluice_mlp is not None and mlserver_mlp is not None:
        p99_s = metric(results, "sluice", "mlp", "saturation", "p99_ms") or float("nan")
        p99_m = metric(results, "mlserver", "mlp", "saturation", "p99_ms") or float("nan")
        ceiling = f"; null server {null_mlp:.0f}/s" if null_mlp else ""
        ratio = sluice_mlp / mlserver_mlp if mlserver_mlp else float("inf")
        print(ratio_line("MLP throughput / MLServer", ratio, ">= 2x",
                         ratio >= 2 and p99_s <= p99_m,
                         f"p99 {p99_s:.1f} vs {p99_m:.1f} ms{ceiling}"))
    else:
        print(ratio_line("MLP throughput / MLServer", None, ">= 2x", None, "MLServer not run"))
    floor = {m: metric(results, "null", m, "low", "p50_ms") for m in MODELS}
    for key, label in (("sluice", "batching"), ("sluice-nobatch", "batch 1")):
        for model in MODELS:
            p50 = metric(results, key, model, "low", "p50_ms")
            if p50 is None:
                continue
            added = p50 - raw[model].single_row_p50_ms
            above_floor = (
                f"{added - floor[model]:.2f} ms above the null server's {floor[model]:.2f} ms"
                if floor[model] is not None else ""
            )
            print(ratio_line(f"{model.upper()} p50 added at low load, {label} (ms)", added,
                             "<= 1 ms", added <= 1.0, above_floor))


def parse_workloads(args: argparse.Namespace) -> dict[str, Workload]:
    """Per-model open-loop rates and closed-loop clients from the command line."""
    return {
        "cnn": Workload(args.cnn_rate, args.cnn_clients),
        "mlp": Workload(args.mlp_rate, args.mlp_clients),
    }


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "examples" / "models",
                   help="directory with cnn.onnx and mlp.onnx")
    p.add_argument("--server-cpus", default="1", help="taskset CPU list for every server")
    p.add_argument("--client-cpus", default="0", help="taskset CPU list for the load generator")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-delay-ms", type=float, default=2.0)
    p.add_argument("--slo-ms", type=float, default=100.0, help="latency SLO for goodput")
    p.add_argument("--cnn-rate", type=float, default=100.0, help="fixed open-loop rate, CNN")
    p.add_argument("--mlp-rate", type=float, default=500.0, help="fixed open-loop rate, MLP")
    p.add_argument("--cnn-clients", type=int, default=8, help="saturation clients, CNN")
    p.add_argument("--mlp-clients", type=int, default=64, help="saturation clients, MLP")
    p.add_argument("--low-rate", type=float, default=20.0, help="low-load Poisson rate")
    p.add_argument("--saturation-s", type=float, default=10.0)
    p.add_argument("--open-s", type=float, default=10.0)
    p.add_argument("--low-s", type=float, default=6.0)
    p.add_argument("--raw-s", type=float, default=1.5, help="seconds per raw batch size")
    p.add_argument("--mlserver-workers", type=int, default=0,
                   help="MLServer parallel_workers (0: inference in the server process)")
    p.add_argument("--rss-executors", type=int, default=4, help="N for the RSS comparison")
    p.add_argument("--heavy-mb", type=int, default=100,
                   help="weight size of the extra model served in the RSS comparison")
    p.add_argument("--trace", type=Path, help="also replay this per-second trace on the MLP")
    p.add_argument("--trace-load", type=float, default=0.5,
                   help="trace mean rate as a fraction of the Sluice MLP saturation throughput")
    p.add_argument("--trace-s", type=float, default=60.0, help="trace seconds to replay")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                   help="where server logs and results.json go")
    return p


def main() -> int:
    """Run the benchmark and print its tables."""
    args = parser().parse_args()
    models = {m: args.models / f"{m}.onnx" for m in MODELS}
    missing = [str(p) for p in models.values() if not p.exists()]
    if missing:
        print(f"missing models {missing}: run `make models` first", file=sys.stderr)
        return 2
    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    workloads = parse_workloads(args)
    started = time.monotonic()
    print(f"Sluice runtime benchmark — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, onnxruntime {ort.__version__}; servers on CPUs "
          f"{args.server_cpus}, load generator on CPUs {args.client_cpus}")
    if warning := noise_warning():
        print(warning)

    raw = {}
    for model, path in models.items():
        progress(f"raw onnxruntime: {model}")
        raw[model] = raw_ort.measure(
            path, cpus=cpu_set(args.server_cpus), batch_sizes=(1, 4, 8, 16, 32),
            seconds=args.raw_s,
        )

    contenders = [
        Contender("null", "grpc.aio null server (floor)", null, replays_trace=False),
        Contender("sluice", f"sluice runtime (batch <= {args.max_batch_size})", sluice(None)),
        Contender("sluice-nobatch", "sluice runtime (batch 1)", sluice(1)),
    ]
    if mlserver_baseline.available():
        contenders.append(Contender(
            "mlserver", f"mlserver 1.7.1 (adaptive <= {args.max_batch_size})", mlserver
        ))
    else:
        print("MLServer not installed: run bench/setup_mlserver.sh (make bench does)")

    results: dict[str, dict[str, dict[str, Report]]] = {}

    def trace_rate() -> float | None:
        reference = results.get("sluice", {}).get("mlp")
        if reference is None:
            return None
        return args.trace_load * float(reference["saturation"]["throughput"])

    for contender in contenders:
        progress(f"{contender.label}: starting")
        server = contender.start(args, models, out)
        try:
            into = results.setdefault(contender.key, {})
            replay = trace_rate if contender.replays_trace else None
            measure_server(args, server, workloads, replay, into)
        finally:
            status = server.stop()
        if status != 0:
            progress(f"{contender.label}: exited with status {status} (log: {server.log_path})")

    progress("RSS: 1 vs N executors")
    heavy_path = heavy(out / "heavy.onnx", megabytes=args.heavy_mb)
    rss = rss_by_executors(args, {**models, "heavy": heavy_path}, out)

    for model in MODELS:
        print_table(model, raw[model], results, contenders, workloads[model], args)
    print_breakdown(results, contenders, args)
    if args.trace is not None:
        source = args.trace.name if args.trace.exists() else "synthetic MMPP, trace not found"
        print(f"\nMLP trace replay ({source}, {args.trace_s:g} s, mean "
              f"{args.trace_load:g} x Sluice saturation)")
        for contender in contenders:
            report = results.get(contender.key, {}).get("mlp", {}).get("trace")
            if report:
                print(f"  {contender.label:34} goodput {report['goodput']:.1f}/s  "
                      f"p50 {report['p50_ms']:.2f} ms  p99 {report['p99_ms']:.1f} ms  "
                      f"errors {report['errors'] or 'none'}")
    n = args.rss_executors
    print(f"\nPSS of the Sluice runtime serving cnn, mlp and a {args.heavy_mb} MB weight "
          f"(one MatMul): 1 executor {rss[1]:.0f} MiB, {n} executors {rss[n]:.0f} MiB "
          f"({rss[n] - rss[1]:+.0f} MiB; a copy of the weights per executor would add "
          f"~{args.heavy_mb * (n - 1)} MB)")
    print_verdict(raw, results)
    (out / "results.json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()},
        "raw": {m: {"rows_per_s": r.rows_per_s, "single_row_p50_ms": r.single_row_p50_ms}
                for m, r in raw.items()},
        "servers": results,
        "pss_mib": rss,
    }, indent=2))
    print(f"\n(total {time.monotonic() - started:.0f} s; logs and results.json in {out})")
    return 0


if __name__ == "__main__":
    run_main(main)
