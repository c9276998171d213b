#!/usr/bin/env bash
# netstream on a real Kubernetes cluster (kind), end to end:
#   1. create a kind cluster (e2e/cluster/kind.yaml)
#   2. build the three images (docker/build.sh, tag "e2e") and `kind load` them
#   3. install a single-node Kafka 3.8.0 in KRaft mode (manifests/kafka.yaml), create the topic
#   4. install the chart: helm install netstream charts/netstream -f values.yaml
#      (examples.enabled=true: a NetProbe on "any" interface and a StreamAnalysis, both on that Kafka)
#      and assert on the operator: the StreamAnalysis is Ready on a cluster without the KEDA and
#      prometheus-operator CRDs, with a current observedGeneration; `kubectl get sa` is not ambiguous
#      (the short name is sta); the processor Deployment starts at minReplicas; status.partitions
#      is the topic's 3 and caps the HPA's maxReplicas
#   5. generate traffic (manifests/traffic.yaml: HTTP + ping between two pods)
#   6. install a plain Prometheus scraping the netstream pods (manifests/prometheus.yaml)
#   7. assert through the Prometheus HTTP API that the probes captured packets and the
#      processors counted them (netstream_protocol_packets_total > 0), then report which
#      dashboard queries return data (dashboards/queries.py)
#
# Usage: e2e/cluster/run.sh [--keep] [--reuse]
#   --keep    leave the cluster running afterwards (also NETSTREAM_E2E_KEEP=1)
#   --reuse   use the existing cluster of that name instead of creating one (implies --keep)
# Environment: KIND_CLUSTER (default netstream-e2e), E2E_TIMEOUT seconds per wait (default 300),
#   NETSTREAM_E2E_REQUIRE=1 to fail instead of skipping when docker/kind/kubectl or a cluster
#   are missing, NETSTREAM_E2E_STRICT_DASHBOARDS=1 to fail when a dashboard query returns nothing.
#
# Exits 0 with "SKIPPED: ..." when docker, kind or kubectl are missing, the Docker daemon is not
# reachable, or no cluster can be created.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster="${KIND_CLUSTER:-netstream-e2e}"
timeout="${E2E_TIMEOUT:-300}"
keep="${NETSTREAM_E2E_KEEP:-0}"
reuse=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --reuse) reuse=1; keep=1 ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
skip() {
  if [ "${NETSTREAM_E2E_REQUIRE:-0}" = "1" ]; then
    echo "FAILED: $* (NETSTREAM_E2E_REQUIRE=1)" >&2
    exit 1
  fi
  echo "SKIPPED: $*"
  exit 0
}
fail() { echo "FAILED: $*" >&2; exit 1; }

# --------------------------------------------------------------------------- prerequisites
missing=()
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || skip "no docker/kind/kubectl (missing: ${missing[*]})"
docker info >/dev/null 2>&1 || skip "no docker/kind: the Docker daemon is not reachable (docker info failed)"

# Helm: the helm CLI, else the chart rendered by helm-python-sdk from the project venv.
venv_python="${NETSTREAM_VENV:-$root/.tools/venv}/bin/python"
if command -v helm >/dev/null 2>&1; then
  helm_mode=cli
elif [ -x "$venv_python" ] && "$venv_python" -c 'import helm_python' 2>/dev/null; then
  helm_mode=sdk
else
  skip "neither the helm CLI nor helm-python-sdk (in $venv_python) is available"
fi

ctx="kind-$cluster"
k() { kubectl --context "$ctx" "$@"; }

