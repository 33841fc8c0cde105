"""``sluice-runtime serve`` as a value: built once, rendered to argv, parsed back.

The operator renders it into a container's args, local mode runs it as a process, and the
runtime parses its own command line with the same parser, so the three never drift apart:
``parse_invocation(RuntimeInvocation(...).argv()) == RuntimeInvocation(...)``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

#: The request parameter carrying a request's remaining budget (ms) across stages.
BUDGET_PARAMETER = "sluice-budget-ms"


class InvocationError(ValueError):
    """A command line the runtime cannot run, with what to fix."""


@dataclass(frozen=True)
class RuntimeInvocation:
    """Everything ``sluice-runtime serve`` can be asked, with the runtime's defaults."""

    #: (name, source) of models to serve: a path, file:///path or http(s):// URL.
    models: tuple[tuple[str, str], ...] = ()
    #: (name, hex digest) a model file must match.
    model_sha256: tuple[tuple[str, str], ...] = ()
    pipeline_file: str | None = None
    #: (stage, replica addresses) of stages served by other runtimes.
    remotes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    host: str = "127.0.0.1"
    port: int = 8001
    metrics_port: int = 8002
    max_batch_size: int = 8
    max_delay_ms: float = 2.0
    default_slo_ms: float = 1000.0
    max_queue_size: int = 1024
    executors: int | None = None
    max_threads_per_batch: int | None = None
    cgroup_root: str | None = None
    cpu_poll_interval_s: float = 1.0
    request_log: str | None = None
    model_cache_dir: str = "/tmp/sluice-models"
    drain_timeout_s: float = 30.0
    remote_connect_timeout_s: float = 300.0
    admin_token_file: str | None = None
    log_level: str = "INFO"

    def argv(self) -> list[str]:
        """The arguments after ``sluice-runtime``: ``serve``, the address, and every setting
        that differs from the default."""
        args = ["serve", "--host", self.host, "--port", str(self.port),
                "--metrics-port", str(self.metrics_port)]
        for name, source in self.models:
            args += ["--model", f"{name}={source}"]
        for name, digest in self.model_sha256:
            args += ["--model-sha256", f"{name}={digest}"]
        if self.pipeline_file is not None:
            args += ["--pipeline", self.pipeline_file]
        for stage, addresses in self.remotes:
            args += ["--remote", f"{stage}={','.join(addresses)}"]
        default = _DEFAULT
        for flag, field in _SCALAR_FLAGS:
            value = getattr(self, field)
            if value != getattr(default, field):
                args += [flag, _text(value)]
        return args


_DEFAULT = RuntimeInvocation()
#: Flags with one value, in the order argv() writes them.
_SCALAR_FLAGS = (
    ("--max-batch-size", "max_batch_size"),
    ("--max-delay-ms", "max_delay_ms"),
    ("--default-slo-ms", "default_slo_ms"),
    ("--max-queue-size", "max_queue_size"),
    ("--executors", "executors"),
    ("--max-threads-per-batch", "max_threads_per_batch"),
    ("--cgroup-root", "cgroup_root"),
    ("--cpu-poll-interval-s", "cpu_poll_interval_s"),
    ("--request-log", "request_log"),
    ("--model-cache-dir", "model_cache_dir"),
    ("--drain-timeout-s", "drain_timeout_s"),
    ("--remote-connect-timeout-s", "remote_connect_timeout_s"),
    ("--admin-token-file", "admin_token_file"),
    ("--log-level", "log_level"),
)


