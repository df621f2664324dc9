# shellcheck shell=bash
# Sourced by the clients' test.sh: the gateways their HTTP tests talk to.
#
#   gateway_start NAME WORK DELIVERD SETTINGS
#       deliverd with SETTINGS (key = value lines, after the shared ones) on
#       a free port, its files WORK/NAME.conf and WORK/NAME.log; waits until
#       it is ready and sets gw_url
#   cluster_gateway_start PREFIX ROLE SECRET WORK DELIVERD
#       a deliver cluster inside the test Postgres (databases PREFIX_router,
#       PREFIX_s0 and PREFIX_s1: 4 partitions, 2 on each shard, as test/t's
#       router_shard_node makes them; no pg_auto_failover), queue PREFIX_q
#       with every right for ROLE, and deliverd in cluster mode over it
#       (WORK/deliverd-cluster.log; tokens signed with SECRET); exports
#       DELIVER_CLUSTER_URL and DELIVER_CLUSTER_QUEUE.  Its ids are
#       partition:epoch:id, not integers.
#   gateways_stop
#       stops them, drops the cluster's databases (from the caller's cleanup)
#
# Needs the caller's psql function (psql -XAtq ... as PGUSER, a superuser).

gw_pids=()
cg_prefix=

gateway_start() {
    local name=$1 work=$2 deliverd=$3 settings=$4 port pid
    # a free port: bind to 0, read it back
    port=$(perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:0", Listen => 1) or die; print $s->sockport')
    printf '%s\n' "listen = 127.0.0.1" "port = $port" "max_wait = 10" "stream_wait = 1" "idle_timeout = 30" \
        "access_log = off" "$settings" >"$work/$name.conf"
    "$deliverd" -c "$work/$name.conf" >"$work/$name.log" 2>&1 9>&- &
    pid=$!
    gw_pids+=("$pid")
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    gw_url=http://127.0.0.1:$port
}

cluster_gateway_start() {
    local prefix=$1 role=$2 secret=$3 work=$4 deliverd=$5 su db s
    cg_prefix=$prefix
    su=$(psql -d postgres -c 'SELECT current_user')
    for db in "${prefix}_router" "${prefix}_s0" "${prefix}_s1"; do
        psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
    done
    for s in 0 1; do
        psql -d "${prefix}_s$s" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION deliver' \
             -c 'CREATE EXTENSION deliver_shard' >/dev/null
    done
    psql -d "${prefix}_router" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION plproxy' \
         -c 'CREATE EXTENSION deliver_router' -c 'SELECT deliver_cluster.set_partitions(4)' \
         -c "SELECT deliver_cluster.add_shard('s0', 'host=$PGHOST port=$PGPORT dbname=${prefix}_s0 user=$su')" \
         -c "SELECT deliver_cluster.add_shard('s1', 'host=$PGHOST port=$PGPORT dbname=${prefix}_s1 user=$su')" \
         -c 'SELECT deliver_cluster.place_partitions()' \
         -c "SELECT deliver_cluster.create_queue('${prefix}_q', visibility_timeout => '30 seconds')" \
         -c "SELECT deliver_cluster.grant_queue('${prefix}_q', '$role', 'all')" \
         -c "GRANT USAGE ON SCHEMA deliver_cluster TO $role" \
         -c "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA deliver_cluster TO $role" \
         -c "GRANT SELECT ON ALL TABLES IN SCHEMA deliver_cluster TO $role" \
         -c "GRANT USAGE ON FOREIGN SERVER deliver TO $role" >/dev/null
    gateway_start deliverd-cluster "$work" "$deliverd" \
        "$(printf '%s\n' "router = 'host=$PGHOST port=$PGPORT dbname=${prefix}_router user=$su'" \
            "jwt_secret = $secret" "pool_size = 4" "map_refresh = 1")"
    export DELIVER_CLUSTER_URL=$gw_url DELIVER_CLUSTER_QUEUE=${prefix}_q
}

gateways_stop() {
    local pid db
    for pid in "${gw_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${gw_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    gw_pids=()
    [[ -n $cg_prefix ]] || return 0
    for db in "${cg_prefix}_router" "${cg_prefix}_s0" "${cg_prefix}_s1"; do
        psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
