{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "cron-scheduler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "cron-scheduler.fullname" -}}
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

{{/*
Name of one of the release's objects besides the main ones: the full name, shortened so
that "<full name>-<suffix>" stays within the 63 characters of a DNS label (a Job's name
becomes a label value of its pods). Call with (dict "ctx" $ "suffix" "migrate").
*/}}
{{- define "cron-scheduler.componentName" -}}
{{- $suffix := .suffix -}}
{{- $room := sub 62 (len $suffix) | int -}}
{{- printf "%s-%s" (include "cron-scheduler.fullname" .ctx | trunc $room | trimSuffix "-") $suffix }}
{{- end }}

{{/*
The fleet's name (SCHEDULER_CLUSTER_NAME): the replicas that share it elect one leader.
Default: the release's name, so two releases on one database never share a leader.
*/}}
{{- define "cron-scheduler.clusterName" -}}
{{- .Values.config.SCHEDULER_CLUSTER_NAME | default .Release.Name | toString }}
{{- end }}

{{/*
SCHEDULER_SHUTDOWN_GRACE_MS in force: the configured value, else the service's default
(10000, src/config.rs). The chart always passes it, so the pods' termination grace period
and the service's shutdown are derived from the same number.
*/}}
{{- define "cron-scheduler.shutdownGraceMs" -}}
{{- $v := .Values.config.SCHEDULER_SHUTDOWN_GRACE_MS }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}10000{{ else }}{{ $v | int64 }}{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the preStop pause, then the service's shutdown (one
SCHEDULER_SHUTDOWN_GRACE_MS bounds all of it: in-flight requests, the leader's hand-over,
background work), then shutdownMarginSeconds for the process to exit.
*/}}
{{- define "cron-scheduler.terminationGracePeriodSeconds" -}}
{{- $graceMs := include "cron-scheduler.shutdownGraceMs" . | int64 }}
{{- $graceSeconds := div (add $graceMs 999) 1000 }}
{{- add (.Values.preStopSleepSeconds | int64) $graceSeconds (.Values.shutdownMarginSeconds | int64) }}
{{- end }}

{{/* Whether the service refuses /metrics without a token (auth on, metrics not public). */}}
{{- define "cron-scheduler.metricsNeedToken" -}}
{{- $auth := lower (toString (.Values.config.SCHEDULER_AUTH | default "")) }}
{{- $public := lower (toString .Values.config.SCHEDULER_METRICS_PUBLIC) }}
{{- if and (not (has $auth (list "off" "false" "0" "no"))) (has $public (list "false" "0" "no" "off")) }}true{{ end }}
{{- end }}

{{/*
The Executor as a NetworkPolicy peer (networkPolicy.executor), or nothing when neither
selector is set. An empty selector is left out: in a peer it would mean "every namespace".
*/}}
{{- define "cron-scheduler.executorPeer" -}}
{{- with .Values.networkPolicy.executor }}
{{- if .namespaceSelector }}
namespaceSelector:
  {{- toYaml .namespaceSelector | nindent 2 }}
{{- end }}
{{- if .podSelector }}
podSelector:
  {{- toYaml .podSelector | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cron-scheduler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "cron-scheduler.labels" -}}