# --------------------------------------------------------------------------- cluster
created=0
cleanup() {
  local rc=$?
  rm -rf "${disco:-}"
  if [ "$rc" -ne 0 ] && kubectl config get-contexts "$ctx" >/dev/null 2>&1; then
    say "diagnostics"
    k get nodes -o wide || true
    k get pods -A -o wide || true
    k get netstream -A -o wide || true
    k -n netstream describe netprobes,streamanalyses || true
    k -n netstream logs deployment/netstream-operator --tail=100 || true
    k -n netstream logs -l app.kubernetes.io/name=netstream-probe --tail=50 --prefix || true
    k -n netstream logs -l app.kubernetes.io/name=netstream-processor --tail=50 --prefix || true
  fi
  if [ "$created" -eq 1 ] && [ "$keep" != "1" ]; then
    say "deleting kind cluster $cluster (keep it with --keep)"
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT

if [ "$reuse" -eq 1 ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing kind cluster $cluster"
else
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    fail "a kind cluster named $cluster exists already: delete it (kind delete cluster --name $cluster), pass --reuse, or set KIND_CLUSTER"
  fi
  say "creating kind cluster $cluster"
  if ! kind create cluster --name "$cluster" --config "$here/kind.yaml" --wait "${timeout}s"; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    skip "no cluster could be created (kind create cluster failed)"
  fi
  created=1
fi
k cluster-info >/dev/null || fail "cannot reach the cluster $ctx"

# --------------------------------------------------------------------------- images
say "building images (docker/build.sh, tag e2e)"
REGISTRY=ghcr.io/netstream-dev TAG=e2e "$root/docker/build.sh"
for name in operator probe processor; do
  kind load docker-image --name "$cluster" "ghcr.io/netstream-dev/netstream-$name:e2e"
done

# --------------------------------------------------------------------------- Kafka
say "installing Kafka (single node, KRaft)"
k apply -f "$here/manifests/kafka.yaml"
k -n kafka rollout status statefulset/kafka --timeout="${timeout}s"
topic_ready=0
for _ in $(seq 1 30); do
  if k -n kafka exec kafka-0 -- /opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 \
      --create --if-not-exists --topic netstream.packets --partitions 3 --replication-factor 1; then
    topic_ready=1
    break
  fi
  sleep 5
done
[ "$topic_ready" -eq 1 ] || fail "could not create the topic netstream.packets"

# --------------------------------------------------------------------------- netstream
# The operator must not need KEDA or the prometheus-operator: check that this cluster has neither.
optional_crds_absent=1
for crd in scaledobjects.keda.sh servicemonitors.monitoring.coreos.com; do
  if [ -n "$(k get crd "$crd" --ignore-not-found -o name)" ]; then
    say "the cluster has the CRD $crd (reused cluster?): skipping the 'Ready without KEDA/prometheus-operator CRDs' check"
    optional_crds_absent=0
  fi
done

say "installing netstream (chart, examples enabled)"
k create namespace netstream --dry-run=client -o yaml | k apply -f -
# Probe pods use the host network and NET_RAW/NET_ADMIN.
k label namespace netstream pod-security.kubernetes.io/enforce=privileged --overwrite
if [ "$helm_mode" = cli ]; then
  helm --kube-context "$ctx" upgrade --install netstream "$root/charts/netstream" \
    --namespace netstream -f "$here/values.yaml" --wait --timeout "${timeout}s"
else
  # CRDs first (as helm does), so the example resources find them established.
  k apply --server-side -f "$root/charts/netstream/crds/"
  k wait --for=condition=Established crd/netprobes.netstream.dev crd/streamanalyses.netstream.dev --timeout=60s
  values_json="$("$venv_python" -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))' "$here/values.yaml")"
  "$venv_python" "$root/charts/render.py" template -n netstream --set-json "$values_json" \
    | k apply --server-side -f -
fi
k -n netstream rollout status deployment/netstream-operator --timeout="${timeout}s"
k -n netstream wait --for=condition=Ready netprobe/e2e --timeout="${timeout}s"
k -n netstream wait --for=condition=Ready streamanalysis/e2e-flows --timeout="${timeout}s"
k get netstream -A -o wide

say "asserting on the operator"
sa_get() { k -n netstream get streamanalysis/e2e-flows -o jsonpath="$1"; }
generation="$(sa_get '{.metadata.generation}')"
observed="$(sa_get '{.status.observedGeneration}')"
[ -n "$observed" ] && [ "$observed" = "$generation" ] \
  || fail "streamanalysis/e2e-flows: status.observedGeneration ${observed:-unset} != metadata.generation $generation"
reason="$(sa_get '{.status.conditions[?(@.type=="Ready")].reason}')"
case "$reason" in
  "" | *Error* | *Fail* | *Invalid* | *Missing* | *NotInstalled* | *NotReady*)
    fail "streamanalysis/e2e-flows: Ready with reason '${reason:-none}'" ;;
esac
if [ "$optional_crds_absent" -eq 1 ]; then
  echo "ok: streamanalysis/e2e-flows Ready ($reason, generation $generation) without the KEDA and ServiceMonitor CRDs"
else
  echo "ok: streamanalysis/e2e-flows Ready ($reason, generation $generation)"
fi

# Short names: sa is ServiceAccount's alone, sta is StreamAnalysis'. A fresh discovery cache, so
# a stale one of an older install cannot make up (or hide) the warning.
disco="$(mktemp -d)"
sa_stderr="$(k --cache-dir "$disco" -n netstream get sa 2>&1 >/dev/null)" \
  || fail "kubectl get sa failed: $sa_stderr"
case "$sa_stderr" in
  *Warning* | *"could also match"*)
    fail "kubectl get sa is ambiguous (a reused cluster keeps its old CRDs: helm does not upgrade crds/): $sa_stderr" ;;
esac
k --cache-dir "$disco" -n netstream get sta -o name | grep -qx 'streamanalysis.netstream.dev/e2e-flows' \
  || fail "kubectl get sta -n netstream does not list e2e-flows"
