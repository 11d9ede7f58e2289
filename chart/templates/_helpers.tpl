{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "random-refresher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name prefix: release name and chart name, once if one contains the other. */}}
{{- define "random-refresher.fullname" -}}
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

{{- define "random-refresher.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "random-refresher.labels" -}}
helm.sh/chart: {{ include "random-refresher.chart" . }}
{{ include "random-refresher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node-daemon
app.kubernetes.io/part-of: random-refresher
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select the daemon Pods of one DaemonSet; never change them
across upgrades. The DaemonSet for CPU-only nodes (rendered with cpuOnly
merged into the context, daemonset.yaml) names itself <name>-cpu, so that
neither DaemonSet's selector matches the other's Pods. */}}
{{- define "random-refresher.selectorLabels" -}}
{{- $name := include "random-refresher.name" . }}
{{- if .cpuOnly }}{{ $name = printf "%s-cpu" ($name | trunc 59 | trimSuffix "-") }}{{ end -}}
app.kubernetes.io/name: {{ $name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that the Services and the PodMonitor select the daemon Pods of
both DaemonSets by (the helm test Pod is another component). */}}
{{- define "random-refresher.daemonPodLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-daemon
{{- end }}

{{/* Whether the DaemonSet for CPU-only nodes is rendered. */}}
{{- define "random-refresher.cpuDaemonSet" -}}
{{- if and .Values.nfd.enabled .Values.nfd.cpuInstructions (not .Values.staticPod) }}true{{ end }}
{{- end }}

{{/* That DaemonSet's name. */}}
{{- define "random-refresher.cpuFullname" -}}
{{- include "random-refresher.fullname" . | trunc 59 | trimSuffix "-" }}-cpu
{{- end }}

{{/* The labels the NodeFeatureRule sets: one for a hardware RNG device,
one for a CPU source. */}}
{{- define "random-refresher.nfdHwrngLabel" -}}
feature.node.kubernetes.io/{{ .Values.nfd.labelName }}
{{- end }}
{{- define "random-refresher.nfdCpuLabel" -}}
feature.node.kubernetes.io/{{ .Values.nfd.cpuLabelName }}
{{- end }}

{{/* The node selector: none for the static Pod (the kubelet that reads the
manifest folder is the choice, and it refuses a Pod whose selector its own
labels do not match); with nfd.enabled the NodeFeatureRule's label for this
DaemonSet plus any nodeSelector keys (never feature=hw-rng, the default of a
hand-set label); else nodeSelector, or feature=hw-rng when it is empty. */}}
{{- define "random-refresher.nodeSelector" -}}
{{- if not .Values.staticPod }}
{{- $selector := dict }}
{{- if .Values.nfd.enabled }}
{{- $selector = deepCopy (default dict .Values.nodeSelector) }}
{{- $label := include "random-refresher.nfdHwrngLabel" . }}
{{- if .cpuOnly }}
{{- /* Nodes without the device label: a given one would select nothing. */}}
{{- $_ := unset $selector $label }}
{{- $label = include "random-refresher.nfdCpuLabel" . }}
{{- end }}
{{- $_ := set $selector $label "true" }}
{{- else }}
{{- $selector = default (dict "feature" "hw-rng") .Values.nodeSelector }}
{{- end }}
{{- with $selector }}{{ toYaml . }}{{ end }}
{{- end }}
{{- end }}

{{/* The affinity: the affinity value, and for the CPU-only DaemonSet also
"not labeled with a hardware RNG device" in every required node selector
term, so that a node with both labels runs only the device's DaemonSet. */}}
{{- define "random-refresher.affinity" -}}
{{- if not .Values.staticPod }}
{{- $affinity := deepCopy (default dict .Values.affinity) }}
{{- if .cpuOnly }}
{{- $noDevice := dict "key" (include "random-refresher.nfdHwrngLabel" .) "operator" "NotIn" "values" (list "true") }}
{{- $nodeAffinity := default dict $affinity.nodeAffinity }}
{{- $required := default dict (get $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution") }}
{{- $terms := list }}
{{- range (default (list dict) $required.nodeSelectorTerms) }}
{{- $term := deepCopy . }}
{{- $_ := set $term "matchExpressions" (append (default list $term.matchExpressions) $noDevice) }}
{{- $terms = append $terms $term }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $terms }}
{{- $_ := set $nodeAffinity "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $nodeAffinity }}
{{- end }}
{{- with $affinity }}{{ toYaml . }}{{ end }}
{{- end }}
{{- end }}

{{- define "random-refresher.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "random-refresher.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the container sees the hwrng: the device plugin's /dev/hwrng, or
the host's device mounted at /host/dev/hwrng. */}}
{{- define "random-refresher.hwrngPath" -}}
{{- if .Values.devicePlugin.enabled }}/dev/hwrng{{ else }}/host/dev/hwrng{{ end }}
{{- end }}

{{/* The sources: the CPU-only DaemonSet's nfd.cpuSources, refresher.sources
as given, or the hwrng where this mode finds it. */}}
{{- define "random-refresher.sources" -}}
{{- if .cpuOnly }}
{{- toYaml .Values.nfd.cpuSources }}
{{- else if .Values.refresher.sources }}
{{- toYaml .Values.refresher.sources }}
{{- else }}
- {{ include "random-refresher.hwrngPath" . }}
{{- end }}
{{- end }}

{{/* Whether a source is the hwrng: only then is the device mounted (a
hostPath, or the device plugin's resource) and, for the hostPath, the Pod
privileged. Without it a node needs no /dev/hwrng to start the Pod. */}}
{{- define "random-refresher.usesHwrng" -}}
{{- if has (include "random-refresher.hwrngPath" .) (include "random-refresher.sources" . | fromYamlArray) }}true{{ end }}
{{- end }}

{{/* Whether the host's /dev/hwrng and hw_random folder are mounted (hostPath). */}}
{{- define "random-refresher.hostHwrng" -}}
{{- if and (not .Values.devicePlugin.enabled) (include "random-refresher.usesHwrng" .) }}true{{ end }}
{{- end }}

{{/* Whether the quarantine is on for this Pod: never for the CPU-only
DaemonSet, which has no device to quarantine. */}}
{{- define "random-refresher.quarantine" -}}
{{- if and .Values.refresher.quarantineHwrng (not .cpuOnly) }}
{{- if .Values.devicePlugin.enabled }}
{{- fail "refresher.quarantineHwrng writes the host's /sys, which devicePlugin.enabled does not mount" }}
{{- end }}
{{- if not (include "random-refresher.hostHwrng" .) }}
{{- fail "refresher.quarantineHwrng judges the hwrng: refresher.sources must list /host/dev/hwrng" }}
{{- end }}true
{{- end }}
{{- end }}

{{/* The image reference: [registry/]repository@digest when a digest is set,
else [registry/]repository:tag; global.imageRegistry wins over image.registry. */}}
{{- define "random-refresher.image" -}}
{{- $registry := .Values.image.registry }}
{{- with .Values.global }}{{ with .imageRegistry }}{{ $registry = . }}{{ end }}{{ end }}
{{- $repository := .Values.image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Whether the kernel sink (and so CAP_SYS_ADMIN) is on. */}}
{{- define "random-refresher.kernelSink" -}}
{{- if has "kernel" .Values.refresher.sinks }}true{{ end }}
{{- end }}

{{/* The container's security context: the mode's default with the keys of
securityContext merged over it (a key set there wins; the others stay). */}}
{{- define "random-refresher.securityContext" -}}
{{- $base := include "random-refresher.modeSecurityContext" . | fromYaml }}
{{- toYaml (mergeOverwrite $base (deepCopy (default dict .Values.securityContext))) }}
{{- end }}

{{/* The mode's own security context: privileged only to open the host's
hwrng through a hostPath; least privilege with the device plugin or with no
hwrng among the sources. */}}
{{- define "random-refresher.modeSecurityContext" -}}
{{- if not (include "random-refresher.hostHwrng" .) }}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsUser: 0
runAsNonRoot: false
capabilities:
  drop: [ALL]
  {{- if include "random-refresher.kernelSink" . }}
  add: [SYS_ADMIN]
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- else }}
privileged: true
readOnlyRootFilesystem: true
runAsUser: 0
seccompProfile:
  type: RuntimeDefault
{{- end }}
{{- end }}

{{/* A duration such as 500ms, 30s, 1m30s or 1h in seconds, with fractions. */}}
{{- define "random-refresher.seconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+" . | float64 }}
{{- if hasSuffix "ms" . }}{{ $total = addf $total (divf $n 1000) }}
{{- else if hasSuffix "s" . }}{{ $total = addf $total $n }}
{{- else if hasSuffix "m" . }}{{ $total = addf $total (mulf $n 60) }}
{{- else if hasSuffix "h" . }}{{ $total = addf $total (mulf $n 3600) }}
{{- else }}{{ $total = addf $total (mulf $n 86400) }}{{ end }}
{{- end }}
{{- $total }}
{{- end }}

{{/* The daemon's command line. */}}
{{- define "random-refresher.args" -}}
- run
{{- range (include "random-refresher.sources" . | fromYamlArray) }}
- --source={{ . }}
{{- end }}
{{- range .Values.refresher.sinks }}
- --sink={{ . }}
{{- end }}
{{- if .Values.seedFile.enabled }}
- --sink=file:{{ .Values.seedFile.mountPath }}/{{ .Values.seedFile.fileName }}
{{- end }}
- --interval={{ .Values.refresher.interval }}
{{- /* int64: a large number in a values file is a float to Helm and would render as 4e+07. */}}
- --batch-size={{ int64 .Values.refresher.batchSize }}
- --read-timeout={{ .Values.refresher.readTimeout }}
- --max-failed-cycles={{ int64 .Values.refresher.maxFailedCycles }}
{{- with .Values.refresher.entropyPerByte }}
- --entropy-per-byte={{ . }}
{{- end }}
{{- /* Behind kube-rbac-proxy only the sidecar may reach it: the Pod's loopback. */}}
- --listen-address={{ if include "random-refresher.rbacProxy" . }}127.0.0.1{{ else }}{{ .Values.metrics.host }}{{ end }}:{{ .Values.metrics.port }}
{{- if include "random-refresher.webConfig" . }}
- --web-config-file=/etc/random-refresher/web/web-config.yml
{{- end }}
{{- if include "random-refresher.hostHwrng" . }}
- --sys-root=/host/sys
- --hwrng=/host/dev/hwrng
{{- end }}
{{- if include "random-refresher.quarantine" . }}
- --quarantine-hwrng
- --state-dir=/run/random-refresher
{{- end }}
{{- if .Values.refresher.nodeLabel }}
- --metrics-label=node=$(NODE_NAME)
{{- end }}
{{- with .Values.push.gateway }}
- --push-gateway={{ . }}
- --push-instance=$(NODE_NAME)
{{- end }}
{{- with .Values.push.interval }}
- --push-interval={{ . }}
{{- end }}
- --log-format={{ .Values.refresher.logFormat }}
- --log-level={{ .Values.refresher.logLevel }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Whether the kube-rbac-proxy sidecar fronts the metrics port. The static
Pod refuses it: the kubelet starts that Pod before any API server exists, and
it has no ServiceAccount, so the proxy could authenticate no one. */}}
{{- define "random-refresher.rbacProxy" -}}
{{- if .Values.kubeRBACProxy.enabled }}
{{- if .Values.staticPod }}
{{- fail "kubeRBACProxy.enabled needs the API server and a ServiceAccount token, which the static Pod has neither of: set staticPod=false or kubeRBACProxy.enabled=false" }}
{{- end }}true
{{- end }}
{{- end }}

{{/* Whether metrics.webConfig locks the metrics port, refusing what would
render a Pod that cannot work: the static Pod (the kubelet cannot give it a
Secret), kube-rbac-proxy as well (its upstream is plain HTTP on the
loopback, and one lock is enough), no file or two, and a client certificate
required of every client (the kubelet's HTTPS probes send none, so the TLS
handshake of every probe would fail). */}}
{{- define "random-refresher.webConfig" -}}
{{- $w := .Values.metrics.webConfig }}
{{- if $w.enabled }}
{{- if .Values.staticPod }}
{{- fail "metrics.webConfig.enabled mounts a Secret, which a static Pod cannot: set staticPod=false, or put the file on the node and pass it with extraVolumes, extraVolumeMounts and extraArgs --web-config-file" }}
{{- end }}
{{- if .Values.kubeRBACProxy.enabled }}
{{- fail "metrics.webConfig.enabled and kubeRBACProxy.enabled both lock the metrics port, and the proxy reaches the daemon over plain HTTP: choose one" }}
{{- end }}
{{- if and $w.config $w.existingSecret }}
{{- fail "metrics.webConfig: set config or existingSecret, not both" }}
{{- end }}
{{- if not (or $w.config $w.existingSecret) }}
{{- fail "metrics.webConfig.enabled needs the file: metrics.webConfig.config, or metrics.webConfig.existingSecret (a Secret with the key web-config.yml)" }}
{{- end }}
{{- with $w.config }}{{ with .tls_server_config }}
{{- if eq (toString .client_auth_type) "RequireAndVerifyClientCert" }}
{{- fail "metrics.webConfig.config.tls_server_config.client_auth_type RequireAndVerifyClientCert: the kubelet's HTTPS probes send no client certificate, so every probe would fail its TLS handshake; use VerifyClientCertIfGiven (a certificate that is sent is still verified) with basic_auth_users" }}
{{- end }}
{{- end }}{{ end }}true
{{- end }}
{{- end }}

{{/* Whether the web configuration file has TLS: seen in config, or told by
existingSecretTLS for a Secret the chart cannot read. */}}
{{- define "random-refresher.webConfigTLS" -}}
{{- if include "random-refresher.webConfig" . }}
{{- $w := .Values.metrics.webConfig }}
{{- if $w.existingSecret }}{{ if $w.existingSecretTLS }}true{{ end }}
{{- else if $w.config.tls_server_config }}true{{ end }}
{{- end }}
{{- end }}

{{/* The web configuration file as the chart renders it from config. */}}
{{- define "random-refresher.webConfigFile" -}}
{{- toYaml .Values.metrics.webConfig.config }}
{{- end }}

{{/* The Secret holding the web configuration file: the user's, or the chart's. */}}
{{- define "random-refresher.webConfigSecretName" -}}
{{- with .Values.metrics.webConfig.existingSecret }}{{ . }}{{ else }}{{ include "random-refresher.fullname" . | trunc 52 | trimSuffix "-" }}-web-config{{ end }}
{{- end }}

{{/* The scheme and auth of a monitor's endpoint without kube-rbac-proxy
(dict "monitor" .Values.serviceMonitor "ctx" $): https whenever the web
configuration file has TLS, the monitor's tlsConfig and basicAuth as given. */}}
{{- define "random-refresher.monitorAuth" -}}
{{- $m := .monitor }}
scheme: {{ if include "random-refresher.webConfigTLS" .ctx }}https{{ else }}{{ $m.scheme }}{{ end }}
{{- with $m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The name of the Pod's port that scrapes and probes reach: the daemon's
own, or the proxy's HTTPS port. */}}
{{- define "random-refresher.metricsPortName" -}}
{{- if include "random-refresher.rbacProxy" . }}https-metrics{{ else }}metrics{{ end }}
{{- end }}

{{/* The kube-rbac-proxy image reference, spelled as the daemon's. */}}
{{- define "random-refresher.rbacProxyImage" -}}
{{- $image := .Values.kubeRBACProxy.image }}
{{- $registry := $image.registry }}
{{- with .Values.global }}{{ with .imageRegistry }}{{ $registry = . }}{{ end }}{{ end }}
{{- $repository := $image.repository }}
{{- if $registry }}{{ $repository = printf "%s/%s" $registry $repository }}{{ end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $image.tag }}
{{- end }}
{{- end }}

{{/* A probe (dict "probe" ... "ctx" $): behind the proxy an httpGet probe
goes to the proxy's port over HTTPS (the kubelet does not verify the
certificate, and the proxy passes /healthz and /readyz on unauthenticated);
with a web configuration file that has TLS it goes over HTTPS to the
daemon's own port (which answers /healthz and /readyz without a password). */}}
{{- define "random-refresher.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and (include "random-refresher.rbacProxy" .ctx) (kindIs "map" $probe.httpGet) }}
{{- $_ := set $probe.httpGet "port" "https-metrics" }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- else if and (include "random-refresher.webConfigTLS" .ctx) (kindIs "map" $probe.httpGet) }}
{{- /* The daemon itself speaks TLS; the probe paths need no password. */}}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* The Pod spec shared by the DaemonSets and the static Pod. The static Pod
is host-networked: the kubelet starts it before any API server or network
plugin exists, and a Pod network needs the plugin. */}}
{{- define "random-refresher.podSpec" -}}
{{- if not .Values.staticPod }}
serviceAccountName: {{ include "random-refresher.serviceAccountName" . }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
hostNetwork: {{ .Values.staticPod }}
hostPID: false
hostIPC: false
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: random-refresher
    image: {{ include "random-refresher.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      {{- include "random-refresher.args" . | trim | nindent 6 }}
    env:
      - name: NODE_NAME
        valueFrom:
          fieldRef:
            fieldPath: spec.nodeName
      {{- with .Values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if not (include "random-refresher.rbacProxy" .) }}
    ports:
      - name: metrics
        containerPort: {{ .Values.metrics.port }}
        protocol: TCP
        {{- if .Values.staticPod }}
        # Host network: the port is the node's own (hostPort.* is not used).
        hostPort: {{ .Values.metrics.port }}
        {{- else if .Values.hostPort.enabled }}
        hostPort: {{ .Values.hostPort.port }}
        {{- end }}
    {{- end }}
    {{- with .Values.livenessProbe }}
    livenessProbe:
      {{- include "random-refresher.probe" (dict "probe" . "ctx" $) | nindent 6 }}
    {{- end }}
    {{- with .Values.readinessProbe }}
    readinessProbe:
      {{- include "random-refresher.probe" (dict "probe" . "ctx" $) | nindent 6 }}
    {{- end }}
    resources:
      {{- $resources := deepCopy (default dict .Values.resources) }}
      {{- if and .Values.devicePlugin.enabled (include "random-refresher.usesHwrng" .) }}
      {{- $limits := default dict $resources.limits }}
      {{- $_ := set $limits .Values.devicePlugin.resourceName 1 }}
      {{- $_ := set $resources "limits" $limits }}
      {{- end }}
      {{- toYaml $resources | nindent 6 }}
    securityContext:
      {{- include "random-refresher.securityContext" . | trim | nindent 6 }}
    volumeMounts:
      - name: state
        mountPath: /run/random-refresher
      {{- if .Values.seedFile.enabled }}
      - name: seed
        mountPath: {{ .Values.seedFile.mountPath }}
      {{- end }}
      {{- with .Values.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- if include "random-refresher.webConfig" . }}
      - name: web-config
        mountPath: /etc/random-refresher/web
        readOnly: true
      {{- if .Values.metrics.webConfig.tlsSecretName }}
      - name: web-config-tls
        mountPath: /etc/random-refresher/tls
        readOnly: true
      {{- end }}
      {{- end }}
      {{- if include "random-refresher.hostHwrng" . }}
      # The one device and the one sysfs folder the daemon needs, not the
      # host's /dev and /sys: a read-only mount does not stop writes to
      # device nodes, and the quarantine needs only rng_quality writable.
      - name: host-hwrng
        mountPath: /host/dev/hwrng
        readOnly: true
      - name: host-hw-random
        mountPath: /host/sys/class/misc/hw_random
        readOnly: {{ not (include "random-refresher.quarantine" .) }}
      {{- end }}
  {{- if include "random-refresher.rbacProxy" . }}
  # TLS and RBAC in front of the daemon, which listens on the Pod's loopback.
  - name: kube-rbac-proxy
    image: {{ include "random-refresher.rbacProxyImage" . }}
    imagePullPolicy: {{ .Values.kubeRBACProxy.image.pullPolicy }}
    args:
      - --secure-listen-address=:{{ .Values.kubeRBACProxy.port }}
      - --upstream=http://127.0.0.1:{{ .Values.metrics.port }}/
      - --ignore-paths=/healthz,/readyz
      {{- with .Values.kubeRBACProxy.extraArgs }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    ports:
      - name: https-metrics
        containerPort: {{ .Values.kubeRBACProxy.port }}
        protocol: TCP
        {{- if .Values.hostPort.enabled }}
        hostPort: {{ .Values.hostPort.port }}
        {{- end }}
    # The daemon's probes pass through the proxy; these see that it accepts connections.
    livenessProbe:
      tcpSocket:
        port: https-metrics
      periodSeconds: 30
      timeoutSeconds: 5
    readinessProbe:
      tcpSocket:
        port: https-metrics
      periodSeconds: 10
      timeoutSeconds: 5
    {{- with .Values.kubeRBACProxy.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.kubeRBACProxy.containerSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      # The ServiceAccount token for TokenReview and SubjectAccessReview,
      # mounted in this container only: the daemon never sees it.
      - name: kube-api-access
        mountPath: /var/run/secrets/kubernetes.io/serviceaccount
        readOnly: true
      {{- with .Values.kubeRBACProxy.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- end }}
volumes:
  # The quarantine marker. With the quarantine on it lives in the host's
  # /run: it outlives the Pod (an upgrade, a rescheduling) for as long as
  # the kernel's rng_quality does, and both are reset by a reboot.
  - name: state
    {{- if include "random-refresher.quarantine" . }}
    hostPath:
      path: {{ .Values.hostPaths.state }}
      type: DirectoryOrCreate
    {{- else }}
    emptyDir:
      medium: Memory
      sizeLimit: 1Mi
    {{- end }}
{{- if .Values.seedFile.enabled }}
  # The seed file's folder on the host, for a boot-time seeding tool.
  - name: seed
    hostPath:
      path: {{ .Values.seedFile.hostPath }}
      type: DirectoryOrCreate
{{- end }}
{{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if include "random-refresher.webConfig" . }}
  # The metrics port's web configuration file, and the certificate it names.
  # 0440: the daemon reads them as root (the key before it drops its
  # capabilities, a renewal after), or as a group given by fsGroup.
  - name: web-config
    secret:
      secretName: {{ include "random-refresher.webConfigSecretName" . }}
      defaultMode: 288
{{- with .Values.metrics.webConfig.tlsSecretName }}
  - name: web-config-tls
    secret:
      secretName: {{ . }}
      defaultMode: 288
{{- end }}
{{- end }}
{{- if include "random-refresher.rbacProxy" . }}
  # What automountServiceAccountToken would mount, for the proxy alone.
  - name: kube-api-access
    projected:
      defaultMode: 420
      sources:
        - serviceAccountToken:
            path: token
            expirationSeconds: 3607
        - configMap:
            name: kube-root-ca.crt
            items:
              - key: ca.crt
                path: ca.crt
        - downwardAPI:
            items:
              - path: namespace
                fieldRef:
                  apiVersion: v1
                  fieldPath: metadata.namespace
{{- end }}
{{- if include "random-refresher.hostHwrng" . }}
  - name: host-hwrng
    hostPath:
      path: {{ .Values.hostPaths.hwrng }}
      type: CharDevice
  - name: host-hw-random
    hostPath:
      path: {{ .Values.hostPaths.hwRandom }}
      type: Directory
{{- end }}
{{- with include "random-refresher.nodeSelector" . }}
nodeSelector:
  {{- . | nindent 2 }}
{{- end }}
{{- with include "random-refresher.affinity" . }}
affinity:
  {{- . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}


