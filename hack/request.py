"""Send one Open Inference Protocol request over gRPC and print the answer.

Used by hack/kind-up.sh against the pipeline's router behind Knative's ingress:
  python hack/request.py --target 127.0.0.1:8081 \
      --authority dialogue-router.default.127.0.0.1.sslip.io --model dialogue
The input tensors are random, shaped and typed from the model's own metadata.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import triton_to_np_dtype


def main() -> int:
    """Query metadata, infer once with batch size 1, print each output."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the gRPC endpoint")
    parser.add_argument("--authority", help="HTTP/2 :authority (Knative routes by host name)")
    parser.add_argument("--model", required=True, help="model name (the pipeline's name)")
    args = parser.parse_args()
    channel_args = [("grpc.default_authority", args.authority)] if args.authority else None
    client = grpcclient.InferenceServerClient(args.target, channel_args=channel_args)
    metadata = client.get_model_metadata(args.model, as_json=True)
    inputs = []
    for tensor in metadata["inputs"]:
        shape = [1 if int(d) < 0 else int(d) for d in tensor["shape"]]
        data = np.random.default_rng(0).random(shape).astype(triton_to_np_dtype(tensor["datatype"]))
        infer_input = grpcclient.InferInput(tensor["name"], shape, tensor["datatype"])
        infer_input.set_data_from_numpy(data)
        inputs.append(infer_input)
    result = client.infer(args.model, inputs, parameters={"sluice-budget-ms": 1000})
    for tensor in metadata["outputs"]:
        values = result.as_numpy(tensor["name"])
        print(f"{args.model}: {tensor['name']} {list(values.shape)} = {values.ravel()[:8]} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
