"""``sluice-runtime``: the command every Sluice pod runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sluice_runtime.codec import BUDGET_PARAMETER
from sluice_runtime.errors import StartupError
from sluice_runtime.settings import BatchingConfig, ModelSource, RuntimeSettings


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise StartupError(f"{flag} expects NAME=VALUE, got {value!r}")
        if name in pairs:
            raise StartupError(f"{flag} names '{name}' twice")
        pairs[name] = rest
    return pairs


def _replica_sets(remotes: dict[str, str]) -> dict[str, tuple[str, ...]]:
    sets = {}
    for stage, addresses in remotes.items():
        replicas = tuple(a.strip() for a in addresses.split(","))
        if not all(replicas) or len(set(replicas)) != len(replicas):
            raise StartupError(
                f"--remote {stage}={addresses}: give distinct HOST:PORT addresses, "
                "comma-separated"
            )
        sets[stage] = replicas
    return sets


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (documented in the README)."""
    parser = argparse.ArgumentParser(prog="sluice-runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve ONNX models over the Open Inference Protocol (gRPC)",
        description=(
            "Serve ONNX models over the Open Inference Protocol with SLO-aware adaptive "
            f"batching. Requests may carry their remaining budget in the '{BUDGET_PARAMETER}' "
            "request parameter; the deadline is the tightest of that and the gRPC deadline."
        ),
    )
    defaults = RuntimeSettings()
    batching = BatchingConfig()
    add = serve.add_argument
    add("--model", action="append", default=[], metavar="NAME=SOURCE",
        help="a model to serve: a path, file:///path or http(s):// URL (repeatable); "
             "with --pipeline, overrides the source of the stage NAME")
    add("--model-sha256", action="append", default=[], metavar="NAME=HEX",
        help="expected SHA-256 of a model file, checked before loading (repeatable)")
    add("--pipeline", type=Path, metavar="FILE",
        help="an InferencePipeline manifest: serve each stage, and the pipeline as a model "
             "named after it that runs the stages in order")
    add("--remote", action="append", default=[], metavar="STAGE=HOST:PORT[,HOST:PORT...]",
        help="serve a pipeline stage by calling other runtimes, its replicas, balanced by "
             "fewest outstanding requests (repeatable; PUT /v1/stages/STAGE/replicas "
             "changes them while serving)")
    add("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    add("--port", type=int, default=defaults.port, help="gRPC port (default %(default)s)")
    add("--metrics-port", type=int, default=defaults.metrics_port,
        help="HTTP port for /metrics and the /v1/batching admin API (default %(default)s)")
    add("--max-batch-size", type=int, default=batching.max_batch_size,
        help="rows per batch (default %(default)s)")
    add("--max-delay-ms", type=float, default=batching.max_delay_ms,
        help="longest a request waits for its batch to fill (default %(default)s)")
    add("--default-slo-ms", type=float, default=batching.default_slo_ms,
        help="deadline of requests that carry none (default %(default)s)")
    add("--max-queue-size", type=int, default=defaults.max_queue_size,
        help="queued requests per model before RESOURCE_EXHAUSTED (default %(default)s)")
    add("--executors", type=int, default=None,
        help="batches computed at once (default: follow the CPU allocation)")
    add("--max-threads-per-batch", type=int, default=None, metavar="N",
        help="most intra-op threads one batch computes with (default: as many cores as "
             "the process has, when measured latencies say they help)")
    add("--cgroup-root", type=Path, default=defaults.cgroup_root, metavar="DIR",
        help="read the CPU limit (cpu.max, or cpu.cfs_quota_us) from this directory instead "
             "of the process's own cgroup and its ancestors (found through /proc/self)")
    add("--cpu-poll-interval-s", type=float, default=defaults.cpu_poll_interval_s,
        help="how often to re-read the CPU limit (default %(default)s)")
    add("--request-log", metavar="PATH|-",
        help="write per-request and per-batch JSON lines here ('-': stdout)")
    add("--model-cache-dir", type=Path, default=defaults.model_cache_dir,
        help="where downloaded models are kept (default %(default)s)")
    add("--drain-timeout-s", type=float, default=defaults.drain_timeout_s,
        help="longest to wait for in-flight requests on SIGTERM (default %(default)s)")
    add("--remote-connect-timeout-s", type=float, default=defaults.remote_connect_timeout_s,
        help="how long to wait for remote stages at start (default %(default)s)")
    add("--admin-token-file", type=Path, metavar="FILE",
        help="bearer token the admin API (/v1/...) requires; without it the admin API is "
             "open on loopback and off on any other address (/metrics stays open)")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def settings_from_args(args: argparse.Namespace) -> RuntimeSettings:
    """Turn parsed arguments into validated settings (StartupError saying what is wrong)."""
    models = _pairs(args.model, "--model")
    digests = _pairs(args.model_sha256, "--model-sha256")
    if stray := sorted(set(digests) - set(models)):
        raise StartupError(f"--model-sha256 names models not given with --model: {stray}")
    if not models and args.pipeline is None:
        raise StartupError("nothing to serve: give --model NAME=SOURCE or --pipeline FILE")
    if args.remote and args.pipeline is None:
        raise StartupError("--remote needs --pipeline")
    if args.executors is not None and args.executors < 1:
        raise StartupError(f"--executors must be >= 1, got {args.executors}")
    if args.max_threads_per_batch is not None and args.max_threads_per_batch < 1:
        raise StartupError(
            f"--max-threads-per-batch must be >= 1, got {args.max_threads_per_batch}")
    if args.max_queue_size < 1:
        raise StartupError(f"--max-queue-size must be >= 1, got {args.max_queue_size}")
    try:
        batching = BatchingConfig(args.max_batch_size, args.max_delay_ms, args.default_slo_ms)
    except ValueError as exc:
        raise StartupError(f"invalid batching: {exc}") from None
    return RuntimeSettings(
        models=tuple(ModelSource(n, uri, digests.get(n)) for n, uri in models.items()),
        pipeline_file=args.pipeline,
        remotes=_replica_sets(_pairs(args.remote, "--remote")),
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        batching=batching,
        max_queue_size=args.max_queue_size,
        executors=args.executors,
        max_threads_per_batch=args.max_threads_per_batch,
        cgroup_root=args.cgroup_root,
        cpu_poll_interval_s=args.cpu_poll_interval_s,
        request_log=args.request_log,
        model_cache_dir=args.model_cache_dir,
        drain_timeout_s=args.drain_timeout_s,
        remote_connect_timeout_s=args.remote_connect_timeout_s,
        admin_token_file=args.admin_token_file,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sluice-runtime``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_args(args)
        from sluice_runtime.server import RuntimeServer  # heavy imports once args are valid

        return asyncio.run(RuntimeServer(settings).run())
    except StartupError as exc:
        # One line that says what to fix, and argparse's exit status for bad usage.
        one_line = " ".join(str(exc).split())  # parser errors (YAML, ONNX) span lines
        print(f"{parser.prog}: error: {one_line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
