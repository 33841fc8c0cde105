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


def process_argv(plan: ContainerPlan, netns: str,
                 mounts: Sequence[tuple[Path, str, bool]]) -> list[str]:
    """The command that runs ``plan`` in ``netns`` with ``mounts`` (host folder, path, ro)."""
    enter = ["nsenter", f"--net={NETNS_DIR / netns}", "--"]
    if not mounts:
        return [*enter, *plan.argv]
    steps = []
    for host, target, read_only in mounts:
        steps.append(f"mkdir -p {shlex.quote(target)} && mount --bind "
                     f"{shlex.quote(str(host))} {shlex.quote(target)}")
        if read_only:
            steps.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
    script = " && ".join([*steps, f'exec {shlex.join(enter)} "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh",
            *plan.argv]


def start(plan: ContainerPlan, netns: str, cgroups: ContainerCgroups,
          mounts: Sequence[tuple[Path, str, bool]], log_path: Path, pod_folder: Path,
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
