"""One copy of a model's weights for every session: an optimised model file whose weights,
prepacked ones included, live in one external file that each session memory-maps.

Following the CPU needs a session per intra-op thread count (onnxruntime fixes the
threads when a session is made). Made from the original file, each session would own its
weights and its own prepacked copies of them, doubling memory with two. Instead the model
is optimised once, here, and saved with its weights and the prepacked blobs in an
external data file; sessions loaded from that file map it read-only, so the kernel keeps
one copy in the page cache for all of them (and for every replica process on the machine
that loads the same model). Sharing through ``SessionOptions.add_initializer`` keeps one
copy of the raw weights only with prepacking off, which made batched MatMul models about
three times slower here; the Python API has no prepacked-weights container.

The prepared file is specific to this onnxruntime version and this CPU (layouts such as
NCHWc and packed GEMM panels are), so both are part of its cache key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import tempfile
from pathlib import Path

import onnxruntime as ort

from sluice_runtime.sources import sha256_of

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "weights.bin"
# Bumped when what is written here changes, so old prepared files are never reused.
_FORMAT = "1"
# Smaller initializers stay inside the model file: each session keeps its own copy of
# those, a few kilobytes at most.
_EXTERNAL_MIN_BYTES = 1024


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine()


def cache_key(model_path: Path) -> str:
    """What a prepared file depends on: the model's bytes, onnxruntime, the CPU, the format."""
    parts = (sha256_of(model_path), ort.__version__, _cpu_signature(), _FORMAT)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _optimise(model_path: Path, out_dir: Path) -> None:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out_dir / MODEL_FILE)
    # The warning that the saved model is specific to this machine is the point here.
    options.log_severity_level = 3
    config = {
        "session.optimized_model_external_initializers_file_name": WEIGHTS_FILE,
        "session.optimized_model_external_initializers_min_size_in_bytes":
            str(_EXTERNAL_MIN_BYTES),
        "session.save_external_prepacked_constant_initializers": "1",
    }
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def prepare_shared_weights(model_path: Path, cache_dir: Path) -> Path:
    """The optimised model file whose sessions share one mapped copy of the weights.

    Made once per model, onnxruntime and CPU, then reused (by other processes too). It is
    written in a private directory and renamed into place whole, so a reader never maps a
    file that is still being written, and nothing mapped is ever rewritten.
    """
    prepared = cache_dir / "prepared" / cache_key(model_path)
    if (prepared / MODEL_FILE).exists():
        return prepared / MODEL_FILE
    prepared.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=prepared.parent, prefix=".partial-"))
    try:
        _optimise(model_path, partial)
        os.rename(partial, prepared)
    except OSError:
        if not (prepared / MODEL_FILE).exists():
            raise
        # Another process prepared the same model first: use theirs.
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("prepared %s for shared weights in %s", model_path, prepared)
    return prepared / MODEL_FILE
