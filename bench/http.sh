#!/usr/bin/env bash
# The HTTP scenario: send + receive + ack through deliverd against the same
# flow over libpq, on one dedicated durable cluster; writes
# bench/results/http-<stamp>.md (msgs/s, request and send-to-ack latency
# percentiles, and the overhead ratio SQL / HTTP).
#   bench/http.sh [--port 55498] [--http-port 18498] [--duration 15]
# Needs the extension installed (make install) and builds gateway/deliverd
# and bench/httpbench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
port=55498 http_port=18498 duration=15
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) port=$2; shift ;;
        --http-port) http_port=$2; shift ;;
        --duration) duration=$2; shift ;;
        *) echo "http.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }

make -s -C "$repo/gateway" deliverd PG_CONFIG="$PG_CONFIG"
gcc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$($PG_CONFIG --includedir)" -o "$here/httpbench" \
    "$here/httpbench.c" -L"$($PG_CONFIG --libdir)" -lpq -ljansson -lpthread

gwpid=
cleanup() {
    [[ -n $gwpid ]] && kill -TERM "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null || true
    bench_cluster_stop
    [[ -z ${work:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
bench_cluster_start "$port" "max_connections = 100" "shared_buffers = 1GB"
psql_b() { as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench "$@"; }
psql_b -c 'CREATE EXTENSION deliver'
conninfo="host=$work port=$port dbname=bench user=postgres"

# the gateway as an anonymous superuser on loopback: the benchmark measures
# HTTP, JSON and the pool, not token checks (one HMAC per request)
DELIVERD_CONNINFO="$conninfo" DELIVERD_PORT=$http_port DELIVERD_ANON_ROLE=postgres \
DELIVERD_ACCESS_LOG=off DELIVERD_POOL_SIZE=12 "$repo/gateway/deliverd" 2>"$work/deliverd.log" &
gwpid=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break; sleep 0.1; done

results=()
run() {   # run NAME MODE ARGS...
    local name=$1 m=$2 q; shift 2
    q="q$RANDOM$RANDOM"
    psql_b -c "SELECT deliver.create_queue('$q')" >/dev/null
    log "$name ($m)"
    local line
    if [[ $m == http ]]; then
        line=$("$here/httpbench" --mode http --url "127.0.0.1:$http_port" --queue "$q" --duration "$duration" "$@")
    else
        line=$("$here/httpbench" --mode sql --conninfo "$conninfo" --queue "$q" --duration "$duration" "$@")
    fi
    echo "  $line"
    results+=("$name|$line")
    psql_b -c "SELECT deliver.drop_queue('$q')" >/dev/null
}
get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

for m in sql http; do
    run "single sends, 4 producers, 4 consumers, flat out" $m --batch 1
    run "batches of 100, 4 producers, 4 consumers, flat out" $m --batch 100
    run "single sends paced at 2,000/s" $m --batch 1 --rate 2000
done

stamp=$(date +%Y-%m-%d-%H%M)
out=$here/results/http-$stamp.md
mkdir -p "$here/results"
{
    echo "# HTTP gateway benchmark, $stamp"
    echo
    echo "- command: \`bash bench/http.sh --duration $duration\`"
    echo "- machine: $(nproc) cores, $(uname -sr); server: PostgreSQL 15, fsync on, synchronous_commit on, shared_buffers 1GB"
    echo "- deliverd: thread per connection, pool of 12, anonymous role (no token check), access log off"
    echo "- flow: producers send (one message or a batch per request/statement); consumers receive up to 100 with a 1 s long poll, then ack them in one call; 100-byte JSON payloads"
    echo "- latencies are per request (send, receive, ack) and send-to-ack per message"
    echo
    echo "| scenario | SQL msgs/s | HTTP msgs/s | overhead (SQL/HTTP) | send p99 SQL / HTTP | ack p99 SQL / HTTP | send-to-ack p50 SQL / HTTP | send-to-ack p99 SQL / HTTP |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    n=${#results[@]}
    half=$((n / 2))
    for ((i = 0; i < half; i++)); do
        s=${results[$i]#*|} h=${results[$((i + half))]#*|}
        name=${results[$i]%%|*}
        sr=$(get acked_per_s "$s") hr=$(get acked_per_s "$h")
        ratio=$(awk -v a="$sr" -v b="$hr" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
        echo "| $name | $sr | $hr | $ratio | $(get send_p99_ms "$s") / $(get send_p99_ms "$h") ms | $(get ack_p99_ms "$s") / $(get ack_p99_ms "$h") ms | $(get e2e_p50_ms "$s") / $(get e2e_p50_ms "$h") ms | $(get e2e_p99_ms "$s") / $(get e2e_p99_ms "$h") ms |"
    done
    echo
    echo "Raw lines:"
    echo
    echo '```'
    for r in "${results[@]}"; do echo "${r#*|}"; done
    echo '```'
} >"$out"
log "wrote $out"
cat "$out"
