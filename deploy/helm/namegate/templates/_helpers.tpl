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

{{/* The foreign kinds enabled in values, as RBAC rules (read only). */}}
{{- define "namegate.dialectRules" -}}
{{- if .Values.dialects.cilium }}
- apiGroups: ["cilium.io"]
  resources: ["ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.dialects.istio }}
- apiGroups: ["networking.istio.io"]
  resources: ["serviceentries"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.dialects.npep }}
- apiGroups: ["policy.networking.k8s.io"]
  resources: ["adminnetworkpolicies", "clusternetworkpolicies"]
  verbs: ["list", "watch"]
{{- end }}
{{- if .Values.dialects.gke }}
- apiGroups: ["networking.gke.io"]
  resources: ["fqdnnetworkpolicies"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}
