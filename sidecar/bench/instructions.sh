#!/usr/bin/env bash
# Instructions per proxied request on each side of a mesh-node sidecar pair,
# counted by callgrind: exact where wall-clock figures on a shared machine
# are noise. Uses the shared harness's app and pair plumbing
# (../shared/bench/lib.sh, pairs.sh) and this directory's candidate.sh.
#
#   sidecar/bench/instructions.sh [MESH_NODE_BIN]     (default target/release/mesh-node)
#   LOAD=handshakes sidecar/bench/instructions.sh [MESH_NODE_BIN]
#
# Both sides start under callgrind with instrumentation off; after a warm-up
# (pool connections made, caches filled) it is switched on, wrk sends load
# for DURATION seconds (10) over CONNS connections (16), the counters are
# dumped, and each side's instruction count is divided by the requests wrk
# completed. With LOAD=handshakes the load is instead the harness's
# new-connection test, `openssl s_time -new -www /` (a full mTLS handshake
# and one request per connection) against the inbound, and the inbound's
# count is divided by the connections made. Needs valgrind, wrk, nginx,
# curl (and openssl for handshakes).
#
# Valgrind's CPU model lacks some instruction set extensions (AVX-512,
# SHA), so the crypto libraries take other code paths than on the bare
# CPU: compare counts with each other, not with cycles.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-$root/target}/release/mesh-node}")
duration=${DURATION:-10} conns=${CONNS:-16} load=${LOAD:-requests}
[[ $load == requests || $load == handshakes ]] || { echo "instructions.sh: LOAD is requests or handshakes" >&2; exit 2; }
for tool in valgrind callgrind_control wrk curl $([[ $load == handshakes ]] && echo openssl); do
  command -v "$tool" >/dev/null || { echo "instructions.sh: needs $tool" >&2; exit 1; }
done
# shellcheck source=sidecar/bench/common.sh
source "$here/common.sh"

bench_run_dir instructions
assert_ports_free "$APP_PORT" 15201 15206

# candidate.sh execs $MESH_NODE_BIN; this wrapper puts callgrind in front.
wrapper=$RUN_DIR/under-callgrind.sh
cat >"$wrapper" <<SH
#!/usr/bin/env bash
side=\$(basename "\$3" .toml)
exec valgrind --tool=callgrind --instr-atstart=no --dump-instr=no \
  --callgrind-out-file="$RUN_DIR/callgrind.\$side.%p" "$bin" "\$@"
SH
chmod +x "$wrapper"
export MESH_NODE_BIN=$wrapper
bench_app
pair_candidate_start 15201 15206
url=http://$BENCH_HOST:15201/
# Under valgrind the first requests are slow (code is translated as it
# first runs): allow the pair half a minute to answer.
for ((i = 0; ; i++)); do
  [[ $(curl -s --max-time 10 "$url" || true) == ok ]] && break
  ((i < 30)) || die "the pair does not answer"
  sleep 1
done
wrk -t1 -c"$conns" -d3s "$url" >/dev/null

if [[ $load == handshakes ]]; then
  sides=(in)
else
  sides=(in out)
fi
pids=()
for side in "${sides[@]}"; do
  pids+=("$(pgrep -f "callgrind.*$RUN_DIR.*$side.toml" | head -1)")
done
if [[ $load == handshakes ]]; then
  stime() {
    openssl s_time -connect "$BENCH_HOST:15206" -new -www / -time "$1" \
      -cert "$CERTS/client.crt" -key "$CERTS/client.key" -CAfile "$CERTS/ca.crt" 2>&1 |
      awk '/connections in/ {print $1; exit}'
  }
  stime 2 >/dev/null
  callgrind_control -i on "${pids[0]}" >/dev/null
  units=$(stime "$duration") what=connection how="openssl s_time -new -www / -time $duration"
else
  for pid in "${pids[@]}"; do callgrind_control -i on "$pid" >/dev/null; done
  threads=$((conns < 2 ? conns : 2)) # wrk wants a connection per thread
  units=$(wrk -t"$threads" -c"$conns" -d"${duration}s" "$url" | awk '/requests in/ {print $1}')
  what=request how="wrk -t$threads -c$conns -d${duration}s"
fi
for pid in "${pids[@]}"; do callgrind_control -d "$pid" >/dev/null; done
sleep 1
echo "binary: $bin"
echo "${what}s: $units ($how)"
for i in "${!sides[@]}"; do
  # The explicit dump holds the measured window (instrumentation was off
  # before it).
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$RUN_DIR/callgrind.${sides[$i]}.${pids[$i]}.1")
  echo "${sides[$i]}: $ir instructions, $((ir / units)) per $what"
done
