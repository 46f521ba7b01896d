{{/*
The gateway's config file (contract 4): what the chart knows (where it listens, the names it is reached by,
the catalog ConfigMap, Redis, the audit files, Consul, the secrets it wires), with gateway.config merged over
it: maps merge key by key, anything else set in gateway.config wins. Secrets never appear here: they are
${VAR} references to environment variables the Deployment fills from Secrets.
*/}}
{{- define "mcpfleet.gateway.config" -}}
{{- $values := .Values.gateway }}
{{- $fullname := include "mcpfleet.gateway.fullname" . }}
{{- $namespace := .Release.Namespace }}
{{- $hosts := list "127.0.0.1:*" "localhost:*" "[::1]:*" "${POD_IP}:*" "[${POD_IP}]:*" }}
{{- range (list $fullname (printf "%s.%s" $fullname $namespace) (printf "%s.%s.svc" $fullname $namespace) (printf "%s.%s.svc.%s" $fullname $namespace .Values.clusterDomain)) }}
{{- $hosts = append $hosts (printf "%s:*" .) }}
{{- end }}
{{- if $values.ingress.enabled }}
{{- range $values.ingress.hosts }}
{{- $hosts = append (append $hosts .host) (printf "%s:*" .host) }}
{{- end }}
{{- end }}
{{- $hosts = concat $hosts $values.allowedHosts }}
{{- $listen := dict "host" "0.0.0.0" "port" (int $values.port) }}
{{- $publicUrl := $values.publicUrl }}
{{- if and (not $publicUrl) $values.ingress.enabled $values.ingress.hosts }}
{{- $publicUrl = printf "https://%s" (first $values.ingress.hosts).host }}
{{- end }}
{{- if $publicUrl }}
{{- $_ := set $listen "public_url" $publicUrl }}
{{- end }}
{{- $audit := dict "spool_dir" "/var/lib/mcpfleet/audit/spool-{replica}" }}
{{- if not (include "mcpfleet.redis.enabled" .) }}
{{- /* Without Redis the trail needs a file: one per replica, next to the spool. */}}
{{- $_ := set $audit "log_path" "/var/lib/mcpfleet/audit/audit-{replica}.jsonl" }}
{{- end }}
{{- $base := dict
  "listen" $listen
  "hardening" (dict "allowed_hosts" $hosts)
  "catalog" (dict "configmap" (dict "namespace" (include "mcpfleet.catalog.namespace" .) "name" .Values.catalog.name))
  "audit" $audit
  "self_config" (dict "enabled" false)
  "confirmations" (dict "state_secret" "${MCPFLEET_GATEWAY_STATE_SECRET}")
}}
{{- if include "mcpfleet.redis.enabled" . }}
{{- $_ := set $base "redis" (dict "url" "${REDIS_URL}") }}
{{- end }}
{{- if and $values.consul.enabled .Values.consul.address }}
{{- $consul := dict "address" .Values.consul.address "tag" $values.consul.tag "verify_tls" .Values.consul.verifyTls }}
{{- if or .Values.consul.token .Values.consul.existingSecret }}
{{- $_ := set $consul "token_file" "/var/run/secrets/mcpfleet/consul/token" }}
{{- end }}
{{- with .Values.consul.datacenter }}
{{- $_ := set $consul "datacenter" . }}
{{- end }}
{{- $_ := set $base "consul" $consul }}
{{- end }}
{{- $config := include "mcpfleet.deepMerge" (dict "base" $base "over" $values.config) | fromYaml }}
{{- $auth := default (dict) $config.auth }}
{{- if include "mcpfleet.gateway.hs256.enabled" . }}
{{- if not (hasKey $auth "hs256_secret") }}
{{- $_ := set $auth "hs256_secret" "${JWT_HS256_SECRET}" }}
{{- end }}
{{- if not (hasKey $auth "algorithms") }}
{{- $_ := set $auth "algorithms" (ternary (list "HS256" "RS256" "ES256") (list "HS256") (hasKey $auth "jwks_url")) }}
{{- end }}
{{- end }}
{{- if and (or $auth.hs256_secret $auth.jwks_url) (not $auth.audience) }}
{{- fail "gateway.config.auth.audience is required with an HS256 secret or a jwks_url: a token minted for another service must not be accepted (e.g. https://mcp.example.com/mcp)" }}
{{- end }}
{{- if $values.auth.bootstrapApiKey.enabled }}
{{- $key := include "mcpfleet.gateway.bootstrapKey" . }}
{{- $entry := dict "name" $values.auth.bootstrapApiKey.name "sha256" (sha256sum $key) "roles" $values.auth.bootstrapApiKey.roles }}
{{- $_ := set $auth "api_keys" (append (default (list) $auth.api_keys) $entry) }}
{{- end }}
{{- if $auth }}
{{- $_ := set $config "auth" $auth }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Maps merged key by key, recursively; anything else in "over" replaces what "base" has. */}}
{{- define "mcpfleet.deepMerge" -}}
{{- $out := deepCopy .base }}
{{- range $key, $value := .over }}
{{- $current := get $out $key }}
{{- if and (kindIs "map" $value) (kindIs "map" $current) }}
{{- $_ := set $out $key (include "mcpfleet.deepMerge" (dict "base" $current "over" $value) | fromYaml) }}
{{- else }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{- define "mcpfleet.redis.enabled" -}}
{{- if or .Values.redis.bundled.enabled .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{- define "mcpfleet.gateway.hs256.enabled" -}}
{{- if or .Values.gateway.auth.hs256Secret.existingSecret .Values.gateway.auth.hs256Secret.value }}true{{ end }}
{{- end }}

{{- define "mcpfleet.gateway.authSecretName" -}}
{{- if .Values.gateway.auth.hs256Secret.existingSecret }}
{{- .Values.gateway.auth.hs256Secret.existingSecret }}
{{- else }}
{{- printf "%s-auth" (include "mcpfleet.gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The key every replica signs a confirmation's state with (config confirmations.state_secret). */}}
{{- define "mcpfleet.gateway.stateSecretName" -}}
{{- printf "%s-state" (include "mcpfleet.gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpfleet.gateway.stateSecret" -}}
{{- include "mcpfleet.stableSecret" (dict "ctx" . "secret" (include "mcpfleet.gateway.stateSecretName" .) "key" "state-secret" "value" "") }}
{{- end }}

{{- define "mcpfleet.gateway.bootstrapKeySecretName" -}}
{{- printf "%s-bootstrap-key" (include "mcpfleet.gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcpfleet.gateway.bootstrapKey" -}}
{{- include "mcpfleet.stableSecret" (dict "ctx" . "secret" (include "mcpfleet.gateway.bootstrapKeySecretName" .) "key" "api-key" "value" .Values.gateway.auth.bootstrapApiKey.value) }}
{{- end }}

{{- define "mcpfleet.redis.password" -}}
{{- include "mcpfleet.stableSecret" (dict "ctx" . "secret" (include "mcpfleet.redis.fullname" .) "key" "password" "value" .Values.redis.bundled.password) }}
{{- end }}
