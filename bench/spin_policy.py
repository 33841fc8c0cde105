"""One spin-policy measurement, run by bench/cores.py inside a CPU cgroup of its own.

A raw onnxruntime session with ``--threads`` intra-op threads answers ``--requests``
single-image requests, one at a time with ``--gap-ms`` between them (a server at partial
load: the case where spinning workers keep burning CPU after each parallel section).
Prints one JSON line: latency p50/p99 and the CPU time the cgroup's process used per
request (user + system of every thread, from getrusage).

Usage: python bench/spin_policy.py MODEL.onnx --threads 2 --spin 0|1
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    """Measure and print one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--spin", choices=["0", "1"], required=True)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--gap-ms", type=float, default=2.0)
    args = p.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", args.spin)
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(10):
        session.run(None, {spec.name: image})
    latencies = []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.requests):
        started = time.perf_counter()
        session.run(None, {spec.name: image})
        latencies.append(time.perf_counter() - started)
        time.sleep(args.gap_ms / 1000)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps({
        "p50_ms": float(np.percentile(latencies, 50) * 1000),
        "p99_ms": float(np.percentile(latencies, 99) * 1000),
        "cpu_ms_per_request": cpu_s / args.requests * 1000,
    }))


if __name__ == "__main__":
    main()
