"""The smallest fair MLServer runtime for an ONNX model: one onnxruntime session.

MLServer ships no ONNX runtime. This one runs in MLServer's own venv
(``bench/.venv-mlserver``), loads ``parameters.uri`` with the intra-op thread count from
``parameters.extra.intra_op_threads``, and leaves batching to MLServer's adaptive batcher
(``max_batch_size`` / ``max_batch_time`` in model-settings.json).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    """Serves every input and output of one ONNX graph as numpy tensors."""

    async def load(self) -> bool:
        """Create the session with the configured thread count."""
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(extra.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        path = await get_model_uri(self.settings)
        self._session = ort.InferenceSession(
            path, options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the graph on the (possibly adaptively batched) request."""
        feeds = {inp.name: NumpyCodec.decode_input(inp) for inp in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, value)
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
