"""Pod networks: one bridge the tooling owns, one network namespace per pod on it.

Host and pods reach each other over the bridge; nothing is routed or NATed off the machine.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

#: Every pod address of every process node; the bridge holds the first.
POD_NETWORK = ipaddress.ip_network("10.213.0.0/16")
BRIDGE = "sluice-br0"
GATEWAY = ipaddress.ip_address("10.213.0.1")
NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    """A pod network could not be made (the ``ip`` command's own words)."""


def _ip(*args: str, netns: str | None = None, check: bool = True) -> bool:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}`: {done.stderr.strip()}")
    return done.returncode == 0


def node_subnet(index: int) -> ipaddress.IPv4Network:
    """The /24 node ``index`` (from 1) gives its pods."""
    if not 1 <= index <= 254:
        raise ValueError(f"node index must be in 1..254, got {index}")
    return ipaddress.ip_network(f"10.213.{index}.0/24")  # type: ignore[return-value]


def ensure_bridge() -> None:
    """The bridge with the gateway address, up (made once, shared by every node)."""
    if not _ip("link", "show", BRIDGE, check=False):
        _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "replace", f"{GATEWAY}/{POD_NETWORK.prefixlen}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")


def netns_name(pod_uid: str) -> str:
    """The network namespace of the pod with ``pod_uid``."""
    return f"sl-{pod_uid[:8]}"


def create_pod_network(pod_uid: str, address: ipaddress.IPv4Address) -> str:
    """A namespace with ``eth0`` at ``address`` on the bridge, and ``lo``; its name."""
    netns = netns_name(pod_uid)
    host_end, pod_end = f"slh{pod_uid[:8]}", f"slp{pod_uid[:8]}"
    delete_pod_network(pod_uid)
    _ip("netns", "add", netns)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        _ip("link", "set", pod_end, "netns", netns)
        _ip("link", "set", pod_end, "name", "eth0", netns=netns)
        _ip("addr", "add", f"{address}/{POD_NETWORK.prefixlen}", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        _ip("route", "add", "default", "via", str(GATEWAY), netns=netns)
        _ip("link", "set", host_end, "master", BRIDGE, "up")
    except NetworkError:
        delete_pod_network(pod_uid)
        raise
    return netns


def delete_pod_network(pod_uid: str) -> None:
    """Remove the pod's namespace (its veth pair goes with it); nothing if absent."""
    netns = netns_name(pod_uid)
    if (NETNS_DIR / netns).exists():
        _ip("netns", "del", netns, check=False)
    _ip("link", "del", f"slh{pod_uid[:8]}", check=False)
