{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "outbox-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "outbox-relay.fullname" -}}
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

{{- define "outbox-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outbox-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "outbox-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "outbox-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "outbox-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outbox-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Where the relay's config comes from: exactly one of `config` (YAML, key for key), `configToml`
(TOML text), `existingConfigMap` or `existingSecret`. The chart ships none, so no default can
mix into a user's config. `[http] listen` and `[shutdown] grace` are the chart's (environment
overrides from `metricsPort` and `shutdownGraceSeconds`), so the config must not set them;
`[runtime]` too while `workerThreads` is above 0.
*/}}
{{- define "outbox-relay.configSource" -}}
{{- $given := list }}
{{- if .Values.config }}{{ $given = append $given "config" }}{{ end }}
{{- if .Values.configToml }}{{ $given = append $given "configToml" }}{{ end }}
{{- if .Values.existingConfigMap }}{{ $given = append $given "existingConfigMap" }}{{ end }}
{{- if .Values.existingSecret }}{{ $given = append $given "existingSecret" }}{{ end }}
{{- if eq (len $given) 0 }}
{{- fail "no relay config: set one of config (the config as YAML), configToml (as TOML text), existingConfigMap or existingSecret (the name of one holding it under configKey); examples/books-demo-values.yaml is the books demo's" }}
{{- end }}
{{- if gt (len $given) 1 }}
{{- fail (printf "more than one relay config: %s; set exactly one" (join ", " $given)) }}
{{- end }}
{{- if hasKey .Values.config "http" }}
{{- fail "config.http is set by the chart: use metricsPort instead" }}
{{- end }}
{{- if hasKey .Values.config "shutdown" }}
{{- fail "config.shutdown is set by the chart: use shutdownGraceSeconds instead" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*\\[\\s*http\\s*\\]" .Values.configToml }}
{{- fail "configToml sets [http]: the chart sets it, use metricsPort instead" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*\\[\\s*shutdown\\s*\\]" .Values.configToml }}
{{- fail "configToml sets [shutdown]: the chart sets it, use shutdownGraceSeconds instead" }}
{{- end }}
{{- if gt (int .Values.workerThreads) 0 }}
{{- if hasKey .Values.config "runtime" }}
{{- fail "config.runtime is set by the chart: use workerThreads instead (0 leaves it to the config)" }}
{{- end }}
{{- if regexMatch "(?m)^\\s*\\[\\s*runtime\\s*\\]" .Values.configToml }}
{{- fail "configToml sets [runtime]: the chart sets it, use workerThreads instead (0 leaves it to the config)" }}
{{- end }}
{{- end }}
{{- first $given }}
{{- end }}

{{/* The config file the chart renders (for `config` and `configToml`): the user's keys only. */}}
{{- define "outbox-relay.config" -}}
{{- if .Values.config }}
{{- toToml .Values.config }}
{{- else }}
{{- .Values.configToml }}
{{- end }}
{{- end }}

{{/* The image reference: by digest when one is given, else by tag. */}}
{{- define "outbox-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}
