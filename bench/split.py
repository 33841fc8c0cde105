"""Split benchmark: the example CNN cut by `sluice split` into 2 and 4 parts, served whole,
fused (every part in one runtime) and isolated (a runtime per part behind a router).

For each split it reports what `sluice split` measured (each part's latency on one
thread, the bytes per row crossing each cut), then drives every configuration with the
load generator in closed loop, one client (a lone request's latency) and four (the
throughput of the same cores), and prints latency and throughput as ratios to the whole
model served alone. Every server runs on ``--server-cpus`` (the isolated parts and their
router share them), the load generator on ``--client-cpus``; absolute numbers on a noisy
machine are not comparable, ratios from one run are.

Usage: .venv/bin/python bench/split.py --models examples/models
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    HarnessError,
    Server,
    free_port,
    launch,
    models_ready,
    results_dir,
    run_load,
    run_main,
    start_sluice,
)

#: The pipeline name `sluice split` gives the CNN (from its file name) and the model name
#: the whole model is served under: the load generator calls the same name in every run.
MODEL = "cnn"
Report = dict[str, Any]


@dataclass(frozen=True)
class Config:
    """One way of serving the CNN: its label and how to start its servers."""

    label: str
    start: Callable[[argparse.Namespace, Path], list[Server]]


def split(args: argparse.Namespace, parts: int, out: Path) -> Report:
    """`sluice split` the CNN into ``parts`` parts (measured): its JSON report."""
    done = subprocess.run(
        [sys.executable, "-m", "sluice_local", "split", str(args.models / f"{MODEL}.onnx"),
         "--parts", str(parts), "--batch", str(args.rows), "--out", str(out), "--json"],
        capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise HarnessError(f"sluice split into {parts} parts failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def whole(args: argparse.Namespace, out: Path) -> list[Server]:
    """The model alone in one runtime, batching as a stage of the CRD's defaults would."""
    model = args.models / f"{MODEL}.onnx"
    return [start_sluice(f"whole-{time.monotonic_ns()}", {MODEL: model},
                         log_dir=out, cpus=args.server_cpus,
                         extra=["--max-batch-size", "8", "--log-level", "WARNING"])]


def part_files(report: Report) -> dict[str, Path]:
    """Stage name -> part file, in order."""
    return {f"part{p['part']}": Path(p["file"]) for p in report["parts"]}


def fused(report: Report) -> Callable[[argparse.Namespace, Path], list[Server]]:
    """Every part in one runtime, from the manifest the split wrote."""

    def start(args: argparse.Namespace, out: Path) -> list[Server]:
        return [start_sluice(f"fused-{time.monotonic_ns()}", part_files(report), log_dir=out,
                             cpus=args.server_cpus, pipeline=Path(report["manifest"]),
                             extra=["--log-level", "WARNING"])]

    return start


def isolated(report: Report) -> Callable[[argparse.Namespace, Path], list[Server]]:
    """A runtime per part, and a router running the manifest over them."""

    def start(args: argparse.Namespace, out: Path) -> list[Server]:
        servers: list[Server] = []
        try:
            for stage, path in part_files(report).items():
                servers.append(start_sluice(f"{stage}-{time.monotonic_ns()}", {stage: path},
                                            log_dir=out, cpus=args.server_cpus,
                                            extra=["--log-level", "WARNING"]))
            port, metrics_port = free_port(), free_port()
            remotes = [f"--remote={stage}={server.target}"
                       for stage, server in zip(part_files(report), servers, strict=True)]
            argv = [sys.executable, "-m", "sluice_runtime", "serve", "--host", "127.0.0.1",
                    "--port", str(port), "--metrics-port", str(metrics_port),
                    "--pipeline", str(report["manifest"]), "--log-level", "WARNING", *remotes]
            servers.append(launch(f"router-{time.monotonic_ns()}", argv, port=port,
                                  metrics_port=metrics_port, log_dir=out,
                                  ready=models_ready([MODEL]), cpus=args.server_cpus))
        except BaseException:
            for server in servers:
                server.stop()
            raise
        return servers

    return start


