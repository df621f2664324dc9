# shellcheck shell=bash
# pgbench runs against the benchmark cluster, shared by bench/*.sh
# (sourced after bench/cluster.sh and bench_cluster_start): one custom
# script per case, latencies from pgbench's per-transaction log.
# pgbench_setup NAME DEFAULT_PORT ARGS...: the options of bench/NAME.sh
# ([--duration S] [--clients N] [--rounds R] [--port P], and for those
# that fill a backlog [--backlog N]) into duration, clients, rounds, port,
# backlog (${backlog:-its default}) and cmd (the command line to quote in
# a report);
# then builds and installs deliver and starts the cluster (stopped and
# removed on exit) with the extension created; q runs psql there.
pgbench_setup() {
    local name=$1
    duration=10 clients=4 rounds=2 port=$2
    shift 2
    while [[ $# -gt 0 ]]; do
        case $1 in
            --duration) duration=$2; shift 2 ;;
            --clients) clients=$2; shift 2 ;;
            --port) port=$2; shift 2 ;;
            --rounds) rounds=$2; shift 2 ;;
            --backlog) [[ -n ${backlog:-} ]] || { echo "bench/$name.sh has no --backlog" >&2; exit 2; }
                       backlog=$2; shift 2 ;;
            *) echo "usage: bench/$name.sh [--duration S] [--clients N] [--rounds R] [--port P]${backlog:+ [--backlog N]}" >&2; exit 2 ;;
        esac
    done
    cmd="bash bench/$name.sh --duration $duration --clients $clients --rounds $rounds${backlog:+ --backlog $backlog}"
    build_and_install
    trap 'bench_cluster_stop; [[ -z ${work:-} ]] || rm -rf "$work"' EXIT
    bench_cluster_start "$port" "shared_buffers = 512MB" "max_connections = 50"
    q -c 'CREATE EXTENSION deliver'
}
q() { as_pg "$pgbin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d bench "$@"; }

# The cases below need: work, port, clients, duration (pgbench_setup).

# pgbench_case NAME KEYS SQL: run SQL (one or more statements, each its
# own transaction; :k is a random 1..KEYS) with $clients clients for
# $duration s after a checkpoint; prints "tps p50 p99" (latencies of a
# whole script, in ms, of this run only).  pgbench_mode (simple by
# default) is pgbench's protocol: prepared runs each statement as an
# application would, parsed and planned once per connection; pgbench_db
# (bench by default) the database it runs in.
pgbench_case() {
    local name=$1 keys=$2 sql=$3 dir=$work/$1
    mkdir -p "$dir"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$dir"
    rm -f "$dir"/lat.*
    printf '\\set k random(1, %s)\n%s\n' "$keys" "$sql" | as_pg tee "$dir/script.sql" >/dev/null
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench -c 'CHECKPOINT'
    as_pg "$pgbin/pgbench" -n -M "${pgbench_mode:-simple}" -h "$work" -p "$port" -c "$clients" -j "$clients" -T "$duration" \
        -f "$dir/script.sql" -l --log-prefix="$dir/lat" "${pgbench_db:-bench}" >"$dir/out.txt" 2>&1 ||
        { cat "$dir/out.txt" >&2; return 1; }
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$dir/out.txt" | head -n 1)
    # column 3 of pgbench's log: the script's latency in microseconds
    cat "$dir"/lat.* | awk '{print $3}' | sort -n | awk -v tps="$tps" '
        { v[NR] = $1 }
        END { p50 = v[int(NR * 0.50) + 1]; p99 = v[int(NR * 0.99) + 1];
              printf "%.0f %.3f %.3f\n", tps, p50 / 1000, p99 / 1000 }'
}
