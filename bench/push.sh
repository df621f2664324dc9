#!/usr/bin/env bash
# bench/push.sh: push delivery through logical decoding, measured end to end
# with the deliver client: producers send with pgbench, `deliver listen
# --report` streams the push subscription and reports msgs/s and the
# commit-to-consumer latency (the message's commit timestamp on the server to
# the moment the client has written it out).
#
#   [DELIVER_PGBIN=.../bin] bench/push.sh [--port N] [--duration S] [--keep]
#
# Scenarios: steady 2,000 msgs/s of single-message sends (latency), and 4
# producers sending batches of 100 as fast as they can (throughput).
# Writes bench/results/<stamp>-push.md. About a minute.
set -euo pipefail
trap 'echo "push.sh: failed at line $LINENO" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
port=55498
duration=15
keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) port=${2:?--port needs a number}; shift ;;
        --duration) duration=${2:?--duration needs seconds}; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "push.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf 'push.sh: %s\n' "$*" >&2; exit 1; }

command -v "$pgbin/deliver" >/dev/null || fail "$pgbin/deliver is missing: run make install at the top"
stamp=$(date -u +%Y-%m-%d-%H%M)
out=$here/results/$stamp-push.md
lpid=
cleanup() {
    [[ -n $lpid ]] && { kill -TERM "$lpid" 2>/dev/null || true; }
    bench_cluster_stop
    [[ -n ${work:-} ]] || return 0
    if [[ $keep == 1 ]]; then log "cluster kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

log "initdb (port $port)"
bench_cluster_start "$port" "max_connections = 50" "shared_buffers = 512MB" ||
    fail "the cluster does not start"
dsn="host=$work port=$port dbname=bench user=postgres"
psql_b() { as_pg "$pgbin/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$dsn" "$@"; }
psql_b -c "CREATE EXTENSION deliver"

payload='{"data": "0123456789012345678901234567890123456789012345678901234567890123456789012345"}'
echo "SELECT deliver.send('push', '$payload');" >"$work/single.sql"
echo "SELECT deliver.send_batch('push', array_fill('$payload'::jsonb, ARRAY[100]));" >"$work/batch.sql"
chmod 644 "$work"/*.sql

results=()
# run NAME PGBENCH-ARGS...: a fresh queue and subscription, the client
# streaming while pgbench sends, then the client's report
run() {
    local name=$1; shift
    psql_b -c "SELECT deliver.create_queue('push')" \
           -c "SELECT deliver.drop_consumer_group('push', 'default')" \
           -c "SELECT deliver.create_push_subscription('push', 'push_bench')" >/dev/null
    # the client runs as the caller (only the server refuses root)
    "$pgbin/deliver" -d "$dsn" listen push_bench --batch 1000 --report --status-interval 1 \
        >/dev/null 2>"$work/$name.listen" 9>&- &
    lpid=$!
    sleep 1
    log "$name: pgbench $*"
    as_pg "$pgbin/pgbench" -n -T "$duration" "$@" "$dsn" >"$work/$name.pgbench" 2>&1 ||
        { cat "$work/$name.pgbench"; fail "pgbench failed"; }
    # wait until the client confirmed everything sent
    local end; end=$(psql_b -c "SELECT pg_current_wal_insert_lsn()")
    for _ in $(seq 1 600); do
        [[ $(psql_b -c "SELECT confirmed_lsn >= '$end' FROM deliver.push_metrics()") == t ]] && break
        sleep 0.1
    done
    kill -TERM "$lpid"; wait "$lpid" || true
    lpid=
    local sent report
    sent=$(grep -E '^number of transactions actually processed' "$work/$name.pgbench" | awk '{print $NF}' | cut -d/ -f1)
    report=$(grep 'received' "$work/$name.listen" | tail -n 1 | sed 's/^deliver: //') ||
        { cat "$work/$name.listen" >&2; fail "the client did not report"; }
    log "$name: $report"
    results+=("| $name | $* | $sent | $report |")
    psql_b -c "SELECT deliver.drop_push_subscription('push_bench')" -c "SELECT deliver.drop_queue('push')" >/dev/null
}

run steady-2000-single -f "$work/single.sql" -c 4 -j 2 -R 2000
run max-batch100-c4 -f "$work/batch.sql" -c 4 -j 2

{
    echo "# Push benchmark $stamp"
    echo
    echo "\`bench/push.sh --duration $duration\`: one durable cluster (fsync on, synchronous_commit on,"
    echo "wal_level logical), producers are pgbench clients calling deliver.send / deliver.send_batch"
    echo "(100-byte JSON payloads), the consumer is \`deliver listen --batch 1000 --report\` on a push"
    echo "subscription (its output to /dev/null). Latency: the message's commit timestamp to the"
    echo "client having written it; msgs/s: messages over the time from the first to the last one."
    echo
    echo "| scenario | pgbench | transactions | client report |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${results[@]}" | sed "s|$work/||g"
    echo
    echo "Machine: $(nproc) cores, $(uname -r), PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')."
} >"$out"
log "wrote $out"
cat "$out"
