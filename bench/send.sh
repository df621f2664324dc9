#!/usr/bin/env bash
# bench/send.sh: the cost of a send, this tree's build against another
# build of deliver installed elsewhere (the baseline), on one durable
# cluster started with each build in turn.  pgbench (4 clients, prepared
# statements) runs, per case:
#   send        deliver.send, one message per transaction
#   send_batch  deliver.send_batch of 100 messages (a constant array)
#   cycle       one message's whole life: a send, then a receive of one
#               message and its ack (each its own transaction)
# and, with --cases, through the cluster's router (PL/Proxy, one
# partition, its shard a database of the same instance, so the server CPU
# counts the router's and the shard's work):
#   router_send   deliver_cluster.send
#   router_cycle  deliver_cluster.send, then receive and ack
# Nobody receives from the first two queues: their sends append to
# segments that only grow, alike for both builds.  Rounds alternate the builds (baseline, then this one), so
# noise on the machine spreads over both.  Per build and case: messages
# per second, the call's p50 and p99 (pgbench's log), and the server's CPU
# microseconds per message (bench/cpu.sh), the figure noise moves least;
# then this build's figures as ratios of the baseline's.
#
#   bench/send.sh --baseline PGBIN [--cases C,...] [--duration S] [--clients N] [--rounds R] [--port P]
#
# PGBIN: the bin directory of a PostgreSQL 15 with the baseline's deliver
# installed (make install PG_CONFIG=PGBIN/pg_config in its tree); this
# tree is built and installed into DELIVER_PGBIN (or pg_config's).
# Prints a table and writes bench/results/<date>-send.md.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=
args=()
cases=(send send_batch cycle)
while [[ $# -gt 0 ]]; do
    case $1 in
        --baseline) baseline=$2; shift 2 ;;
        --cases) IFS=, read -r -a cases <<<"$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
usage="usage: bench/send.sh --baseline PGBIN [--cases C,...] [--duration S] [--clients N] [--rounds R] [--port P]"
[[ -n $baseline && -x $baseline/pg_ctl ]] || { echo "$usage" >&2; exit 2; }
for c in "${cases[@]}"; do
    [[ $c =~ ^(send|send_batch|cycle|router_send|router_cycle)$ ]] || { echo "unknown case $c; $usage" >&2; exit 2; }
done
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
source bench/pgbench.sh   # pgbench_setup, pgbench_case
source bench/cpu.sh       # instance_ticks, us_per_msg
pgbench_setup send "${DELIVER_SEND_PORT:-55496}" "${args[@]}"
cmd="$cmd --baseline $baseline --cases $(IFS=,; echo "${cases[*]}")"
q -c "SELECT deliver.create_queue('s_one')" -c "SELECT deliver.create_queue('s_batch')" \
  -c "SELECT deliver.create_queue('s_cycle')" >/dev/null
this=$pgbin

