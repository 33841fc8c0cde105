"""Shared pytest configuration.

The pytest process talks to runtimes only through ``tritonclient``; it must never import
``sluice_runtime.protocol`` (both register ``inference.*`` protobuf messages, and one
process cannot hold two definitions of the same message).
"""

pytest_plugins = ["tests.controlplane.fixtures"]
