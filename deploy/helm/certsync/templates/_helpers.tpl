{{/* Names and labels. */}}
{{- define "certsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "certsync.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "certsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "certsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: certsync
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "collector") */}}
{{- define "certsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "certsync.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A source id as a DNS-1123 label part: lower case, '.' and '_' become '-'. */}}
{{- define "certsync.sourceSlug" -}}
{{- . | lower | replace "_" "-" | replace "." "-" | trunc 20 | trimSuffix "-" -}}
{{- end -}}

{{- define "certsync.collectorName" -}}
{{- printf "%s-collector-%s" (include "certsync.fullname" .root) (include "certsync.sourceSlug" .source.id) -}}
{{- end -}}

{{- define "certsync.publisherName" -}}
{{- printf "%s-publisher" (include "certsync.fullname" .) -}}
{{- end -}}

{{- define "certsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certsync.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "certsync.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Mount points of the Secrets (files under /run/secrets/certsync). */}}
{{- define "certsync.secretDir" -}}/run/secrets/certsync{{- end -}}
{{- define "certsync.configDir" -}}/etc/certsync{{- end -}}

{{/*
The kafka.* map both services share: kafka.config, bootstrap.servers, the CA file when a CA Secret is
mounted, then the service's own overrides (.extra). Returns YAML; use with fromYaml.
*/}}
{{- define "certsync.kafkaConfig" -}}
{{- $root := .root -}}
{{- $k := $root.Values.kafka -}}
{{- if not $k.bootstrapServers -}}
{{- fail "kafka.bootstrapServers is required (the brokers' host:port list)" -}}
{{- end -}}
{{- $out := deepCopy (default (dict) $k.config) -}}
{{- $_ := set $out "bootstrap.servers" $k.bootstrapServers -}}
{{- if and $k.caSecret.name (not (hasKey $out "ssl.ca.location")) -}}
{{- $_ := set $out "ssl.ca.location" (printf "%s/kafka/ca.crt" (include "certsync.secretDir" $root)) -}}
{{- end -}}
{{- range $key, $v := (default (dict) .extra) -}}
{{- $_ := set $out $key $v -}}
{{- end -}}
{{- range $key, $v := $out -}}
{{- if or (eq $key "transactional.id") (eq $key "sasl.password") -}}
{{- fail (printf "kafka property %q may not be set in values: transactional.id is derived by the services; a SASL password goes in kafka.sasl.passwordSecret" $key) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The line naming the Kafka SASL password file (kafka.sasl.passwordFileConfigKey, see values.yaml). */}}
{{- define "certsync.kafkaPasswordLine" -}}
{{- if and .Values.kafka.sasl.passwordSecret.name .Values.kafka.sasl.passwordFileConfigKey }}
{{ .Values.kafka.sasl.passwordFileConfigKey }}: {{ printf "%s/kafka/sasl-password" (include "certsync.secretDir" .) | quote }}
{{- end -}}
{{- end -}}

{{/* The collector config of one source: (dict "root" $ "source" $source). */}}
{{- define "certsync.collectorConfig" -}}
{{- $root := .root -}}
{{- $s := .source -}}
{{- $dir := include "certsync.secretDir" $root -}}
{{- $cfg := deepCopy (default (dict) $root.Values.collector.config) -}}
{{- if $root.Values.collector.leaderElection.enabled -}}
{{- $le := $root.Values.collector.leaderElection -}}
{{- /* The Lease is named like the source's workload: unique per release and source, and the Role's resourceNames. */ -}}
{{- $k := dict "lease_name" (include "certsync.collectorName" (dict "root" $root "source" $s)) "lease_duration" (default "15s" $le.leaseDuration) "renew_deadline" (default "10s" $le.renewDeadline) "retry_period" (default "2s" $le.retryPeriod) -}}
{{- $cfg = mustMergeOverwrite $cfg (dict "election" (dict "mode" "kubernetes-lease" "kubernetes" $k)) -}}
{{- $cfg = mustMergeOverwrite $cfg (deepCopy (default (dict) $le.config)) -}}
{{- end -}}
{{- $ldap := deepCopy (default (dict) $s.ldap) -}}
{{- if $s.passwordSecret -}}{{- if $s.passwordSecret.name -}}
{{- $_ := set $ldap "password_file" (printf "%s/ldap/password" $dir) -}}
{{- end -}}{{- end -}}
{{- if $s.caSecret -}}{{- if $s.caSecret.name -}}
{{- $tls := default (dict) $ldap.tls -}}
{{- $_ := set $tls "ca_file" (printf "%s/ldap/ca.crt" $dir) -}}
{{- $_ := set $ldap "tls" $tls -}}
{{- end -}}{{- end -}}
{{- $source := dict "id" $s.id -}}
{{- if $s.site -}}{{- $_ := set $source "site" $s.site -}}{{- end -}}
{{- $t := $root.Values.topics -}}
{{- $fixed := dict
      "source" $source
      "ldap" $ldap
      "topics" (dict "events" $t.events.name "checkpoint" $t.collectorState.name "held" $t.held.name)
      "admin" (dict "listen" (printf "0.0.0.0:%d" (int $root.Values.collector.adminPort)))
      "kafka" (include "certsync.kafkaConfig" (dict "root" $root "extra" $root.Values.collector.kafka) | fromYaml) -}}
{{- $cfg = mustMergeOverwrite $cfg $fixed (deepCopy (default (dict) $s.config)) -}}
{{- toYaml $cfg }}
{{- include "certsync.kafkaPasswordLine" $root }}
{{- end -}}

