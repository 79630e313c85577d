{{/*
Shared pieces of every star1 object. A job's RayJob spec is built once ("star1.rayJobSpec") and used by the
RayJob templates, the RayCronJob's jobTemplate and the CronJob's RayJob template.
*/}}

{{/*
Standard labels; arg: (dict "root" $ "component" NAME ["managedBy" WHO]). Objects Helm does not create (the
nightly's RayJobs, made by the CronJob's pod) pass "managedBy": they must not claim Helm's ownership, or
`helm` and GitOps tools would adopt or prune them.
*/}}
{{- define "star1.labels" -}}
app.kubernetes.io/name: star1
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: star1
{{- if .managedBy }}
app.kubernetes.io/managed-by: {{ .managedBy }}
{{- else }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
{{- end -}}

{{/* A resource name: <release>-<suffix>, checked against a length limit; arg: (list $ suffix max) */}}
{{- define "star1.name" -}}
{{- $root := index . 0 -}}
{{- $name := printf "%s-%s" $root.Release.Name (index . 1) -}}
{{- $max := int (index . 2) -}}
{{- if gt (len $name) $max -}}
{{- fail (printf "name %q is longer than %d characters (KubeRay's limit for this kind): use a shorter release name" $name $max) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "name %q is not a DNS-1035 label: use a lower-case release name starting with a letter" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The image for a variant; arg: (list $ variant) */}}
{{- define "star1.image" -}}
{{- $root := index . 0 -}}
{{- $tag := ternary $root.Values.image.cpuTag $root.Values.image.tag (eq (index . 1) "cpu") -}}
{{- printf "%s:%s" $root.Values.image.repository $tag -}}
{{- end -}}

{{/* S3 URI of the artifact store; arg: $ */}}
{{- define "star1.storeUri" -}}
{{- printf "s3://%s/%s" .Values.s3.bucket .Values.s3.prefix -}}
{{- end -}}

{{/*
Refuse text that holds a secret: a value shaped like a known key format (OpenAI/NVIDIA/HF/AWS/GitHub/Slack,
private keys) or, in a config, a key named like a credential. Secrets reach pods only from Secrets.
arg: (list WHERE TEXT)
*/}}
{{- define "star1.noSecrets" -}}
{{- $where := index . 0 -}}
{{- $text := toString (index . 1) -}}
{{- $shape := "(sk-[A-Za-z0-9_-]{16,}|nvapi-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{16,}|(AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY)" -}}
{{- if regexMatch $shape $text -}}
{{- fail (printf "%s holds something shaped like a secret: keep secrets in a Kubernetes Secret (apiKeys, s3.credentialsSecret), never in values" $where) -}}
{{- end -}}
{{- end -}}

{{/* Single-quote a string for sh -c */}}
{{- define "star1.shellQuote" -}}
{{- printf "'%s'" (replace "'" "'\"'\"'" .) -}}
{{- end -}}

{{/* Pod-level security context (restricted pod-security standard); arg: $ */}}
{{- define "star1.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context (restricted, root filesystem read-only by default); arg: $ */}}
{{- define "star1.containerSecurityContext" -}}
{{ include "star1.autoscalerSecurityContext" . }}
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
{{- end -}}

{{/* The autoscaler sidecar's (restricted; its writable paths are KubeRay's, so its root stays writable); arg: $ */}}
{{- define "star1.autoscalerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "star1.imagePullSecrets" -}}
{{- range .Values.image.pullSecrets }}
- name: {{ . }}
{{- end }}
{{- end -}}

{{/*
Env of every Ray container: S3 settings, credentials and the job's API keys ("keys", a subset of apiKeys.keys)
by reference to Secrets (never values), plain extras, then the pod settings' env ("user", checked).
arg: (dict "root" $ "job" KEY "keys" LIST "extra" LIST-OF-ENV-MAPS ["user" LIST-OF-ENVVARS] ["head" true]:
the head's, where the driver runs, also gets tracking.mlflowUri)
*/}}
{{- define "star1.env" -}}
{{- $v := .root.Values -}}
- name: STAR1_JOB
  value: {{ .job | quote }}
- name: AWS_REGION
  value: {{ $v.s3.region | quote }}
{{- if .head }}
{{- with $v.tracking.mlflowUri }}
- name: MLFLOW_TRACKING_URI
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $v.s3.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ $v.s3.endpoint | quote }}
{{- end }}
{{- if $v.s3.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $v.s3.credentialsSecret }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $v.s3.credentialsSecret }}, key: AWS_SECRET_ACCESS_KEY}
{{- end }}
{{- if $v.apiKeys.secret }}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: {name: {{ $v.apiKeys.secret }}, key: {{ . }}, optional: true}
{{- end }}
{{- end }}
{{- $chartSet := list -}}
{{- range .extra }}{{ $chartSet = append $chartSet .name }}{{ end -}}
{{- range $name, $value := $v.env }}
{{- if has $name $chartSet }}
{{- fail (printf "env.%s is set by the chart (the scratch disk at %s, docs/kubernetes.md \"Scratch disks\"): drop it from env" $name (include "star1.scratchPath" $)) }}
{{- end }}
{{- if regexMatch "(?i)^(.*_)?(api_?key|apikey|key|secret|password|passwd|token|credentials?)(_.*)?$" $name }}
{{- fail (printf "env.%s looks like a secret: create a Secret and list the key under apiKeys.keys instead of a plain value" $name) }}
{{- end }}
{{- include "star1.noSecrets" (list (printf "env.%s" $name) $value) }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- range .extra }}
{{- include "star1.noSecrets" (list .name .value) }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- with .user }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Volumes of a Ray pod: the run config, an in-memory /dev/shm, a writable /tmp ("tmp", its size), and, given
"scratch" (checked storage values), the scratch disk, then the pod settings' ("user"); arg:
(dict "configMap" NAME "shm" SIZE "tmp" SIZE ["scratch" STORAGE] ["user" LIST] ["token" true])
*/}}
{{- define "star1.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shm }}
{{ include "star1.tmpVolume" .tmp }}
{{- with .scratch }}
{{ include "star1.scratchVolume" . }}
{{- end }}
{{- if .token }}
{{ include "star1.autoscalerTokenVolume" . }}
{{- end }}
{{- with .user }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The mounts of those volumes; arg: (dict "root" $ ["scratch" true] ["user" LIST]) */}}
{{- define "star1.volumeMounts" -}}
- name: config
  mountPath: /etc/star1
  readOnly: true
- name: dshm
  mountPath: /dev/shm
- name: tmp
  mountPath: /tmp
{{- if .scratch }}
- name: scratch
  mountPath: {{ include "star1.scratchPath" .root }}
{{- end }}
{{- with .user }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The run config a job reads: configYaml (the whole config as text, e.g. --set-file) or config, over
run_name star1-<job> (stable, so a resubmitted job resumes and skips finished stages) and the chart's S3 store. A store that is not s3:// would vanish with the pod, so it is refused.
Then what the chart knows better than a config file, each refused when the config says otherwise:
  - "require": dotted paths the job cannot run without (train, eval.model, …): missing, the render fails
    naming the value to set;
  - "sandbox" (the Ray resource of the cluster's code sandbox group): eval.sandbox.ray_resource, merged into
    whatever eval.sandbox the config has: generated code then runs only on the sandbox pods;
  - "engine" (the eval cluster's GPU pool): eval.model gets backend ray, device gpu, replicas dp,
    tensor_parallel_size tp and the pool's accelerator type; a judge with a vLLM model (eval.guard.model,
    eval.refusal.model) gets backend ray and device gpu: the driver runs on the head, which has no GPU;
  - "baseline": report.baseline (the nightly's);
  - ray.resource_wait_s from lifecycle.resourceWaitSeconds unless the config sets it.
arg: (dict "root" $ "component" JOB "where" VALUES-PATH "config" MAP "configYaml" TEXT ["require" LIST]
      ["sandbox" RESOURCE] ["engine" (dict "dp" N "tp" N "accelerator" TYPE)] ["baseline" RUN])
*/}}
{{- define "star1.configYaml" -}}
{{- $cfg := deepCopy (.config | default dict) -}}
{{- if .configYaml -}}
{{- $cfg = fromYaml .configYaml -}}
{{- if hasKey $cfg "Error" -}}
{{- fail (printf "%s.configYaml is not a YAML mapping: %s" .where (get $cfg "Error")) -}}
{{- end -}}
{{- end -}}
{{- $base := dict "run_name" (printf "star1-%s" .component) "store" (dict "uri" (include "star1.storeUri" .root)) -}}
{{- $merged := mergeOverwrite $base $cfg -}}
{{- range .require -}}
{{- include "star1.requireKey" (list $merged . $.where) -}}
{{- end -}}
{{- with .sandbox -}}
{{- include "star1.section" (list $merged "eval" $.where) -}}
{{- $eval := get $merged "eval" -}}
{{- include "star1.section" (list $eval "sandbox" (printf "%s: eval" $.where)) -}}
{{- $sb := get $eval "sandbox" -}}
{{- include "star1.pin" (list $sb "ray_resource" . (printf "%s: eval.sandbox.ray_resource" $.where) "its sandbox worker group advertises that; drop the key or disable jobs.eval.sandbox") -}}
{{- end -}}
{{- with .engine -}}
{{- $model := get (get $merged "eval") "model" -}}
{{- if ne (toString (get $model "engine")) "openai" -}}
{{- $why := printf "the eval's GPU pool runs jobs.eval.parallelism {dp: %v, tp: %v}; drop the key or change jobs.eval.parallelism" .dp .tp -}}
{{- $pool := "the engines run on the eval's GPU pool (the head, where the driver runs, has no GPU); drop the key, or use engine: openai" -}}
{{- include "star1.pin" (list $model "backend" "ray" (printf "%s: eval.model.backend" $.where) $pool) -}}
{{- include "star1.pin" (list $model "device" "gpu" (printf "%s: eval.model.device" $.where) $pool) -}}
{{- include "star1.pin" (list $model "replicas" .dp (printf "%s: eval.model.replicas" $.where) $why) -}}
{{- include "star1.pin" (list $model "tensor_parallel_size" .tp (printf "%s: eval.model.tensor_parallel_size" $.where) $why) -}}
{{- with .accelerator -}}
{{- include "star1.pin" (list $model "accelerator_type" . (printf "%s: eval.model.accelerator_type" $.where) "the eval's GPU group has that acceleratorType; drop the key or change jobs.eval.workers") -}}
{{- end -}}
{{- end -}}
{{- range $judge := list "guard" "refusal" -}}
{{- $section := get (get $merged "eval") $judge -}}
{{- if and (kindIs "map" $section) (kindIs "map" (get $section "model")) -}}
{{- $jm := get $section "model" -}}
{{- if ne (toString (get $jm "engine")) "openai" -}}
{{- $why := "the driver runs on the head, which has no GPU, so a vLLM judge runs on the GPU pool (or use engine: openai)" -}}
{{- include "star1.pin" (list $jm "backend" "ray" (printf "%s: eval.%s.model.backend" $.where $judge) $why) -}}
{{- include "star1.pin" (list $jm "device" "gpu" (printf "%s: eval.%s.model.device" $.where $judge) $why) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with .baseline -}}
{{- include "star1.section" (list $merged "report" $.where) -}}
{{- $report := get $merged "report" -}}
{{- include "star1.pin" (list $report "baseline" . (printf "%s: report.baseline" $.where) "from nightly.baseline; drop the key or change nightly.baseline") -}}
{{- end -}}
{{- include "star1.section" (list $merged "ray" .where) -}}
{{- $ray := get $merged "ray" -}}
{{- if not (hasKey $ray "resource_wait_s") -}}
{{- $_ := set $ray "resource_wait_s" .root.Values.lifecycle.resourceWaitSeconds -}}
{{- end -}}
{{- $yaml := toYaml $merged -}}
{{- include "star1.noSecrets" (list .where $yaml) -}}
{{- range regexFindAll "(?m)^[ -]*[A-Za-z0-9_.-]+:" $yaml -1 -}}
{{- $key := trimSuffix ":" (trimAll " -" .) -}}
{{- if and (regexMatch "(?i)^(.*[_-])?(api[_-]?key|apikey|secret|password|passwd|token|credentials?|access[_-]key([_-]id)?)([_-].*)?$" $key) (not (has $key (list "api_key_env" "api_key_file"))) -}}
{{- fail (printf "%s: config key %q looks like a credential: name the env var that holds it (llm.<role>.api_key_env) and put the value in a Secret" $.where $key) -}}
{{- end -}}
{{- end -}}
{{- if not (hasPrefix "s3://" (toString $merged.store.uri)) -}}
{{- fail (printf "%s: store.uri %q is not s3://… — a pod's local disk is gone when the cluster is torn down" .where (toString $merged.store.uri)) -}}
{{- end -}}
{{- $yaml -}}
{{- end -}}

{{/* Make MAP[KEY] a mapping (created empty when absent; null counts as absent); arg: (list MAP KEY WHERE) */}}
{{- define "star1.section" -}}
{{- $m := index . 0 -}}
{{- $k := index . 1 -}}
{{- $v := get $m $k | default dict -}}
{{- if ne (kindOf $v) "map" -}}
{{- fail (printf "%s: %s is not a mapping" (index . 2) $k) -}}
{{- end -}}
{{- $_ := set $m $k $v -}}
{{- end -}}

{{/*
Set MAP[KEY] to VALUE; a different value already there is refused (WHAT is the config path, WHY what to do).
arg: (list MAP KEY VALUE WHAT WHY)
*/}}
{{- define "star1.pin" -}}
{{- $m := index . 0 -}}
{{- $k := index . 1 -}}
{{- $v := index . 2 -}}
{{- $have := toString (get $m $k) -}}
{{- if and (hasKey $m $k) (ne $have "<nil>") (ne $have "") -}}
{{- if ne $have (toString $v) -}}
{{- fail (printf "%s is %s, but the chart sets %s: %s" (index . 3) (get $m $k | toJson) ($v | toJson) (index . 4)) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $m $k $v -}}
{{- end -}}
{{- end -}}

{{/*
Fail unless the dotted PATH of the run config is set to something (a mapping with keys, a string); the
message names the value to set. arg: (list CONFIG PATH WHERE), WHERE being jobs.<job> or nightly
*/}}
{{- define "star1.requireKey" -}}
{{- $cur := index . 0 -}}
{{- $path := index . 1 -}}
{{- $where := index . 2 -}}
{{- $ok := true -}}
{{- range splitList "." $path -}}
{{- if and $ok (kindIs "map" $cur) (hasKey $cur .) -}}
{{- $cur = get $cur . -}}
{{- else -}}
{{- $ok = false -}}
{{- end -}}
{{- end -}}
{{- if or (not $ok) (empty $cur) -}}
{{- $job := trimPrefix "jobs." $where -}}
{{- $submit := ternary "" (printf ", star1 submit k8s %s --config run.yaml" $job) (eq $where "nightly") -}}
{{- $example := ternary "the chart's default jobs.curate.config has one" (printf "helm/examples/%s.yaml has a complete one" $job) (eq $job "curate") -}}
{{- fail (printf "%s.config.%s is required when %s.enabled: set it (%s), or give the whole run config (--set-file %s.configYaml=run.yaml%s), or set %s.enabled=false" $where $path $where $example $where $submit $where) -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding a job's run config; arg: as star1.configYaml plus "component" ["text": the config
already rendered] */}}
{{- define "star1.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .name }}-config
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "star1.labels" (dict "root" .root "component" .component) | nindent 4 }}
data:
  config.yaml: |
    {{- .text | default (include "star1.configYaml" .) | nindent 4 }}
{{- end -}}

{{/*
The GPU/CPU worker groups of a job. eval: maxReplicas = ceil(dp × tp / gpus), and a tensor-parallel group
must fit in one pod. arg: (dict "root" $ "key" JOBKEY "job" JOBVALUES "configMap" NAME "image" IMAGE)
*/}}
{{- define "star1.workerGroups" -}}
{{- $root := .root -}}
{{- $ctx := . -}}
{{- if and (dig "sandbox" "enabled" false .job) (hasKey .job.workers "sandbox") }}
{{- fail (printf "jobs.%s.workers.sandbox: the name is taken by the code sandbox group (jobs.%s.sandbox); rename the group" .key .key) }}
{{- end }}
{{- range $group, $g := .job.workers }}
{{- $max := $g.maxReplicas -}}
{{- $gpus := int ($g.gpus | default 0) -}}
{{- if $ctx.job.parallelism }}
{{- if hasKey $g "maxReplicas" }}
{{- fail (printf "jobs.%s.workers.%s: set parallelism or maxReplicas, not both (maxReplicas is computed from parallelism)" $ctx.key $group) }}
{{- end }}
{{- if lt $gpus 1 }}
{{- fail (printf "jobs.%s.workers.%s: parallelism needs a GPU group (gpus >= 1)" $ctx.key $group) }}
{{- end }}
{{- $tp := int $ctx.job.parallelism.tp -}}
{{- if or (gt $tp $gpus) (ne (mod $gpus $tp) 0) }}
{{- fail (printf "jobs.%s: tp=%d must divide the %d GPUs of a pod (a tensor-parallel group cannot span pods)" $ctx.key $tp $gpus) }}
{{- end }}
{{- $need := mul (int $ctx.job.parallelism.dp) $tp -}}
{{- $max = div (add $need (sub $gpus 1)) $gpus -}}
{{- end }}
{{- if eq (kindOf $max) "invalid" }}
{{- fail (printf "jobs.%s.workers.%s.maxReplicas is required" $ctx.key $group) }}
{{- end }}
{{- if gt (int $g.minReplicas) (int $max) }}
{{- fail (printf "jobs.%s.workers.%s: minReplicas %d > maxReplicas %d" $ctx.key $group (int $g.minReplicas) (int $max)) }}
{{- end }}
{{- $scratch := $g.storage | default (dig "storage" "workers" nil $ctx.job) -}}
{{- $where := ternary (printf "%s.workers.%s.storage" $ctx.where $group) (printf "%s.storage.workers" $ctx.where) (hasKey $g "storage") -}}
{{- include "star1.scratchCheck" (dict "s" $scratch "where" $where "memory" $g.memory "shm" ($g.shmSize | default "1Gi")) }}
{{- $disk := include "star1.ephemeralStorage" (list $root $scratch) -}}
{{- $gwhere := printf "%s.workers.%s" $ctx.where $group -}}
{{- $o := include "star1.podOptions" (list $root.Values.pods $ctx.job.pods $g) | fromJson -}}
{{- include "star1.podOptionsCheck" (dict "o" $o "where" $gwhere "chartEnv" $ctx.chartEnv) -}}
{{- $shm := $g.shmSize | default "1Gi" -}}
{{- $replicas := ternary $max $g.minReplicas $ctx.kueue -}}
- groupName: {{ $group }}
  replicas: {{ $replicas }}
  minReplicas: {{ $replicas }}
  maxReplicas: {{ $max }}
  rayStartParams:
    {{- include "star1.rayStartParams" (dict "root" $root "o" $o "memory" $g.memory "shm" $shm "objectStoreMemory" $g.objectStoreMemory "where" $gwhere) | nindent 4 }}
  {{- if or $gpus $g.acceleratorType }}
  resources:
    {{- if $gpus }}
    GPU: {{ $gpus | quote }}
    {{- end }}
    {{- if $g.acceleratorType }}
    {{ printf "accelerator_type:%s" $g.acceleratorType | quote }}: "1"
    {{- end }}
  {{- end }}
  template:
    metadata:
      {{- include "star1.podMetadata" (dict "labels" (include "star1.labels" (dict "root" $root "component" $ctx.key "managedBy" $ctx.managedBy)) "o" $o) | nindent 6 }}
    spec:
      {{- with include "star1.rayServiceAccount" (dict "root" $root "o" $o) }}
      serviceAccountName: {{ . }}
      {{- end }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automount }}
      securityContext:
        {{- include "star1.podSecurityContext" $root | nindent 8 }}
      {{- with $root.Values.image.pullSecrets }}
      imagePullSecrets:
        {{- include "star1.imagePullSecrets" $root | nindent 8 }}
      {{- end }}
      {{- with include "star1.podPlacement" (dict "o" $o "nodeSelector" (include "star1.groupNodeSelector" (dict "root" $root "g" $g "o" $o) | fromJson)) | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      initContainers:
        {{- include "star1.scratchInit" (dict "root" $root "image" $ctx.image) | nindent 8 }}
      containers:
        - name: ray-worker
          image: {{ $ctx.image }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- $res := dict "cpu" (toString $g.cpu) "memory" (toString $g.memory) -}}
          {{- if $gpus }}{{ $_ := set $res "nvidia.com/gpu" (toString $gpus) }}{{ end -}}
          {{- with $disk }}{{ $_ := set $res "ephemeral-storage" . }}{{ end -}}
          {{- range $k, $n := $o.extendedResources }}{{ $_ := set $res $k (toString $n) }}{{ end }}
          resources:
            requests:
              {{- toYaml $res | nindent 14 }}
            limits:
              {{- toYaml $res | nindent 14 }}
          env:
            {{- include "star1.env" (dict "root" $root "job" $ctx.key "keys" $ctx.keys "extra" (include "star1.scratchEnv" (dict "head" false) | fromJsonArray) "user" $o.env) | nindent 12 }}
          {{- with $o.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "star1.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            {{- include "star1.volumeMounts" (dict "root" $root "scratch" true "user" $o.volumeMounts) | nindent 12 }}
      volumes:
        {{- include "star1.volumes" (dict "configMap" $ctx.configMap "shm" $shm "tmp" $root.Values.storageMargin "scratch" $scratch "user" $o.volumes) | nindent 8 }}
{{- end }}
{{- end -}}

{{/*
A RayJob spec. arg: (dict "root" $ "key" JOBKEY "job" JOBVALUES "command" CMD "configMap" NAME "extraEnv" LIST
["managedBy" WHO]: the pods' managed-by label when Helm does not create the RayJob)
The entrypoint runs the command under star1.deploy.runlog: the driver log and a run manifest go to
s3://<bucket>/<prefix>/_runs/<job>/ before the job ends, so they survive the cluster's teardown, and a command
that exits 5 (incomplete) or 7 (infrastructure) is run again in place, lifecycle.retries times at most.
*/}}
{{- define "star1.rayJobSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $image := include "star1.image" (list $root .job.variant) -}}
{{- $headImage := include "star1.image" (list $root (.job.headVariant | default .job.variant)) -}}
{{- $cpuImage := include "star1.image" (list $root "cpu") -}}
{{- include "star1.noSecrets" (list (printf "the %s command" .key) .command) -}}
{{- $where := printf "jobs.%s" (ternary "eval" .key (eq .key "nightly")) -}}
{{- $headScratch := dig "storage" "head" nil .job -}}
{{- $head := merge (pick (.job.head | default dict) "cpu" "memory" "shmSize" "objectStoreMemory") (pick $v.head "cpu" "memory" "shmSize" "objectStoreMemory") -}}
{{- include "star1.scratchCheck" (dict "s" $headScratch "where" (printf "%s.storage.head" $where) "memory" $head.memory "shm" $head.shmSize) -}}
{{- $headDisk := include "star1.ephemeralStorage" (list $root $headScratch) -}}
{{- $kueue := $v.kueue.enabled -}}
{{- $autoscale := not $kueue -}}
{{- if and $kueue (ne $v.lifecycle.cleanup "shutdown") -}}
{{- fail "kueue.enabled needs lifecycle.cleanup: shutdown (Kueue requires shutdownAfterJobFinishes: the cluster goes when the job ends)" -}}
{{- end -}}
{{- if and $kueue (gt (len (keys .job.workers)) (ternary 6 7 (dig "sandbox" "enabled" false .job))) -}}
{{- fail (printf "%s.workers: Kueue admits at most 7 worker groups (8 PodSets with the head), the code sandbox included" $where) -}}
{{- end -}}
{{- $chartEnv := list "STAR1_JOB" "AWS_REGION" "MLFLOW_TRACKING_URI" "AWS_ENDPOINT_URL" "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "RAY_JOB_STOP_WAIT_TIME_S" "RAY_TMPDIR" -}}
{{- range (include "star1.scratchDirs" $root | fromJsonArray) }}{{ $chartEnv = append $chartEnv (index . 0) }}{{ end -}}
{{- $chartEnv = concat $chartEnv $v.apiKeys.keys -}}
{{- $ho := include "star1.podOptions" (list $v.pods $v.head .job.pods .job.head) | fromJson -}}
{{- include "star1.podOptionsCheck" (dict "o" $ho "where" (printf "%s.head" $where) "chartEnv" $chartEnv) -}}
{{- $token := and $autoscale (not $v.serviceAccount.automount) -}}
entrypoint: {{ printf "python -m star1.deploy.runlog --to %s/_runs/%s --cwd %s --retries %v --retry-delay %v -- sh -c %s" (include "star1.storeUri" $root) .key $v.workingDir $v.lifecycle.retries $v.lifecycle.retryDelaySeconds (include "star1.shellQuote" .command) | quote }}
submissionMode: K8sJobMode
activeDeadlineSeconds: {{ $v.lifecycle.activeDeadlineSeconds }}
preRunningDeadlineSeconds: {{ $v.lifecycle.preRunningDeadlineSeconds }}
backoffLimit: {{ $v.lifecycle.backoffLimit }}
{{- if eq $v.lifecycle.cleanup "shutdown" }}
shutdownAfterJobFinishes: true
ttlSecondsAfterFinished: {{ $v.lifecycle.ttlSecondsAfterFinished }}
{{- else }}
deletionStrategy:
  deletionRules:
    - {policy: DeleteCluster, condition: {jobStatus: SUCCEEDED, ttlSeconds: {{ $v.lifecycle.ttlSecondsAfterFinished }}}}
    - {policy: DeleteCluster, condition: {jobStatus: FAILED, ttlSeconds: {{ $v.lifecycle.keepFailedSeconds }}}}
    - {policy: DeleteCluster, condition: {jobDeploymentStatus: Failed, ttlSeconds: {{ $v.lifecycle.keepFailedSeconds }}}}
    - {policy: DeleteSelf, condition: {jobStatus: SUCCEEDED, ttlSeconds: {{ $v.lifecycle.deleteRayJobAfterSeconds }}}}
    - {policy: DeleteSelf, condition: {jobStatus: FAILED, ttlSeconds: {{ $v.lifecycle.deleteRayJobAfterSeconds }}}}
{{- end }}
submitterConfig:
  backoffLimit: {{ $v.lifecycle.submitterBackoffLimit }}
{{- if $kueue }}
suspend: true
{{- end }}
submitterPodTemplate:
  metadata:
    labels:
      {{- include "star1.labels" (dict "root" $root "component" (printf "%s-submitter" .key) "managedBy" .managedBy) | nindent 6 }}
  spec:
    restartPolicy: Never
    automountServiceAccountToken: false
    volumes:
      {{- include "star1.tmpVolume" "1Gi" | nindent 6 }}
    securityContext:
      {{- include "star1.podSecurityContext" $root | nindent 6 }}
    {{- with $v.image.pullSecrets }}
    imagePullSecrets:
      {{- include "star1.imagePullSecrets" $root | nindent 6 }}
    {{- end }}
    containers:
      - name: ray-job-submitter
        image: {{ $cpuImage }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        resources:
          requests: {cpu: {{ $v.submitter.cpu | quote }}, memory: {{ $v.submitter.memory | quote }}}
          limits: {cpu: {{ $v.submitter.cpu | quote }}, memory: {{ $v.submitter.memory | quote }}}
        env:
          - {name: HOME, value: /tmp}
        securityContext:
          {{- include "star1.containerSecurityContext" $root | nindent 10 }}
        volumeMounts:
          - {name: tmp, mountPath: /tmp}
rayClusterSpec:
  rayVersion: {{ $v.rayVersion | quote }}
  authOptions:
    mode: {{ $v.ray.auth }}
  enableInTreeAutoscaling: {{ $autoscale }}
  {{- if $autoscale }}
  autoscalerOptions:
    version: v2
    upscalingMode: {{ $v.autoscaler.upscalingMode }}
    idleTimeoutSeconds: {{ $v.autoscaler.idleTimeoutSeconds }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    resources:
      requests: {cpu: {{ $v.autoscaler.cpu | quote }}, memory: {{ $v.autoscaler.memory | quote }}}
      limits: {cpu: {{ $v.autoscaler.cpu | quote }}, memory: {{ $v.autoscaler.memory | quote }}}
    securityContext:
      {{- include "star1.autoscalerSecurityContext" $root | nindent 6 }}
    {{- if $token }}
    # the head pod mounts no token; only this sidecar gets the account's (the driver cannot act as it)
    volumeMounts:
      - {name: autoscaler-token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
    {{- end }}
  {{- end }}
  headGroupSpec:
    rayStartParams:
      {{- include "star1.rayStartParams" (dict "root" $root "o" $ho "memory" $head.memory "shm" $head.shmSize "objectStoreMemory" $head.objectStoreMemory "where" (printf "%s.head" $where)) | nindent 6 }}
    resources:
      CPU: "0"
      GPU: "0"
    template:
      metadata:
        {{- include "star1.podMetadata" (dict "labels" (include "star1.labels" (dict "root" $root "component" .key "managedBy" .managedBy)) "o" $ho) | nindent 8 }}
      spec:
        {{- with include "star1.rayServiceAccount" (dict "root" $root "o" $ho) }}
        serviceAccountName: {{ . }}
        {{- end }}
        automountServiceAccountToken: {{ $v.serviceAccount.automount }}
        {{- with include "star1.podPlacement" (dict "o" $ho "nodeSelector" $ho.nodeSelector) | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        securityContext:
          {{- include "star1.podSecurityContext" $root | nindent 10 }}
        {{- with $v.image.pullSecrets }}
        imagePullSecrets:
          {{- include "star1.imagePullSecrets" $root | nindent 10 }}
        {{- end }}
        initContainers:
          {{- include "star1.scratchInit" (dict "root" $root "image" $headImage) | nindent 10 }}
        containers:
          - name: ray-head
            image: {{ $headImage }}
            imagePullPolicy: {{ $v.image.pullPolicy }}
            ports:
              - {containerPort: 6379, name: gcs-server}
              - {containerPort: 8265, name: dashboard}
              - {containerPort: 10001, name: client}
            {{- $res := dict "cpu" (toString $head.cpu) "memory" (toString $head.memory) -}}
            {{- with $headDisk }}{{ $_ := set $res "ephemeral-storage" . }}{{ end -}}
            {{- range $k, $n := $ho.extendedResources }}{{ $_ := set $res $k (toString $n) }}{{ end }}
            resources:
              requests:
                {{- toYaml $res | nindent 16 }}
              limits:
                {{- toYaml $res | nindent 16 }}
            env:
              {{- $extra := append (.extraEnv | default list) (dict "name" "RAY_JOB_STOP_WAIT_TIME_S" "value" (toString $v.lifecycle.stopWaitSeconds)) }}
              {{- $extra = concat $extra (include "star1.scratchEnv" (dict "head" true) | fromJsonArray) }}
              {{- include "star1.env" (dict "root" $root "job" .key "keys" .keys "extra" $extra "user" $ho.env "head" true) | nindent 14 }}
            {{- with $ho.envFrom }}
            envFrom:
              {{- toYaml . | nindent 14 }}
            {{- end }}
            securityContext:
              {{- include "star1.containerSecurityContext" $root | nindent 14 }}
            volumeMounts:
              {{- include "star1.volumeMounts" (dict "root" $root "scratch" true "user" $ho.volumeMounts) | nindent 14 }}
        volumes:
          {{- include "star1.volumes" (dict "configMap" .configMap "shm" $head.shmSize "tmp" $v.storageMargin "scratch" $headScratch "user" $ho.volumes "token" $token) | nindent 10 }}
  workerGroupSpecs:
    {{- include "star1.workerGroups" (dict "root" $root "key" .key "where" $where "job" .job "configMap" .configMap "image" $image "managedBy" .managedBy "keys" (include "star1.workerKeys" .keys | fromJsonArray) "chartEnv" $chartEnv "kueue" $kueue) | trim | nindent 4 }}
    {{- if dig "sandbox" "enabled" false .job }}
    {{- include "star1.sandboxGroup" (dict "root" $root "key" .key "job" .job "configMap" .configMap "managedBy" .managedBy "kueue" $kueue) | trim | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
A job's objects, the body of templates/<job>.yaml: the sandbox NetworkPolicy when the job has the sandbox group
(first, so that `kubectl apply -f` makes it before any pod), the ConfigMap, the RayJob; arg: (list $ KEY)
*/}}
{{- define "star1.jobManifests" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $job := index $root.Values.jobs $key -}}
{{- if $job.enabled -}}
{{- $name := include "star1.name" (list $root $key 47) -}}
{{- $sandbox := include "star1.sandboxResourceFor" $job -}}
{{- if $sandbox }}
{{- include "star1.sandboxNetworkPolicy" (dict "root" $root "name" $name "component" $key "job" $job) }}
---
{{ end }}
{{- $require := get (dict "curate" (list "llm") "sft" (list "train" "train.model") "eval" (list "eval.model" "eval.model.path")) $key -}}
{{- $engine := ternary (include "star1.engineFor" $job | fromYaml) dict (eq $key "eval") -}}
{{- $args := dict "root" $root "name" $name "component" $key "where" (printf "jobs.%s" $key) "config" $job.config "configYaml" $job.configYaml "sandbox" $sandbox "require" $require "engine" $engine -}}
{{- $text := include "star1.configYaml" $args -}}
{{- $keys := include "star1.jobSecretKeys" (dict "root" $root "config" (fromYaml $text) "extra" $job.secretKeys) | fromJsonArray -}}
{{- include "star1.configMap" (set $args "text" $text) }}
---
apiVersion: ray.io/v1
kind: RayJob
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  {{- include "star1.rayJobMetadata" (dict "root" $root "component" $key "meta" $job.rayJob "queue" $job.queueName) | nindent 2 }}
spec:
  {{- include "star1.rayJobSpec" (dict "root" $root "key" $key "job" $job "command" $job.command "configMap" (printf "%s-config" $name) "keys" $keys) | nindent 2 }}
{{- end -}}
{{- end -}}


{{/*
The eval cluster's GPU pool as the eval engine sees it: dp, tp (jobs.eval.parallelism) and the groups'
acceleratorType when they share one; "" without parallelism. arg: JOBVALUES (jobs.eval)
*/}}
{{- define "star1.engineFor" -}}
{{- with .parallelism -}}
{{- $types := list -}}
{{- range $g := $.workers -}}
{{- if $g.acceleratorType -}}
{{- $types = append $types $g.acceleratorType | uniq -}}
{{- end -}}
{{- end -}}
dp: {{ .dp }}
tp: {{ .tp }}
{{- if eq (len $types) 1 }}
accelerator: {{ first $types | quote }}
{{- end }}
{{- end -}}
{{- end -}}


{{/*
Scratch disks (jobs.<job>.storage, workers.<group>.storage): one volume per Ray pod, mounted at /scratch, where
every local cache and temporary file of star1, Ray, DeepSpeed, Hugging Face and vLLM goes (star1.scratchEnv):
model downloads, ZeRO-3 checkpoint staging, resume downloads, the exported model, vLLM's compile caches.
Kinds: emptyDir (node disk, or tmpfs with medium Memory), pvc (an existing claim, or a fresh ephemeral claim
per pod), hostPath (node-local NVMe).
*/}}
{{- define "star1.scratchPath" -}}
/scratch
{{- end -}}

{{/*
The scratch folders and the env vars that point at them: (list (list NAME FOLDER) …) as JSON. TMPDIR moves
Python's tempfile (star1's checkpoint staging and export, Ray Train's resume download, DeepSpeed) and, on
workers, Ray's session folder (logs, spilled objects); XDG_CACHE_HOME catches any other ~/.cache user.
*/}}
{{- define "star1.scratchDirs" -}}
{{- $p := include "star1.scratchPath" . -}}
{{- list (list "STAR1_CACHE" (printf "%s/star1" $p)) (list "TMPDIR" (printf "%s/tmp" $p)) (list "HF_HOME" (printf "%s/hf" $p)) (list "VLLM_CACHE_ROOT" (printf "%s/vllm" $p)) (list "TORCH_EXTENSIONS_DIR" (printf "%s/torch_extensions" $p)) (list "TRITON_CACHE_DIR" (printf "%s/triton" $p)) (list "XDG_CACHE_HOME" (printf "%s/cache" $p)) (list "DG_JIT_CACHE_DIR" (printf "%s/deep_gemm" $p)) (list "HOME" (printf "%s/home" $p)) | toJson -}}
{{- end -}}

{{/*
Env of a Ray container with a scratch disk, as a list for star1.env's "extra"; arg: (dict "head" BOOL).
The head keeps Ray's own folder at /tmp/ray (RAY_TMPDIR=/tmp): KubeRay shares that folder with the
autoscaler sidecar, whose log the head streams to the driver.
*/}}
{{- define "star1.scratchEnv" -}}
{{- $env := list -}}
{{- range (include "star1.scratchDirs" . | fromJsonArray) -}}
{{- $env = append $env (dict "name" (index . 0) "value" (index . 1)) -}}
{{- end -}}
{{- if .head -}}
{{- $env = append $env (dict "name" "RAY_TMPDIR" "value" "/tmp") -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* A Kubernetes quantity in bytes (an integer); arg: QUANTITY */}}
{{- define "star1.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "m" 0.001 -}}
{{- $suffix := regexFind "[A-Za-z]+$" $q -}}
{{- $mult := 1.0 -}}
{{- if $suffix -}}
{{- $mult = get $units $suffix -}}
{{- end -}}
{{- printf "%d" (int64 (ceil (mulf (float64 (trimSuffix $suffix $q)) $mult))) -}}
{{- end -}}

{{/*
Check a scratch disk's values; the messages name the value. arg: (dict "s" STORAGE "where" VALUES-PATH
"memory" POD-MEMORY "shm" SHM-SIZE)
*/}}
{{- define "star1.scratchCheck" -}}
{{- $s := .s -}}
{{- $w := .where -}}
{{- if not (kindIs "map" $s) -}}
{{- fail (printf "%s is required: the pod's scratch disk at %s (docs/kubernetes.md, \"Scratch disks\")" $w (include "star1.scratchPath" .)) -}}
{{- end -}}
{{- $fields := dict "emptyDir" (list "sizeLimit" "medium") "pvc" (list "claimName" "storageClassName" "size") "hostPath" (list "path" "type") -}}
{{- $own := get $fields (toString $s.kind) -}}
{{- range $key, $_ := $s -}}
{{- if and (ne $key "kind") (not (has $key $own)) -}}
{{- fail (printf "%s.%s is not a setting of kind %s (it takes %s); a values file merges into the chart's defaults: set %s: null to drop theirs" $w $key $s.kind (join ", " $own) $key) -}}
{{- end -}}
{{- end -}}
{{- if eq $s.kind "emptyDir" -}}
{{- if not $s.sizeLimit -}}
{{- fail (printf "%s.sizeLimit is required for kind emptyDir: the disk's cap, requested as ephemeral-storage (docs/kubernetes.md sizes it per preset)" $w) -}}
{{- end -}}
{{- if eq (toString $s.medium) "Memory" -}}
{{- $need := add (include "star1.bytes" $s.sizeLimit | int64) (include "star1.bytes" .shm | int64) -}}
{{- if gt $need (include "star1.bytes" .memory | int64) -}}
{{- fail (printf "%s: medium Memory puts sizeLimit %s in RAM, and with the %s /dev/shm that is more than the pod's memory %s: raise memory, or use the node's disk (medium \"\")" $w $s.sizeLimit .shm .memory) -}}
{{- end -}}
{{- end -}}
{{- else if eq $s.kind "pvc" -}}
{{- if and $s.claimName (or $s.storageClassName $s.size) -}}
{{- fail (printf "%s: claimName mounts an existing claim; storageClassName and size make a fresh one per pod: set one or the other" $w) -}}
{{- end -}}
{{- if and $s.storageClassName (not $s.size) (not $s.claimName) -}}
{{- fail (printf "%s.size is required with storageClassName %q: the size of the fresh claim each pod gets" $w $s.storageClassName) -}}
{{- end -}}
{{- if not (or $s.claimName $s.size) -}}
{{- fail (printf "%s: kind pvc needs claimName (an existing claim) or size (a fresh claim per pod, of storageClassName or the cluster's default class)" $w) -}}
{{- end -}}
{{- else if eq $s.kind "hostPath" -}}
{{- if not $s.path -}}
{{- fail (printf "%s.path is required for kind hostPath: a folder on the node, e.g. /mnt/nvme/star1" $w) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The scratch volume of a pod; arg: STORAGE (checked) */}}
{{- define "star1.scratchVolume" -}}
- name: scratch
{{- if eq .kind "emptyDir" }}
  emptyDir:
    {{- if .medium }}
    medium: {{ .medium }}
    {{- end }}
    sizeLimit: {{ .sizeLimit }}
{{- else if and (eq .kind "pvc") .claimName }}
  persistentVolumeClaim:
    claimName: {{ .claimName }}
{{- else if eq .kind "pvc" }}
  ephemeral:
    volumeClaimTemplate:
      spec:
        accessModes: [ReadWriteOnce]
        {{- with .storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .size }}
{{- else }}
  hostPath:
    path: {{ .path }}
    type: {{ .type | default "DirectoryOrCreate" }}
{{- end }}
{{- end -}}

{{/*
The ephemeral-storage a Ray container requests (and is limited to): a disk-backed emptyDir's sizeLimit plus
storageMargin (the container's writable layer, its logs, KubeRay's /tmp/ray on the head); "" for the other
kinds, whose space is not the node's ephemeral storage. arg: (list $ STORAGE)
*/}}
{{- define "star1.ephemeralStorage" -}}
{{- $root := index . 0 -}}
{{- $s := index . 1 -}}
{{- if and (eq $s.kind "emptyDir") (ne (toString $s.medium) "Memory") -}}
{{- $total := add (include "star1.bytes" $s.sizeLimit | int64) (include "star1.bytes" $root.Values.storageMargin | int64) -}}
{{- $gi := 1073741824 -}}
{{- if eq (mod $total $gi) 0 -}}
{{- printf "%dGi" (div $total $gi) -}}
{{- else -}}
{{- printf "%dMi" (div (add $total 1048575) 1048576) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The init container that makes the scratch folders (TMPDIR must exist before anything runs: Python's tempfile
would quietly fall back to /tmp, in the container's writable layer), as the pod's user: a disk it cannot
write to fails here, naming the folder. arg: (dict "root" $ "image" IMAGE)
*/}}
{{- define "star1.scratchInit" -}}
{{- $dirs := list -}}
{{- range (include "star1.scratchDirs" .root | fromJsonArray) -}}
{{- $dirs = append $dirs (index . 1) -}}
{{- end -}}
- name: scratch-dirs
  image: {{ .image }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: [mkdir, -p, {{ join ", " $dirs }}]
  resources:
    requests: {cpu: 100m, memory: 64Mi}
    limits: {cpu: 100m, memory: 64Mi}
  securityContext:
    {{- include "star1.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    - name: scratch
      mountPath: {{ include "star1.scratchPath" .root }}
{{- end -}}


{{/*
A RayJob's labels and annotations: the chart's labels over rayJob's and the job's ("meta"), and with kueue
the queue (the job's "queue", else kueue.queueName) and priority class. arg: (dict "root" $ "component" KEY
"meta" {labels, annotations} "queue" NAME ["managedBy" WHO] ["where" VALUES-PATH])
*/}}
{{- define "star1.rayJobMetadata" -}}
{{- $v := .root.Values -}}
{{- $labels := merge (fromYaml (include "star1.labels" (dict "root" .root "component" .component "managedBy" .managedBy))) (deepCopy (dig "labels" dict (.meta | default dict))) (deepCopy $v.rayJob.labels) -}}
{{- $annotations := merge (deepCopy (dig "annotations" dict (.meta | default dict))) (deepCopy $v.rayJob.annotations) -}}
{{- if $v.kueue.enabled -}}
{{- $queue := .queue | default $v.kueue.queueName -}}
{{- if not $queue -}}
{{- fail (printf "kueue.enabled: the %s RayJob has no queue: set kueue.queueName (a LocalQueue in this namespace) or %s.queueName" .component (ternary "nightly" (printf "jobs.%s" .component) (eq .component "nightly"))) -}}
{{- end -}}
{{- $_ := set $labels "kueue.x-k8s.io/queue-name" $queue -}}
{{- with $v.kueue.priorityClass -}}
{{- $_ := set $labels "kueue.x-k8s.io/priority-class" . -}}
{{- end -}}
{{- end -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
