{{/*
The code sandbox (jobs.eval.sandbox): where generated programs (HumanEval) run on Kubernetes, because most
clusters deny pods the unprivileged user namespaces bubblewrap needs. A CPU worker group of the eval cluster
(and of the nightly one, which has the eval's shape) that
  - holds no secret: no env or volume from a Secret, no service-account token; STAR1_SANDBOX_POD=1 tells
    star1 this pod is the isolation boundary;
  - advertises the Ray resource star1_sandbox, one per CPU, and CPU 0: only tasks that ask for star1_sandbox
    (eval.sandbox.ray_resource, with num_cpus=0) are placed there, and no other task of the job is;
  - may run under another runtime (runtimeClassName, e.g. gvisor);
  - is fenced by a NetworkPolicy: egress only to the Ray pods of its own job and to DNS, ingress only from
    those pods.
*/}}

{{/* The Ray resource the sandbox group advertises and eval.sandbox.ray_resource names */}}
{{- define "star1.sandboxResource" -}}
star1_sandbox
{{- end -}}

{{/* The label that marks sandbox pods (and only them) */}}
{{- define "star1.sandboxLabel" -}}
star1.io/sandbox: "true"
{{- end -}}

{{/* The Ray resource for a job's config when its cluster has the sandbox group, else ""; arg: JOBVALUES */}}
{{- define "star1.sandboxResourceFor" -}}
{{- if dig "sandbox" "enabled" false . -}}
{{- include "star1.sandboxResource" . -}}
{{- end -}}
{{- end -}}

{{/*
Labels that pick the Ray pods of one job's cluster: the chart's release and component labels (the RayCluster
name has a random suffix KubeRay chooses, so it cannot be selected ahead) and KubeRay's ray.io/is-ray-node,
which excludes the submitter and the nightly creator. arg: (dict "root" $ "component" KEY)
*/}}
{{- define "star1.rayPodSelector" -}}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
ray.io/is-ray-node: "yes"
{{- end -}}

{{/*
The sandbox worker group; arg: (dict "root" $ "key" JOBKEY "job" JOBVALUES "configMap" NAME)
The run config is mounted as in every Ray pod: `star1 submit k8s` creates the NetworkPolicy before the
ConfigMap, so no pod of the cluster starts before the policy exists.
*/}}
{{- define "star1.sandboxGroup" -}}
{{- $root := .root -}}
{{- $s := .job.sandbox -}}
{{- $cpus := int (toString $s.cpu) -}}
{{- $shared := include "star1.podOptions" (list $root.Values.pods .job.pods) | fromJson -}}
{{- $o := dict "labels" (merge (deepCopy ($s.labels | default dict)) $shared.labels) "annotations" (merge (deepCopy ($s.annotations | default dict)) $shared.annotations) -}}
- groupName: sandbox
  replicas: {{ $s.replicas }}
  minReplicas: {{ $s.replicas }}
  maxReplicas: {{ $s.replicas }}
  rayStartParams:
    {{- include "star1.rayStartParams" (dict "root" $root "o" (dict "rayStartParams" dict) "memory" $s.memory "shm" $s.shmSize "where" "jobs.eval.sandbox") | nindent 4 }}
  # KubeRay turns this into `ray start --num-cpus=0 --resources='{"star1_sandbox": N}'` (it refuses the same
  # keys in rayStartParams as well): nothing but sandbox tasks lands here, one program per CPU.
  resources:
    CPU: "0"
    {{ include "star1.sandboxResource" $root }}: {{ $cpus | quote }}
  template:
    metadata:
      {{- include "star1.podMetadata" (dict "labels" (include "star1.labels" (dict "root" $root "component" .key "managedBy" .managedBy)) "extra" (include "star1.sandboxLabel" $root) "o" $o) | nindent 6 }}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $s.runtimeClassName }}
      runtimeClassName: {{ . }}
      {{- end }}
      {{- with ($s.priorityClassName | default $shared.priorityClassName) }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $s.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "star1.podSecurityContext" $root | nindent 8 }}
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- include "star1.imagePullSecrets" $root | nindent 8 }}
      {{- end }}
      {{- with $s.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $s.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: ray-worker
          image: {{ include "star1.image" (list $root "cpu") }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          resources:
            requests: {cpu: {{ $s.cpu | quote }}, memory: {{ $s.memory | quote }}}
            limits: {cpu: {{ $s.cpu | quote }}, memory: {{ $s.memory | quote }}}
          # only these: no S3 settings or keys, no API keys, not even the chart's plain `env`
          env:
            - name: STAR1_SANDBOX_POD
              value: "1"
            - name: STAR1_JOB
              value: {{ .key | quote }}
            - name: HOME
              value: /tmp
          securityContext:
            {{- include "star1.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "star1.volumeMounts" (dict "root" $root) | nindent 12 }}
      volumes:
        {{- include "star1.volumes" (dict "configMap" .configMap "shm" $s.shmSize "tmp" ($s.tmpSize | default "4Gi")) | nindent 8 }}
{{- end -}}

{{/*
The NetworkPolicy around a job's sandbox pods; arg: (dict "root" $ "name" JOBNAME "component" KEY "job" JOBVALUES)
Egress: the Ray pods of the same job (GCS, raylets, object managers: Ray picks most of those ports at random,
so all ports) and DNS (workers reach the head by its Service name); nothing else. Ingress: those pods only.
*/}}
{{- define "star1.sandboxNetworkPolicy" -}}
{{- $s := .job.sandbox -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .name }}-sandbox
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "star1.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .root.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
      {{- include "star1.sandboxLabel" .root | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- include "star1.rayPodSelector" . | nindent 14 }}
  egress:
    - to:
        - podSelector:
            matchLabels:
              {{- include "star1.rayPodSelector" . | nindent 14 }}
    {{- include "star1.dnsEgress" $s.dns | nindent 4 }}
{{- end -}}

{{/* The egress rule to the cluster's DNS pods, port 53; arg: {namespace, podSelector "k=v[,k=v]"} */}}
{{- define "star1.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .namespace }}
      podSelector:
        matchLabels:
          {{- range splitList "," .podSelector }}
          {{- $kv := splitn "=" 2 . }}
          {{ $kv._0 | quote }}: {{ $kv._1 | quote }}
          {{- end }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}
