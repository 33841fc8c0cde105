"""What the simulated platform is like: nodes, start-up and resize delays, runtime limits.

The defaults stand for a real cluster, not this laptop:

- **Replica start-up** (:data:`DEFAULT_PLATFORM_START_S`, 3 s): what Knative takes from a
  scale-up decision to a pod that answers, before the model loads. Knative's own scale
  benchmark tool reports 2-4 s for a hello-world service
  (knative-extensions/kperf#338, "cold startup latency of workload (2s~4s, helloworld)"),
  and Knative's maintainers measured about 2 s of pod start-up alone on an idle kubeadm
  cluster (knative/serving#2484). We take the middle of the first range. The profile's
  ``cold_start_s`` (model load + warm-up, measured by ``sluice profile``) comes on top.
- **Resize delay** (:data:`DEFAULT_RESIZE_DELAY_S`, 1.5 s): from the ``pods/resize`` patch
  to the runtime computing with the new cores. The kubelet applies an admitted resize to
  the container's cgroup in about a second, and our runtime follows a cgroup change
  within 0.13-0.5 s (docs/bench.md, "Cores": 0.13-0.5 s to the new core count); we add
  the slow end of the second to the first.
- **Cluster** (:data:`DEFAULT_NODES` x :data:`DEFAULT_NODE_CORES`): the benchmark's
  cluster, 4 nodes of 8 cores.
- **Queue cap** (:data:`DEFAULT_MAX_QUEUE_SIZE`): the runtime's ``--max-queue-size``
  default, 1024 requests per model and replica.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PLATFORM_START_S = 3.0
DEFAULT_RESIZE_DELAY_S = 1.5
DEFAULT_NODES = 4
DEFAULT_NODE_CORES = 8.0
DEFAULT_MAX_QUEUE_SIZE = 1024


class SimulationError(ValueError):
    """The simulation cannot run as asked (an unsupported pipeline, a policy asking for
    something that does not exist); the message says what."""


@dataclass(frozen=True)
class SimConfig:
    """The simulated platform (seconds, cores) and the random seed."""

    seed: int = 0
    nodes: int = DEFAULT_NODES
    node_cores: float = DEFAULT_NODE_CORES
    #: Platform start-up of a new replica, before the model's own load and warm-up.
    platform_start_s: float = DEFAULT_PLATFORM_START_S
    #: From a resize admitted by the node to the replica computing with the new cores.
    resize_delay_s: float = DEFAULT_RESIZE_DELAY_S
    #: Requests queued per replica beyond which the runtime refuses at once.
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise SimulationError(f"nodes must be >= 1, got {self.nodes}")
        if not self.node_cores > 0:
            raise SimulationError(f"node_cores must be > 0, got {self.node_cores}")
        if self.platform_start_s < 0 or self.resize_delay_s < 0:
            raise SimulationError(
                f"delays must be >= 0, got platform_start_s={self.platform_start_s}, "
                f"resize_delay_s={self.resize_delay_s}")
        if self.max_queue_size < 1:
            raise SimulationError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
