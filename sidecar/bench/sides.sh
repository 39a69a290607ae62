#!/usr/bin/env bash
# Where each side of a proxy pair spends its time at saturation: the
# mesh-node pair and haproxy's (the better peer in most harness runs),
# alternated round by round under `wrk -t2 -c32`, one side's figures per
# request taken from /proc and `ss`:
#
#   sidecar/bench/sides.sh [MESH_NODE_BIN]    (default target/release/mesh-node)
#   ROUNDS=6 DURATION=5 sidecar/bench/sides.sh
#
# Per round and pair: req/s; each side's user and system CPU (µs per
# request, summed over the side's process group); TCP segments per request
# on the hop between the sides (both directions); voluntary context
# switches per request; and how many `ps -o psr` samples found the two
# sides' busiest processes on the same CPU. Prints the medians over rounds
# as a Markdown table; raw figures go to $RUN_DIR/sides.tsv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-$root/target}/release/mesh-node}")
rounds=${ROUNDS:-6} duration=${DURATION:-5}
for tool in wrk curl haproxy nginx openssl ss; do
  command -v "$tool" >/dev/null || { echo "sides.sh: needs $tool" >&2; exit 1; }
done
# shellcheck source=sidecar/bench/common.sh
source "$here/common.sh"
bench_run_dir sides
assert_ports_free "$APP_PORT" 15101 15106 15201 15206
export MESH_NODE_BIN=$bin
bench_app
pair_haproxy_start 15101 15106
pair_candidate_start 15201 15206

declare -A out_port=([haproxy]=15101 [mesh-node]=15201) in_port=([haproxy]=15106 [mesh-node]=15206)
pairs=(haproxy mesh-node)
for p in "${pairs[@]}"; do
  [[ $(curl -s --max-time 5 "http://$BENCH_HOST:${out_port[$p]}/" || true) == ok ]] ||
    die "$p does not answer"
done
tck=$(getconf CLK_TCK)

group_stat() { # group name -> "user_ticks sys_ticks voluntary_switches busiest_pid"
  local pid u s c best=0 bpid=0 su=0 sy=0 sc=0
  for pid in $(pids_in_group "$(pgid_of "$1")"); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null) || continue
    c=$(awk '/^voluntary_ctxt_switches/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
    su=$((su + u)) sy=$((sy + s)) sc=$((sc + c))
    if ((u + s >= best)); then best=$((u + s)) bpid=$pid; fi
  done
  echo "$su $sy $sc $bpid"
}
hop_segments() { # inbound port -> segments sent both ways on the hop
  ss -tinH state established "( sport = :$1 or dport = :$1 )" |
    grep -o 'segs_out:[0-9]*' | awk -F: '{s += $2} END {print s + 0}'
}

tsv=$RUN_DIR/sides.tsv
printf 'round\tpair\trps\tout_user_us\tout_sys_us\tin_user_us\tin_sys_us\thop_segs\tout_csw\tin_csw\ttogether\n' >"$tsv"
for p in "${pairs[@]}"; do wrk -t2 -c32 -d2s "http://$BENCH_HOST:${out_port[$p]}/" >/dev/null; done
for ((r = 1; r <= rounds; r++)); do
  for p in "${pairs[@]}"; do
    read -r ou0 os0 oc0 opid < <(group_stat "$p-out")
    read -r iu0 is0 ic0 ipid < <(group_stat "$p-in")
    seg0=$(hop_segments "${in_port[$p]}")
    wrk -t2 -c32 -d"${duration}s" "http://$BENCH_HOST:${out_port[$p]}/" >"$RUN_DIR/wrk.out" &
    wrk_pid=$!
    together=0 samples=0
    sleep 0.5
    while kill -0 "$wrk_pid" 2>/dev/null; do
      a=$(ps -o psr= -p "$opid" 2>/dev/null || echo out) b=$(ps -o psr= -p "$ipid" 2>/dev/null || echo in)
      [[ $a == "$b" ]] && together=$((together + 1))
      samples=$((samples + 1))
      sleep 0.2
    done
    wait "$wrk_pid"
    read -r ou1 os1 oc1 _ < <(group_stat "$p-out")
    read -r iu1 is1 ic1 _ < <(group_stat "$p-in")
    seg1=$(hop_segments "${in_port[$p]}")
    rps=$(awk '/^Requests\/sec/ {print $2}' "$RUN_DIR/wrk.out")
    n=$(awk '/ requests in / {print $1}' "$RUN_DIR/wrk.out")
    awk -v r="$r" -v p="$p" -v rps="$rps" -v n="$n" -v t="$tck" \
      -v ou=$((ou1 - ou0)) -v os=$((os1 - os0)) -v iu=$((iu1 - iu0)) -v is=$((is1 - is0)) \
      -v seg=$((seg1 - seg0)) -v oc=$((oc1 - oc0)) -v ic=$((ic1 - ic0)) -v tog="$together/$samples" 'BEGIN {
        us = 1e6 / t / n
        printf "%d\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f\t%.3f\t%s\n",
          r, p, rps, ou * us, os * us, iu * us, is * us, seg / n, oc / n, ic / n, tog }' >>"$tsv"
    log "round $r $p: $(tail -1 "$tsv" | cut -f3-)"
  done
done

echo "binary: $bin"
echo "rounds: $rounds, ${duration} s per wrk run; raw: $tsv"
python3 - "$tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = statistics.median
print("| pair | req/s | out user / sys (µs/req) | in user / sys (µs/req) | pair CPU (µs/req) | hop segments/req | switches/req out / in | sides on one CPU |")
print("|---|---|---|---|---|---|---|---|")
for p in ("haproxy", "mesh-node"):
    rs = [r for r in rows if r["pair"] == p]
    m = {k: med(float(r[k]) for r in rs) for k in rs[0] if k not in ("round", "pair", "together")}
    cpu = med(sum(float(r[k]) for k in ("out_user_us", "out_sys_us", "in_user_us", "in_sys_us")) for r in rs)
    tog = sum(int(r["together"].split("/")[0]) for r in rs)
    tot = sum(int(r["together"].split("/")[1]) for r in rs)
    print(f"| {p} | {m['rps']:,.0f} | {m['out_user_us']:.1f} / {m['out_sys_us']:.1f} | "
          f"{m['in_user_us']:.1f} / {m['in_sys_us']:.1f} | {cpu:.1f} | {m['hop_segs']:.2f} | "
          f"{m['out_csw']:.2f} / {m['in_csw']:.2f} | {tog} of {tot} |")
PY
