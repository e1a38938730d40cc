#!/usr/bin/env bash
# A real Kubernetes API server for tests, as controller-runtime's envtest runs
# one: etcd + kube-apiserver built from their Go modules (this directory's
# go.mod), started on free loopback ports with a bearer token and self-signed
# certificates. Nothing else runs: no scheduler, no kubelet, no controllers.
#
#   envtest.sh build          build both binaries once into the cache
#   envtest.sh start DIR      start them; writes DIR/kubeconfig, DIR/*.pid
#   envtest.sh stop DIR       stop them by pid
#
# The cache lives outside the clone: ${CHRONICLE_ENVTEST_CACHE:-~/.cache/chronicle/envtest}.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$here/go.mod")"
cache="${CHRONICLE_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/envtest}/$version"

build() {
  if [ -x "$cache/kube-apiserver" ] && [ -x "$cache/etcd" ]; then return; fi
  mkdir -p "$cache"
  echo "envtest: building kube-apiserver $version and etcd into $cache (once)" >&2
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$cache/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -o "$cache/etcd" ./etcd)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  local dir="$1"
  build
  mkdir -p "$dir/etcd-data" "$dir/certs"
  local etcd_port peer_port api_port token
  etcd_port="$(free_port)"; peer_port="$(free_port)"; api_port="$(free_port)"
  token="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$token,chronicle-admin,chronicle-admin,system:masters" > "$dir/token.csv"
  openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  "$cache/etcd" --data-dir "$dir/etcd-data" --listen-client-url "http://127.0.0.1:$etcd_port" \
    --listen-peer-url "http://127.0.0.1:$peer_port" > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  "$cache/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$dir/certs" \
    --token-auth-file "$dir/token.csv" --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --endpoint-reconciler-type none \
    > "$dir/kube-apiserver.log" 2>&1 &
  echo $! > "$dir/kube-apiserver.pid"
  for _ in $(seq 1 600); do
    if curl -ksf -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; then
      cat > "$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$api_port
    insecure-skip-tls-verify: true
users:
- name: chronicle-admin
  user:
    token: $token
contexts:
- name: envtest
  context: {cluster: envtest, user: chronicle-admin}
current-context: envtest
KUBECONFIG
      echo "envtest: API server ready at https://127.0.0.1:$api_port (kubeconfig: $dir/kubeconfig)" >&2
      return
    fi
    sleep 0.1
  done
  echo "envtest: kube-apiserver did not become ready; see $dir/kube-apiserver.log" >&2
  stop "$dir"
  return 1
}

stop() {
  local dir="$1" pid
  for name in kube-apiserver etcd; do
    [ -f "$dir/$name.pid" ] || continue
    pid="$(cat "$dir/$name.pid")"
    kill "$pid" 2>/dev/null || true
    # Graceful shutdown first; after 20 s, SIGKILL.
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$name.pid"
  done
}

case "${1:-}" in
  build) build ;;
  start) start "${2:?usage: envtest.sh start DIR}" ;;
  stop) stop "${2:?usage: envtest.sh stop DIR}" ;;
  *) echo "usage: envtest.sh build | start DIR | stop DIR" >&2; exit 2 ;;
esac
