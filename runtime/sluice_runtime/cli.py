"""``sluice-runtime``: the command every Sluice pod runs (its flags: sluice_core.invocation)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sluice_core.invocation import (
    InvocationError,
    RuntimeInvocation,
    build_parser,
    invocation_from_args,
)

from sluice_runtime.errors import StartupError
from sluice_runtime.settings import BatchingConfig, ModelSource, RuntimeSettings


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def settings_from_invocation(invocation: RuntimeInvocation) -> RuntimeSettings:
    """Validated settings for an invocation (StartupError saying what is wrong)."""
    inv = invocation
    models = dict(inv.models)
    digests = dict(inv.model_sha256)
    if stray := sorted(set(digests) - set(models)):
        raise StartupError(f"--model-sha256 names models not given with --model: {stray}")
    if not models and inv.pipeline_file is None and not inv.remotes:
        raise StartupError("nothing to serve: give --model NAME=SOURCE, --pipeline FILE or "
                           "--remote NAME=ADDRESS")
    if inv.remotes and inv.pipeline_file is None and (clash := sorted(
            set(models) & {name for name, _ in inv.remotes})):
        raise StartupError(f"models both local (--model) and remote (--remote): {clash}")
    for flag, value in (("--executors", inv.executors),
                        ("--max-threads-per-batch", inv.max_threads_per_batch),
                        ("--max-queue-size", inv.max_queue_size)):
        if value is not None and value < 1:
            raise StartupError(f"{flag} must be >= 1, got {value}")
    try:
        batching = BatchingConfig(inv.max_batch_size, inv.max_delay_ms, inv.default_slo_ms)
    except ValueError as exc:
        raise StartupError(f"invalid batching: {exc}") from None
    return RuntimeSettings(
        models=tuple(ModelSource(n, uri, digests.get(n)) for n, uri in models.items()),
        pipeline_file=_optional_path(inv.pipeline_file),
        remotes=dict(inv.remotes),
        host=inv.host,
        port=inv.port,
        metrics_port=inv.metrics_port,
        batching=batching,
        max_queue_size=inv.max_queue_size,
        executors=inv.executors,
        max_threads_per_batch=inv.max_threads_per_batch,
        cgroup_root=_optional_path(inv.cgroup_root),
        cpu_poll_interval_s=inv.cpu_poll_interval_s,
        request_log=inv.request_log,
        model_cache_dir=Path(inv.model_cache_dir),
        drain_timeout_s=inv.drain_timeout_s,
        remote_connect_timeout_s=inv.remote_connect_timeout_s,
        admin_token_file=_optional_path(inv.admin_token_file),
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
        try:
            settings = settings_from_invocation(invocation_from_args(args))
        except InvocationError as exc:
            raise StartupError(str(exc)) from None
        from sluice_runtime.server import RuntimeServer  # heavy imports once args are valid

        return asyncio.run(RuntimeServer(settings).run())
    except StartupError as exc:
        # One line that says what to fix, and argparse's exit status for bad usage.
        one_line = " ".join(str(exc).split())  # parser errors (YAML, ONNX) span lines
        print(f"{parser.prog}: error: {one_line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
