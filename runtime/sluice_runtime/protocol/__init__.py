"""The Open Inference Protocol as Sluice speaks it: the generated stubs and the channel
options every peer uses (servers, remote stages, the load generator)."""

# Batched tensors easily exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
GRPC_MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Image-sized tensors (600 KB for 224x224 FP32) arrive in many small reads and window
    # updates by default; larger reads and a deeper window cut the receive cost by ~10%
    # (bench/overload.py), and under overload every request must be received to be refused.
    ("grpc.experimental.tcp_min_read_chunk_size", 1 << 20),
    ("grpc.experimental.tcp_max_read_chunk_size", 8 << 20),
    ("grpc.http2.lookahead_bytes", 4 << 20),
]
