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
The relay's config: `.Values.config` plus the keys the chart owns ([http] listen, [shutdown]
grace), which must agree with the container port and terminationGracePeriodSeconds.
*/}}
{{- define "outbox-relay.config" -}}
{{- if hasKey .Values.config "http" }}
{{- fail "config.http is set by the chart: use metricsPort instead" }}
{{- end }}
{{- if hasKey .Values.config "shutdown" }}
{{- fail "config.shutdown is set by the chart: use shutdownGraceSeconds instead" }}
{{- end }}
{{- $config := deepCopy .Values.config }}
{{- $_ := set $config "http" (dict "listen" (printf "0.0.0.0:%d" (int .Values.metricsPort))) }}
{{- $_ := set $config "shutdown" (dict "grace" (printf "%ds" (int .Values.shutdownGraceSeconds))) }}
{{- toToml $config }}
{{- end }}
