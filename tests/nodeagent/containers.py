"""A container as a process: started in its cgroups, its pod's network namespace and (with
volumes) a private mount namespace; stopped with SIGTERM, then SIGKILL past the grace."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from tests.nodeagent.cgroups import ContainerCgroups
from tests.nodeagent.network import NETNS_DIR
from tests.nodeagent.podspec import ContainerPlan

_PR_SET_PDEATHSIG = 1


def _joining(cgroups: ContainerCgroups):  # type: ignore[no-untyped-def]
    """In the child before exec: its own session, then every cgroup folder; before entering
    the network namespace (``ip netns exec`` would remount /sys; nsenter does not)."""
    def join() -> None:
        os.setsid()
        # A container outlives no agent: killed with it, it leaves no orphan behind.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        for folder in cgroups.joined:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    return join


class MountPoint(NamedTuple):
    """A volume's host folder at ``target`` in the container. ``layered``: the target is
    a host folder with files in it, which stand in for the image's own (the interpreter,
    the project), so the volume is an overlay's upper layer over them rather than a mount
    that hides them; writes still go to the volume."""

    host: Path
    target: str
    read_only: bool
    layered: bool = False


def _mount(point: MountPoint) -> str:
    host, target = shlex.quote(str(point.host)), shlex.quote(point.target)
    if point.layered:
        upper = shlex.quote(str(point.host / "upper"))
        work = shlex.quote(str(point.host / "work"))
        return (f"mkdir -p {upper} {work} && mount -t overlay overlay -o "
                f"lowerdir={target},upperdir={upper},workdir={work} {target}")
    step = f"mkdir -p {target} && mount --bind {host} {target}"
    return f"{step} && mount -o remount,bind,ro {target}" if point.read_only else step


def process_argv(plan: ContainerPlan, netns: str, mounts: Sequence[MountPoint]) -> list[str]:
    """The command that runs ``plan`` in ``netns`` with ``mounts``, in their order."""
    enter = ["nsenter", f"--net={NETNS_DIR / netns}", "--"]
    if not mounts:
        return [*enter, *plan.argv]
    steps = [_mount(point) for point in mounts]
    script = " && ".join([*steps, f'exec {shlex.join(enter)} "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            *plan.argv]


def start(plan: ContainerPlan, netns: str, cgroups: ContainerCgroups,
          mounts: Sequence[MountPoint], log_path: Path, pod_folder: Path,
          hostname: str) -> subprocess.Popen[bytes]:
    """Start the container's process; its output goes to ``log_path``."""
    # The image's own commands come first on its PATH: the installed project's scripts
    # (``sluice-runtime``, as the rendered container's command names it).
    path = os.pathsep.join([str(Path(sys.executable).parent),
                            os.environ.get("PATH", "/usr/bin:/bin")])
    env = {"PATH": path, "HOME": str(pod_folder),
           "HOSTNAME": hostname, "PYTHONUNBUFFERED": "1", **plan.env}
    cwd = plan.working_dir if plan.working_dir and Path(plan.working_dir).is_dir() else (
        pod_folder)
    with log_path.open("ab") as log:
        return subprocess.Popen(process_argv(plan, netns, mounts), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, preexec_fn=_joining(cgroups))


def signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to the container's whole process group (it is its session's leader)."""
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, sig)
