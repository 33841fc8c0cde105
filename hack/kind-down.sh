#!/usr/bin/env bash
# Delete the kind cluster made by hack/kind-up.sh (and everything in it).
set -euo pipefail
kind delete cluster --name "${SLUICE_KIND_CLUSTER:-sluice}"
