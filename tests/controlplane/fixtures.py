"""pytest fixtures: ``control_plane`` (one per session) and ``namespace`` (one per test).

Loaded from tests/conftest.py through ``pytest_plugins``. Without Go (and without a
complete cache) the control-plane tests skip, except under ``CI=true``, where they fail:
CI must never pass by skipping.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.controlplane import build
from tests.controlplane.cluster import ControlPlane, ControlPlaneError

_build_error: str | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the cache before any test runs when a collected test needs the control plane.

    A cold build takes tens of minutes; done inside the fixture it would count against
    the first test's timeout.
    """
    global _build_error
    if session.config.option.collectonly:
        return
    wanted = any("control_plane" in getattr(item, "fixturenames", ()) for item in session.items)
    if not wanted or not build.missing_components() or build.go_binary() is None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("control plane: building missing components (cached after)")
    try:
        build.ensure_built()
    except (build.BuildError, OSError) as error:
        _build_error = str(error)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A real control plane shared by the whole session, stopped at its end."""
    if build.go_binary() is None and build.missing_components():
        message = "the test control plane is built from Go modules and `go` is not on PATH"
        if _in_ci():
            pytest.fail(f"{message} (CI=true: install Go 1.26+)", pytrace=False)
        pytest.skip(message)
    if _build_error is not None:
        pytest.fail(f"building the control plane failed: {_build_error}", pytrace=False)
    try:
        plane = ControlPlane.start()
    except ControlPlaneError as error:
        pytest.fail(f"the control plane did not start: {error}", pytrace=False)
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def process_node(control_plane: ControlPlane) -> str:
    """A node whose pods run as real processes (tests.nodeagent) on the session's control
    plane; its name. Needs root (network namespaces, cgroups): skipped otherwise, except
    under ``CI=true``, which runs as root."""
    if os.geteuid() != 0:
        if _in_ci():
            pytest.fail("CI runs as root: process nodes need it", pytrace=False)
        pytest.skip("a process node needs root (network namespaces and cgroups)")
    try:
        return control_plane.add_process_node("process-node-1", index=1)
    except ControlPlaneError as error:
        pytest.fail(f"the process node did not start: {error}", pytrace=False)


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace for one test, deleted after it (without waiting)."""
    name = control_plane.create_namespace(f"test-{secrets.token_hex(4)}")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
