#!/usr/bin/env bash
# The HTTP scenario: send + receive + ack through deliverd against the same
# flow over libpq, on one dedicated durable cluster; writes
# bench/results/<stamp>-http.md (msgs/s, request and send-to-ack latency
# percentiles, the overhead ratio SQL / HTTP, and the CPU microseconds per
# message of the server, the gateway and the load generator).
#   bench/http.sh [--port 55498] [--http-port 18498] [--duration 15]
#                 [--rounds 1] [--compare DELIVERD] [--parse jansson]
#                 [--clients P,C] [--no-sync-commit]
# --compare runs a second gateway binary (say, one built from another
# commit) in the same rounds, between the SQL run and this tree's gateway,
# so that both are measured side by side on one cluster. --rounds repeats
# the whole set (the machine is shared: compare within a round).
# --parse jansson: the HTTP consumers parse each receive's answer into a
# jansson document rather than scanning for the two fields they need.
# --clients P,C: P producers and C consumers (4,4). --no-sync-commit: the
# database's synchronous_commit off, so that commits do not wait for fsync
# and what each request costs shows (CPU bound rather than disk bound).
# Needs the extension installed (make install) and builds gateway/deliverd
# and bench/httpbench.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
source "$here/cpu.sh"       # instance_ticks, us_per_msg
port=55498 http_port=18498 duration=15 rounds=1 compare= parse= producers=4 consumers=4 nosync=
args="$*"
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo -)
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) port=$2; shift ;;
        --http-port) http_port=$2; shift ;;
        --duration) duration=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --compare) compare=$(realpath "$2"); shift ;;
        --parse) parse=$2; shift ;;
        --clients) producers=${2%,*} consumers=${2#*,}; shift ;;
        --no-sync-commit) nosync=1 ;;
        *) echo "http.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }

make -s -C "$repo/gateway" deliverd PG_CONFIG="$PG_CONFIG"
gcc -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$($PG_CONFIG --includedir)" -o "$here/httpbench" \
    "$here/httpbench.c" -L"$($PG_CONFIG --libdir)" -lpq -ljansson -lpthread

