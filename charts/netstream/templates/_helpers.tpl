{{/* Chart name. */}}
{{- define "netstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-netstream, or the release name when it already contains the chart name. */}}
{{- define "netstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's objects (Deployment, Service, ClusterRole, ...). */}}
{{- define "netstream.operator.fullname" -}}
{{- printf "%s-operator" (include "netstream.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "netstream.labels" -}}
helm.sh/chart: {{ include "netstream.chart" . }}
app.kubernetes.io/part-of: netstream
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of the operator pods (immutable in the Deployment: keep minimal). */}}
{{- define "netstream.operator.selectorLabels" -}}
app.kubernetes.io/name: netstream-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "netstream.operator.labels" -}}
{{ include "netstream.labels" . }}
{{ include "netstream.operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of objects that are not part of one component (dashboards, monitors of the data plane). */}}
{{- define "netstream.common.labels" -}}
{{ include "netstream.labels" . }}
app.kubernetes.io/name: {{ include "netstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "netstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "netstream.operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference from {repository, tag, digest}: digest wins, tag defaults to appVersion. */}}
{{- define "netstream.image" -}}
{{- $img := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespace of the example resources. */}}
{{- define "netstream.examples.namespace" -}}
{{- default .Release.Namespace .Values.examples.namespace -}}
{{- end -}}

{{/*
The operator's RBAC documents from files/operator-rbac.yaml, a symlink to the single source
operator/rbac/clusterrole.yaml. Returns the document of the given kind as YAML.
*/}}
{{- define "netstream.rbacDoc" -}}
{{- $kind := index . 0 -}}
{{- $root := index . 1 -}}
{{- $found := dict -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" ($root.Files.Get "files/operator-rbac.yaml") -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj (eq (get $obj "kind") $kind) -}}
{{- $_ := set $found "doc" $obj -}}
{{- end -}}
{{- end -}}
{{- if not $found.doc -}}
{{- fail (printf "files/operator-rbac.yaml has no %s document" $kind) -}}
{{- end -}}
{{- toYaml $found.doc -}}
{{- end -}}

{{/* Common fields of the monitors' endpoints. */}}
{{- define "netstream.monitor.endpoint" -}}
path: /metrics
interval: {{ .Values.monitoring.interval }}
{{- with .Values.monitoring.scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- end -}}
