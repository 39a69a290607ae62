#!/usr/bin/env bash
# Candidate adapter for ../shared/bench/run.sh: serves one side of the pair
# with `mesh-node sidecar`, configured only from the BENCH_* variables the
# harness exports (see ../shared/bench/README.md, "Plugging in the Rust
# candidate pair").
#
#   CAND_NAME=mesh-node \
#   CAND_IN_CMD="$PWD/sidecar/bench/candidate.sh in" \
#   CAND_OUT_CMD="$PWD/sidecar/bench/candidate.sh out" \
#   RUNS=3 ../shared/bench/run.sh
#
# Binary: $MESH_NODE_BIN, else target/release/mesh-node under
# $CARGO_TARGET_DIR or this workspace.
#
# in : mTLS listener on BENCH_IN_ADDR with the server SVID, forwarding
#      HTTP/1.1 to BENCH_APP_ADDR. A policy directory makes it refuse
#      plaintext (PeerAuthentication STRICT; nginx and haproxy listen with
#      TLS only) and admit only the client's SPIFFE ID (the peers check the
#      chain only; the harness asks a candidate to check the ID).
# out: plain HTTP/1.1 listener on BENCH_OUT_ADDR with the client SVID; every
#      request goes to "server.default", whose one endpoint is BENCH_IN_ADDR
#      and must prove BENCH_SERVER_SPIFFE_ID.
#
# Each process also binds the listeners of the other direction; those go to
# port 0 (the kernel picks a free one) and stay idle. Admin listeners get
# port+50 of the side's own port when free (15251 out, 15256 in by default),
# else port 0.
#
# Workers: the peers run BENCH_WORKERS worker processes/threads (1 by
# default); the sidecar gets the same number through --concurrency (1 is
# tokio's current-thread runtime, as one nginx or haproxy worker is one
# event loop).
set -euo pipefail
side=${1:?usage: candidate.sh in|out}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${MESH_NODE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/mesh-node}
[[ -x $bin ]] || { echo "candidate.sh: no mesh-node binary at $bin" >&2; exit 1; }

host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }
admin_addr() { # own addr -> a free loopback admin address (port+50, else 0)
  local h p
  h=$(host_of "$1") p=$(($(port_of "$1") + 50))
  if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then p=0; fi
  echo "$h:$p"
}
any_port() { echo "$(host_of "$1"):0"; }

case $side in
  in)
    cert=$BENCH_SERVER_CERT key=$BENCH_SERVER_KEY
    inbound_listen=$BENCH_IN_ADDR outbound_listen=$(any_port "$BENCH_IN_ADDR")
    admin_listen=$(admin_addr "$BENCH_IN_ADDR")
    name=server
    policy_dir=$BENCH_PAIR_DIR/policies-in
    client_principal=${BENCH_CLIENT_SPIFFE_ID#spiffe://}
    mkdir -p "$policy_dir"
    cat >"$policy_dir/strict.yaml" <<YAML
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec:
  mtls: {mode: STRICT}
YAML
    cat >"$policy_dir/allow-client.yaml" <<YAML
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-client, namespace: default}
spec:
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["$client_principal"]}
YAML
    sources_extra="policy_dir = \"$policy_dir\""
    ;;
  out)
    cert=$BENCH_CLIENT_CERT key=$BENCH_CLIENT_KEY
    inbound_listen=$(any_port "$BENCH_OUT_ADDR") outbound_listen=$BENCH_OUT_ADDR
    admin_listen=$(admin_addr "$BENCH_OUT_ADDR")
    name=client
    sources_extra=""
    ;;
  *)
    echo "candidate.sh: side must be in or out, not '$side'" >&2
    exit 2
    ;;
esac

cfg=$BENCH_PAIR_DIR/$side.toml
cat >"$cfg" <<TOML
[sources]
identity_files = { cert = "$cert", key = "$key", bundle = "$BENCH_CA_CERT" }
$sources_extra

[workload]
namespace = "default"
name = "$name"
service = "$name"
trust_domain = "$BENCH_TRUST_DOMAIN"

[inbound]
listen = "$inbound_listen"
app = "$BENCH_APP_ADDR"
protocol = "http"

[outbound]
listen = "$outbound_listen"
default_service = "server.default"

[admin]
listen = "$admin_listen"
access_log = false

[static_endpoints]
"server.default" = [{ address = "$BENCH_IN_ADDR", spiffe_id = "$BENCH_SERVER_SPIFFE_ID" }]
TOML

export MESH_NODE_LOG=${MESH_NODE_LOG:-warn}
exec "$bin" sidecar --config "$cfg" ${BENCH_WORKERS:+--concurrency "$BENCH_WORKERS"}
