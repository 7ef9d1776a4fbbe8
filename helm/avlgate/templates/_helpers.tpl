{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "avlgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, with the chart name unless it contains it. */}}
{{- define "avlgate.fullname" -}}
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

{{- define "avlgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avlgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "avlgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "avlgate.labels" -}}
helm.sh/chart: {{ include "avlgate.chart" . }}
{{ include "avlgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "avlgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "avlgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "avlgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/* The Secret holding the Kafka SASL credentials. */}}
{{- define "avlgate.kafkaSaslSecret" -}}
{{- default (printf "%s-kafka-sasl" (include "avlgate.fullname" .)) .Values.kafka.sasl.existingSecret }}
{{- end }}

{{/* The Secret holding the embedded broker's password. */}}
{{- define "avlgate.embeddedMqttSecret" -}}
{{- default (printf "%s-embedded-mqtt" (include "avlgate.fullname" .)) .Values.embeddedMqtt.auth.existingSecret }}
{{- end }}

{{/* The ConfigMap holding the IMEI allow-list. */}}
{{- define "avlgate.allowlistConfigMap" -}}
{{- default (printf "%s-imei-allowlist" (include "avlgate.fullname" .)) .Values.imeiAllowlist.existingConfigMap }}
{{- end }}

{{/*
AVLGATE_KAFKA_OPTIONS: kafka.options as key=value, comma-separated, sorted by key; with SASL,
the credentials are referenced as $(KAFKA_SASL_USERNAME) / $(KAFKA_SASL_PASSWORD), which
Kubernetes expands from the variables defined before it.
*/}}
{{- define "avlgate.kafkaOptions" -}}
{{- $opts := list }}
{{- range $k, $v := .Values.kafka.options }}
{{- if contains "," (toString $v) }}
{{- fail (printf "kafka.options.%s: values must not contain a comma (AVLGATE_KAFKA_OPTIONS is comma-separated)" $k) }}
{{- end }}
{{- $opts = append $opts (printf "%s=%v" $k $v) }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
{{- $opts = append $opts (printf "security.protocol=%s" .Values.kafka.sasl.securityProtocol) }}
{{- $opts = append $opts (printf "sasl.mechanism=%s" .Values.kafka.sasl.mechanism) }}
{{- $opts = append $opts "sasl.username=$(KAFKA_SASL_USERNAME)" }}
{{- $opts = append $opts "sasl.password=$(KAFKA_SASL_PASSWORD)" }}
{{- end }}
{{- join "," $opts }}
{{- end }}

{{/* preStop sleep + drain deadline + margin, unless set explicitly. */}}
{{- define "avlgate.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (int .Values.preStopSleepSeconds) (int .Values.timeouts.drainTimeoutSecs) 5 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* Checks of the combination, rendered (as nothing) by the ConfigMap. */}}
{{- define "avlgate.validate" -}}
{{- $sinks := list "embedded" "mqtt" "stdout" "kafka" }}
{{- if not (has .Values.sink $sinks) }}
{{- fail (printf "sink must be one of %s, not %q" (join ", " $sinks) .Values.sink) }}
{{- end }}
{{- if and (eq .Values.sink "kafka") (not .Values.kafka.brokers) }}
{{- fail "sink=kafka needs kafka.brokers" }}
{{- end }}
{{- if and (eq .Values.sink "mqtt") (not .Values.mqtt.url) (not .Values.mqtt.existingSecret) }}
{{- fail "sink=mqtt needs mqtt.url or mqtt.existingSecret" }}
{{- end }}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.existingSecret) (not .Values.kafka.sasl.password) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret or kafka.sasl.username/password" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.imeiAllowlist.enabled (not .Values.imeiAllowlist.existingConfigMap) (not .Values.imeiAllowlist.imeis) }}
{{- fail "imeiAllowlist.enabled needs imeiAllowlist.existingConfigMap or imeiAllowlist.imeis" }}
{{- end }}
{{- if eq .Values.sink "embedded" }}
{{- $host := regexReplaceAll ":[0-9]+$" .Values.embeddedMqtt.listen "" | trimPrefix "[" | trimSuffix "]" }}
{{- $loopback := or (hasPrefix "127." $host) (eq $host "::1") }}
{{- if and (not $loopback) (not .Values.embeddedMqtt.auth.enabled) }}
{{- fail (printf "embeddedMqtt.listen %s is not loopback: it needs embeddedMqtt.auth.enabled (the gateway refuses an anonymous broker off loopback)" .Values.embeddedMqtt.listen) }}
{{- end }}
{{- if and .Values.embeddedMqtt.auth.enabled (not .Values.embeddedMqtt.auth.existingSecret) (not .Values.embeddedMqtt.auth.password) }}
{{- fail "embeddedMqtt.auth.enabled needs embeddedMqtt.auth.existingSecret or embeddedMqtt.auth.password" }}
{{- end }}
{{- end }}
{{- if not (or .Values.service.tcp .Values.service.udp) }}
{{- fail "service.tcp and service.udp are both false: devices could not connect" }}
{{- end }}
{{- end }}
