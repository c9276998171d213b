#!/usr/bin/env bash
# netstream on a real Kubernetes cluster (kind), end to end:
#   1. create a kind cluster (e2e/cluster/kind.yaml)
#   2. build the three images (docker/build.sh, tag "e2e") and `kind load` them
#   3. install a single-node Kafka 3.8.0 in KRaft mode (manifests/kafka.yaml), create the topic
#   4. install the chart: helm install netstream charts/netstream -f values.yaml
#      (examples.enabled=true: a NetProbe on "any" interface and a StreamAnalysis, both on that Kafka)
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
    -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
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
