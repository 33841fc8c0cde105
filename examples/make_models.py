"""Generate the example ONNX models: realistic shapes, random weights, deterministic seed.

- ``cnn.onnx``: a ResNet-like CNN, ``images[N,3,224,224]`` -> ``logits[N,100]``
  (compute-bound: batching buys little, cores buy a lot).
- ``mlp.onnx``: a 3-layer MLP, ``features[N,384]`` -> ``scores[N,16]``
  (overhead-bound: batching is everything).
- ``intent.onnx`` -> ``policy.onnx`` -> ``response.onnx``: the dialogue pipeline of
  ``examples/pipelines/dialogue.yaml``; each stage's single output feeds the next
  stage's single input.
- ``magika.onnx``: a real trained model, Magika's content-type classifier (Apache-2.0),
  copied from the installed ``magika`` package when there is one (``docs/models.md``).

Usage: ``python examples/make_models.py --out examples/models``
"""

from __future__ import annotations

import argparse
import importlib.resources
import itertools
import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BATCH = "N"


class GraphBuilder:
    """Accumulates nodes and seeded random initializers for one graph."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def weight(self, prefix: str, shape: tuple[int, ...], fan_in: int) -> str:
        # He initialisation keeps activations in a sane range through deep stacks.
        data = (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(data, name))
        return name

    def bias(self, prefix: str, size: int) -> str:
        name = self.fresh(prefix)
        data = (self.rng.standard_normal(size) * 0.01).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(data, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: object) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int) -> str:
        w = self.weight("conv_w", (c_out, c_in, kernel, kernel), c_in * kernel * kernel)
        b = self.bias("conv_b", c_out)
        pad = kernel // 2
        return self.node(
            "Conv", [x, w, b], kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def dense(self, x: str, n_in: int, n_out: int) -> str:
        w = self.weight("dense_w", (n_in, n_out), n_in)
        b = self.bias("dense_b", n_out)
        return self.node("Add", [self.node("MatMul", [x, w]), b])

    def model(
        self,
        name: str,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def tensor(name: str, elem_type: int, *dims: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, [BATCH, *dims])


def rename_last(builder: GraphBuilder, output: str) -> None:
    """Point the last node's output at the graph's declared output name."""
    builder.nodes[-1].output[0] = output


def residual_block(b: GraphBuilder, x: str, c_in: int, c_out: int, stride: int) -> str:
    y = b.node("Relu", [b.conv(x, c_in, c_out, 3, stride)])
    y = b.conv(y, c_out, c_out, 3, 1)
    shortcut = x if stride == 1 and c_in == c_out else b.conv(x, c_in, c_out, 1, stride)
    return b.node("Relu", [b.node("Add", [y, shortcut])])


def build_cnn(seed: int = 1, classes: int = 100) -> onnx.ModelProto:
    """A ResNet-like CNN: stem, four residual stages, global pooling, classifier."""
    b = GraphBuilder(seed)
    x = b.node("Relu", [b.conv("images", 3, 32, 7, 2)])
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    channels = 32
    for c_out, stride in ((32, 1), (64, 2), (128, 2), (256, 2)):
        x = residual_block(b, x, channels, c_out, stride)
        channels = c_out
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    b.dense(x, channels, classes)
    rename_last(b, "logits")
    return b.model(
        "cnn",
        [tensor("images", TensorProto.FLOAT, 3, 224, 224)],
        [tensor("logits", TensorProto.FLOAT, classes)],
    )


def mlp_layers(b: GraphBuilder, x: str, widths: list[int]) -> str:
    for n_in, n_out in itertools.pairwise(widths[:-1]):
        x = b.node("Relu", [b.dense(x, n_in, n_out)])
    return b.dense(x, widths[-2], widths[-1])


def build_mlp(seed: int = 2) -> onnx.ModelProto:
    """A 3-layer MLP over 384 features (a sentence-embedding-sized input)."""
    b = GraphBuilder(seed)
    mlp_layers(b, "features", [384, 256, 128, 16])
    rename_last(b, "scores")
    return b.model(
        "mlp",
        [tensor("features", TensorProto.FLOAT, 384)],
        [tensor("scores", TensorProto.FLOAT, 16)],
    )


def build_intent(seed: int = 3, intents: int = 32) -> onnx.ModelProto:
    """Intent tracker: utterance embedding -> intent distribution."""
    b = GraphBuilder(seed)
    logits = mlp_layers(b, "utterance", [384, 256, intents])
    b.node("Softmax", [logits], axis=-1)
    rename_last(b, "intent")
    return b.model(
        "intent",
        [tensor("utterance", TensorProto.FLOAT, 384)],
        [tensor("intent", TensorProto.FLOAT, intents)],
    )


def build_policy(seed: int = 4, intents: int = 32, state: int = 64) -> onnx.ModelProto:
    """Dialogue policy: intent distribution -> dialogue-act embedding."""
    b = GraphBuilder(seed)
    x = mlp_layers(b, "intent", [intents, 128, state])
    b.node("Tanh", [x])
    rename_last(b, "action")
    return b.model(
        "policy",
        [tensor("intent", TensorProto.FLOAT, intents)],
        [tensor("action", TensorProto.FLOAT, state)],
    )


def build_response(
    seed: int = 5, state: int = 64, tokens: int = 16, vocab: int = 512
) -> onnx.ModelProto:
    """Response generator: dialogue act -> token ids (a non-autoregressive decoder head)."""
    b = GraphBuilder(seed)
    hidden = b.node("Relu", [b.dense("action", state, 256)])
    logits = b.dense(hidden, 256, tokens * vocab)
    shape = b.fresh("shape")
    b.initializers.append(numpy_helper.from_array(np.array([-1, tokens, vocab], np.int64), shape))
    b.node("ArgMax", [b.node("Reshape", [logits, shape])], axis=2, keepdims=0)
    rename_last(b, "tokens")
    return b.model(
        "response",
        [tensor("action", TensorProto.FLOAT, state)],
        [tensor("tokens", TensorProto.INT64, tokens)],
    )


#: Where the magika wheel keeps the model its own library runs.
MAGIKA_MODEL = ("models", "standard_v3_3", "model.onnx")


def copy_magika(out: Path) -> bool:
    """Copy Magika's model from the installed package to ``out``; False without magika."""
    try:
        source = importlib.resources.files("magika").joinpath(*MAGIKA_MODEL)
    except ImportError:
        return False
    with importlib.resources.as_file(source) as path:
        shutil.copyfile(path, out)
    return True


BUILDERS = {
    "cnn": build_cnn,
    "mlp": build_mlp,
    "intent": build_intent,
    "policy": build_policy,
    "response": build_response,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/models"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        path = args.out / f"{name}.onnx"
        onnx.save(build(), path)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if copy_magika(args.out / "magika.onnx"):
        print(f"wrote {args.out / 'magika.onnx'} (Magika's trained model, from its package)")
    else:
        print("magika is not installed: no magika.onnx (pip install magika, or the dev extra)")


if __name__ == "__main__":
    main()