gwpid=
gw_stop() {
    [[ -n $gwpid ]] && kill -TERM "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null || true
    gwpid=
}
cleanup() {
    gw_stop
    bench_cluster_stop
    [[ -z ${work:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
bench_cluster_start "$port" "max_connections = 100" "shared_buffers = 1GB"
psql_b() { as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench "$@"; }
psql_b -c 'CREATE EXTENSION deliver'
[[ -z $nosync ]] || psql_b -c 'ALTER DATABASE bench SET synchronous_commit = off'
conninfo="host=$work port=$port dbname=bench user=postgres"

# gw_start BINARY: the gateway as an anonymous superuser on loopback: the
# benchmark measures HTTP, JSON and the pool, not token checks (one HMAC per
# request); it still switches to that role in every request, as always.
# Every client is on this host: no per-address connection limit.
gw_start() {
    DELIVERD_CONNINFO="$conninfo" DELIVERD_PORT=$http_port DELIVERD_ANON_ROLE=postgres \
    DELIVERD_ACCESS_LOG=off DELIVERD_POOL_SIZE=12 DELIVERD_MAX_CONNECTIONS_PER_ADDRESS=0 \
    "$1" 2>>"$work/deliverd.log" &
    gwpid=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && return; sleep 0.1; done
    echo "http.sh: the gateway $1 did not start" >&2
    cat "$work/deliverd.log" >&2
    exit 1
}
proc_ticks() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }

# run KIND NAME ARGS...: one httpbench run; KIND is sql, http (this tree's
# gateway) or before (the --compare gateway). Appends a result line with
# the CPU microseconds per acked message of the server (every process of
# the instance), the gateway and httpbench itself.
results=()
run() {
    local kind=$1 name=$2 q line p0 p1 g0=0 g1=0 n client; shift 2
    q="q$RANDOM$RANDOM"
    psql_b -c "SELECT deliver.create_queue('$q')" >/dev/null
    psql_b -c "CHECKPOINT" >/dev/null
    log "$name ($kind)"
    p0=$(instance_ticks "$work/data")
    [[ -n $gwpid ]] && g0=$(proc_ticks "$gwpid")
    if [[ $kind == sql ]]; then
        line=$( { /usr/bin/time -f "CLIENT %U %S" "$here/httpbench" --mode sql --conninfo "$conninfo" \
                  --queue "$q" --duration "$duration" --producers "$producers" --consumers "$consumers" "$@"; } 2>&1 )
    else
        line=$( { /usr/bin/time -f "CLIENT %U %S" "$here/httpbench" --mode http --url "127.0.0.1:$http_port" \
                  --queue "$q" --duration "$duration" --producers "$producers" --consumers "$consumers" \
                  ${parse:+--parse "$parse"} "$@"; } 2>&1 )
    fi
    p1=$(instance_ticks "$work/data")
    [[ -n $gwpid ]] && g1=$(proc_ticks "$gwpid")
    n=$(sed -n 's/.* acked=\([0-9]*\).*/\1/p' <<<"$line")
    client=$(awk '/^CLIENT/ { printf "%d", ($2 + $3) * '"$hz"' }' <<<"$line")
    line=$(grep -v '^CLIENT' <<<"$line")
    line="$line cpu_pg_us=$(us_per_msg $((p1 - p0)) "$n") cpu_gw_us=$(us_per_msg $((g1 - g0)) "$n") cpu_client_us=$(us_per_msg "$client" "$n")"
    echo "  $line"
    results+=("$kind|$name|$line")
    psql_b -c "SELECT deliver.drop_queue('$q')" >/dev/null
}
scenarios() {   # scenarios KIND
    run "$1" "single sends, $producers producers, $consumers consumers, flat out" --batch 1
    run "$1" "batches of 100, $producers producers, $consumers consumers, flat out" --batch 100
    run "$1" "single sends paced at 2,000/s" --batch 1 --rate 2000
}

for ((r = 1; r <= rounds; r++)); do
    [[ $rounds -gt 1 ]] && log "round $r of $rounds"
    scenarios sql
    if [[ -n $compare ]]; then
        gw_start "$compare"
        scenarios before
        gw_stop
    fi
    gw_start "$repo/gateway/deliverd"
    scenarios http
    gw_stop
done

get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
cpu() {   # cpu LINE: pg + gw + client = total
    local p g c
    p=$(get cpu_pg_us "$1") g=$(get cpu_gw_us "$1") c=$(get cpu_client_us "$1")
    awk -v p="$p" -v g="$g" -v c="$c" 'BEGIN { t = (p == "-" ? 0 : p) + (g == "-" ? 0 : g) + (c == "-" ? 0 : c);
        printf "%s + %s + %s = %.1f", p, g, c, t }'
}
stamp=$(date +%Y-%m-%d-%H%M)
out=$here/results/$stamp-http.md
mkdir -p "$here/results"
{
    echo "# HTTP gateway benchmark, $stamp"
    echo
    echo "- command: \`bash bench/http.sh $args\`"
    echo "- commit: $commit${compare:+; compared with the gateway binary \`$compare\`}"
    echo "- machine: $(nproc) cores, $(uname -sr), shared with other work (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)); server: PostgreSQL 15, fsync on, synchronous_commit $([[ -n $nosync ]] && echo "off (--no-sync-commit)" || echo on), shared_buffers 1GB"
    echo "- deliverd: thread per connection, pool of 12, anonymous role postgres (no token check, the role still set in every request), access log off"
    echo "- flow: $producers producers, $consumers consumers; producers send (one message or a batch per request/statement); consumers receive up to 100 with a 1 s long poll, then ack them in one call; 100-byte JSON payloads; HTTP consumers $([[ $parse == jansson ]] && echo "parse each receive's answer into a jansson document" || echo "scan each receive's answer for the two fields they need (delivery_id, the payload's send time)")"
    echo "- msgs/s: messages acked per second over the run and its drain; latencies are per request (send, receive, ack) and send-to-ack per message"
    echo "- CPU µs/msg: server (every process of the instance) + gateway + load generator = total, per acked message"
    echo
    echo "| round | scenario | run | msgs/s | ratio SQL / run | send p50 / p99 | receive p50 / p99 | ack p50 / p99 | send-to-ack p50 / p99 | CPU µs/msg |"
    echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    per_round=$(( ${#results[@]} / rounds ))
    for ((i = 0; i < ${#results[@]}; i++)); do
        IFS='|' read -r kind name line <<<"${results[$i]}"
        round=$(( i / per_round + 1 ))
        # the SQL run of the same scenario in the same round
        sqlline=
        for ((j = round * per_round - per_round; j < round * per_round; j++)); do
            IFS='|' read -r k2 n2 l2 <<<"${results[$j]}"
            [[ $k2 == sql && $n2 == "$name" ]] && sqlline=$l2
        done
        label=$kind
        [[ $kind == http ]] && label="HTTP"
        [[ $kind == before ]] && label="HTTP (compared gateway)"
        [[ $kind == sql ]] && label="SQL"
        echo "| $round | $name | $label | $(get acked_per_s "$line") | $(ratio "$(get acked_per_s "$sqlline")" "$(get acked_per_s "$line")") |" \
             "$(get send_p50_ms "$line") / $(get send_p99_ms "$line") ms | $(get receive_p50_ms "$line") / $(get receive_p99_ms "$line") ms |" \
             "$(get ack_p50_ms "$line") / $(get ack_p99_ms "$line") ms | $(get e2e_p50_ms "$line") / $(get e2e_p99_ms "$line") ms | $(cpu "$line") |"
    done
    echo
    echo "Raw lines:"
    echo
    echo '```'
    for r in "${results[@]}"; do IFS='|' read -r kind name line <<<"$r"; echo "$kind: $line"; done
    echo '```'
} >"$out"
log "wrote $out"
cat "$out"
