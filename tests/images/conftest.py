"""The ``images`` fixture: tools installed, base image and both images built, once a session.

Building takes root (apt, debootstrap's chroot, podman's namespaces and cgroups). Without
it the tests skip, except under ``CI=true``, where they fail: CI must never pass by
skipping. As root nothing skips: missing tools are installed, and a failed step fails.
"""

from __future__ import annotations

import os

import pytest

from tests.images import build
from tests.images.podman import ImageError

_outcome: build.Outcome | None = None
_build_error: str | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build before any test runs when a collected test needs the images.

    A cold build takes minutes; done inside the fixture it would count against the first
    test's timeout.
    """
    global _outcome, _build_error
    if session.config.option.collectonly or os.geteuid() != 0:
        return
    if not any("images" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("images: installing tools and building what is out of date")
    try:
        _outcome = build.ensure_all()
    except (ImageError, OSError) as error:
        _build_error = str(error)


@pytest.fixture(scope="session")
def images() -> build.Outcome:
    """The tools installed and the images built (what was done, and podman to run them)."""
    if os.geteuid() != 0:
        message = "building and running images needs root (apt, debootstrap, podman)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true must run every test", pytrace=False)
        pytest.skip(message)
    if _build_error is not None:
        pytest.fail(f"building the images failed: {_build_error}", pytrace=False)
    if _outcome is not None:
        return _outcome
    try:
        return build.ensure_all()
    except (ImageError, OSError) as error:
        pytest.fail(f"building the images failed: {error}", pytrace=False)
