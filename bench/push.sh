#!/usr/bin/env bash
# bench/push.sh: push delivery through logical decoding, measured end to end
# with the deliver client: producers send with pgbench, `deliver listen
# --report` streams the push subscription and reports msgs/s and the
# commit-to-consumer latency (the message's commit timestamp on the server to
# the moment the client has written it out).
#
#   [DELIVER_PGBIN=.../bin] bench/push.sh [--port N] [--duration S]
#                                         [--catch-up MESSAGES] [--keep]
#
# Scenarios: steady 2,000 msgs/s of single-message sends (latency), 4
# producers sending batches of 100 as fast as they can (throughput), 100,000
# msgs/s offered in batches of 100 (latency at that rate), and a
# backlog (--catch-up, 1,000,000) streamed by a client started after it was
# sent (decoding speed, CPU per message of the walsender and the client).
# Writes bench/results/<stamp>-push.md. About two minutes.
set -euo pipefail
trap 'echo "push.sh: failed at line $LINENO" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
port=55498
duration=15
catchup=1000000
keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) port=${2:?--port needs a number}; shift ;;
        --duration) duration=${2:?--duration needs seconds}; shift ;;
        --catch-up) catchup=${2:?--catch-up needs a number of messages}; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

# catch-up NAME MESSAGES: a backlog sent with no client streaming (batches
# of 100 by 4 pgbench clients), then the client streams it: time to confirm
# it all, and the CPU the walsender and the client spent per message (from
# /proc: a figure a busy machine does not change much)
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
catch_up() {
    local name=$1 n=$2
    psql_b -c "SELECT deliver.create_queue('push')" \
           -c "SELECT deliver.drop_consumer_group('push', 'default')" \
           -c "SELECT deliver.create_push_subscription('push', 'push_bench')" >/dev/null
    log "$name: sending $n messages with no client streaming"
    as_pg "$pgbin/pgbench" -n -t $((n / 400)) -c 4 -j 2 -f "$work/batch.sql" "$dsn" >"$work/$name.pgbench" 2>&1 ||
        { cat "$work/$name.pgbench"; fail "pgbench failed"; }
    local end; end=$(psql_b -c "SELECT pg_current_wal_insert_lsn()")
    local t0 t1 wpid=
    t0=$(date +%s.%N)
    "$pgbin/deliver" -d "$dsn" listen push_bench --batch 1000 --report --status-interval 1 \
        >/dev/null 2>"$work/$name.listen" 9>&- &
    lpid=$!
    for _ in $(seq 1 6000); do
        [[ -n $wpid ]] || wpid=$(psql_b -c "SELECT pid FROM pg_stat_replication WHERE application_name <> 'walreceiver' LIMIT 1")
        [[ $(psql_b -c "SELECT confirmed_lsn >= '$end' FROM deliver.push_metrics()") == t ]] && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    local wcpu lcpu
    wcpu=$(cpu_ticks "$wpid"); lcpu=$(cpu_ticks "$lpid")
    kill -TERM "$lpid"; wait "$lpid" || true
    lpid=
    local line
    line=$(awk -v n="$n" -v t0="$t0" -v t1="$t1" -v w="$wcpu" -v l="$lcpu" -v hz="$hz" 'BEGIN {
        printf "%d messages streamed in %.2f s (%d msgs/s); CPU per message: walsender %.2f us, client %.2f us",
               n, t1 - t0, n / (t1 - t0), w * 1e6 / hz / n, l * 1e6 / hz / n }')
    log "$name: $line"
    results+=("| $name | -t $((n / 400)) -c 4 -j 2 -f batch.sql, then the client | $((n / 400 * 4)) | $line |")
    psql_b -c "SELECT deliver.drop_push_subscription('push_bench')" -c "SELECT deliver.drop_queue('push')" >/dev/null
}

run steady-2000-single -f "$work/single.sql" -c 4 -j 2 -R 2000
run max-batch100-c4 -f "$work/batch.sql" -c 4 -j 2
# the latency target's shape: 100,000 msgs/s offered (1,000 batches of 100 a second)
run paced-100k-batch100 -f "$work/batch.sql" -c 4 -j 2 -R 1000
catch_up catch-up-$((catchup / 1000))k "$catchup"

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
