"""Mounts left below a directory, and undoing them before the directory is removed.

debootstrap mounts /proc and /sys inside its target and unmounts them when it finishes;
killed or failing half-way it leaves them. Removing such a tree recursively would walk into
the host's /proc, /sys or /dev: every removal of a chroot goes through :func:`remove_tree`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.images.podman import ImageError

_MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def mounts_below(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (the order to unmount them)."""
    root = directory.resolve()
    found = []
    for line in _MOUNTINFO.read_text().splitlines():
        # Field 5 is the mount point, with spaces and the like written as octal escapes.
        point = Path(_OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), line.split()[4]))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def remove_tree(directory: Path) -> None:
    """Unmount whatever is mounted below ``directory``, then remove it.

    Raises :class:`ImageError`, removing nothing, when a mount cannot be undone.
    """
    if not directory.exists():
        return
    for point in mounts_below(directory):
        # Lazy: a mount still busy (a process left in the chroot) is detached at once.
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    left = mounts_below(directory)
    if left:
        raise ImageError(f"cannot unmount {', '.join(map(str, left))}: "
                         f"{directory} is left in place")
    shutil.rmtree(directory)
