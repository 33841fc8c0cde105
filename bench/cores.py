"""Cores benchmark: does an in-place resize make a lone request faster and a saturated
server proportionally faster, with one copy of the weights, and what does spinning cost?

The runtime serves the CNN in a CPU cgroup of its own at 1 core; the cgroup's quota is
then rewritten to 2 cores and back, live, as the kubelet does for ``pods/resize``. At each
size it measures the latency of a lone request (one closed-loop client: p50, p99) and the
saturation throughput (closed loop, many clients, a budget far beyond any wait), how long
the runtime took to follow the resize (from the write until ``sluice_executors`` changed,
and until the wider sessions existed), and its memory: PSS (the mapped weights count once,
as the page cache holds them once) and anonymous memory, with one session (1 core) and
with a session per thread count (2 cores). The same is run with
``--max-threads-per-batch 1`` (one intra-op thread per batch, the design before), side by
side. The load generator runs outside the cgroup: at 2 cores it shares this machine's
cores with the server, which the throughput ratio pays for (its CPU is reported).

Then the spin policy: a raw onnxruntime session with 2 intra-op threads answers paced
single requests with spinning on and off, under a 1-core and a 2-core quota.

Needs root (or a delegated cgroup). Usage: .venv/bin/python bench/cores.py --models examples/models
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from harness import (
    HOST,
    ROOT,
    HarnessError,
    Server,
    histogram_mean,
    pss_mib,
    results_dir,
    run_load,
    run_main,
    start_sluice,
)
from sluice_local.cgroupfs import (
    CpuHierarchy,
    in_cgroup,
    make_cpu_cgroup,
    remove_cgroup,
    set_cpu_limit,
    writable_cpu_hierarchy,
)

Report = dict[str, object]


def metric(server: Server, name: str) -> float:
    """The value of an unlabelled metric."""
    return float(server.metrics()[name][0][1])


def profile(server: Server) -> dict[str, object]:
    """``GET /v1/profile`` (the admin API is open on loopback without a token)."""
    url = f"http://{HOST}:{server.metrics_port}/v1/profile"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def anon_mib(pid: int) -> float:
    """Anonymous resident memory of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise HarnessError(f"no RssAnon for pid {pid}")


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> float:
    """Seconds until ``check()`` held (polled every 20 ms)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise HarnessError(f"{what}: not after {timeout_s:g} s")
        time.sleep(0.02)
    return time.monotonic() - started


def client_cpu_s() -> float:
    """CPU time of finished child processes (the load generators) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_size(args: argparse.Namespace, server: Server) -> Report:
    """Lone-request latency, saturation throughput and memory at the current size."""
    scraped = server.metrics()
    lone = run_load(server.target, "cnn", [
        "--clients", "1", "--duration-s", str(args.lone_s), "--warmup-s", "1",
        "--budget-ms", "60000"])
    compute_ms = 1000 * histogram_mean(server.metrics(), "sluice_compute_seconds",
                                       since=scraped, model="cnn")
    before = client_cpu_s()
    saturated = run_load(server.target, "cnn", [
        "--clients", str(args.clients), "--duration-s", str(args.saturation_s),
        "--warmup-s", "1", "--budget-ms", "60000"])
    client_share = (client_cpu_s() - before) / args.saturation_s
    pid = server.process.pid
    return {
        "lone_p50_ms": lone["p50_ms"], "lone_p99_ms": lone["p99_ms"],
        "lone_compute_ms": compute_ms,
        "throughput": saturated["throughput"], "client_cores": client_share,
        "errors": {**lone["errors"], **saturated["errors"]},  # type: ignore[dict-item]
        "pss_mib": pss_mib(pid), "anon_mib": anon_mib(pid),
        "threads_available": profile(server)["models"]["cnn"]["threads_available"],  # type: ignore[index]
    }


def resize(server: Server, cgroup: Path, hierarchy: CpuHierarchy, cores: int,
           max_threads: int) -> Report:
    """Rewrite the quota live; how long the runtime took to follow it."""
    set_cpu_limit(cgroup, hierarchy.version, cores)
    executors_s = wait_for(lambda: metric(server, "sluice_executors") == cores,
                           f"executors to follow {cores} cores")
    threads_s = wait_for(
        lambda: len(profile(server)["models"]["cnn"]["threads_available"])  # type: ignore[index]
        >= min(cores, max_threads), f"sessions for {cores} threads")
    return {"executors_followed_s": executors_s,
            "sessions_ready_s": executors_s + threads_s}


def run_variant(args: argparse.Namespace, hierarchy: CpuHierarchy, out: Path,
                max_threads: int) -> dict[str, Report]:
    """One runtime through 1 core, 2 cores, 1 core again, at most ``max_threads`` per batch."""
    cgroup = make_cpu_cgroup(hierarchy.root, f"sluice-bench-{uuid.uuid4().hex[:8]}",
                             hierarchy.version)
    try:
        set_cpu_limit(cgroup, hierarchy.version, 1)
        server = start_sluice(
            f"cnn-{time.monotonic_ns()}", {"cnn": args.models / "cnn.onnx"}, log_dir=out,
            extra=["--max-batch-size", "8", "--cpu-poll-interval-s", "0.5",
                   "--max-threads-per-batch", str(max_threads), "--log-level", "WARNING"],
            wrap=lambda argv: in_cgroup(cgroup, argv),
        )
        try:
            results = {"1 core": measure_size(args, server)}
            grow = resize(server, cgroup, hierarchy, 2, max_threads)
            results["2 cores"] = {**measure_size(args, server), **grow}
            shrink = resize(server, cgroup, hierarchy, 1, max_threads)
            results["1 core again"] = {**measure_size(args, server), **shrink}
        finally:
            server.stop()
        return results
    finally:
        remove_cgroup(hierarchy.root, cgroup)


