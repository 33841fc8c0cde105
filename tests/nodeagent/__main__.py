"""``python -m tests.nodeagent``: run one process node until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.nodeagent.agent import NodeAgent
from tests.nodeagent.api import Api


def main() -> int:
    """Register the node and run its pods."""
    parser = argparse.ArgumentParser(prog="python -m tests.nodeagent", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--node", required=True, help="the Node's name")
    parser.add_argument("--index", type=int, default=1,
                        help="the node's number (1-254): its pods get 10.213.INDEX.0/24")
    parser.add_argument("--cpu", default="1", help="cores the node offers (default 1)")
    parser.add_argument("--memory", default="4Gi", help="memory it offers (default 4Gi)")
    parser.add_argument("--workdir", type=Path, required=True,
                        help="where pods' folders, volumes and logs go")
    args = parser.parse_args()
    agent = NodeAgent(Api(args.kubeconfig), args.node, args.index, args.cpu, args.memory,
                      args.workdir)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.register()
    print(f"node {args.node} ready: pods on {agent.subnet}", flush=True)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
