"""``python -m tests.images tools|build|env|clean``: the two images, built with podman.

tools   install podman, runc, debootstrap... from Debian's packages when missing (root)
build   tools, then the local base image and both images, each only when out of date
env     the variables that point podman at this tooling's storage, as shell exports
clean   remove every container, image and file of this tooling's cache
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time

from tests.images import base, build, tools
from tests.images.mounts import remove_tree
from tests.images.podman import ImageError, Podman


def cmd_tools() -> int:
    """Install the Debian packages the tooling runs, when missing."""
    podman = Podman.configured()
    installed = tools.ensure_installed(podman.fresh_log("apt"))
    print(f"installed: {', '.join(installed)}" if installed else "tools: all installed")
    return 0


def cmd_build() -> int:
    """Everything :func:`build.ensure_all` does, with each step's time and the images' sizes."""
    started = time.monotonic()
    outcome = build.ensure_all(progress=lambda step: print(f"{step}...", flush=True))
    for step, seconds in outcome.seconds.items():
        print(f"  {step:<16} {seconds:6.0f} s")
    print(f"built in {time.monotonic() - started:.0f} s (base image "
          f"{'rebuilt' if outcome.base_built else 'cached'}); logs: {outcome.podman.logs}")
    names = [base.IMAGE, *(image.tag for image in build.PRODUCT_IMAGES)]
    print(outcome.podman("images", "--format", "{{.Repository}}:{{.Tag}}  {{.Size}}",
                         *[f"--filter=reference={name}" for name in names]).stdout.rstrip())
    return 0


def cmd_env() -> int:
    """Print ``export`` lines for a shell: ``eval "$(python -m tests.images env)"``."""
    for name, value in Podman.configured().env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_clean() -> int:
    """Stop and remove this tooling's containers, then its whole cache and per-boot state."""
    podman = Podman.configured()
    if shutil.which("podman") is not None:
        podman("rm", "--all", "--force", check=False)
    remove_tree(podman.cache)
    remove_tree(podman.run_dir)
    print(f"removed {podman.cache} and {podman.run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m tests.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["tools", "build", "env", "clean"])
    args = parser.parse_args(argv)
    commands = {"tools": cmd_tools, "build": cmd_build, "env": cmd_env, "clean": cmd_clean}
    try:
        return commands[args.command]()
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