def _text(value: object) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The runtime's command line (documented in the README)."""
    parser = argparse.ArgumentParser(
        prog="sluice-runtime", description="The command every Sluice pod runs.")
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
    d = _DEFAULT
    add = serve.add_argument
    add("--model", action="append", default=[], metavar="NAME=SOURCE",
        help="a model to serve: a path, file:///path or http(s):// URL (repeatable); "
             "with --pipeline, overrides the source of the stage NAME")
    add("--model-sha256", action="append", default=[], metavar="NAME=HEX",
        help="expected SHA-256 of a model file, checked before loading (repeatable)")
    add("--pipeline", dest="pipeline_file", metavar="FILE",
        help="an InferencePipeline manifest: serve each stage, and the pipeline as a model "
             "named after it that runs the stages in order")
    add("--remote", action="append", default=[], metavar="NAME=HOST:PORT[,HOST:PORT...]",
        help="serve a pipeline stage (or, without --pipeline, a whole model) by calling "
             "other runtimes, its replicas, balanced by fewest outstanding requests "
             "(repeatable; PUT /v1/stages/NAME/replicas changes them while serving)")
    add("--host", default=d.host, help="address to listen on (default %(default)s)")
    add("--port", type=int, default=d.port, help="gRPC port (default %(default)s)")
    add("--metrics-port", type=int, default=d.metrics_port,
        help="HTTP port for /metrics and the /v1/batching admin API (default %(default)s)")
    add("--max-batch-size", type=int, default=d.max_batch_size,
        help="rows per batch (default %(default)s)")
    add("--max-delay-ms", type=float, default=d.max_delay_ms,
        help="longest a request waits for its batch to fill (default %(default)s)")
    add("--default-slo-ms", type=float, default=d.default_slo_ms,
        help="deadline of requests that carry none (default %(default)s)")
    add("--max-queue-size", type=int, default=d.max_queue_size,
        help="queued requests per model before RESOURCE_EXHAUSTED (default %(default)s)")
    add("--executors", type=int, default=None,
        help="batches computed at once (default: follow the CPU allocation)")
    add("--max-threads-per-batch", type=int, default=None, metavar="N",
        help="most intra-op threads one batch computes with (default: as many cores as "
             "the process has, when measured latencies say they help)")
    add("--cgroup-root", default=None, metavar="DIR",
        help="read the CPU limit (cpu.max, or cpu.cfs_quota_us) from this directory instead "
             "of the process's own cgroup and its ancestors (found through /proc/self)")
    add("--cpu-poll-interval-s", type=float, default=d.cpu_poll_interval_s,
        help="how often to re-read the CPU limit (default %(default)s)")
    add("--request-log", metavar="PATH|-",
        help="write per-request and per-batch JSON lines here ('-': stdout)")
    add("--model-cache-dir", default=d.model_cache_dir,
        help="where downloaded models are kept (default %(default)s)")
    add("--drain-timeout-s", type=float, default=d.drain_timeout_s,
        help="longest to wait for in-flight requests on SIGTERM (default %(default)s)")
    add("--remote-connect-timeout-s", type=float, default=d.remote_connect_timeout_s,
        help="how long to wait for remote stages at start (default %(default)s)")
    add("--admin-token-file", metavar="FILE",
        help="bearer token the admin API (/v1/...) requires; without it the admin API is "
             "open on loopback and off on any other address (/metrics stays open)")
    add("--log-level", default=d.log_level, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def invocation_from_args(args: argparse.Namespace) -> RuntimeInvocation:
    """Parsed ``serve`` arguments as an invocation; InvocationError saying what is wrong."""
    models = _pairs(args.model, "--model")
    digests = _pairs(args.model_sha256, "--model-sha256")
    remotes = tuple((stage, _replicas(stage, addresses))
                    for stage, addresses in _pairs(args.remote, "--remote"))
    fields = {f.name for f in dataclasses.fields(RuntimeInvocation)}
    scalars = {name: value for name, value in vars(args).items()
               if name in fields and name not in ("models", "remotes")}
    return RuntimeInvocation(**{**scalars, "models": models, "model_sha256": digests,
                                "remotes": remotes})


def parse_invocation(argv: Sequence[str]) -> RuntimeInvocation:
    """The invocation ``argv`` (after the program name) asks for."""
    return invocation_from_args(build_parser().parse_args(list(argv)))


def _pairs(values: Sequence[str], flag: str) -> tuple[tuple[str, str], ...]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise InvocationError(f"{flag} expects NAME=VALUE, got {value!r}")
        if name in pairs:
            raise InvocationError(f"{flag} names '{name}' twice")
        pairs[name] = rest
    return tuple(pairs.items())


def _replicas(stage: str, addresses: str) -> tuple[str, ...]:
    replicas = tuple(a.strip() for a in addresses.split(","))
    if not all(replicas) or len(set(replicas)) != len(replicas):
        raise InvocationError(
            f"--remote {stage}={addresses}: give distinct HOST:PORT addresses, comma-separated")
    return replicas
