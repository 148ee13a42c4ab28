{{/* The chart name, or nameOverride. */}}
{{- define "binderhub-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, or RELEASE-NAME, or the
release name alone when it already contains the chart name.
*/}}
{{- define "binderhub-service.fullname" -}}
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

{{/* A release-scoped name with a suffix, e.g. "RELEASE-binderhub-service-registry". */}}
{{- define "binderhub-service.fullname.suffixed" -}}
{{- $prefix := include "binderhub-service.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix .suffix }}
{{- end }}

{{- define "binderhub-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "binderhub-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "binderhub-service.labels" -}}
{{ include "binderhub-service.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "binderhub-service.registrySecretName" -}}
{{- include "binderhub-service.fullname.suffixed" (dict "root" . "suffix" "registry") }}
{{- end }}

{{- define "binderhub-service.hasRegistryCredentials" -}}
{{- if .Values.registry.username }}true{{ end }}
{{- end }}

{{/* The base URL: configured, or where the hub's proxy routes the service. */}}
{{- define "binderhub-service.baseUrl" -}}
{{- .Values.config.BinderHubService.base_url | default (printf "/services/%s/" .Values.jupyterhubServiceName) }}
{{- end }}

{{/* The API token shared with the hub: configured, kept from the Secret, or new. */}}
{{- define "binderhub-service.apiToken" -}}
{{- if .Values.jupyterhub.apiToken }}
{{- .Values.jupyterhub.apiToken }}
{{- else }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "binderhub-service.fullname" .) }}
{{- if and $secret (index $secret.data "api-token") }}
{{- index $secret.data "api-token" | b64dec }}
{{- else }}
{{- randAlphaNum 64 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The key that signs the service's login cookie (hex): kept across upgrades, so
users stay logged in when the service restarts.
*/}}
{{- define "binderhub-service.cookieSecret" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "binderhub-service.fullname" .) }}
{{- if and $secret (index $secret.data "cookie-secret") }}
{{- index $secret.data "cookie-secret" | b64dec }}
{{- else }}
{{- randAlphaNum 64 | sha256sum }}
{{- end }}
{{- end }}

{{/*
The service's traitlets configuration, {Class: {trait: value}}: the values'
`config`, what the chart itself decides, then `extraConfig` over both.
*/}}
{{- define "binderhub-service.serviceConfig" -}}
{{- $fullname := include "binderhub-service.fullname" . }}
{{- $chart := dict
  "BinderHubService" (dict
    "ip" "0.0.0.0"
    "port" (int .Values.service.port)
    "base_url" (include "binderhub-service.baseUrl" .)
    "executor_class" "kubernetes")
  "KubernetesExecutor" (dict
    "namespace" .Release.Namespace
    "docker_socket_host_path" (printf "%s/docker.sock" (trimSuffix "/" .Values.buildDaemon.socketHostDir))
    "extra_labels" (dict "app.kubernetes.io/instance" .Release.Name)
    "build_daemon_label_selector" (printf "component=binderhub-build-daemon,app.kubernetes.io/instance=%s" .Release.Name))
}}
{{- if include "binderhub-service.hasRegistryCredentials" . }}
{{- $_ := set $chart.KubernetesExecutor "registry_secret_name" (include "binderhub-service.registrySecretName" .) }}
{{- $_ := set $chart "DockerRegistry" (dict "docker_config_path" "/etc/binderhub-service-registry/config.json") }}
{{- end }}
{{- $config := mergeOverwrite (deepCopy .Values.config) $chart (deepCopy .Values.extraConfig) }}
{{- if not $config.DockerRegistry.url }}
{{- $_ := unset $config.DockerRegistry "url" }}
{{- end }}
{{- toJson $config }}
{{- end }}
