{{/* Generated from src/formats/registry.ts by scripts/generate-deploy.sh; do not edit. */}}
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
