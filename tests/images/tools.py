"""The Debian packages the image tooling runs, installed with apt when missing.

``make image-tools`` and the image tests both come here, so a machine without podman gets
the same packages either way. With everything installed it asks dpkg only: no apt, no
network.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path

from tests.images.podman import ImageError, run_logged

#: Package -> version pattern (apt's ``NAME=PATTERN``): the release bookworm serves, any
#: Debian revision of it, since point releases and security updates replace revisions.
PACKAGES = {
    "podman": "4.3.1+ds1-*",
    # crun refuses this machine's hybrid cgroup v1 layout; runc drives it.
    "runc": "1.1.5+ds1-*",
    # Podman's network stack, named so apt need not choose one. Builds and the operator
    # use the host's network and the runtime slirp4netns, so its bridge is never made.
    "netavark": "1.4.0-*",
    # Publishes a port on 127.0.0.1 from a user-space process: no iptables rules.
    "slirp4netns": "1.2.0-*",
    "debootstrap": "1.0.128*",
}


def missing(packages: dict[str, str] = PACKAGES) -> list[str]:
    """The packages not installed, or installed at a version outside their pattern."""
    return [name for name, pattern in packages.items()
            if not fnmatch.fnmatchcase(_installed_version(name) or "", pattern)]


def ensure_installed(log: Path) -> list[str]:
    """Install what :func:`missing` lists (apt output appended to ``log``); return it.

    Raises :class:`ImageError` when that needs root, apt or a network it lacks.
    """
    needed = missing()
    if not needed:
        return []
    pinned = [f"{name}={PACKAGES[name]}" for name in needed]
    if os.geteuid() != 0:
        raise ImageError(f"{', '.join(needed)} missing; installing them needs root: "
                         f"apt-get install {' '.join(pinned)}")
    if shutil.which("apt-get") is None:
        raise ImageError(f"{', '.join(needed)} missing and apt-get is not here (Debian needed)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_logged(["apt-get", "update", "-q"], log=log, env=env)
    run_logged(["apt-get", "install", "-y", "-q", "--no-install-recommends", *pinned],
               log=log, env=env, timeout_s=900)
    still = missing()
    if still:
        raise ImageError(f"apt-get installed, yet {', '.join(still)} are not at "
                         f"{', '.join(PACKAGES[n] for n in still)} (see {log})")
    return needed


def _installed_version(name: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    found = subprocess.run(["dpkg-query", "--show", "--showformat", "${Status}\t${Version}", name],
                           capture_output=True, text=True, check=False)
    status, _, version = found.stdout.partition("\t")
    return version if found.returncode == 0 and status == "install ok installed" else None
