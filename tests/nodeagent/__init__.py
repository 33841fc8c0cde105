"""A node whose pods run as processes: the kubelet's job, for the test control plane.

``python -m tests.nodeagent`` registers a Node with a share of this machine's cores and
memory, keeps its Lease, and runs every pod bound to it: each pod in its own network
namespace on a bridge the tooling owns (:data:`tests.nodeagent.network.POD_NETWORK`), each
container a process in its own CPU and memory cgroups with the container's limits, its
image mapped to a local command (:mod:`tests.nodeagent.images`). It probes, restarts,
resizes in place (``pods/resize``, admitted from the node's own accounting), and drains on
delete. Status is what happened, written back as the kubelet writes it.

Not enforced (there is no image filesystem): the container's user, read-only root and
capabilities; containers see the host's files, plus their volumes mounted in a private
mount namespace.
"""
