{{/* Names, labels and the values every template derives the same way. */}}

{{- define "notesuite.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-notesuite, or RELEASE when it already says notesuite; room is left for the
longest suffix ("-gateway-metrics"), since Service names are DNS labels of at most 63. */}}
{{- define "notesuite.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 47 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "notesuite.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "users"). */}}
{{- define "notesuite.selectorLabels" -}}
app.kubernetes.io/name: {{ include "notesuite.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "notesuite.labels" -}}
helm.sh/chart: {{ include "notesuite.chart" .root }}
{{ include "notesuite.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: notesuite
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "notesuite.componentName" -}}
{{- printf "%s-%s" (include "notesuite.fullname" .root) .component }}
{{- end }}

{{- define "notesuite.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "notesuite.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "notesuite.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The gRPC service each component serves: its readiness probe asks for this name. */}}
{{- define "notesuite.grpcService" -}}
{{- get (dict "users" "notesuite.users.v1.UsersService" "notes" "notesuite.notes.v1.NotesService" "gateway" "notesuite.gateway.v1.GatewayService") . }}
{{- end }}

{{/* Full DNS name of a component's Service. users and notes are headless: the name resolves
to every ready pod. */}}
{{- define "notesuite.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "notesuite.componentName" .) .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/* The drain, end to end: the kubelet's SIGKILL must come after the process has exited
by itself, so the grace period is derived here and nowhere else. */}}
{{- define "notesuite.terminationGracePeriodSeconds" -}}
{{- $drain := .Values.drain }}
{{- add (int $drain.delaySeconds) (int $drain.shutdownGraceSeconds) (int $drain.terminationMarginSeconds) }}
{{- end }}

{{- define "notesuite.jwtSecretName" -}}
{{- default (printf "%s-jwt" (include "notesuite.fullname" .)) .Values.jwt.existingSecret }}
{{- end }}

{{- define "notesuite.databaseSecretName" -}}
{{- default (printf "%s-database" (include "notesuite.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{/* Where keys and data live in the container (the image creates these directories). */}}
{{/* A rotation Secret is a directory of keys; otherwise the one key file. */}}
{{- define "notesuite.privateKeyPath" -}}/etc/notesuite/jwt-private{{ if not .Values.jwt.privateKeysSecret }}/jwt-private.pem{{ end }}{{- end }}
{{- define "notesuite.publicKeyPath" -}}/etc/notesuite/jwt-public{{ if not .Values.jwt.publicKeysSecret }}/jwt-public.pem{{ end }}{{- end }}
{{- define "notesuite.dataDir" -}}/var/lib/notesuite{{- end }}
{{/* Certificate Secrets are mounted whole, as directories (no subPath), so that a rotated
Secret reaches the files and the process reloads them. */}}
{{- define "notesuite.publicTlsDir" -}}/etc/notesuite/tls/public{{- end }}
{{- define "notesuite.internalTlsDir" -}}/etc/notesuite/tls/internal{{- end }}

{{/* Whether a component's port serves TLS: the gateway's with a public certificate, users'
and notes' with internal mTLS. */}}
{{- define "notesuite.servesTls" -}}
{{- if eq .component "gateway" }}{{ if .root.Values.tls.gateway.secretName }}true{{ end }}
{{- else if .root.Values.tls.internal.enabled }}true{{ end }}
{{- end }}

{{/* A probe asking health name `service` of the pod's own port: the kubelet's native gRPC
probe on a plaintext port; on a TLS port (which the kubelet's probe cannot speak) `notesuite
health` with the CA bundle and the name the certificate carries, presenting the pod's own
certificate where client certificates are required.
(dict "root" $ "component" "users" "service" "liveness" "timings" $values.probes.startup) */}}
{{- define "notesuite.probe" -}}
{{- $values := index .root.Values .component }}
{{- if include "notesuite.servesTls" . -}}
exec:
  command:
    - /usr/local/bin/notesuite
    - health
    - --service
    - {{ .service | quote }}
    - --timeout
    - {{ printf "%ds" (int (default 2 .timings.timeoutSeconds)) | quote }}
    {{- if eq .component "gateway" }}
    - --tls-ca
    - {{ include "notesuite.publicTlsDir" .root | printf "%s/ca.crt" }}
    - --tls-server-name
    - {{ .root.Values.tls.gateway.serverName | quote }}
    {{- else }}
    - --tls-ca
    - {{ include "notesuite.internalTlsDir" .root | printf "%s/ca.crt" }}
    - --tls-cert
    - {{ include "notesuite.internalTlsDir" .root | printf "%s/tls.crt" }}
    - --tls-key
    - {{ include "notesuite.internalTlsDir" .root | printf "%s/tls.key" }}
    - --tls-server-name
    - {{ include "notesuite.serviceHost" . }}
    {{- end }}
{{- else -}}
grpc: {port: {{ $values.port }}, service: {{ .service }}}
{{- end }}
{{- toYaml .timings | nindent 0 }}
{{- end }}

{{/* The settings of one component that are not secret, as ConfigMap data. Its checksum is a
pod annotation, so that changing any of them rolls that component's pods. */}}
{{- define "notesuite.configData" -}}
{{- $root := .root }}
{{- $values := index $root.Values .component }}
NOTESUITE_LISTEN: {{ printf "%s:%d" (include "notesuite.hostPort" $root.Values.listenHost) (int $values.port) | quote }}
NOTESUITE_METRICS_LISTEN: {{ printf "%s:%d" (include "notesuite.hostPort" $root.Values.listenHost) (int $root.Values.metrics.port) | quote }}
NOTESUITE_DRAIN_DELAY: {{ printf "%ds" (int $root.Values.drain.delaySeconds) | quote }}
NOTESUITE_SHUTDOWN_GRACE: {{ printf "%ds" (int $root.Values.drain.shutdownGraceSeconds) | quote }}
NOTESUITE_LOG_FORMAT: {{ $root.Values.logFormat | quote }}
NOTESUITE_CONCURRENCY_LIMIT: {{ $root.Values.concurrencyLimit | quote }}
RUST_LOG: {{ $root.Values.logLevel | quote }}
OTEL_SERVICE_NAME: {{ printf "notesuite-%s" .component | quote }}
{{- with $root.Values.otel }}
{{- if .endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .endpoint | quote }}
{{- if not .exportMetrics }}
OTEL_METRICS_EXPORTER: "none"
{{- end }}
{{- if .tracesSampler }}
OTEL_TRACES_SAMPLER: {{ .tracesSampler | quote }}
{{- end }}
{{- if .tracesSamplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ .tracesSamplerArg | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- $internalTls := $root.Values.tls.internal.enabled }}
{{- if eq .component "gateway" }}
{{- $scheme := ternary "https" "http" $internalTls }}
NOTESUITE_USERS_URL: {{ printf "%s://%s:%d" $scheme (include "notesuite.serviceHost" (dict "root" $root "component" "users")) (int $root.Values.users.port) | quote }}
NOTESUITE_NOTES_URL: {{ printf "%s://%s:%d" $scheme (include "notesuite.serviceHost" (dict "root" $root "component" "notes")) (int $root.Values.notes.port) | quote }}
{{- if $root.Values.tls.gateway.secretName }}
NOTESUITE_TLS_CERT: {{ include "notesuite.publicTlsDir" $root | printf "%s/tls.crt" | quote }}
NOTESUITE_TLS_KEY: {{ include "notesuite.publicTlsDir" $root | printf "%s/tls.key" | quote }}
{{- end }}
{{- if $internalTls }}
NOTESUITE_BACKEND_CA: {{ include "notesuite.internalTlsDir" $root | printf "%s/ca.crt" | quote }}
NOTESUITE_BACKEND_CERT: {{ include "notesuite.internalTlsDir" $root | printf "%s/tls.crt" | quote }}
NOTESUITE_BACKEND_KEY: {{ include "notesuite.internalTlsDir" $root | printf "%s/tls.key" | quote }}
{{- end }}
NOTESUITE_JWT_PRIVATE_KEY: {{ include "notesuite.privateKeyPath" $root | quote }}
{{- if $root.Values.jwt.publicKeysSecret }}
{{- /* Also every public key: a token signed by a replica that saw a new private key first
is accepted here too. */}}
NOTESUITE_JWT_PUBLIC_KEY: {{ include "notesuite.publicKeyPath" $root | quote }}
{{- end }}
NOTESUITE_ACCESS_TOKEN_TTL: {{ $values.accessTokenTtl | quote }}
NOTESUITE_DEFAULT_DEADLINE: {{ $values.defaultDeadline | quote }}
{{- else }}
NOTESUITE_JWT_PUBLIC_KEY: {{ include "notesuite.publicKeyPath" $root | quote }}
{{- if $internalTls }}
NOTESUITE_TLS_CERT: {{ include "notesuite.internalTlsDir" $root | printf "%s/tls.crt" | quote }}
NOTESUITE_TLS_KEY: {{ include "notesuite.internalTlsDir" $root | printf "%s/tls.key" | quote }}
NOTESUITE_TLS_CLIENT_CA: {{ include "notesuite.internalTlsDir" $root | printf "%s/ca.crt" | quote }}
{{- end }}
NOTESUITE_DATABASE_MAX_CONNECTIONS: {{ $root.Values.database.maxConnections | quote }}
NOTESUITE_DATABASE_CONNECT_TIMEOUT: {{ $root.Values.database.connectTimeout | quote }}
NOTESUITE_DATABASE_ACQUIRE_TIMEOUT: {{ $root.Values.database.acquireTimeout | quote }}
NOTESUITE_DATABASE_STATEMENT_TIMEOUT: {{ $root.Values.database.statementTimeout | quote }}
{{- if eq $root.Values.database.driver "sqlite" }}
NOTESUITE_DATABASE_URL: {{ printf "sqlite://%s/%s.db" (include "notesuite.dataDir" $root) .component | quote }}
{{- else }}
NOTESUITE_DATABASE_URL_FILE: "/etc/notesuite/database/database-url"
{{- end }}
{{- if eq .component "users" }}
NOTESUITE_PASSWORD_HASH_CONCURRENCY: {{ $values.passwordHashConcurrency | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* An IP as it goes before ":port": IPv6 in brackets. */}}
{{- define "notesuite.hostPort" -}}
{{- if contains ":" . }}{{ printf "[%s]" . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* The spread of a component's pods: its own constraints, or zones then nodes. */}}
{{- define "notesuite.topologySpread" -}}
{{- $values := index .root.Values .component }}
{{- if $values.topologySpreadConstraints }}
{{- toYaml $values.topologySpreadConstraints }}
{{- else if .root.Values.topologySpread.enabled }}
{{- $selector := include "notesuite.selectorLabels" . | fromYaml }}
{{- with .root.Values.topologySpread }}
- topologyKey: topology.kubernetes.io/zone
  maxSkew: {{ .zone.maxSkew }}
  whenUnsatisfiable: {{ .zone.whenUnsatisfiable }}
  labelSelector:
    matchLabels: {{- toYaml $selector | nindent 6 }}
  # Spread each rollout's pods, not old and new together.
  matchLabelKeys: [pod-template-hash]
- topologyKey: kubernetes.io/hostname
  maxSkew: {{ .node.maxSkew }}
  whenUnsatisfiable: {{ .node.whenUnsatisfiable }}
  labelSelector:
    matchLabels: {{- toYaml $selector | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}
{{- end }}

{{/* OTEL_RESOURCE_ATTRIBUTES: where the process runs, from the downward API. */}}
{{- define "notesuite.resourceAttributes" -}}
{{- $attributes := list
  "k8s.pod.name=$(POD_NAME)"
  "k8s.namespace.name=$(POD_NAMESPACE)"
  "k8s.node.name=$(NODE_NAME)"
  "service.instance.id=$(POD_UID)"
  (printf "k8s.deployment.name=%s" (include "notesuite.componentName" .))
  (printf "service.version=%s" .root.Chart.AppVersion) }}
{{- range $key, $value := .root.Values.otel.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $attributes }}
{{- end }}