def spin_policy(args: argparse.Namespace, hierarchy: CpuHierarchy) -> dict[str, Report]:
    """Raw onnxruntime, 2 intra-op threads, paced requests: spinning on and off."""
    results: dict[str, Report] = {}
    for cores in (1, 2):
        for spin in ("0", "1"):
            cgroup = make_cpu_cgroup(hierarchy.root, f"sluice-spin-{uuid.uuid4().hex[:8]}",
                                     hierarchy.version)
            try:
                set_cpu_limit(cgroup, hierarchy.version, cores)
                command = [sys.executable, str(ROOT / "bench" / "spin_policy.py"),
                           str(args.models / "cnn.onnx"), "--threads", "2", "--spin", spin]
                done = subprocess.run(in_cgroup(cgroup, command), capture_output=True,
                                      text=True, check=False, timeout=300)
                if done.returncode != 0:
                    raise HarnessError(f"spin probe failed:\n{done.stderr.strip()}")
                name = f"{cores} core{'s' if cores > 1 else ''}, spin {('off', 'on')[int(spin)]}"
                results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            finally:
                remove_cgroup(hierarchy.root, cgroup)
    return results


def num(report: Report, key: str) -> float:
    """A figure of a report as a float."""
    return float(report[key])  # type: ignore[arg-type]


def print_report(variants: dict[str, dict[str, Report]], spin: dict[str, Report]) -> None:
    """The tables and the ratios the issue sets goals for."""
    print("\nCNN, one runtime in its own CPU cgroup, resized in place 1 -> 2 -> 1 core")
    header = (f"{'variant':24} {'size':>13} {'lone p50':>9} {'lone p99':>9} {'compute':>8} "
              f"{'sat /s':>8} "
              f"{'client':>7} {'PSS MiB':>8} {'anon':>6} {'threads':>8} {'follow s':>9}  errors")
    print(header)
    print("-" * len(header))
    for variant, sizes in variants.items():
        for size, r in sizes.items():
            follow = (f"{num(r, 'executors_followed_s'):.2f}/{num(r, 'sessions_ready_s'):.2f}"
                      if "executors_followed_s" in r else "-")
            print(f"{variant:24} {size:>13} {num(r, 'lone_p50_ms'):9.2f} "
                  f"{num(r, 'lone_p99_ms'):9.2f} {num(r, 'lone_compute_ms'):8.2f} "
                  f"{num(r, 'throughput'):8.1f} "
                  f"{num(r, 'client_cores'):7.2f} {num(r, 'pss_mib'):8.1f} "
                  f"{num(r, 'anon_mib'):6.1f} {r['threads_available']!s:>8} {follow:>9}  "
                  f"{r['errors'] or '-'}")
    print("\n(lone p50/p99 ms: one closed-loop client, end to end; compute: the server's mean "
          "compute time of those requests; sat /s: images/s with many clients; "
          "client: cores the load generator used meanwhile; follow s: to executors / to "
          "the wider sessions)")
    print("\nRatios, 2 cores / 1 core, same run (goals: lone latency <= 0.6x, saturation "
          "throughput >= 1.8x):")
    for variant, sizes in variants.items():
        one, two = sizes["1 core"], sizes["2 cores"]
        print(f"  {variant:24} lone latency "
              f"{num(two, 'lone_p50_ms') / num(one, 'lone_p50_ms'):.2f}x end to end, "
              f"{num(two, 'lone_compute_ms') / num(one, 'lone_compute_ms'):.2f}x compute;  "
              f"saturation throughput {num(two, 'throughput') / num(one, 'throughput'):.2f}x")
    wide, narrow = (variants[v]["2 cores"] for v in variants)
    print(f"\nMemory at 2 cores, a session per thread count / one session: PSS "
          f"{num(wide, 'pss_mib') / num(narrow, 'pss_mib'):.2f}x, anonymous "
          f"{num(wide, 'anon_mib') / num(narrow, 'anon_mib'):.2f}x (goal <= 1.1x)")
    print("\nSpin policy: raw onnxruntime, 2 intra-op threads, one image at a time, 2 ms apart")
    for name, r in spin.items():
        print(f"  {name:22} p50 {num(r, 'p50_ms'):6.2f} ms  p99 {num(r, 'p99_ms'):6.2f} ms  "
              f"CPU {num(r, 'cpu_ms_per_request'):5.2f} ms/request")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=ROOT / "examples" / "models")
    p.add_argument("--lone-s", type=float, default=6.0)
    p.add_argument("--saturation-s", type=float, default=6.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return p


def main() -> int:
    """Run both variants and the spin probe; print the tables."""
    args = parser().parse_args()
    hierarchy = writable_cpu_hierarchy()
    if hierarchy is None:
        raise HarnessError("cannot make CPU cgroups here: run as root (or in a delegated "
                           "cgroup v2 subtree)")
    out = results_dir(args.out, "cores")
    started = time.monotonic()
    variants = {
        "threads follow cores": run_variant(args, hierarchy, out, 64),
        "one thread per batch": run_variant(args, hierarchy, out, 1),
    }
    spin = spin_policy(args, hierarchy)
    print_report(variants, spin)
    (out / "cores.json").write_text(json.dumps({"variants": variants, "spin": spin}, indent=2))
    print(f"\n(total {time.monotonic() - started:.0f} s; logs and cores.json in {out})")
    return 0


if __name__ == "__main__":
    run_main(main)
