"""Sluice runtime: an Open Inference Protocol server with SLO-aware adaptive batching."""

__version__ = "0.1.0"
