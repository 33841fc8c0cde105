"""Populate the control-plane cache from the Go module proxy.

Every component is built into a temporary directory beside its final place and renamed
into place only when complete, so an interrupted or failed build never leaves something
that looks like a valid cached binary. A file lock serialises concurrent builders.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tests.controlplane import versions
from tests.controlplane.versions import Component

#: Names of the components this process actually built (not found in the cache).
#: Tests read it to prove that a second start reused the cache.
BUILT_IN_THIS_PROCESS: list[str] = []


#: Builds one component: (version, scratch dir, output dir, log) -> None.
Builder = Callable[[str, Path, Path, TextIO], None]


class BuildError(RuntimeError):
    """A Go toolchain step failed; the message carries the command and its output."""


@dataclass(frozen=True)
class Artifacts:
    """Paths of everything a control plane needs, all inside the cache."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    etcd: Path
    kwok: Path
    helm: Path
    #: The Knative Serving CRDs (a directory of YAML files).
    knative_crds: Path
    #: Knative Serving's built commands and its config files, by their module path.
    knative: Path
    #: Components built by the call that returned this (empty when all were cached).
    built: tuple[str, ...]


def go_binary() -> str | None:
    """The ``go`` command on PATH, or None."""
    return shutil.which("go")


def missing_components(cache: Path | None = None) -> list[Component]:
    """Components not (completely) in the cache."""
    cache = cache or versions.cache_dir()
    return [c for c in versions.ALL_COMPONENTS if not c.is_cached(cache)]


def ensure_built(cache: Path | None = None, log: Path | None = None) -> Artifacts:
    """Build whatever is missing from the cache and return the paths of all artifacts.

    ``log`` receives the Go toolchain's output (default ``<cache>/build.log``).
    """
    cache = cache or versions.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    log = log or cache / "build.log"
    built: list[str] = []
    missing = missing_components(cache)
    if missing:
        if go_binary() is None:
            names = ", ".join(c.name for c in missing)
            raise BuildError(f"cannot build {names}: `go` is not on PATH (Go 1.26+ is needed)")
        with _lock(cache / ".build.lock"), log.open("a") as out:
            # Scratch left by a builder that was killed; only lock holders make these.
            for stale in cache.glob(".*-work-*"):
                shutil.rmtree(stale, ignore_errors=True)
            for component in missing:
                # Another process may have finished it while we waited for the lock.
                if component.is_cached(cache):
                    continue
                _build_one(component, cache, out)
                built.append(component.name)
                BUILT_IN_THIS_PROCESS.append(component.name)
    kube = versions.KUBERNETES.directory(cache)
    return Artifacts(
        kube_apiserver=kube / "kube-apiserver",
        kube_controller_manager=kube / "kube-controller-manager",
        kube_scheduler=kube / "kube-scheduler",
        etcd=versions.ETCD.directory(cache) / "etcd",
        kwok=versions.KWOK.directory(cache) / "kwok",
        helm=versions.HELM.directory(cache) / "helm",
        knative_crds=versions.KNATIVE_SERVING.directory(cache) / "config/core/300-resources",
        knative=versions.KNATIVE_SERVING.directory(cache),
        built=tuple(built),
    )


def _build_one(component: Component, cache: Path, out: TextIO) -> None:
    builders = {
        versions.KUBERNETES.name: _build_kubernetes,
        versions.ETCD.name: _go_install_like("go.etcd.io/etcd/server/v3", "etcd"),
        versions.KWOK.name: _go_install_like("sigs.k8s.io/kwok/cmd/kwok", "kwok"),
        versions.HELM.name: _go_install_like(
            "helm.sh/helm/v3/cmd/helm",
            "helm",
            # Unstamped helm reports only major.minor (its source default).
            stamp="-X helm.sh/helm/v3/internal/version.version={version}",
        ),
        versions.KNATIVE_SERVING.name: _build_knative,
    }
    final = component.directory(cache)
    started = time.monotonic()
    out.write(f"=== building {component.name} {component.version}\n")
    out.flush()
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{component.name}-work-") as work:
        staging = Path(work) / "out"
        staging.mkdir()
        builders[component.name](component.version, Path(work), staging, out)
        for name in component.files:
            if not (staging / name).is_file():
                raise BuildError(f"{component.name}: build produced no {name}")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    elapsed = time.monotonic() - started
    out.write(f"=== built {component.name} {component.version} in {elapsed:.0f}s\n")
    out.flush()