{{/* The publisher config of one instance: (dict "root" $ "instance" "<pod name>"). */}}
{{- define "certsync.publisherConfig" -}}
{{- $root := .root -}}
{{- $p := $root.Values.publisher -}}
{{- $dir := include "certsync.secretDir" $root -}}
{{- $cfg := deepCopy (default (dict) $p.config) -}}
{{- $o365 := default (dict) $cfg.o365 -}}
{{- if $p.certificateSecret.name -}}
{{- $_ := set $o365 "certificate_file" (printf "%s/o365/tls.crt" $dir) -}}
{{- $_ := set $o365 "private_key_file" (printf "%s/o365/tls.key" $dir) -}}
{{- end -}}
{{- if $p.clientSecret.name -}}
{{- $_ := set $o365 "client_secret_file" (printf "%s/o365/client-secret" $dir) -}}
{{- end -}}
{{- if $p.caSecret.name -}}
{{- $_ := set $o365 "ca_file" (printf "%s/o365/ca.crt" $dir) -}}
{{- end -}}
{{- $_ := set $cfg "o365" $o365 -}}
{{- $t := $root.Values.topics -}}
{{- $fixed := dict
      "publisher" (dict "instance_id" .instance)
      "topics" (dict "events" $t.events.name "state" $t.publisherState.name "results" $t.results.name "dlq" $t.dlq.name "retry" $t.retry.name)
      "admin" (dict "listen" (printf "0.0.0.0:%d" (int $p.adminPort)))
      "kafka" (include "certsync.kafkaConfig" (dict "root" $root "extra" $p.kafka) | fromYaml) -}}
{{- $cfg = mustMergeOverwrite $cfg $fixed -}}
{{- toYaml $cfg }}
{{- include "certsync.kafkaPasswordLine" $root }}
{{- end -}}

{{/* Volumes for the Kafka Secrets, shared by both workloads. */}}
{{- define "certsync.kafkaVolumes" -}}
{{- $k := .Values.kafka -}}
{{- if or $k.caSecret.name $k.sasl.passwordSecret.name }}
- name: kafka-secrets
  projected:
    defaultMode: 0440
    sources:
    {{- if $k.caSecret.name }}
      - secret:
          name: {{ $k.caSecret.name }}
          items:
            - key: {{ $k.caSecret.key }}
              path: ca.crt
    {{- end }}
    {{- if $k.sasl.passwordSecret.name }}
      - secret:
          name: {{ $k.sasl.passwordSecret.name }}
          items:
            - key: {{ $k.sasl.passwordSecret.key }}
              path: sasl-password
    {{- end }}
{{- end }}
{{- end -}}

{{- define "certsync.kafkaVolumeMounts" -}}
{{- $k := .Values.kafka -}}
{{- if or $k.caSecret.name $k.sasl.passwordSecret.name }}
- name: kafka-secrets
  mountPath: {{ include "certsync.secretDir" . }}/kafka
  readOnly: true
{{- end }}
{{- end -}}

{{/* Probes on the admin port. */}}
{{- define "certsync.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
startupProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 60
{{- end -}}

{{/* Egress rules every certsync pod needs: DNS and Kafka. */}}
{{- define "certsync.egressCommon" -}}
# DNS.
- to:
    {{- toYaml .Values.networkPolicy.dns.to | nindent 4 }}
  ports:
    {{- toYaml .Values.networkPolicy.dns.ports | nindent 4 }}
# Kafka.
{{- if not .Values.kafka.networkPolicy.to }}
{{- fail "kafka.networkPolicy.to is required when networkPolicy.enabled: where the brokers are (NetworkPolicyPeer objects)" }}
{{- end }}
- to:
    {{- toYaml .Values.kafka.networkPolicy.to | nindent 4 }}
  ports:
    {{- toYaml .Values.kafka.networkPolicy.ports | nindent 4 }}
{{- end -}}
