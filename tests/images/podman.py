"""Podman configured for this tooling alone: its storage in the cache, its settings in
files the tooling writes there, and commands logged to files.

Nothing under /etc is changed: ``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF`` point
podman at the files written here, and podman then reads no other containers.conf or
storage.conf (containers.conf(5), FILES).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.controlplane import versions
from tests.controlplane.process import tail

#: Per-boot state lives below here: podman's tmp_dir and the storage's runroot.
RUN_ROOT = Path("/run/sluice-podman")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
#: The RLIMIT_NPROC podman 4.3 sets on itself at start; what it starts cannot raise it.
PODMAN_OWN_NPROC = 32768


class ImageError(RuntimeError):
    """A step of installing, building or running failed; the message says which and why."""


def cache_dir() -> Path:
    """Root of this tooling's cache: ``$SLUICE_CACHE_DIR/images``, beside the control plane's."""
    return versions.cache_dir().parent / "images"


@dataclass(frozen=True)
class Podman:
    """The podman command with this tooling's configuration."""

    #: Holds containers.conf, storage.conf, the image storage and the build logs.
    cache: Path

    @classmethod
    def configured(cls, cache: Path | None = None) -> Podman:
        """Write the configuration files (when they changed) and return the engine."""
        engine = cls((cache or cache_dir()).resolve())
        engine.cache.mkdir(parents=True, exist_ok=True)
        engine.logs.mkdir(exist_ok=True)
        engine._reset_run_dir_after_reboot()
        _write_if_changed(engine.containers_conf, engine._containers_conf())
        _write_if_changed(engine.storage_conf, engine._storage_conf())
        return engine

    @property
    def containers_conf(self) -> Path:
        return self.cache / "containers.conf"

    @property
    def storage_conf(self) -> Path:
        return self.cache / "storage.conf"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"

    def fresh_log(self, name: str) -> Path:
        """``logs/NAME.log``, emptied: each run of a step keeps only its own output."""
        log = self.logs / f"{name}.log"
        log.write_text("")
        return log

    @property
    def graph_root(self) -> Path:
        return self.cache / "storage"

    @property
    def run_dir(self) -> Path:
        """Per-boot state of this cache's podman.

        Short, because slirp4netns's API socket is a path under it and socket paths are
        limited to 107 bytes; one per cache, so two caches never share lock files.
        """
        digest = hashlib.sha256(str(self.cache).encode()).hexdigest()[:8]
        return RUN_ROOT / digest

    def env(self) -> dict[str, str]:
        """The variables that point podman at this configuration."""
        return {
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
        }

    def __call__(
        self,
        *args: str,
        log: Path | None = None,
        check: bool = True,
        timeout_s: float = 300.0,
        stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; output to ``log`` when given, else captured and returned.

        Raises :class:`ImageError` with the output's end when ``check`` and it fails.
        """
        return run_logged(["podman", *args], log=log, check=check, timeout_s=timeout_s,
                          env={**os.environ, **self.env()}, stdin=stdin)

    def inspect(self, image: str, template: str) -> str | None:
        """``template`` (a Go template) filled from local ``image``; None when it is absent."""
        found = self("image", "inspect", "--format", template, image, check=False)
        return found.stdout.strip() if found.returncode == 0 else None

    @staticmethod
    def ulimits() -> list[str]:
        """The limits of containers and build steps, as podman's ``--ulimit`` values.

        Podman's defaults (nofile and nproc 1048576 to run, nproc 32768 to build) can be
        above what runc may set here, and runc fails the container then: each is capped by
        the hard limit of the process starting podman, and nproc by the one podman gives
        itself.
        """
        nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
        capped = {
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "nproc": PODMAN_OWN_NPROC if nproc == resource.RLIM_INFINITY
            else min(nproc, PODMAN_OWN_NPROC),
        }
        return [f"{name}={limit}:{limit}" for name, limit in capped.items()]

    def _containers_conf(self) -> str:
        return "\n".join([
            "# Written by tests/images (tests/images/podman.py); rewritten when it changes.",
            "[containers]",
            f"default_ulimits = [{', '.join(map(json.dumps, self.ulimits()))}]",
            "",
            "[network]",
            'network_backend = "netavark"',
            f'network_config_dir = "{self.cache / "networks"}"',
            "",
            "[engine]",
            # No systemd manages this machine's cgroups; crun cannot drive v1 hybrid ones.
            'cgroup_manager = "cgroupfs"',
            'runtime = "runc"',
            'events_logger = "file"',
            f'events_logfile_path = "{self.logs / "events.log"}"',
            f'tmp_dir = "{self.run_dir / "libpod"}"',
            "",
        ])

    def _storage_conf(self) -> str:
        return "\n".join([
            "# Written by tests/images (tests/images/podman.py); rewritten when it changes.",
            "[storage]",
            'driver = "overlay"',
            f'graphroot = "{self.graph_root}"',
            f'runroot = "{self.run_dir / "storage"}"',
            "",
        ])

    def _reset_run_dir_after_reboot(self) -> None:
        """Empty the per-boot state once per boot, as a tmpfs would.

        /run is not always a tmpfs (it is not on this machine); podman would take a
        previous boot's lock and mount state for live.
        """
        boot_id = _BOOT_ID.read_text().strip()
        marker = self.run_dir / "boot-id"
        if marker.exists() and marker.read_text().strip() == boot_id:
            return
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        marker.write_text(boot_id + "\n")


def run_logged(
    argv: list[str],
    *,
    log: Path | None,
    check: bool = True,
    timeout_s: float = 300.0,
    env: dict[str, str] | None = None,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, its output to ``log`` (appended) or captured; raise on failure.

    The error names the command and quotes the end of its output.
    """
    if log is None:
        proc = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout_s, check=False)
        detail = (proc.stderr or proc.stdout).strip()
    else:
        with log.open("a") as out:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            proc = subprocess.run(argv, stdin=stdin, stdout=out, stderr=subprocess.STDOUT,
                                  text=True, env=env, timeout=timeout_s, check=False)
        detail = f"end of {log}:\n{tail(log)}"
    if check and proc.returncode != 0:
        raise ImageError(f"`{' '.join(argv)}` exited with {proc.returncode}; {detail}")
    return proc


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
