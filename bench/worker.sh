#!/usr/bin/env bash
# bench/worker.sh: how long the maintenance worker's run over many queues
# takes. Makes N queues (one message each) on a durable cluster of its own,
# then reads the worker's last run time (deliver.worker_status) after each
# of a few runs; also times deliver.maintain() over all queues in one call.
#
#   [DELIVER_PGBIN=.../bin] bench/worker.sh [--queues N] [--port P] [--runs R]
#
# Prints its figures; no results file (quote the command with them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), as_pg, the cluster
queues=300
port=55561
runs=6
while [[ $# -gt 0 ]]; do
    case $1 in
        --queues) queues=${2:?--queues needs a number}; shift ;;
        --port) port=${2:?--port needs a number}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "worker.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
bench_cluster_start "$port" "max_connections = 50" "shared_buffers = 512MB" \
    "deliver.max_queues = $((queues + 100))" "deliver.max_consumer_groups = $((2 * queues + 100))" \
    "max_locks_per_transaction = 256" || { echo "worker.sh: the cluster does not start" >&2; exit 1; }
trap 'bench_cluster_stop; rm -rf "$work"' EXIT
dsn="host=$work port=$port dbname=bench user=postgres"
psql_b() { as_pg "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$dsn" "$@"; }
psql_b -c "CREATE EXTENSION deliver"
log "creating $queues queues"
for i in $(seq 1 "$queues"); do echo "SELECT deliver.create_queue('w$i');"; done | psql_b >/dev/null
for i in $(seq 1 "$queues"); do echo "SELECT deliver.send('w$i', '{}');"; done | psql_b >/dev/null
last=
for _ in $(seq 1 "$runs"); do
    for _ in $(seq 1 600); do
        r=$(psql_b -c "SELECT runs || ' ' || extract(epoch FROM last_run_duration) FROM deliver.worker_status()")
        [[ $r != "$last" ]] && break
        sleep 0.1
    done
    last=$r
    log "worker run ${r% *}: ${r#* } s over $queues queues"
done
t0=$(date +%s.%N)
psql_b -c "SELECT count(*) FROM deliver.maintain()" >/dev/null
t1=$(date +%s.%N)
log "deliver.maintain() over $queues queues in one transaction: $(echo "$t1 - $t0" | bc) s"
