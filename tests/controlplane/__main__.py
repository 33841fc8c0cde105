"""``python -m tests.controlplane build|up|down|status``: the test control plane by hand."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from tests.controlplane import build, versions
from tests.controlplane.cluster import ControlPlane, ControlPlaneError


def run_dir() -> Path:
    """Where ``up`` keeps the running control plane's files and state."""
    return versions.cache_dir() / "run"


def state_file() -> Path:
    """The state file ``up`` writes and ``down``/``status`` read."""
    return run_dir() / "state.json"


def cmd_build() -> int:
    """Build every missing component into the cache."""
    started = time.monotonic()
    artifacts = build.ensure_built()
    elapsed = time.monotonic() - started
    built = ", ".join(artifacts.built) or "nothing (all cached)"
    print(f"built: {built} in {elapsed:.0f}s")
    print(f"cache: {versions.cache_dir()}")
    return 0


def cmd_up() -> int:
    """Start a detached control plane, or report the one already running."""
    existing = _load()
    if existing is not None and existing.is_running():
        print(f"already running: {existing.server}")
        _print_kubeconfig(existing)
        return 0
    if existing is not None:
        _stop(existing)
    directory = run_dir()
    shutil.rmtree(directory, ignore_errors=True)
    started = time.monotonic()
    plane = ControlPlane.start(workdir=directory / "cluster", detached=True)
    plane.save_state(state_file())
    print(f"control plane up at {plane.server} in {time.monotonic() - started:.0f}s")
    print(f"logs: {plane.workdir / 'logs'}")
    _print_kubeconfig(plane)
    return 0


def cmd_down() -> int:
    """Stop the control plane ``up`` started and remove its files."""
    plane = _load()
    if plane is None:
        print("not running")
        return 0
    _stop(plane)
    print("stopped")
    return 0


def cmd_status() -> int:
    """Print each component's state; exit 1 unless all run and the API server is ready."""
    plane = _load()
    if plane is None:
        print("not running")
        return 1
    for record in plane.processes:
        print(
            f"{record.name:<24} pid {record.pid:<8} {'running' if record.is_running() else 'GONE'}"
        )
    ready = plane.kubectl("get", "--raw", "/readyz", check=False)
    print(f"{'kube-apiserver /readyz':<24} {ready.stdout.strip() or ready.stderr.strip()}")
    _print_kubeconfig(plane)
    return 0 if plane.is_running() and ready.returncode == 0 else 1


def _load() -> ControlPlane | None:
    path = state_file()
    return ControlPlane.from_state(path) if path.exists() else None


def _stop(plane: ControlPlane) -> None:
    try:
        plane.stop()
    finally:
        shutil.rmtree(run_dir(), ignore_errors=True)


def _print_kubeconfig(plane: ControlPlane) -> None:
    print(f"kubeconfig: {plane.kubeconfig}")
    print(f"export KUBECONFIG={plane.kubeconfig}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane", description=__doc__)
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    args = parser.parse_args(argv)
    commands = {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status}
    try:
        return commands[args.command]()
    except (ControlPlaneError, build.BuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
