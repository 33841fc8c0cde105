#!/bin/sh
# Install MLServer 1.7.1 into its own venv for the runtime benchmark: its pinned
# dependencies (pydantic, fastapi, protobuf) must not leak into the project's venv.
# uvloop 0.22 breaks MLServer 1.7.1's worker start-up, hence the upper bound.
# Usage: bench/setup_mlserver.sh [PYTHON]   (idempotent: skips an existing install)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv-mlserver"
python=${1:-python3}
if [ -x "$venv/bin/mlserver" ] && "$venv/bin/python" -c 'import mlserver, onnxruntime' 2>/dev/null; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet mlserver==1.7.1 'uvloop<0.22' onnxruntime numpy
