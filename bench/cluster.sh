# shellcheck shell=bash
# The benchmark cluster, shared by bench/*.sh (sourced): one dedicated,
# durable cluster in a new directory on disk (not a tmpfs, so that fsync
# costs what it costs), deliver preloaded, database "bench".
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"   # pgbin, PG_CONFIG, as_pg, push_plugin_conf

# bench_cluster_start PORT [SETTING...]: make, configure and start the
# cluster; each SETTING is a postgresql.conf line added after the common
# ones (a later line wins). Sets work (its directory) and pgdata.
bench_cluster_start() {
    local port=$1; shift
    work=$(mktemp -d /var/tmp/deliverbench.XXXXXX)
    chmod 755 "$work"
    [[ $EUID -eq 0 ]] && chown postgres:postgres "$work"
    pgdata=$work/data
    as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -A trust >"$work/initdb.log" 2>&1 ||
        { cat "$work/initdb.log" >&2; return 1; }
    {
        cat <<CONF
# the benchmark: durable settings, one dedicated cluster
port = $port
listen_addresses = ''
unix_socket_directories = '$work'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = logical
max_wal_size = 8GB
max_wal_senders = 10
max_replication_slots = 10
shared_preload_libraries = 'deliver'
$(push_plugin_conf)
deliver.database = 'bench'
track_commit_timestamp = on    # deliver: pull in commit order per key
log_line_prefix = '%m [%p] %q%a '
CONF
        printf '%s\n' "$@"
    } | as_pg tee -a "$pgdata/postgresql.conf" >/dev/null
    # 9>&-: the server must not inherit a lock the caller may hold
    as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$work/postgres.log" -w start >/dev/null 9>&- ||
        { tail -n 30 "$work/postgres.log" >&2; return 1; }
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d postgres -c "CREATE DATABASE bench"
}

# bench_cluster_stop: stop the cluster if it runs (its directory stays).
bench_cluster_stop() {
    if [[ -n ${pgdata:-} && -f $pgdata/postmaster.pid ]]; then
        as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
}