rm -rf "$disco"
echo "ok: kubectl get sa without warnings, kubectl get sta lists e2e-flows"

# The processor Deployment is created with spec.replicas = minReplicas (not the API default 1).
min_replicas="$(sa_get '{.spec.minReplicas}')"
replicas="$(k -n netstream get deployment/e2e-flows-processor -o jsonpath='{.spec.replicas}')"
[ -n "$replicas" ] && [ "$replicas" -ge "$min_replicas" ] \
  || fail "deployment/e2e-flows-processor: spec.replicas ${replicas:-unset} < minReplicas $min_replicas"
echo "ok: deployment/e2e-flows-processor spec.replicas $replicas >= minReplicas $min_replicas"

# status.partitions is read from Kafka (the topic has 3), and caps the HPA's maxReplicas.
deadline=$((SECONDS + timeout))
while :; do
  partitions="$(sa_get '{.status.partitions}')"
  hpa_max="$(k -n netstream get hpa/e2e-flows-processor -o jsonpath='{.spec.maxReplicas}' 2>/dev/null || true)"
  [ "$partitions" = 3 ] && [ -n "$hpa_max" ] && [ "$hpa_max" -le 3 ] && break
  [ "$SECONDS" -lt "$deadline" ] \
    || fail "after ${timeout}s: status.partitions ${partitions:-unset} (want 3), hpa/e2e-flows-processor maxReplicas ${hpa_max:-unset} (want <= 3)"
  sleep 5
done
echo "ok: status.partitions 3, hpa/e2e-flows-processor maxReplicas $hpa_max"

# --------------------------------------------------------------------------- traffic + Prometheus
say "generating traffic"
k apply -f "$here/manifests/traffic.yaml"
k -n traffic rollout status deployment/traffic-server --timeout="${timeout}s"
k -n traffic rollout status deployment/traffic-client --timeout="${timeout}s"

say "installing Prometheus"
k apply -f "$here/manifests/prometheus.yaml"
k -n monitoring rollout status deployment/prometheus --timeout="${timeout}s"

# query EXPR: prints the first sample value of an instant query ("" when there is none),
# through the API server's service proxy (no port-forward needed).
query() {
  local path
  path="/api/v1/namespaces/monitoring/services/prometheus:web/proxy/api/v1/query?query=$(urlencode "$1")"
  k get --raw "$path" | sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p'
}
urlencode() {
  local s="$1" out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    case "$c" in
      [a-zA-Z0-9._~-]) out+="$c" ;;
      *) out+="$(printf '%%%02X' "'$c")" ;;
    esac
  done
  printf '%s' "$out"
}
# wait_positive EXPR: until the query's value is > 0, or the timeout.
wait_positive() {
  local expr="$1" deadline=$((SECONDS + timeout)) v=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    v="$(query "$expr" || true)"
    if [ -n "$v" ] && awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }'; then
      echo "ok: $expr = $v"
      return 0
    fi
    sleep 5
  done
  fail "$expr did not become > 0 within ${timeout}s (last value: ${v:-none})"
}

say "asserting on metrics"
wait_positive 'count(up{job="netstream"} == 1)'
wait_positive 'sum(netstream_probe_packets_captured_total{namespace="netstream"})'
wait_positive 'sum(netstream_probe_records_delivered_total{namespace="netstream"})'
wait_positive 'sum(netstream_records_consumed_total{namespace="netstream"})'
wait_positive 'sum(netstream_protocol_packets_total{namespace="netstream"})'
wait_positive 'sum(netstream_protocol_packets_total{namespace="netstream",protocol="tcp"})'
wait_positive 'sum(netstream_flow_bytes_total{namespace="netstream"})'

say "dashboard queries (dashboards/queries.py) against this Prometheus"
empty=0
total=0
while IFS=$'\t' read -r panel expr; do
  total=$((total + 1))
  v="$(query "$expr" || true)"
  if [ -n "$v" ]; then
    printf 'data     %s\n' "$panel"
  else
    empty=$((empty + 1))
    printf 'NO DATA  %s: %s\n' "$panel" "$expr"
  fi
done < <(python3 "$root/dashboards/queries.py" --variables --var namespace=netstream --range 5m \
  | python3 -c 'import json,sys
for line in sys.stdin:
    q = json.loads(line)
    if q["external"]:
        continue  # kafka-exporter metrics are not installed here
    print(q["dashboard"] + " / " + q["panel"] + "\t" + q["expr"])')
echo "$((total - empty))/$total dashboard queries returned data"
if [ "$empty" -gt 0 ] && [ "${NETSTREAM_E2E_STRICT_DASHBOARDS:-0}" = "1" ]; then
  fail "$empty dashboard queries returned no data"
fi

say "PASSED: netstream captured, produced, consumed and counted packets on $ctx"
