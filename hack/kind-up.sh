#!/usr/bin/env bash
# Bring up Sluice on a local kind cluster: kind + Knative Serving (Kourier) + the Sluice
# chart + the example pipeline, then send it one request. Run from anywhere; it works from
# the repository root. Needs: kind, kubectl, helm, docker, and the project's venv
# (`make models` or `pip install -e '.[dev]'`) for the request at the end.
# Step by step, with what each step is for: docs/kind.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${SLUICE_KIND_CLUSTER:-sluice}"
KNATIVE_VERSION="${SLUICE_KNATIVE_VERSION:-knative-v1.23.0}"
NAMESPACE="${SLUICE_PIPELINE_NAMESPACE:-default}"
PYTHON="${PYTHON:-${REPO}/.venv/bin/python}"
INGRESS="127.0.0.1:8081"
DOMAIN="127.0.0.1.sslip.io"
SERVING="https://github.com/knative/serving/releases/download/${KNATIVE_VERSION}"
KOURIER="https://github.com/knative-extensions/net-kourier/releases/download/${KNATIVE_VERSION}"

say() { printf '\n==> %s\n' "$*"; }
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "kind-up: '$1' is not installed" >&2; exit 1; }
}

for tool in kind kubectl helm docker; do need "${tool}"; done
cd "${REPO}"

say "kind cluster '${CLUSTER}' (kind-config.yaml)"
if kind get clusters | grep -qx "${CLUSTER}"; then
  echo "already there; reusing it"
else
  kind create cluster --name "${CLUSTER}" --config kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-${CLUSTER}"

say "Knative Serving ${KNATIVE_VERSION} with Kourier"
kubectl apply -f "${SERVING}/serving-crds.yaml"
kubectl wait --for=condition=Established --timeout=120s crd/services.serving.knative.dev
kubectl apply -f "${SERVING}/serving-core.yaml"
kubectl apply -f "${KOURIER}/kourier.yaml"
kubectl patch configmap/config-network -n knative-serving --type merge \
  -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
# Magic DNS: <service>.<namespace>.127.0.0.1.sslip.io resolves to the host's loopback.
kubectl patch configmap/config-domain -n knative-serving --type merge \
  -p "{\"data\":{\"${DOMAIN}\":\"\"}}"
# pvc:// model URIs mount PersistentVolumeClaims, which Knative allows only behind a flag.
kubectl patch configmap/config-features -n knative-serving --type merge \
  -p '{"data":{"kubernetes.podspec-persistent-volume-claim":"enabled"}}'
# Kourier's gateway on the NodePort that kind-config.yaml maps to the host (a strategic
# merge keeps the other ports: the list merges by port number).
kubectl patch service/kourier -n kourier-system --type strategic \
  -p '{"spec":{"type":"NodePort","ports":[{"name":"http2","port":80,"nodePort":31080}]}}'
kubectl wait --for=condition=Available --timeout=300s deployment --all -n knative-serving
kubectl wait --for=condition=Available --timeout=300s deployment --all -n kourier-system

say "images sluice-runtime:dev and sluice-operator:dev, loaded into kind"
docker build -f runtime/Dockerfile -t sluice-runtime:dev .
docker build -f operator/Dockerfile -t sluice-operator:dev .
kind load docker-image --name "${CLUSTER}" sluice-runtime:dev sluice-operator:dev

say "Sluice chart (CRD, operator, RBAC) in namespace sluice-system"
helm upgrade --install sluice charts/sluice --namespace sluice-system --create-namespace \
  --set image.pullPolicy=Never --set runtime.imagePullPolicy=Never --wait --timeout 300s

say "example pipeline examples/pipelines/dialogue.yaml in namespace ${NAMESPACE}"
kubectl apply -n "${NAMESPACE}" -f examples/pipelines/dialogue.yaml
if ! kubectl wait -n "${NAMESPACE}" --for=condition=Ready --timeout=600s \
    inferencepipeline/dialogue; then
  kubectl get -n "${NAMESPACE}" inferencepipeline/dialogue -o yaml
  kubectl get -n "${NAMESPACE}" ksvc,pods -l sluice.dev/pipeline=dialogue
  exit 1
fi
kubectl get -n "${NAMESPACE}" inferencepipelines -o wide

say "one request through the router (Open Inference Protocol over gRPC)"
"${PYTHON}" hack/request.py --target "${INGRESS}" \
  --authority "dialogue-router.${NAMESPACE}.${DOMAIN}" --model dialogue
