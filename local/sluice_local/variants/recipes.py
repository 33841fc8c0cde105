"""The variants ``sluice variants`` can make, as data: pure (the quantization itself is
:mod:`sluice_local.variants.make`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """One way of making a variant (its name is the variant's name in the manifest)."""

    name: str
    description: str
    weight_type: str  # a member of onnxruntime.quantization.QuantType
    per_channel: bool = False
    #: Operator types to quantize; None: every type onnxruntime's tool supports.
    op_types: tuple[str, ...] | None = None
    #: Static quantization: activation ranges calibrated on the sample inputs beforehand
    #: (``quantize_static``), not measured at each run (``quantize_dynamic``).
    calibrated: bool = False


RECIPES: tuple[Recipe, ...] = (
    Recipe("int8", "dynamic quantization, int8 weights with one scale per tensor", "QInt8"),
    Recipe("int8-per-channel", "dynamic quantization, int8 weights with a scale per output "
           "channel (closer to the original where channels differ in range)", "QInt8",
           per_channel=True),
    Recipe("uint8", "dynamic quantization, uint8 weights (onnxruntime's CPU kernels for "
           "uint8 activations times uint8 weights)", "QUInt8"),
    # onnxruntime's integer convolution on CPU can be slower than its float one (measured:
    # docs/bench.md): this keeps convolutions in float and quantizes the matrix products.
    Recipe("int8-matmul", "dynamic quantization, int8 weights in MatMul and Gemm only "
           "(convolutions stay float)", "QInt8", op_types=("MatMul", "Gemm")),
    Recipe("int8-static", "static quantization (QDQ), int8 weights and uint8 activations "
           "whose ranges are calibrated on the sample inputs", "QInt8", calibrated=True),
)
RECIPE_NAMES = tuple(recipe.name for recipe in RECIPES)


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; KeyError when there is none."""
    for known in RECIPES:
        if known.name == name:
            return known
    raise KeyError(name)
