"""The limit: onnxruntime called directly, in this process, with no server in the way."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sluice_local.records import percentile
from sluice_runtime.datatypes import from_onnx_type


@dataclass(frozen=True)
class RawResult:
    """Rows per second at each batch size, and the compute latency of a single row."""

    rows_per_s: dict[int, float]
    single_row_p50_ms: float

    @property
    def best_batch(self) -> int:
        """The batch size with the highest throughput."""
        return max(self.rows_per_s, key=lambda b: self.rows_per_s[b])

    @property
    def best_rows_per_s(self) -> float:
        """Throughput at the best batch size."""
        return self.rows_per_s[self.best_batch]


def session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, as a server would configure it."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def random_inputs(sess: ort.InferenceSession, rows: int) -> dict[str, np.ndarray]:
    """Random inputs of ``rows`` rows for every input of the session."""
    rng = np.random.default_rng(0)
    feeds = {}
    for node in sess.get_inputs():
        shape = [rows, *(d if isinstance(d, int) else 1 for d in node.shape[1:])]
        dtype = from_onnx_type(node.type).dtype
        feeds[node.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def rows_per_second(sess: ort.InferenceSession, rows: int, seconds: float) -> float:
    """Sustained throughput running batches of ``rows`` back to back for ``seconds``."""
    feeds = random_inputs(sess, rows)
    sess.run(None, feeds)  # warm-up: first runs allocate and pick kernels
    batches = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        sess.run(None, feeds)
        batches += 1
    return batches * rows / elapsed


def single_row_latency_ms(sess: ort.InferenceSession, runs: int) -> float:
    """Median compute time of a one-row batch, in milliseconds."""
    feeds = random_inputs(sess, 1)
    sess.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return percentile(times, 50)


def measure(
    path: Path,
    *,
    cpus: set[int],
    batch_sizes: Sequence[int],
    seconds: float,
) -> RawResult:
    """Measure a model pinned to ``cpus`` with one intra-op thread per CPU.

    The calling thread is pinned (and restored afterwards) so onnxruntime's threads,
    created from it, run on the same cores a server under test gets.
    """
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        sess = session(path, threads=len(cpus))
        rates = {rows: rows_per_second(sess, rows, seconds) for rows in batch_sizes}
        return RawResult(rates, single_row_latency_ms(sess, runs=200))
    finally:
        os.sched_setaffinity(0, previous)

