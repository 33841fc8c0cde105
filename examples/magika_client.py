"""Ask a Sluice runtime serving Magika (examples/pipelines/magika.yaml) what files are.

    .venv/bin/sluice-runtime serve --pipeline examples/pipelines/magika.yaml \\
        --model content-type=examples/models/magika.onnx --port 8001
    .venv/bin/python examples/magika_client.py --url 127.0.0.1:8001 FILE...
    .venv/bin/python examples/magika_client.py --features-out samples.npy FILE...

Prints one line per file, ``PATH: LABEL (DESCRIPTION), probability P``: the content type
the model scores highest. ``--features-out`` sends nothing and saves the files' features
as one int32 array (``sluice variants --samples``).

The features are computed here as Magika's library computes them (its feature extraction
v2): the first and the last ``block_size`` bytes of the file are read, whitespace is
stripped from the start of the first and the end of the last, and the first ``beg_size``
and the last ``end_size`` bytes of what remains are the model's input, padded with the
padding token (after the beginning, before the end) when the file is short. The sizes,
the padding token and the labels of the model's outputs are read at run time from the
installed magika package's own data files (its model config and its content-type list);
the package itself is not imported. Files too short for the model (fewer meaningful bytes
than its config's ``min_file_size_for_dl``) are ones Magika answers without the model:
they are reported as such, not sent.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The magika wheel's model (the one examples/make_models.py copies) and its data files.
MAGIKA_CONFIG = "magika/models/standard_v3_3/config.min.json"
MAGIKA_CONTENT_TYPES = "magika/config/content_types_kb.min.json"
#: The pipeline model, its input and its output (examples/pipelines/magika.yaml).
MODEL = "magika"
INPUT = "bytes"
OUTPUT = "target_label"


@dataclass(frozen=True)
class MagikaConfig:
    """What the model expects and what its outputs mean."""

    beg_size: int
    end_size: int
    padding_token: int
    block_size: int
    min_file_size_for_dl: int
    labels: tuple[str, ...]  # the content type of each output index
    descriptions: dict[str, str]

    def describe(self, label: str) -> str:
        """A content type's description (``python`` -> ``Python source``)."""
        return self.descriptions.get(label) or label


def load_config() -> MagikaConfig:
    """The model's config and the content types, from the installed magika package."""
    try:
        distribution = importlib.metadata.distribution("magika")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("magika is not installed: pip install magika (the dev extra)") from None
    config = json.loads(Path(distribution.locate_file(MAGIKA_CONFIG)).read_text())
    kinds = json.loads(Path(distribution.locate_file(MAGIKA_CONTENT_TYPES)).read_text())
    if config["mid_size"] or config["use_inputs_at_offsets"]:
        raise SystemExit("this magika model wants features this client does not compute")
    return MagikaConfig(
        beg_size=config["beg_size"], end_size=config["end_size"],
        padding_token=config["padding_token"], block_size=config["block_size"],
        min_file_size_for_dl=config["min_file_size_for_dl"],
        labels=tuple(config["target_labels_space"]),
        descriptions={label: info.get("description") for label, info in kinds.items()},
    )


def features(head: bytes, tail: bytes, config: MagikaConfig) -> np.ndarray:
    """The model's input row from a file's first and last blocks."""
    beginning = list(head.lstrip()[:config.beg_size])
    end = list(tail.rstrip()[-config.end_size:]) if config.end_size else []
    padding = config.padding_token
    row = (beginning + [padding] * (config.beg_size - len(beginning))
           + [padding] * (config.end_size - len(end)) + end)
    return np.array(row, dtype=np.int32)


def file_features(path: Path, config: MagikaConfig) -> np.ndarray:
    """The model's input row for the file at ``path`` (reads two blocks at most)."""
    with path.open("rb") as stream:
        size = stream.seek(0, 2)
        block = min(config.block_size, size)
        stream.seek(0)
        head = stream.read(block)
        stream.seek(size - block)
        tail = stream.read(block)
    return features(head, tail, config)


def enough_for_the_model(row: np.ndarray, config: MagikaConfig) -> bool:
    """Whether the file has the meaningful bytes the model needs (Magika's own test)."""
    return bool(row[config.min_file_size_for_dl - 1] != config.padding_token)


def classify(url: str, row: np.ndarray) -> np.ndarray:
    """The model's probabilities for one file, from the runtime at ``url``."""
    import tritonclient.grpc as triton  # only to send: --features-out works without it

    client = triton.InferenceServerClient(url)
    tensor = triton.InferInput(INPUT, [1, row.size], "INT32")
    tensor.set_data_from_numpy(row.reshape(1, -1))
    result = client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput(OUTPUT)])
    return result.as_numpy(OUTPUT)[0]


def main() -> int:
    """Classify the files through the runtime, or save their features."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", metavar="FILE")
    parser.add_argument("--url", default="127.0.0.1:8001",
                        help="the runtime's gRPC address (default %(default)s)")
    parser.add_argument("--features-out", type=Path, metavar="FILE.npy",
                        help="save the files' features here instead of sending them")
    args = parser.parse_args()
    config = load_config()
    rows = {path: file_features(path, config) for path in args.files}
    if args.features_out is not None:
        np.save(args.features_out, np.stack(list(rows.values())))
        print(f"wrote {args.features_out}: features of {len(rows)} file(s)")
        return 0
    for path, row in rows.items():
        if not enough_for_the_model(row, config):
            print(f"{path}: too few bytes for the model (Magika answers txt or unknown "
                  "without it)")
            continue
        probabilities = classify(args.url, row)
        best = int(np.argmax(probabilities))
        label = config.labels[best]
        print(f"{path}: {label} ({config.describe(label)}), "
              f"probability {probabilities[best]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
