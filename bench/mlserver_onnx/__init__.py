"""An onnxruntime inference runtime for MLServer, used only by the benchmark."""
