{{/* Names and labels shared by every template. */}}
{{- define "namegate.name" -}}namegate{{- end -}}

{{- define "namegate.fullname" -}}
{{- if contains "namegate" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-namegate" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "namegate.labels" -}}
app.kubernetes.io/name: namegate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "namegate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* namegate.dialectRules (the RBAC rules of the enabled foreign kinds) is in _dialects.tpl, generated. */}}
