# shellcheck shell=bash
# pgbench runs against the benchmark cluster, shared by bench/*.sh
# (sourced after bench/cluster.sh and bench_cluster_start): one custom
# script per case, latencies from pgbench's per-transaction log.
# Needs: work, port, clients, duration.

# pgbench_case NAME KEYS SQL: run SQL (one or more statements, each its
# own transaction; :k is a random 1..KEYS) with $clients clients for
# $duration s after a checkpoint; prints "tps p50 p99" (latencies of a
# whole script, in ms).
pgbench_case() {
    local name=$1 keys=$2 sql=$3 dir=$work/$1
    mkdir -p "$dir"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$dir"
    printf '\\set k random(1, %s)\n%s\n' "$keys" "$sql" | as_pg tee "$dir/script.sql" >/dev/null
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench -c 'CHECKPOINT'
    as_pg "$pgbin/pgbench" -n -h "$work" -p "$port" -c "$clients" -j "$clients" -T "$duration" \
        -f "$dir/script.sql" -l --log-prefix="$dir/lat" bench >"$dir/out.txt" 2>&1 ||
        { cat "$dir/out.txt" >&2; return 1; }
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$dir/out.txt" | head -n 1)
    # column 3 of pgbench's log: the script's latency in microseconds
    cat "$dir"/lat.* | awk '{print $3}' | sort -n | awk -v tps="$tps" '
        { v[NR] = $1 }
        END { p50 = v[int(NR * 0.50) + 1]; p99 = v[int(NR * 0.99) + 1];
              printf "%.0f %.3f %.3f\n", tps, p50 / 1000, p99 / 1000 }'
}
