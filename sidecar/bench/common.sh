# Sourced by this directory's scripts after they set `here` and `bench`:
# the shared harness's plumbing (../shared/bench/lib.sh and pairs.sh) and
# the two steps every script here takes with it.
# shellcheck shell=bash

# shellcheck source=/dev/null
source "$bench/lib.sh"
# shellcheck source=/dev/null
source "$bench/pairs.sh"

# bench_run_dir NAME: a fresh RUN_DIR under $TMPDIR (every process group
# started in it is stopped at exit) and the globals pairs.sh reads.
bench_run_dir() {
  RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sidecar-$1.XXXXXX")
  CERTS=$RUN_DIR/certs APP_PORT=${APP_PORT:-18080} WORKERS=1 TRUST_DOMAIN=example.org
  : >"$RUN_DIR/pgids"
  trap cleanup EXIT
}

# bench_app: the harness's certificates, its app, and the candidate's two
# commands (this directory's candidate.sh, which runs $MESH_NODE_BIN).
bench_app() {
  CAND_NAME=mesh-node CAND_IN_CMD="$here/candidate.sh in" CAND_OUT_CMD="$here/candidate.sh out"
  "$bench/mkcerts.sh" "$CERTS" "$TRUST_DOMAIN" >/dev/null
  app_start
}
