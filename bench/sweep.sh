#!/usr/bin/env bash
# bench/sweep.sh: what one maintenance sweep costs.  For N leases that ran
# out, times deliver._sweep (what the worker calls each run) when it only
# makes them ready again (max_attempts not reached) and when it moves them
# all to the dead letters (max_attempts 1).  A throwaway durable cluster
# without a worker, so that only the timed call sweeps.
#
#   bench/sweep.sh [N ...]        (default: 1000 10000 50000)
#
# Prints a table and writes bench/results/<stamp>-sweep.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(1000 10000 50000)
port=${DELIVER_SWEEP_PORT:-55497}

build_and_install
trap 'bench_cluster_stop; [[ -z ${work:-} ]] || rm -rf "$work"' EXIT
# no maintenance worker: only the timed call sweeps
bench_cluster_start "$port" "shared_buffers = 512MB" "max_wal_size = 4GB" \
    "deliver.max_in_flight = 200000" "deliver.database = ''"
q() { as_pg "$pgbin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d bench "$@"; }
q -c 'CREATE EXTENSION deliver'

# sweep_ms QUEUE MAX_ATTEMPTS N: lease N messages for 1 ms, then time one sweep
sweep_ms() {
    local queue=$1 attempts=$2 n=$3
    q <<SQL
SET deliver.max_batch_size = 1000000;
SELECT deliver.create_queue('$queue', max_attempts => $attempts, retry_base => '0');
SELECT deliver.send_batch('$queue', array_agg(jsonb_build_object('i', i, 'pad', repeat('x', 100))))
  FROM generate_series(1, $n) i;
SELECT count(*) FROM deliver.receive('$queue', $n, visibility_timeout => '1 ms') \\g /dev/null
SELECT pg_sleep(0.1);
SELECT clock_timestamp() AS t0 \\gset
SELECT expired, dead_lettered FROM deliver._sweep('$queue', $n) \\g /dev/null
SELECT round(extract(epoch FROM clock_timestamp() - :'t0') * 1000, 1);
SQL
}

stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-sweep.md
{
    echo "# Sweep cost, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`bash bench/sweep.sh ${sizes[*]}\`; $(nproc) cores, PostgreSQL $(q -c 'SHOW server_version' | cut -d' ' -f1), fsync on."
    echo "Time of one \`deliver._sweep\` call over N leases that ran out (one consumer group)."
    echo
    echo "| expired leases | made ready again | moved to dead letters |"
    echo "| ---: | ---: | ---: |"
} >"$out"
for n in "${sizes[@]}"; do
    ready=$(sweep_ms "r$n" 5 "$n" | tail -n 1)
    dead=$(sweep_ms "d$n" 1 "$n" | tail -n 1)
    printf '| %s | %s ms | %s ms |\n' "$n" "$ready" "$dead" >>"$out"
    echo "sweep: $n expired leases: ready again in $ready ms, to dead letters in $dead ms"
done
echo "sweep: wrote $out"
