"""A runtime that cannot start as configured exits with status 2 and one line saying why."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.harness import infer


def serve(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice_runtime", "serve", "--host", "127.0.0.1",
         "--metrics-port", "0", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CASES = [
    ("manifest without metadata", lambda d, m: ["--pipeline", write(d / "p.yaml", "spec: {}\n")],
     "metadata: is required"),
    ("manifest that is not YAML", lambda d, m: ["--pipeline", write(d / "p.yaml", "a: [\n")],
     "not valid YAML"),
    ("missing model file", lambda d, m: ["--model", f"a={d / 'nope.onnx'}"], "no file at"),
    ("file that is not ONNX", lambda d, m: ["--model", f"a={write(d / 'bad.onnx', 'hello')}"],
     "onnxruntime cannot load"),
    ("wrong digest", lambda d, m: ["--model", f"mlp={m / 'mlp.onnx'}",
                                   "--model-sha256", f"mlp={'0' * 64}"], "sha256"),
    ("unreachable remote stage", lambda d, m: [
        "--pipeline", Path(__file__).parents[2] / "examples/pipelines/dialogue.yaml",
        "--remote", "intent=127.0.0.1:1", "--remote-connect-timeout-s", "1"], "intent"),
    ("malformed flag", lambda d, m: ["--model", "no-equals-sign"], "NAME=VALUE"),
    ("nothing to serve", lambda d, m: [], "nothing to serve"),
    ("a model both local and remote", lambda d, m: [
        "--model", f"mlp={m / 'mlp.onnx'}", "--remote", "mlp=127.0.0.1:1"],
     "both local (--model) and remote (--remote): ['mlp']"),
]


@pytest.mark.parametrize(("build", "mentions"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_startup_error_exits_2_with_one_line_and_no_traceback(
        tmp_path, example_models, build, mentions):
    done = serve("--port", "0", *build(tmp_path, example_models))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("sluice-runtime: error: "), done.stderr
    assert mentions.lower() in last.lower(), last


def test_a_port_in_use_is_a_startup_error(example_models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--port", port, "--model", f"mlp={example_models / 'mlp.onnx'}")
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr.strip().splitlines()[-1]


def test_a_request_log_that_cannot_be_written_loses_records_not_answers(
        start_runtime, example_models):
    # /dev/full fails every write with ENOSPC: a real full disk, on demand.
    server = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                           "--request-log", "/dev/full", "--max-delay-ms", "0")
    client = server.client()
    for rows in (1, 3, 2):
        result = infer(client, "mlp", {"features": np.ones((rows, 384), np.float32)})
        assert result.as_numpy("scores").shape == (rows, 16)
    assert server.process.poll() is None
    assert "request log: cannot write records" in server.log_path.read_text()
