{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "nsbiflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix of the objects of one release.
*/}}
{{- define "nsbiflow.fullname" -}}
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

{{- define "nsbiflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "nsbiflow.labels" -}}
helm.sh/chart: {{ include "nsbiflow.chart" . }}
{{ include "nsbiflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nsbiflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "nsbiflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nsbiflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The Secret holding the S3 credentials: an existing one, or the one this chart generates.
*/}}
{{- define "nsbiflow.s3SecretName" -}}
{{- default .Values.s3.credentials.secretName .Values.s3.credentials.existingSecret }}
{{- end }}

{{/*
The Secret holding MinIO's root credentials (separate from the step credentials).
*/}}
{{- define "nsbiflow.rootSecretName" -}}
{{- default .Values.s3.credentials.rootSecretName .Values.s3.credentials.existingRootSecret }}
{{- end }}

{{/*
Namespace labels of the Pod Security Standard (enforce, audit and warn at one level).
*/}}
{{- define "nsbiflow.podSecurityLabels" -}}
pod-security.kubernetes.io/enforce: {{ .Values.podSecurity.level }}
pod-security.kubernetes.io/enforce-version: latest
pod-security.kubernetes.io/audit: {{ .Values.podSecurity.level }}
pod-security.kubernetes.io/warn: {{ .Values.podSecurity.level }}
{{- end }}

{{/*
Fails the render unless the step pods' security contexts meet the restricted Pod Security Standard:
a values file (or cluster profile) may tighten them, never loosen them.
*/}}
{{- define "nsbiflow.validateSecurity" -}}
{{- $pod := .Values.podSecurityContext }}
{{- $ctr := .Values.containerSecurityContext }}
{{- if not $pod.runAsNonRoot }}
{{- fail "podSecurityContext.runAsNonRoot must be true (step pods run as non-root; restricted Pod Security Standard)" }}
{{- end }}
{{- if and (hasKey $pod "runAsUser") (eq (int $pod.runAsUser) 0) }}
{{- fail "podSecurityContext.runAsUser must not be 0" }}
{{- end }}
{{- if not (has (dig "seccompProfile" "type" "" $pod) (list "RuntimeDefault" "Localhost")) }}
{{- fail "podSecurityContext.seccompProfile.type must be RuntimeDefault or Localhost" }}
{{- end }}
{{- if ne (toString $ctr.allowPrivilegeEscalation) "false" }}
{{- fail "containerSecurityContext.allowPrivilegeEscalation must be false" }}
{{- end }}
{{- if $ctr.privileged }}
{{- fail "containerSecurityContext.privileged must not be true" }}
{{- end }}
{{- if and (hasKey $ctr "runAsUser") (eq (int $ctr.runAsUser) 0) }}
{{- fail "containerSecurityContext.runAsUser must not be 0" }}
{{- end }}
{{- if not (has "ALL" (dig "capabilities" "drop" (list) $ctr)) }}
{{- fail "containerSecurityContext.capabilities.drop must contain ALL" }}
{{- end }}
{{- range (dig "capabilities" "add" (list) $ctr) }}
{{- if ne . "NET_BIND_SERVICE" }}
{{- fail (printf "containerSecurityContext.capabilities.add may hold only NET_BIND_SERVICE, not %s" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
S3 endpoint as host:port (the bundled MinIO service unless s3.endpoint is set).
*/}}
{{- define "nsbiflow.s3Endpoint" -}}
{{- if .Values.s3.endpoint }}
{{- .Values.s3.endpoint }}
{{- else }}
{{- printf "%s.%s.svc:9000" (default "nsbiflow-minio" (index .Values "minio" "fullnameOverride")) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
S3 endpoint as a URL, for the nsbiflow store inside step containers.
*/}}
{{- define "nsbiflow.s3EndpointURL" -}}
{{- printf "%s://%s" (ternary "http" "https" .Values.s3.insecure) (include "nsbiflow.s3Endpoint" .) }}
{{- end }}

{{/*
A step image reference: {{ include "nsbiflow.image" (list . "cpu") }}. A digest wins over a tag.
*/}}
{{- define "nsbiflow.image" -}}
{{- $root := index . 0 }}
{{- $img := index $root.Values.images (index . 1) }}
{{- $repo := $img.repository }}
{{- if $root.Values.images.registry }}
{{- $repo = printf "%s/%s" $root.Values.images.registry $img.repository }}
{{- end }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/*
Consistency checks between this chart's values and the subcharts' values; fails the render with one
clear line per problem.
*/}}
{{- define "nsbiflow.validate" -}}
{{- include "nsbiflow.validateSecurity" . }}
{{- $minio := index .Values "minio" }}
{{- if $minio.enabled }}
{{- if ne (toString $minio.existingSecret) (include "nsbiflow.rootSecretName" .) }}
{{- fail (printf "minio.existingSecret (%q) must name the MinIO root credentials Secret %q (s3.credentials.rootSecretName)" (toString $minio.existingSecret) (include "nsbiflow.rootSecretName" .)) }}
{{- end }}
{{- if eq (include "nsbiflow.rootSecretName" .) (include "nsbiflow.s3SecretName" .) }}
{{- fail "the MinIO root credentials and the step credentials must be two Secrets (s3.credentials.rootSecretName vs secretName/existingSecret)" }}
{{- end }}
{{- range $minio.users }}
{{- if and .existingSecret (ne .existingSecret (include "nsbiflow.s3SecretName" $)) }}
{{- fail (printf "minio.users[%s].existingSecret must be the step credentials Secret %q" .accessKey (include "nsbiflow.s3SecretName" $)) }}
{{- end }}
{{- end }}
{{- $bucketFound := false }}
{{- range $minio.buckets }}
{{- if eq .name $.Values.s3.bucket }}{{ $bucketFound = true }}{{ end }}
{{- end }}
{{- if not $bucketFound }}
{{- fail (printf "s3.bucket %q is not in minio.buckets, so MinIO would not create it" .Values.s3.bucket) }}
{{- end }}
{{- if not .Values.s3.credentials.existingSecret }}
{{- $userFound := false }}
{{- range $minio.users }}
{{- if eq .accessKey $.Values.s3.credentials.accessKey }}{{ $userFound = true }}{{ end }}
{{- end }}
{{- if not $userFound }}
{{- fail (printf "s3.credentials.accessKey %q is not one of minio.users, so workflows could not log in" .Values.s3.credentials.accessKey) }}
{{- end }}
{{- end }}
{{- else }}
{{- if not .Values.s3.endpoint }}
{{- fail "minio.enabled is false: set s3.endpoint to your S3 endpoint (host:port)" }}
{{- end }}
{{- if not .Values.s3.credentials.existingSecret }}
{{- fail "minio.enabled is false: set s3.credentials.existingSecret to a Secret with keys accessKey and secretKey" }}
{{- end }}
{{- end }}
{{- end }}
