#!/usr/bin/env bash
# bench/depth.sh: what max_depth costs a send.  On a throwaway durable
# cluster, two queues each with a backlog of --backlog messages (500,000
# by default) nobody receives; pgbench (4 clients, one message per
# transaction, durable commits) sends to
#   none     the queue without max_depth (the baseline)
#   far      the queue with max_depth 10^12: far from the limit
# and, for the near case, one send refused at the limit of a third queue
# (max_depth = its backlog): the exact count, timed by psql.  Latencies are
# pgbench's per transaction (its --log), p50 and p99; tps from the same runs.
#
#   bench/depth.sh [--duration S] [--clients N] [--rounds R] [--backlog N] [--port P]
#
# Prints a table and writes bench/results/<date>-depth.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
source bench/pgbench.sh   # pgbench_case
backlog=500000
pgbench_setup depth "${DELIVER_DEPTH_PORT:-55498}" "$@"
q -c "SELECT deliver.create_queue('dnone')" \
  -c "SELECT deliver.create_queue('dfar', max_depth => 1000000000000)" \
  -c "SELECT deliver.create_queue('dfull', max_depth => $backlog)" >/dev/null
payload="'{\"order\": 1, \"pad\": \"$(printf 'x%.0s' {1..80})\"}'"
# the backlogs, in batches of 10,000
for qn in dnone dfar dfull; do
    for ((i = 0; i < backlog; i += 10000)); do
        q -c "SELECT count(*) FROM deliver.send_batch('$qn', array_fill($payload::jsonb, ARRAY[least(10000, $backlog - $i)]))" >/dev/null
    done
done
q -c 'VACUUM ANALYZE' >/dev/null

declare -A res
for r in $(seq 1 "$rounds"); do
    res[none.$r]=$(pgbench_case none 1 "SELECT deliver.send('dnone', $payload);")
    res[far.$r]=$(pgbench_case far 1 "SELECT deliver.send('dfar', $payload);")
done
# a send refused at the limit counts the whole backlog: its time, twice, in ms
times=$(q -c '\timing on' \
    -c "SELECT deliver.send('dfull', $payload) WHERE false" \
    -c "DO \$\$BEGIN PERFORM deliver.send('dfull', '{}'); EXCEPTION WHEN configuration_limit_exceeded THEN NULL; END\$\$" \
    -c "DO \$\$BEGIN PERFORM deliver.send('dfull', '{}'); EXCEPTION WHEN configuration_limit_exceeded THEN NULL; END\$\$" \
    | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
full1_ms=$(sed -n 2p <<<"$times")
full2_ms=$(sed -n 3p <<<"$times")
depth=$(q -c "SELECT depth FROM deliver.metrics('dfar')")

stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-depth.md
row() { read -r tps p50 p99 <<<"${res[$2]}"; printf '| %s | %s | %s | %s |\n' "$1" "$tps" "$p50" "$p99"; }
{
    echo "# max_depth cost, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$cmd\`; $(nproc) cores (shared with other work), PostgreSQL"
    echo "$(q -c 'SHOW server_version' | cut -d' ' -f1), fsync on, synchronous_commit on;"
    echo "$clients pgbench clients, ${duration} s per case, one message (about 100 bytes of JSON) per"
    echo "transaction, to a queue with a backlog of $backlog messages nobody receives"
    echo "(the max_depth queue's depth at the end: $depth)."
    echo
    echo "| case | tps | p50 ms | p99 ms |"
    echo "| --- | ---: | ---: | ---: |"
    for r in $(seq 1 "$rounds"); do
        row "send, no max_depth, round $r" "none.$r"
        row "send, max_depth far from the depth, round $r" "far.$r"
    done
    echo
    echo "A send refused at the limit (max_depth = the backlog of $backlog: an exact"
    echo "count of the backlog): ${full1_ms} ms, and again: ${full2_ms} ms."
} >"$out"
cat "$out"
echo "depth: wrote $out"
