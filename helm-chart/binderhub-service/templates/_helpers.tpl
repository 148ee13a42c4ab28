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

{{/* The base URL: where the hub's proxy routes the service. */}}
{{- define "binderhub-service.baseUrl" -}}
{{- printf "/services/%s/" .Values.jupyterhubServiceName }}
{{- end }}

{{/* The namespace build pods (and the build daemon) run in. */}}
{{- define "binderhub-service.buildNamespace" -}}
{{- .Values.buildNamespace | default .Release.Namespace }}
{{- end }}

{{/* The data directory: the image's (BINDERHUB_SERVICE_DATA_DIR), where the volume is mounted. */}}
{{- define "binderhub-service.dataDir" -}}
/srv/binderhub-service/data
{{- end }}

{{/* A per-release folder name for host paths: NAMESPACE-RELEASE. */}}
{{- define "binderhub-service.hostDirName" -}}
{{- printf "%s-%s" .Release.Namespace .Release.Name }}
{{- end }}

{{- define "binderhub-service.socketHostDir" -}}
{{- .Values.buildDaemon.socketHostDir | default (printf "/var/run/binderhub-service/%s" (include "binderhub-service.hostDirName" .)) | trimSuffix "/" }}
{{- end }}

{{- define "binderhub-service.storageHostPath" -}}
{{- .Values.buildDaemon.storageHostPath | default (printf "/var/lib/binderhub-service/%s" (include "binderhub-service.hostDirName" .)) }}
{{- end }}

{{/* Image pull secrets, given as names or as {name: ...}, as a list of {name: ...}. */}}
{{- define "binderhub-service.pullSecrets" -}}
{{- range . }}
{{- if kindIs "string" . }}
- name: {{ . }}
{{- else }}
- name: {{ .name }}
{{- end }}
{{- end }}
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
Traits the chart decides, each with the value to set instead. Setting one under
`config` or `extraConfig` fails the render with that value's name.
*/}}
{{- define "binderhub-service.chartOwnedTraits" -}}
BinderHubService:
  ip: service.port (the service listens on every address of its pod)
  port: service.port
  base_url: jupyterhubServiceName
  executor_class: buildDaemon (the chart always builds in pods)
  data_dir: persistence
  db_url: databaseUrlSecret
DockerRegistry:
  url: registry.url
  docker_config_path: registry.username and registry.password
KubernetesExecutor:
  namespace: buildNamespace
  docker_socket_host_path: buildDaemon.socketHostDir
  extra_labels: the release name (the chart labels build pods with it)
  build_daemon_label_selector: buildDaemon.enabled
  registry_secret_name: registry.username and registry.password
  build_memory_limit: buildDaemon.stepLimits.memory
  build_cpu_limit: buildDaemon.stepLimits.cpu
{{- end }}

{{- define "binderhub-service.checkConfig" -}}
{{- $limits := .Values.buildDaemon.stepLimits | default dict }}
{{- if and (or $limits.memory $limits.cpu) (not .Values.buildDaemon.enabled) }}
{{- fail "buildDaemon.stepLimits needs buildDaemon.enabled: the limits are set beside the chart's build daemon" }}
{{- end }}
{{- $owned := include "binderhub-service.chartOwnedTraits" . | fromYaml }}
{{- range $source := list "config" "extraConfig" }}
{{- $values := index $.Values $source | default dict }}
{{- range $class, $traits := $owned }}
{{- $section := index $values $class | default dict }}
{{- range $trait, $use := $traits }}
{{- if hasKey $section $trait }}
{{- fail (printf "%s.%s.%s is set by the chart: use %s instead" $source $class $trait $use) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The service's traitlets configuration, {Class: {trait: value}}: the values'
`config`, what the chart itself decides, then `extraConfig` over both.
*/}}
{{- define "binderhub-service.serviceConfig" -}}
{{- include "binderhub-service.checkConfig" . }}
{{- $chart := dict
  "BinderHubService" (dict
    "ip" "0.0.0.0"
    "port" (int .Values.service.port)
    "base_url" (include "binderhub-service.baseUrl" .)
    "executor_class" "kubernetes"
    "data_dir" (include "binderhub-service.dataDir" .))
  "KubernetesExecutor" (dict
    "namespace" (include "binderhub-service.buildNamespace" .)
    "docker_socket_host_path" (printf "%s/docker.sock" (include "binderhub-service.socketHostDir" .))
    "extra_labels" (dict "app.kubernetes.io/instance" .Release.Name)
    "build_daemon_label_selector" (printf "component=binderhub-build-daemon,app.kubernetes.io/instance=%s" .Release.Name))
  "DockerRegistry" (dict)
}}
{{- if eq .Values.buildDaemon.mode "rootlessBuildkit" }}
{{- $_ := unset $chart.KubernetesExecutor "docker_socket_host_path" }}
{{- end }}
{{- if not (hasKey (.Values.config.KubernetesExecutor | default dict) "build_image") }}
{{- $_ := set $chart.KubernetesExecutor "build_image" (printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion)) }}
{{- end }}
{{- $limits := .Values.buildDaemon.stepLimits | default dict }}
{{- if $limits.memory }}
{{- $_ := set $chart.KubernetesExecutor "build_memory_limit" (toString $limits.memory) }}
{{- end }}
{{- if $limits.cpu }}
{{- $_ := set $chart.KubernetesExecutor "build_cpu_limit" (float64 $limits.cpu) }}
{{- end }}
{{- if .Values.registry.url }}
{{- $_ := set $chart.DockerRegistry "url" .Values.registry.url }}
{{- end }}
{{- if include "binderhub-service.hasRegistryCredentials" . }}
{{- $_ := set $chart.KubernetesExecutor "registry_secret_name" (include "binderhub-service.registrySecretName" .) }}
{{- $_ := set $chart.DockerRegistry "docker_config_path" "/etc/binderhub-service-registry/config.json" }}
{{- end }}
{{- $config := mergeOverwrite (deepCopy .Values.config) $chart (deepCopy .Values.extraConfig) }}
{{- if not $config.BinderHubService.image_prefix }}
{{- $_ := unset $config.BinderHubService "image_prefix" }}
{{- end }}
{{- if not $config.DockerRegistry }}
{{- $_ := unset $config "DockerRegistry" }}
{{- end }}
{{- toJson $config }}
{{- end }}
