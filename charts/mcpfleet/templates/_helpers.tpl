{{/*
Names, labels and small shared pieces. Object names are cut at 63 characters because several of them
become label values or DNS labels (Services).
*/}}

{{- define "mcpfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's prefix: the release name when it already contains the chart name, else "<release>-<chart>".
*/}}
{{- define "mcpfleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mcpfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object. `app.kubernetes.io/part-of: mcpfleet` together with the component label is what the
NetworkPolicies the operator writes for servers admit (the gateway and the operator), so keep both.
*/}}
{{- define "mcpfleet.labels" -}}
helm.sh/chart: {{ include "mcpfleet.chart" . }}
{{ include "mcpfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcpfleet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mcpfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Per-component labels: call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "mcpfleet.componentLabels" -}}
{{ include "mcpfleet.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mcpfleet.componentSelectorLabels" -}}
{{ include "mcpfleet.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Component names. */}}
{{- define "mcpfleet.operator.fullname" -}}
{{- printf "%s-operator" (include "mcpfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpfleet.gateway.fullname" -}}
{{- printf "%s-gateway" (include "mcpfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpfleet.redis.fullname" -}}
{{- printf "%s-redis" (include "mcpfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpfleet.consul.secretName" -}}
{{- if .Values.consul.existingSecret }}
{{- .Values.consul.existingSecret }}
{{- else }}
{{- printf "%s-consul" (include "mcpfleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mcpfleet.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "mcpfleet.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mcpfleet.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "mcpfleet.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The mcpfleet image: repository:tag, and @digest when one pins it. The tag defaults to the appVersion.
*/}}
{{- define "mcpfleet.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "mcpfleet.redis.image" -}}
{{- $image := .Values.redis.bundled.image }}
{{- if $image.digest }}
{{- printf "%s:%s@%s" $image.repository $image.tag $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $image.tag }}
{{- end }}
{{- end }}

{{/* Where the catalog ConfigMap lives: the release namespace, where the operator runs. */}}
{{- define "mcpfleet.catalog.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/* The namespace of the built-in MCPServer objects. */}}
{{- define "mcpfleet.servers.namespace" -}}
{{- default .Release.Namespace .Values.servers.namespace }}
{{- end }}

{{/*
Secrets the chart generates (the bundled Redis password, the bootstrap API key) must stay the same across
upgrades and be the same in every template of one render: the value is the existing Secret's when there is
one, else generated once per render and remembered in the release's render state.
Call with (dict "ctx" $ "secret" NAME "key" KEY "value" EXPLICIT).
*/}}
{{- define "mcpfleet.stableSecret" -}}
{{- $ctx := .ctx }}
{{- $cacheKey := printf "mcpfleet-secret/%s/%s" .secret .key }}
{{- if .value }}
{{- .value }}
{{- else }}
{{- $cache := default (dict) (get $ctx.Values "_renderState") }}
{{- if hasKey $cache $cacheKey }}
{{- get $cache $cacheKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace .secret }}
{{- $value := "" }}
{{- if and $existing (hasKey (default (dict) $existing.data) .key) }}
{{- $value = index $existing.data .key | b64dec }}
{{- else }}
{{- $value = randAlphaNum 40 }}
{{- end }}
{{- $_ := set $cache $cacheKey $value }}
{{- $_ := set $ctx.Values "_renderState" $cache }}
{{- $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
files/operator-rbac.yaml (the YAML stream `mcpfleet rbac print` writes) as one YAML list of its documents.
*/}}
{{- define "mcpfleet.printedRbac" -}}
{{- $documents := list }}
{{- range (.Files.Get "files/operator-rbac.yaml" | splitList "\n---\n") }}
{{- $documents = append $documents (fromYaml .) }}
{{- end }}
{{- toYaml $documents }}
{{- end }}

{{/* "true" when the MCPServer objects of the built-in servers can be part of this render (templates/servers.yaml). */}}
{{- define "mcpfleet.servers.renderable" -}}
{{- if or (.Capabilities.APIVersions.Has "mcpfleet.io/v1alpha1/MCPServer") (not .Values.crds.install) }}true{{ end }}
{{- end }}

{{/* "true" when any built-in server is enabled. */}}
{{- define "mcpfleet.servers.wanted" -}}
{{- if or .Values.servers.k8sOps.enabled .Values.servers.monitoring.enabled .Values.servers.cmdb.enabled }}true{{ end }}
{{- end }}