helm.sh/chart: {{ include "cron-scheduler.chart" . }}
{{ include "cron-scheduler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cron-scheduler
{{- end }}

{{/* Labels that select the release's pods (scheduler and migration alike). */}}
{{- define "cron-scheduler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cron-scheduler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the scheduler replicas only. */}}
{{- define "cron-scheduler.serverSelectorLabels" -}}
{{ include "cron-scheduler.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "cron-scheduler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cron-scheduler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cron-scheduler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the database URL and the Executor token. */}}
{{- define "cron-scheduler.secretName" -}}
{{- default (include "cron-scheduler.fullname" .) .Values.existingSecret.name }}
{{- end }}

{{/*
The secret settings: variable, key under .Values.secrets, key in the chart's Secret, key
under .Values.existingSecret naming the key in the operator's Secret, and whether the
service cannot start without it.
*/}}
{{- define "cron-scheduler.secretTable" -}}
- {env: SCHEDULER_DATABASE_URL, value: databaseUrl, key: database-url, existingKey: databaseUrlKey, required: true}
- {env: SCHEDULER_EXECUTOR_TOKEN, value: executorToken, key: executor-token, existingKey: executorTokenKey, required: false}
- {env: SCHEDULER_API_TOKENS, value: apiTokens, key: api-tokens, existingKey: apiTokensKey, required: false}
- {env: SCHEDULER_JWT_HS256_SECRET, value: jwtHs256Secret, key: jwt-hs256-secret, existingKey: jwtHs256SecretKey, required: false}
{{- end }}

{{/*
Fails the render on settings the service would refuse at start-up, with a message that
names the values to set: no database (the image has no embedded PostgreSQL), or no API
credential while authentication is not switched off (the service refuses to serve an
open API with a database URL).
*/}}
{{- define "cron-scheduler.validate" -}}
{{- $v := .Values }}
{{- if not $v.image.repository }}
{{- fail "set image.repository to the repository you pushed the image to (docker build -f deploy/Dockerfile -t REGISTRY/cron-scheduler:TAG . && docker push ...; see the README's Deployment)" }}
{{- end }}
{{- range $v.extraEnv }}
{{- if has .name (list "SCHEDULER_SHUTDOWN_GRACE_MS" "SCHEDULER_CLUSTER_NAME") }}
{{- fail (printf "set %s in config.%s, not in extraEnv: the chart derives the pods' grace period and the alert rules' cluster from config" .name .name) }}
{{- end }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (include "cron-scheduler.metricsNeedToken" .) (not $v.serviceMonitor.bearerTokenSecret.name) }}
{{- fail "config.SCHEDULER_METRICS_PUBLIC is false, so /metrics needs a token: set serviceMonitor.bearerTokenSecret.name and .key (a Secret holding one of the API tokens) or Prometheus cannot scrape" }}
{{- end }}
{{- if not (or $v.existingSecret.name $v.secrets.databaseUrl) }}
{{- fail "cron-scheduler needs a database: set secrets.databaseUrl (postgres://...) or existingSecret.name (a Secret with the URL under existingSecret.databaseUrlKey)" }}
{{- end }}
{{- if $v.existingSecret.name }}
{{- range $k, $val := $v.secrets }}
{{- if $val }}
{{- fail (printf "existingSecret.name is set: leave secrets.%s empty (it would be ignored)" $k) }}
{{- end }}
{{- end }}
{{- end }}
{{- $auth := lower (toString ($v.config.SCHEDULER_AUTH | default "")) }}
{{- $credentials := or $v.existingSecret.name $v.secrets.apiTokens $v.secrets.jwtHs256Secret $v.config.SCHEDULER_JWT_RS256_PUBLIC_KEY_FILE $v.config.SCHEDULER_API_TOKENS_FILE }}
{{- if and (not $credentials) (not (has $auth (list "off" "false"))) }}
{{- fail "cron-scheduler refuses to serve an open API: set secrets.apiTokens (admin:<token>,executor:<token>,...), secrets.jwtHs256Secret, or existingSecret.name; or config.SCHEDULER_AUTH=off" }}
{{- end }}
{{- end }}

{{/*
Environment shared by the scheduler container and the migration Job: the node id from the
pod name, secrets, and OpenTelemetry. Call with (dict "ctx" $ "secretName" NAME "only"
LIST), where LIST names the variables of the secret table to pass (all when absent).
*/}}
{{- define "cron-scheduler.commonEnv" -}}
{{- $ctx := .ctx -}}
{{- $secretName := .secretName -}}
{{- $only := .only -}}
{{- include "cron-scheduler.validate" $ctx }}
- name: SCHEDULER_NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- range include "cron-scheduler.secretTable" $ctx | fromYamlArray }}
{{- if or (not $only) (has .env $only) }}
{{- if $ctx.Values.existingSecret.name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ index $ctx.Values.existingSecret .existingKey }}
      {{- if not .required }}
      optional: true
      {{- end }}
{{- else if index $ctx.Values.secrets .value }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}
{{- with $ctx.Values.otel }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | default "grpc" | quote }}
{{- end }}
{{- if not (kindIs "invalid" .metricExportIntervalMs) }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ .metricExportIntervalMs | int64 | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- $extra := .resourceAttributes | default "" | trimPrefix "," }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(SCHEDULER_NODE_ID),k8s.namespace.name=$(K8S_NAMESPACE),k8s.node.name=$(K8S_NODE_NAME),service.instance.id=$(SCHEDULER_NODE_ID)%s" (ternary (printf ",%s" $extra) "" (ne $extra "")) | quote }}
{{- end }}
{{- end }}

{{/* data: entries of a Secret holding the secret values named in LIST (all when absent). */}}
{{- define "cron-scheduler.secretData" -}}
{{- $ctx := .ctx -}}
{{- $only := .only -}}
{{- range $row := include "cron-scheduler.secretTable" $ctx | fromYamlArray }}
{{- if or (not $only) (has $row.env $only) }}
{{- with index $ctx.Values.secrets $row.value }}
{{ $row.key }}: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Non-empty entries of .Values.config as strings, for the ConfigMap, with the cluster name
and the shutdown grace always set (the chart's defaults above). Numbers arrive as
floats from YAML; they are written as whole numbers (every numeric setting is one), not
as 1.048576e+06.
*/}}
{{- define "cron-scheduler.configData" -}}
{{- $data := dict "SCHEDULER_CLUSTER_NAME" (include "cron-scheduler.clusterName" .) "SCHEDULER_SHUTDOWN_GRACE_MS" (include "cron-scheduler.shutdownGraceMs" .) }}
{{- range $key, $value := .Values.config }}
{{- if kindIs "float64" $value }}
{{- $_ := set $data $key (int64 $value | toString) }}
{{- else if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
{{- $_ := set $data $key (toString $value) }}
{{- end }}
{{- end }}
{{- toYaml $data }}
{{- end }}
