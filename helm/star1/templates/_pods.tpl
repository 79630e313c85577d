{{/*
Open pod settings (values `pods`, `head`, jobs.<job>.pods / .head / .workers.<group>), layered like KubeRay's
ray-cluster chart: maps merge (a later layer wins a key), lists add up, a scalar is the last layer's that sets
one. The chart's own labels, env, volumes and ray start settings always win or are refused when contradicted.
*/}}

{{/* The merged pod settings of LAYERS (maps; nil skipped), as JSON; arg: (list LAYER …) */}}
{{- define "star1.podOptions" -}}
{{- $out := dict "labels" dict "annotations" dict "nodeSelector" dict "rayStartParams" dict "extendedResources" dict "tolerations" list "env" list "envFrom" list "volumes" list "volumeMounts" list "affinity" dict "priorityClassName" "" "runtimeClassName" "" "serviceAccountName" "" -}}
{{- range $layer := . -}}
{{- if kindIs "map" $layer -}}
{{- range $k := list "labels" "annotations" "nodeSelector" "rayStartParams" "extendedResources" -}}
{{- $_ := set $out $k (merge (deepCopy (get $layer $k | default dict)) (get $out $k)) -}}
{{- end -}}
{{- range $k := list "tolerations" "env" "envFrom" "volumes" "volumeMounts" -}}
{{- $_ := set $out $k (concat (get $out $k) (get $layer $k | default list)) -}}
{{- end -}}
{{- range $k := list "affinity" "priorityClassName" "runtimeClassName" "serviceAccountName" -}}
{{- with get $layer $k -}}
{{- $_ := set $out $k . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Check merged pod settings; WHERE names the values. Plain env values go through the same secret checks as
`env`; names the chart sets are refused; rayStartParams may not restate what the chart derives.
arg: (dict "o" OPTIONS "where" WHERE "chartEnv" LIST-OF-NAMES)
*/}}
{{- define "star1.podOptionsCheck" -}}
{{- $where := .where -}}
{{- range .o.env -}}
{{- if has .name $.chartEnv -}}
{{- fail (printf "%s: env %s is set by the chart: drop it" $where .name) -}}
{{- end -}}
{{- if hasKey . "value" -}}
{{- if regexMatch "(?i)^(.*_)?(api_?key|apikey|key|secret|password|passwd|token|credentials?)(_.*)?$" .name -}}
{{- fail (printf "%s: env %s looks like a secret: give it valueFrom.secretKeyRef, or list the key under apiKeys.keys" $where .name) -}}
{{- end -}}
{{- include "star1.noSecrets" (list (printf "%s: env %s" $where .name) .value) -}}
{{- end -}}
{{- end -}}
{{- range $k, $_ := .o.rayStartParams -}}
{{- if has $k (list "num-cpus" "num-gpus" "resources" "memory") -}}
{{- fail (printf "%s: rayStartParams.%s is the chart's (from the group's cpu, gpus, resources and memory): set those instead" $where $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Pod metadata: the chart's labels over the settings' labels, and the settings' annotations; arg:
(dict "labels" CHART-LABELS-YAML "o" OPTIONS "extra" EXTRA-LABELS-YAML) */}}
{{- define "star1.podMetadata" -}}
{{- $labels := merge (fromYaml .labels) (fromYaml (.extra | default "")) (deepCopy .o.labels) -}}
labels:
  {{- toYaml $labels | nindent 2 }}
{{- with .o.annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Scheduling fields of a pod spec from settings (nodeSelector given separately); arg: (dict "o" OPTIONS "nodeSelector" MAP) */}}
{{- define "star1.podPlacement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .o.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .o.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .o.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .o.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* The service account of a Ray pod: the settings' serviceAccountName, else serviceAccount's, else "" */}}
{{- define "star1.rayServiceAccount" -}}
{{- $sa := .root.Values.serviceAccount -}}
{{- if .o.serviceAccountName -}}
{{- .o.serviceAccountName -}}
{{- else if $sa.name -}}
{{- $sa.name -}}
{{- else if $sa.create -}}
{{- printf "%s-star1" .root.Release.Name -}}
{{- end -}}
{{- end -}}

{{/*
rayStartParams of a Ray pod: the settings' over object-store-memory, which is objectStoreMemory (the group's or
head's) or min(objectStore.memoryFraction × memory, objectStore.shmFraction × /dev/shm), in bytes.
arg: (dict "root" $ "o" OPTIONS "memory" QTY "shm" QTY "objectStoreMemory" QTY-OR-NIL "where" WHERE)
*/}}
{{- define "star1.rayStartParams" -}}
{{- $os := .root.Values.objectStore -}}
{{- $bytes := 0 -}}
{{- if .objectStoreMemory -}}
{{- $bytes = include "star1.bytes" .objectStoreMemory | int64 -}}
{{- else -}}
{{- $byMem := mulf (include "star1.bytes" .memory | float64) $os.memoryFraction | int64 -}}
{{- $byShm := mulf (include "star1.bytes" .shm | float64) $os.shmFraction | int64 -}}
{{- $bytes = min $byMem $byShm -}}
{{- end -}}
{{- $params := dict "object-store-memory" (toString $bytes) -}}
{{- $params = merge (deepCopy .o.rayStartParams) $params -}}
{{- $final := include "star1.bytes" (get $params "object-store-memory") | int64 -}}
{{- if lt $final 78643200 -}}
{{- fail (printf "%s: Ray's object store would be %d bytes, under Ray's 75 MiB minimum: raise shmSize or memory, or set objectStoreMemory" .where $final) -}}
{{- end -}}
{{- if gt $final (include "star1.bytes" .shm | int64) -}}
{{- fail (printf "%s: object-store-memory %d is more than the %s /dev/shm: Ray would fall back to a disk-backed store; raise shmSize or lower objectStoreMemory" .where $final .shm) -}}
{{- end -}}
{{- toYaml $params -}}
{{- end -}}

{{/*
A worker group's nodeSelector: the settings' plus, for a GPU group with an acceleratorType and no nodeSelector
of its own, nvidia.com/gpu.product from gpuProduct or acceleratorProducts (so the autoscaler provisions the
GPU Ray advertises). arg: (dict "root" $ "g" GROUP "o" OPTIONS)
*/}}
{{- define "star1.groupNodeSelector" -}}
{{- $sel := deepCopy .o.nodeSelector -}}
{{- $g := .g -}}
{{- if and (gt (int ($g.gpus | default 0)) 0) $g.acceleratorType (not $g.nodeSelector) -}}
{{- $product := "" -}}
{{- if hasKey $g "gpuProduct" -}}
{{- $product = $g.gpuProduct -}}
{{- else -}}
{{- $product = get .root.Values.acceleratorProducts $g.acceleratorType | default "" -}}
{{- end -}}
{{- if and $product (not (hasKey $sel "nvidia.com/gpu.product")) -}}
{{- $_ := set $sel "nvidia.com/gpu.product" $product -}}
{{- end -}}
{{- end -}}
{{- toJson $sel -}}
{{- end -}}

{{/*
The apiKeys.keys a job's pods get, as a JSON list: the env vars its run config names (every LLM endpoint's
api_key_env, OPENAI_API_KEY when unset; any other *_env key; the tracking backend's credentials) and the job's
secretKeys, kept only when listed in apiKeys.keys. arg: (dict "root" $ "config" MAP "extra" LIST)
*/}}
{{- define "star1.jobSecretKeys" -}}
{{- $names := include "star1.configEnvNames" .config | fromJsonArray -}}
{{- $tracking := dig "tracking" "backend" "mlflow" .config -}}
{{- $byBackend := include "star1.trackingKeys" . | fromJson -}}
{{- range $b := ternary $tracking (list $tracking) (kindIs "slice" $tracking) -}}
{{- $names = concat $names (get $byBackend (toString $b) | default list) -}}
{{- end -}}
{{- $names = concat $names (.extra | default list) -}}
{{- $keep := list -}}
{{- range .root.Values.apiKeys.keys -}}
{{- if has . $names -}}
{{- $keep = append $keep . -}}
{{- end -}}
{{- end -}}
{{- toJson $keep -}}
{{- end -}}

{{/* Env var names a run config names, as a JSON list (recursive); arg: a config node */}}
{{- define "star1.configEnvNames" -}}
{{- $out := list -}}
{{- if kindIs "map" . -}}
{{- if hasKey . "base_url" -}}
{{- if hasKey . "api_key_env" -}}
{{- with get . "api_key_env" }}{{ $out = append $out (toString .) }}{{ end -}}
{{- else -}}
{{- $out = append $out "OPENAI_API_KEY" -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := . -}}
{{- if and (hasSuffix "_env" $k) (kindIs "string" $v) -}}
{{- $out = append $out $v -}}
{{- else if or (kindIs "map" $v) (kindIs "slice" $v) -}}
{{- $out = concat $out (include "star1.configEnvNames" $v | fromJsonArray) -}}
{{- end -}}
{{- end -}}
{{- else if kindIs "slice" . -}}
{{- range . -}}
{{- $out = concat $out (include "star1.configEnvNames" . | fromJsonArray) -}}
{{- end -}}
{{- end -}}
{{- toJson ($out | uniq) -}}
{{- end -}}

{{/*
The autoscaler's Kubernetes credentials as a projected volume (what automounting would give the whole pod),
mounted only into the autoscaler sidecar: the head pod mounts no token, so driver code cannot call the API
server as the autoscaler.
*/}}
{{- define "star1.autoscalerTokenVolume" -}}
- name: autoscaler-token
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken: {path: token, expirationSeconds: 3607}
      - configMap:
          name: kube-root-ca.crt
          items: [{key: ca.crt, path: ca.crt}]
      - downwardAPI:
          items:
            - path: namespace
              fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}
{{- end -}}

{{/* The writable /tmp of a container whose root filesystem is read-only; arg: SIZE */}}
{{- define "star1.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ . }}
{{- end -}}

{{/* A list of strings as CEL string literals, comma-separated; arg: LIST */}}
{{- define "star1.celStrings" -}}
{{- $out := list -}}
{{- range . -}}
{{- $out = append $out (printf "'%s'" (replace "'" "\\'" .)) -}}
{{- end -}}
{{- join ", " $out -}}
{{- end -}}

{{/* The credential env vars each tracking backend reads, as JSON {backend: [names]}; only the driver (the
head) talks to a tracker */}}
{{- define "star1.trackingKeys" -}}
{{- toJson (dict "mlflow" (list "MLFLOW_TRACKING_TOKEN" "MLFLOW_TRACKING_USERNAME" "MLFLOW_TRACKING_PASSWORD") "wandb" (list "WANDB_API_KEY")) -}}
{{- end -}}

{{/* A job's keys for its worker pods: the head's without the tracker's; arg: LIST */}}
{{- define "star1.workerKeys" -}}
{{- $tracking := list -}}
{{- range (include "star1.trackingKeys" . | fromJson) }}{{ $tracking = concat $tracking . }}{{ end -}}
{{- $out := list -}}
{{- range . -}}
{{- if not (has . $tracking) }}{{ $out = append $out . }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
