#!/usr/bin/env bash
# The three proxy pairs of ../shared/bench (nginx, haproxy, mesh-node) with
# each side's CPU chosen by `taskset`, so that every pair runs with the same
# placement. On a 2-vCPU machine the kernel decides where the two
# single-threaded sides of a pair run, and that choice (both on one vCPU, or
# one on each) moves throughput and one-at-a-time latency more than the
# proxies' own work does; the harness leaves it to the kernel, so its
# comparisons carry that noise. This script measures it.
#
#   sidecar/bench/placement.sh [MESH_NODE_BIN]    (default target/release/mesh-node)
#   PLACEMENTS="float apart together" ROUNDS=3 DURATION=5 sidecar/bench/placement.sh
#
# Placements: float (any CPU, as the harness runs them), apart (out on CPU 0,
# in on CPU 1), together (both on CPU 0). wrk and the app always float.
# Each round visits every placement and, within it, direct, nginx, haproxy
# and mesh-node in turn: one request at a time (`wrk -t1 -c1`, p50 and p99,
# minus direct's in the same round and placement) and saturation
# (`wrk -t2 -c32`, req/s). Prints the medians over rounds as a Markdown
# table; raw figures go to $RUN_DIR/placement.tsv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bench=${BENCH_DIR:-$root/../shared/bench}
bin=$(realpath "${1:-${CARGO_TARGET_DIR:-$root/target}/release/mesh-node}")
placements=${PLACEMENTS:-float apart together} rounds=${ROUNDS:-3} duration=${DURATION:-5}
for tool in taskset wrk curl nginx haproxy openssl; do
  command -v "$tool" >/dev/null || { echo "placement.sh: needs $tool" >&2; exit 1; }
done
(($(nproc) >= 2)) || { echo "placement.sh: needs two CPUs" >&2; exit 1; }
# shellcheck source=sidecar/bench/common.sh
source "$here/common.sh"
bench_run_dir placement
assert_ports_free "$APP_PORT" 15001 15006 15101 15106 15201 15206
export MESH_NODE_BIN=$bin
bench_app
pair_nginx_start 15001 15006
pair_haproxy_start 15101 15106
pair_candidate_start 15201 15206

declare -A out_port=([direct]=$APP_PORT [nginx]=15001 [haproxy]=15101 [mesh-node]=15201)
targets=(direct nginx haproxy mesh-node)
for t in "${targets[@]}"; do
  [[ $(curl -s --max-time 5 "http://$BENCH_HOST:${out_port[$t]}/" || true) == ok ]] ||
    die "$t does not answer"
done

all_cpus="0-$(($(nproc) - 1))"
pin() { # placement: every process (and thread) of each pair's two groups
  local out_cpu in_cpu pair pid
  case $1 in
    float) out_cpu=$all_cpus in_cpu=$all_cpus ;;
    apart) out_cpu=0 in_cpu=1 ;;
    together) out_cpu=0 in_cpu=0 ;;
    *) die "unknown placement $1" ;;
  esac
  for pair in nginx haproxy mesh-node; do
    for pid in $(pids_in_group "$(pgid_of "$pair-out")"); do taskset -a -c -p "$out_cpu" "$pid" >/dev/null; done
    for pid in $(pids_in_group "$(pgid_of "$pair-in")"); do taskset -a -c -p "$in_cpu" "$pid" >/dev/null; done
  done
}
ms() { # wrk latency field (e.g. 192.00us, 1.20ms, 1.01s) -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    printf "%.4f", (u == "us") ? n / 1000 : (u == "s") ? n * 1000 : n }'
}
one_at_a_time() { # port -> "p50_ms p99_ms"
  local out
  out=$(wrk -t1 -c1 -d"${duration}s" --latency "http://$BENCH_HOST:$1/")
  echo "$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")") $(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
}
saturated() { # port -> req/s
  wrk -t2 -c32 -d"${duration}s" "http://$BENCH_HOST:$1/" | awk '/^Requests\/sec/ {print $2}'
}

tsv=$RUN_DIR/placement.tsv
printf 'round\tplacement\ttarget\tc1_p50_ms\tc1_p99_ms\tsat_rps\n' >"$tsv"
for t in "${targets[@]}"; do wrk -t2 -c32 -d2s "http://$BENCH_HOST:${out_port[$t]}/" >/dev/null; done
for ((r = 1; r <= rounds; r++)); do
  for p in $placements; do
    pin "$p"
    for t in "${targets[@]}"; do
      read -r p50 p99 <<<"$(one_at_a_time "${out_port[$t]}")"
      rps=$(saturated "${out_port[$t]}")
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$p" "$t" "$p50" "$p99" "$rps" >>"$tsv"
      log "round $r $p $t: c1 p50 ${p50} ms p99 ${p99} ms, sat ${rps} req/s"
    done
  done
done

echo "binary: $bin"
echo "rounds: $rounds, ${duration} s per wrk run; raw: $tsv"
python3 - "$tsv" "$placements" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
placements = sys.argv[2].split()
med = statistics.median
print("| placement | pair | req/s sat | vs better peer | added p50 c1 (ms) | added p99 c1 (ms) |")
print("|---|---|---|---|---|---|")
for p in placements:
    by = {}
    for r in (x for x in rows if x["placement"] == p):
        by.setdefault(r["round"], {})[r["target"]] = r
    def added(t, k):
        return med(float(v[t][k]) - float(v["direct"][k]) for v in by.values())
    rps = {t: med(float(v[t]["sat_rps"]) for v in by.values()) for t in ("direct", "nginx", "haproxy", "mesh-node")}
    best = max(rps["nginx"], rps["haproxy"])
    print(f"| {p} | direct | {rps['direct']:,.0f} | – | – | – |")
    for t in ("nginx", "haproxy", "mesh-node"):
        ratio = f"{rps[t] / best:.2f}x" if t == "mesh-node" else "–"
        print(f"| {p} | {t} | {rps[t]:,.0f} | {ratio} | {added(t, 'c1_p50_ms'):+.3f} | {added(t, 'c1_p99_ms'):+.3f} |")
PY