def _build_kubernetes(version: str, work: Path, staging: Path, out: TextIO) -> None:
    """Build the three control-plane commands from a wrapper module.

    ``k8s.io/kubernetes`` requires its staging modules at v0.0.0 and replaces them with
    local paths, which Go ignores for a dependency; the wrapper replaces each of them with
    its published ``v0.<minor>.<patch>`` release. The list comes from the go.mod the
    proxy serves for this version, so new staging modules are picked up.
    """
    major, minor, patch = version.lstrip("v").split(".")
    staging_version = f"v0.{minor}.{patch}"
    module = work / "module"
    module.mkdir()
    _go(["mod", "init", "sluice.test/controlplane/kubernetes"], module, out)
    info = json.loads(
        _go(["mod", "download", "-json", f"k8s.io/kubernetes@{version}"], module, out)
    )
    gomod = json.loads(_go(["mod", "edit", "-json", info["GoMod"]], module, out))
    replaces = [
        r["Old"]["Path"]
        for r in gomod.get("Replace") or []
        if r["New"]["Path"].startswith("./staging/")
    ]
    if not replaces:
        raise BuildError(f"k8s.io/kubernetes@{version}: no staging replaces in its go.mod")
    _go(
        ["mod", "edit", *[f"-replace={m}={m}@{staging_version}" for m in replaces]],
        module,
        out,
    )
    commands = [f"k8s.io/kubernetes/cmd/{name}" for name in versions.KUBERNETES.files]
    _go(["get", *[f"{c}@{version}" for c in commands]], module, out)
    stamp = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            f"-X k8s.io/component-base/version.gitMajor={major}",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )
    # One invocation for the three commands so they share compiled packages.
    _go(["build", "-trimpath", "-ldflags", stamp, "-o", f"{staging}/", *commands], module, out)


def _go_install_like(package: str, binary: str, stamp: str = "") -> Builder:
    """A builder for a main package whose module has no replaces of its own.

    ``stamp`` is extra linker flags, formatted with the component's ``version``.
    """

    def build(version: str, work: Path, staging: Path, out: TextIO) -> None:
        module = work / "module"
        module.mkdir()
        _go(["mod", "init", f"sluice.test/controlplane/{binary}"], module, out)
        _go(["get", f"{package}@{version}"], module, out)
        _go(
            [
                "build",
                "-trimpath",
                "-ldflags",
                f"-s -w {stamp.format(version=version)}".strip(),
                "-o",
                str(staging / binary),
                package,
            ],
            module,
            out,
        )

    return build


def _build_knative(version: str, work: Path, staging: Path, out: TextIO) -> None:
    """Knative Serving's commands (one build, shared packages) and the config files the
    control plane installs, copied from the module at the same version."""
    commands = [f"knative.dev/serving/cmd/{name}" for name in versions.KNATIVE_BINARIES]
    module = work / "module"
    module.mkdir()
    _go(["mod", "init", "sluice.test/controlplane/knative"], module, out)
    _go(["get", *[f"{c}@{version}" for c in commands]], module, out)
    _go(["build", "-trimpath", "-ldflags", "-s -w", "-o", f"{staging}/", *commands], module, out)
    info = json.loads(
        _go(["mod", "download", "-json", f"knative.dev/serving@{version}"], module, out)
    )
    if "Error" in info:
        raise BuildError(f"knative.dev/serving@{version}: {info['Error']}")
    root = Path(info["Dir"])
    for relative in (*versions.KNATIVE_CRD_FILES, *versions.KNATIVE_CONFIG_FILES):
        # Files in the module cache are read-only; the copy must be writable to be removable.
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((root / relative).read_bytes())


def _go(args: list[str], cwd: Path, out: TextIO) -> str:
    """Run ``go ARGS`` in ``cwd`` with CGO off; return stdout, log stderr, raise on failure."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOWORK": "off"}
    out.write(f"$ go {' '.join(args)}\n")
    out.flush()
    proc = subprocess.run(
        ["go", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=out, text=True
    )
    if proc.returncode != 0:
        raise BuildError(
            f"`go {' '.join(args)}` failed with exit code {proc.returncode} "
            f"(output in {getattr(out, 'name', 'the build log')})"
        )
    return proc.stdout


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
