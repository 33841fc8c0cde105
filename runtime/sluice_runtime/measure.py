"""Measure one model the way the runtime runs it: cold start, memory, batch latency.

``python -m sluice_runtime.measure MODEL --batches 1,4,16 --threads 1,2 --cache-dir DIR``
loads ``MODEL`` (a path, ``file://`` or ``http(s)://`` source, as ``sluice-runtime serve
--model`` takes) exactly as a runtime process does: the same source resolution and digest
check, the same prepared shared weights, one session per intra-op thread count, sessions
made and batches computed on threads at the runtime's compute priority. It then warms the
model up, records its resident memory, runs batches of random inputs back to back for each
batch size and thread count, and prints one JSON document on stdout (see
``docs/profiles.md``). Errors go to stderr as one line, with exit status 2.

It measures whatever CPU the process is given: ``sluice profile`` starts it inside a CPU
cgroup with a quota, one process per allocation, and checks ``cpu_allocation_cores`` in
the answer to make sure the quota was in force. The document also reports how much the
quota throttled the process while it measured.

Only the standard library is imported before the arguments are read: the import of the
runtime's own modules is timed, as a pod pays it before it can load anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FORMAT = "sluice.measure/v1"
#: Warm-up of one (threads, rows) setting ends when the last runs agree within this ratio.
SETTLE_RATIO = 1.25
SETTLE_WINDOW = 3
#: The runtime warms each setting up with 3 runs: never fewer here, at most this many.
WARMUP_MAX_RUNS = 30
#: Runs of a batch size the warm-up skipped that are not recorded (buffers are allocated
#: on the first).
DISCARDED_RUNS = 2
_INT_HIGH = 2  # random integer inputs lie in [0, 2): valid indices for any vocabulary


class MeasureError(Exception):
    """The model cannot be measured (one line for the user)."""


def settled(latencies_s: Sequence[float], window: int = SETTLE_WINDOW,
            ratio: float = SETTLE_RATIO) -> bool:
    """True once the last ``window`` runs lie within ``ratio`` of one another."""
    if len(latencies_s) < window:
        return False
    recent = latencies_s[-window:]
    return max(recent) <= ratio * min(recent)


def parse_sizes(text: str, flag: str) -> tuple[int, ...]:
    """Comma-separated positive integers, ascending and distinct (``1,4,16``)."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise MeasureError(f"{flag} expects comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise MeasureError(f"{flag} expects integers >= 1, got {text!r}")
    return tuple(values)


def process_age_s() -> float:
    """Seconds since this process started (clock-tick resolution), from /proc."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started_ticks = int(fields[19])  # field 22 of stat; the first two precede ")"
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return max(0.0, uptime_s - started_ticks / os.sysconf("SC_CLK_TCK"))


def rss_mib() -> float:
    """Resident memory of this process (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise MeasureError("no VmRSS in /proc/self/status")


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m sluice_runtime.measure",
        description="Measure an ONNX model as the Sluice runtime runs it; print JSON.")
    add = parser.add_argument
    add("model", metavar="MODEL", help="a path, file:///path or http(s):// URL")
    add("--sha256", metavar="HEX", help="expected SHA-256 of the model file")
    add("--batches", default="1,4,16", metavar="N,N,...",
        help="batch sizes (rows) to measure (default %(default)s)")
    add("--threads", metavar="N,N,...",
        help="intra-op thread counts to measure (default: 1 up to the executors the runtime "
             "would run for the CPU this process has)")
    add("--seconds-per-batch", type=float, default=0.4, metavar="S",
        help="time to run each (batch, threads) back to back (default %(default)s)")
    add("--min-samples", type=int, default=10, metavar="N",
        help="batches to time at least, unless --max-seconds-per-batch passes first "
             "(default %(default)s)")
    add("--max-seconds-per-batch", type=float, default=None, metavar="S",
        help="stop a slow setting after this long, with at least one sample "
             "(default 10 x --seconds-per-batch)")
    add("--free-dim", type=int, default=1, metavar="N",
        help="size of free input dimensions other than the batch axis (default %(default)s)")
    add("--cache-dir", type=Path, required=True, metavar="DIR",
        help="where the prepared shared weights go (empty: load includes preparing them, "
             "as in a new pod)")
    add("--download-dir", type=Path, metavar="DIR",
        help="where http(s) models are downloaded (default: --cache-dir)")
    add("--seed", type=int, default=0, help="seed of the random inputs")
    return parser


