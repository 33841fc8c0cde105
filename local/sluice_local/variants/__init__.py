"""``sluice variants``' parts: cheaper variants of a model made with onnxruntime's own
quantization tools, the sample inputs they are compared on, their agreement with the
original, and the stage's ``variants`` list in a manifest (docs/models.md)."""