def drive(args: argparse.Namespace, config: Config, clients: int, out: Path) -> Report:
    """Fresh servers, a closed loop of ``clients``, the load generator's report."""
    servers = config.start(args, out)
    try:
        return run_load(servers[-1].target, MODEL, [
            "--batch", str(args.rows), "--clients", str(clients),
            "--duration-s", str(args.duration_s), "--warmup-s", "1", "--budget-ms", "60000",
        ], cpus=args.client_cpus)
    finally:
        for server in reversed(servers):
            server.stop()


def split_table(parts: int, report: Report) -> list[str]:
    """What `sluice split` measured: per part and per cut."""
    lines = [f"\n{MODEL} in {parts} parts (sluice split, {report['rows']} row, one thread): "
             f"whole {report['whole_latency_ms']:.2f} ms, parts in sequence "
             f"{report['parts_latency_ms']:.2f} ms"]
    for part in report["parts"]:
        lines.append(f"  part {part['part']}: nodes {part['start']}-{part['end'] - 1}, "
                     f"{part['latency_ms']:.2f} ms, {part['weights_bytes'] / 2**20:.2f} MiB")
    for cut in report["cuts"]:
        names = ", ".join(t["name"] for t in cut["tensors"])
        lines.append(f"  cut {cut['cut']} after {cut['after']}: {cut['bytes_per_row']:,} "
                     f"bytes/row ({names})")
    return lines


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    p.add_argument("--parts", type=int, nargs="+", default=[2, 4])
    p.add_argument("--rows", type=int, default=1, help="rows a request carries")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4],
                   help="closed-loop clients of each run")
    p.add_argument("--duration-s", type=float, default=8.0)
    p.add_argument("--server-cpus", default="1", help="taskset CPU list for every server")
    p.add_argument("--client-cpus", default="0", help="taskset CPU list for the load generator")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return p


def main() -> int:
    """Split, serve every configuration, print the tables."""
    args = parser().parse_args()
    out = results_dir(args.out, "split")
    started = time.monotonic()
    splits = {n: split(args, n, out / f"parts-{n}") for n in args.parts}
    configs = [Config("whole", whole)]
    for n, report in splits.items():
        configs += [Config(f"fused-{n}", fused(report)), Config(f"isolated-{n}", isolated(report))]
    runs: dict[str, dict[int, Report]] = {}
    for config in configs:
        runs[config.label] = {}
        for clients in args.clients:
            runs[config.label][clients] = report = drive(args, config, clients, out)
            print(f"  {config.label} x{clients}: p50 {report['p50_ms']:.2f} ms, "
                  f"{report['throughput']:.1f}/s", file=sys.stderr, flush=True)
    lines = [line for n, report in splits.items() for line in split_table(n, report)]
    lines.append(f"\nEnd to end (servers on CPUs {args.server_cpus}, load generator on "
                 f"{args.client_cpus}; closed loop, {args.rows} row a request; ratios to whole)")
    header = (f"{'config':12} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
              f"{'p50 x':>7} {'p99 x':>7} {'req/s x':>8}")
    lines += [header, "-" * len(header)]
    for label, by_clients in runs.items():
        for clients, report in by_clients.items():
            base = runs["whole"][clients]
            lines.append(
                f"{label:12} {clients:>7} {report['p50_ms']:>8.2f} {report['p99_ms']:>8.2f} "
                f"{report['throughput']:>8.1f} "
                f"{report['p50_ms'] / base['p50_ms']:>7.2f} "
                f"{report['p99_ms'] / base['p99_ms']:>7.2f} "
                f"{report['throughput'] / base['throughput']:>8.2f}")
    print("\n".join(lines))
    (out / "split.json").write_text(json.dumps({"splits": splits, "runs": runs}, indent=2))
    print(f"\n(total {time.monotonic() - started:.0f} s; logs, parts and split.json in {out})")
    return 0


if __name__ == "__main__":
    run_main(main)
