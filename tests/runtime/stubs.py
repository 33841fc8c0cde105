"""What the committed protocol stubs demand, and what pyproject.toml declares.

The stubs are read as source, never imported: this process must not load
``sluice_runtime.protocol`` (see tests/conftest.py), and a stub too new for the installed
grpcio or protobuf would not import anyway, which is exactly the case worth reporting.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

PROTOCOL = ROOT / "runtime" / "sluice_runtime" / "protocol"
PYPROJECT = ROOT / "pyproject.toml"
#: The generator of the stubs, which the dev extra pins.
GENERATOR = "grpcio-tools"


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def grpc_generated_version() -> Version:
    """``GRPC_GENERATED_VERSION`` of inference_pb2_grpc.py: the grpcio it refuses to go below."""
    for node in ast.walk(_tree(PROTOCOL / "inference_pb2_grpc.py")):
        if (isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "GRPC_GENERATED_VERSION"
                        for t in node.targets)):
            return Version(ast.literal_eval(node.value))
    raise AssertionError("inference_pb2_grpc.py assigns no GRPC_GENERATED_VERSION")


def protobuf_gencode_version() -> Version:
    """The version inference_pb2.py passes to ``ValidateProtobufRuntimeVersion``, which
    rejects an older protobuf runtime at import."""
    for node in ast.walk(_tree(PROTOCOL / "inference_pb2.py")):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "ValidateProtobufRuntimeVersion"):
            # (domain, major, minor, patch, suffix, location)
            major, minor, patch, suffix = (ast.literal_eval(a) for a in node.args[1:5])
            return Version(f"{major}.{minor}.{patch}{suffix}")
    raise AssertionError("inference_pb2.py calls no ValidateProtobufRuntimeVersion")


def protobuf_header_version() -> Version:
    """The ``# Protobuf Python Version:`` line protoc writes at the top of inference_pb2.py."""
    found = re.search(r"^# Protobuf Python Version: (\S+)$",
                      (PROTOCOL / "inference_pb2.py").read_text(), re.MULTILINE)
    assert found, "inference_pb2.py has no 'Protobuf Python Version' header"
    return Version(found.group(1))


def extra(name: str) -> dict[str, Requirement]:
    """The requirements of one optional-dependencies extra, by canonical project name."""
    with PYPROJECT.open("rb") as file:
        declared = tomllib.load(file)["project"]["optional-dependencies"][name]
    requirements = [Requirement(line) for line in declared]
    return {canonicalize_name(r.name): r for r in requirements}


def lower_bound(requirement: Requirement) -> Version | None:
    """The least version the requirement admits a bound for, or None when it has none.

    ``>`` counts as its version: a bound strictly above a version that is high enough is
    high enough too.
    """
    bounds = [Version(s.version) for s in requirement.specifier
              if s.operator in {">=", ">", "==", "~=", "==="} and not s.version.endswith(".*")]
    return max(bounds, default=None)


def pinned_generator_version() -> Version:
    """The grpcio-tools version the dev extra pins (``==``, nothing else)."""
    requirement = extra("dev")[GENERATOR]
    pins = [s for s in requirement.specifier if s.operator == "=="]
    assert pins == list(requirement.specifier), f"dev extra: {requirement} is not an exact pin"
    assert len(pins) == 1, f"dev extra: {requirement} is not an exact pin"
    return Version(pins[0].version)
