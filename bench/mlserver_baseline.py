"""MLServer 1.7.1 as the benchmark's baseline: a model repository and a started server.

MLServer lives in its own venv (``bench/setup_mlserver.sh``); it serves the ONNX models
through the custom runtime in ``bench/mlserver_onnx`` with adaptive batching on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness import HOST, ROOT, Server, free_port, launch, models_ready, onnx_tensors

VENV = ROOT / "bench" / ".venv-mlserver"
MLSERVER = VENV / "bin" / "mlserver"
IMPLEMENTATION = "mlserver_onnx.runtime.OnnxModel"


@dataclass(frozen=True)
class MLServerConfig:
    """How MLServer is set up for a run; mirrors the Sluice runtime's settings."""

    max_batch_size: int
    max_batch_time_s: float
    intra_op_threads: int
    parallel_workers: int


def available() -> bool:
    """Whether ``bench/setup_mlserver.sh`` has installed MLServer."""
    return MLSERVER.exists()


def model_settings(name: str, path: Path, config: MLServerConfig) -> dict[str, object]:
    """model-settings.json for one ONNX model with adaptive batching."""
    inputs, outputs = onnx_tensors(path)
    return {
        "name": name,
        "implementation": IMPLEMENTATION,
        "max_batch_size": config.max_batch_size,
        "max_batch_time": config.max_batch_time_s,
        "parameters": {
            "uri": str(path.resolve()),
            "extra": {"intra_op_threads": config.intra_op_threads},
        },
        "inputs": inputs,
        "outputs": outputs,
    }


def start(
    models: dict[str, Path],
    config: MLServerConfig,
    *,
    repository: Path,
    log_dir: Path,
    cpus: str | None,
) -> Server:
    """Write a model repository, start ``mlserver start`` on loopback, wait for the models."""
    port, http_port, metrics_port = free_port(), free_port(), free_port()
    repository.mkdir(parents=True, exist_ok=True)
    settings = {
        "host": HOST,
        "grpc_port": port,
        "http_port": http_port,
        "metrics_port": metrics_port,
        "parallel_workers": config.parallel_workers,
        "debug": False,
        "metrics_dir": str(repository / ".metrics"),
        "environments_dir": str(repository / ".envs"),
    }
    (repository / "settings.json").write_text(json.dumps(settings, indent=2))
    for name, path in models.items():
        (repository / name).mkdir(exist_ok=True)
        (repository / name / "model-settings.json").write_text(
            json.dumps(model_settings(name, path, config), indent=2)
        )
    return launch(
        "mlserver",
        [str(MLSERVER), "start", str(repository)],
        port=port,
        metrics_port=None,  # its metrics are not Sluice's; nothing scrapes them
        log_dir=log_dir,
        cpus=cpus,
        ready=models_ready(list(models)),
        env={"PYTHONPATH": str(ROOT / "bench")},
        cwd=repository,
    )