payload='{"order": 1, "pad": "'$(printf 'x%.0s' {1..80})'"}'
batch="ARRAY[$(for _ in $(seq 1 100); do printf "'%s'::jsonb," "$payload"; done | sed 's/,$//')]"
per_call() { [[ $1 == send_batch ]] && echo 100 || echo 1; }
script_of() {
    case $1 in
        send) echo "SELECT deliver.send('s_one', '$payload');" ;;
        send_batch) echo "SELECT cardinality(deliver.send_batch('s_batch', $batch));" ;;
        cycle) printf '%s\n%s\n' "SELECT deliver.send('s_cycle', '$payload');" \
                   "SELECT deliver.ack('s_cycle', delivery_id) FROM deliver.receive('s_cycle', 1);" ;;
        router_send) echo "SELECT deliver_cluster.send('r_one', '$payload');" ;;
        router_cycle) printf '%s\n%s\n' "SELECT deliver_cluster.send('r_cycle', '$payload');" \
                   "SELECT deliver_cluster.ack('r_cycle', delivery_id) FROM deliver_cluster.receive('r_cycle', 0, 1);" ;;
    esac
}
# the router cases' databases for build B (made by that build's scripts,
# the first time B runs): shard_B (deliver, deliver_shard) and router_B
# (PL/Proxy, deliver_router: one partition, on shard_B)
declare -A router_made
router_setup() {
    local b=$1 sql=(-X -q -A -t -v ON_ERROR_STOP=1 -h "$work" -p "$port")
    [[ -z ${router_made[$b]:-} ]] || return 0
    q -c "CREATE DATABASE shard_$b" -c "CREATE DATABASE router_$b" >/dev/null
    as_pg "$pgbin/psql" "${sql[@]}" -d "shard_$b" -c 'CREATE EXTENSION deliver' -c 'CREATE EXTENSION deliver_shard' >/dev/null
    as_pg "$pgbin/psql" "${sql[@]}" -d "router_$b" -c 'CREATE EXTENSION plproxy' -c 'CREATE EXTENSION deliver_router' \
        -c 'SELECT deliver_cluster.set_partitions(1)' \
        -c "SELECT deliver_cluster.add_shard('s0', 'host=$work port=$port dbname=shard_$b user=postgres')" \
        -c 'SELECT deliver_cluster.place_partitions()' \
        -c "SELECT deliver_cluster.create_queue('r_one')" -c "SELECT deliver_cluster.create_queue('r_cycle')" >/dev/null
    router_made[$b]=1
}
pgbench_mode=prepared   # as applications run their statements (bench/pgbench.sh)
# restart BIN: the cluster with that build's server
restart() {
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
    pgbin=$1
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$work/postgres.log" -w start >/dev/null 9>&-
}

declare -A res
for r in $(seq 1 "$rounds"); do
    for b in baseline this; do
        if [[ $b == baseline ]]; then restart "$baseline"; else restart "$this"; fi
        for c in "${cases[@]}"; do
            pgbench_db=bench
            if [[ $c == router_* ]]; then router_setup "$b"; pgbench_db=router_$b; fi
            t0=$(instance_ticks "$pgdata")
            read -r tps p50 p99 < <(pgbench_case "$c" 1 "$(script_of "$c")")
            t1=$(instance_ticks "$pgdata")
            n=$(awk -v t="$tps" -v d="$duration" -v k="$(per_call "$c")" 'BEGIN { printf "%.0f", t * d * k }')
            cpu=$(us_per_msg $((t1 - t0)) "$n")
            msgs=$(awk -v t="$tps" -v k="$(per_call "$c")" 'BEGIN { printf "%.0f", t * k }')
            res[$b,$c]+="$msgs $p50 $p99 $cpu;"
            printf 'round %d %-8s %-10s %8s msgs/s  p50 %6s ms  p99 %7s ms  server CPU %6s us/msg\n' \
                "$r" "$b" "$c" "$msgs" "$p50" "$p99" "$cpu"
        done
    done
done
restart "$this"

# the median of field F over the rounds
median() {
    tr ';' '\n' <<<"$1" | awk -v f="$2" 'NF { print $f }' | sort -n |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-send.md
{
    echo "# send: this build against a baseline"
    echo
    echo "Command: \`$cmd\` (this tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?'))."
    echo "Medians over $rounds rounds; the builds alternate within each round."
    echo
    echo "| case | build | msgs/s | call p50 ms | call p99 ms | server CPU us/msg |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    for c in "${cases[@]}"; do
        for b in baseline this; do
            v=${res[$b,$c]}
            echo "| $c | $b | $(median "$v" 1) | $(median "$v" 2) | $(median "$v" 3) | $(median "$v" 4) |"
        done
    done
    echo
    echo "| case | msgs/s, this / baseline | server CPU per message, this / baseline |"
    echo "| --- | ---: | ---: |"
    for c in "${cases[@]}"; do
        echo "| $c | $(awk -v a="$(median "${res[this,$c]}" 1)" -v b="$(median "${res[baseline,$c]}" 1)" 'BEGIN { printf "%.2f", a / b }') |" \
            "$(awk -v a="$(median "${res[this,$c]}" 4)" -v b="$(median "${res[baseline,$c]}" 4)" 'BEGIN { printf "%.2f", a / b }') |"
    done
    echo
    echo "Machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
} >"$out"
cat "$out"
