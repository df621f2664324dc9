#!/usr/bin/env bash
# bench/routing.sh: what topic routing costs.  On a throwaway durable
# cluster, 100 queues; pgbench (4 clients, one message per transaction,
# durable commits) runs for each case:
#   send            deliver.send to one queue (no routing: the baseline)
#   publish, 10     deliver.publish with 10 bindings (orders.<i>.*)
#   publish, 10000  deliver.publish with 10,000 bindings (100 per queue)
# each publish matching exactly one queue, as the send does; and the
# matching alone (deliver.test_routing, no write) with 10 and 10,000
# bindings; and the time a backend takes to compile 10,000 bindings (its
# first test_routing after a bind).  Latencies are pgbench's per
# transaction (its --log), p50 and p99; tps from the same runs.
#
#   bench/routing.sh [--duration S] [--clients N] [--rounds R] [--port P]
#
# Prints a table and writes bench/results/<date>-routing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
source bench/pgbench.sh   # pgbench_case
pgbench_setup routing "${DELIVER_ROUTING_PORT:-55496}" "$@"
q -c "SELECT count(deliver.create_queue(format('rq%s', i))) FROM generate_series(1, 100) i" >/dev/null

# bindings N: N bindings over the 100 queues (the others removed),
# orders.<n>.* to queue rq<(n - 1) % 100 + 1>: n = 1..10 to rq1..rq10
bindings() {
    q -c "SELECT count(deliver.unbind(pattern, queue_name)) FROM deliver.list_bindings()" \
      -c "SELECT count(deliver.bind(format('orders.%s.*', n), format('rq%s', (n - 1) % 100 + 1))) FROM generate_series(1, $1) n" >/dev/null
}

payload="'{\"order\": 1, \"pad\": \"$(printf 'x%.0s' {1..80})\"}'"
purge() { q -c "SELECT count(deliver.purge_queue(format('rq%s', i))) FROM generate_series(1, 100) i" >/dev/null; }
declare -A res
for r in $(seq 1 "$rounds"); do
    # each run starts from empty queues (and a checkpoint, in pgbench_case)
    bindings 10
    purge; res[send10.$r]=$(pgbench_case send10 10 "SELECT deliver.send('rq' || :k, $payload);")
    purge; res[pub10.$r]=$(pgbench_case pub10 10 "SELECT * FROM deliver.publish('orders.' || :k || '.created', $payload);")
    res[match10.$r]=$(pgbench_case match10 10 "SELECT * FROM deliver.test_routing('orders.' || :k || '.created');")
    bindings 10000
    purge; res[send100.$r]=$(pgbench_case send100 10000 "SELECT deliver.send('rq' || ((:k - 1) % 100 + 1), $payload);")
    purge; res[pub10000.$r]=$(pgbench_case pub10000 10000 "SELECT * FROM deliver.publish('orders.' || :k || '.created', $payload);")
    res[match10000.$r]=$(pgbench_case match10000 10000 "SELECT * FROM deliver.test_routing('orders.' || :k || '.created');")
done
# a new session's first call compiles the 10,000 bindings: its time, then the next call's, in ms
times=$(q -c '\timing on' -c "SELECT count(*) FROM deliver.test_routing('orders.1.created')" \
    -c "SELECT count(*) FROM deliver.test_routing('orders.1.created')" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
build_ms=$(sed -n 1p <<<"$times")
again_ms=$(sed -n 2p <<<"$times")

stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-routing.md
row() { read -r tps p50 p99 <<<"${res[$2]}"; printf '| %s | %s | %s | %s |\n' "$1" "$tps" "$p50" "$p99"; }
{
    echo "# Topic routing cost, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$cmd\`; $(nproc) cores (shared with other work), PostgreSQL"
    echo "$(q -c 'SHOW server_version' | cut -d' ' -f1), fsync on, synchronous_commit on; 100 queues,"
    echo "$clients pgbench clients, ${duration} s per case, one message (about 100 bytes of JSON) per"
    echo "transaction; each publish matches exactly one queue, like the send."
    echo
    echo "| case | tps | p50 ms | p99 ms |"
    echo "| --- | ---: | ---: | ---: |"
    for r in $(seq 1 "$rounds"); do
        row "send to 10 queues (no routing), round $r" "send10.$r"
        row "publish, 10 bindings over 10 queues, round $r" "pub10.$r"
        row "send to 100 queues (no routing), round $r" "send100.$r"
        row "publish, 10,000 bindings over 100 queues, round $r" "pub10000.$r"
        row "test_routing (match only, no write), 10 bindings, round $r" "match10.$r"
        row "test_routing (match only, no write), 10,000 bindings, round $r" "match10000.$r"
    done
    echo
    echo "Compiling 10,000 bindings (a session's first call after a change): ${build_ms} ms;"
    echo "the next call in that session: ${again_ms} ms."
} >"$out"
cat "$out"
echo "routing: wrote $out"
