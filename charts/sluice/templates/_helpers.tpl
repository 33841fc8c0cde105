{{/* Names, labels and the RBAC rules shared by the chart's templates. */}}

{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "sluice.labels" -}}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
Exactly what the operator does, verb by verb (see docs/operator.md, "Permissions").
Kopf needs nothing more: scanning is disabled, so it neither watches CRDs nor namespaces.
*/}}
{{- define "sluice.rules" -}}
# Watch pipelines; Kopf keeps its bookkeeping in sluice.dev/* annotations (patch).
- apiGroups: [sluice.dev]
  resources: [inferencepipelines]
  verbs: [get, list, watch, patch]
- apiGroups: [sluice.dev]
  resources: [inferencepipelines/status]
  verbs: [patch]
# Children carry blockOwnerDeletion, which needs this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [sluice.dev]
  resources: [inferencepipelines/finalizers]
  verbs: [update]
# Server-side apply is a patch that may create; stale children are deleted.
- apiGroups: [serving.knative.dev]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
# Replicas and CPU per stage come from the pods; the scaler resizes them in place.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/resize]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