class _Collect(logging.Handler):
    """Keeps the runtime's warnings for the document (stderr carries errors only)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; prints the JSON document, or one error line and returns 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings = _Collect()
    logging.basicConfig(level=logging.WARNING, handlers=[warnings])
    try:
        batches = parse_sizes(args.batches, "--batches")
        threads = parse_sizes(args.threads, "--threads") if args.threads else None
        if args.seconds_per_batch <= 0 or args.min_samples < 1 or args.free_dim < 1:
            raise MeasureError("--seconds-per-batch must be > 0, --min-samples and "
                               "--free-dim >= 1")
        document = measure(args, batches, threads)
        document["warnings"] = warnings.messages
    except MeasureError as exc:
        print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    json.dump(document, sys.stdout)
    sys.stdout.write("\n")
    return 0


def measure(args: argparse.Namespace, batches: tuple[int, ...],
            threads: tuple[int, ...] | None) -> dict[str, Any]:
    """Load, warm up and time the model; the JSON document."""
    # The runtime imports all of this before it loads a model; so does the pod's cold start.
    import numpy as np
    import onnxruntime as ort
    from sluice_core.cores import executors_for

    import sluice_runtime.server  # noqa: F401  (its import is part of a runtime's start)
    from sluice_runtime.cpu import cgroup_cpu_usage, cpu_allocation, read_own_cgroup
    from sluice_runtime.executors import in_compute_thread
    from sluice_runtime.model import OnnxModel
    from sluice_runtime.sources import ModelSourceError, resolve, sha256_of

    import_s = process_age_s()
    cores = cpu_allocation()
    wanted = threads or tuple(range(1, executors_for(cores) + 1))

    started = time.perf_counter()
    try:
        path = resolve(args.model, args.sha256, args.download_dir or args.cache_dir)
    except ModelSourceError as exc:
        raise MeasureError(str(exc)) from None
    try:
        model = OnnxModel(path.stem, path, args.cache_dir)
        prepared_s = time.perf_counter() - started
        model.ensure_threads(max(wanted))
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        raise MeasureError(f"onnxruntime cannot load {path}: {exc}") from None
    load_s = time.perf_counter() - started
    # Without shared weights the runtime serves with one thread: measure what it serves.
    usable = tuple(t for t in wanted if t in model.threads_available)
    if not usable:
        raise MeasureError(f"--threads {','.join(map(str, wanted))}: the model runs with "
                           f"{list(model.threads_available)} here")
    batchable = model.signature.batchable
    sizes = batches if batchable else (1,)
    rng = np.random.default_rng(args.seed)
    inputs = {rows: _random_inputs(model, rows, args.free_dim, rng, np) for rows in sizes}

    def timed(rows: int, count: int) -> float:
        begin = time.perf_counter()
        model.run(inputs[rows], count)
        return time.perf_counter() - begin

    own = read_own_cgroup()
    try:
        warmed = sorted({sizes[0], sizes[-1]})
        warmup_s, warmup_runs = in_compute_thread(_warm_up, timed, usable, warmed)
        memory_mib = rss_mib()
        before = cgroup_cpu_usage(own)
        runs = in_compute_thread(_time_all, timed, usable, sizes, warmed, args)
        after = cgroup_cpu_usage(own)
    except Exception as exc:  # the model failed on random inputs
        raise MeasureError(f"model {path} fails on random inputs: "
                           f"{type(exc).__name__}: {exc}") from None
    return {
        "format": FORMAT,
        "model": str(path),
        "sha256": sha256_of(path),
        "onnxruntime": ort.__version__,
        "cpu_allocation_cores": cores,
        "batchable": batchable,
        "threads_available": list(model.threads_available),
        "shared_weights": model.weights_file is not None,
        "import_s": import_s,
        "prepare_s": prepared_s,
        "load_s": import_s + load_s,
        "warmup_s": warmup_s,
        "warmup_runs": warmup_runs,
        "rss_mib": memory_mib,
        "throttled_periods": _delta(before.throttled_periods, after.throttled_periods),
        "throttled_s": _delta(before.throttled_s, after.throttled_s),
        "runs": runs,
    }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _random_inputs(model: Any, rows: int, free_dim: int, rng: Any, np: Any) -> dict[str, Any]:
    """Random inputs of ``rows`` rows shaped by the model's signature."""
    arrays = {}
    for spec in model.signature.inputs:
        shape = [free_dim if d < 0 else d for d in spec.shape]
        if model.signature.batchable:
            shape[0] = rows
        dtype = spec.datatype.dtype
        if spec.datatype.is_bytes:
            words = np.array([b"hello", b"thanks", b"bye", b""], dtype=np.object_)
            arrays[spec.name] = rng.choice(words, size=shape)
        elif dtype.kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            arrays[spec.name] = rng.integers(0, _INT_HIGH, size=shape).astype(dtype)
    return arrays


def _warm_up(timed: Callable[[int, int], float], threads: Sequence[int],
             sizes: Sequence[int]) -> tuple[float, int]:
    """Run each (threads, rows) until its latency settles, as the runtime warms up before
    it reports ready; the seconds it took and the runs."""
    begin = time.perf_counter()
    runs = 0
    for count in threads:
        for rows in sizes:
            latencies: list[float] = []
            while len(latencies) < WARMUP_MAX_RUNS and not settled(latencies):
                latencies.append(timed(rows, count))
            runs += len(latencies)
    return time.perf_counter() - begin, runs


def _time_all(timed: Callable[[int, int], float], threads: Sequence[int],
              sizes: Sequence[int], warmed: Sequence[int],
              args: argparse.Namespace) -> list[dict[str, Any]]:
    """Latencies of back-to-back batches per batch size, the thread counts interleaved by
    size so that drift on a shared machine touches them alike. Sizes the warm-up did not
    run first run unrecorded a few times."""
    window_s = args.seconds_per_batch
    limit_s = args.max_seconds_per_batch or 10 * window_s
    runs = []
    for rows in sizes:
        for count in threads:
            for _ in range(0 if rows in warmed else DISCARDED_RUNS):
                timed(rows, count)
            latencies_ms: list[float] = []
            begin = time.perf_counter()
            while True:
                # A tenth of a microsecond is below any clock noise here and halves the output.
                latencies_ms.append(round(timed(rows, count) * 1000.0, 4))
                elapsed_s = time.perf_counter() - begin
                if elapsed_s >= limit_s or (
                        elapsed_s >= window_s and len(latencies_ms) >= args.min_samples):
                    break
            runs.append({"batch": rows, "threads": count, "latencies_ms": latencies_ms})
    return runs


if __name__ == "__main__":
    sys.exit(main())
