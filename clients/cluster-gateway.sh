# shellcheck shell=bash
# Sourced by the clients' test.sh: a deliver cluster inside the test
# Postgres (a router database and two shard databases, as test/t's
# router_shard_node makes them; no pg_auto_failover) behind deliverd in
# cluster mode, for the tests that use a client against a cluster's gateway
# (its ids are partition:epoch:id, not integers).
#
#   cluster_gateway_start PREFIX ROLE SECRET WORK DELIVERD
#       makes databases PREFIX_router, PREFIX_s0, PREFIX_s1 (4 partitions,
#       2 on each shard), queue PREFIX_q with every right for ROLE, starts
#       deliverd (tokens signed with SECRET, files in WORK) and exports
#       DELIVER_CLUSTER_URL and DELIVER_CLUSTER_QUEUE
#   cluster_gateway_stop
#       stops that deliverd and drops the databases (from the caller's cleanup)
#
# Needs the caller's psql function (psql -XAtq ... as PGUSER, a superuser).

cg_pid=
cg_prefix=

cluster_gateway_start() {
    local prefix=$1 role=$2 secret=$3 work=$4 deliverd=$5 su port db s
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
    # a free port: bind to 0, read it back
    port=$(perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:0", Listen => 1) or die; print $s->sockport')
    cat >"$work/deliverd-cluster.conf" <<EOF
listen = 127.0.0.1
port = $port
router = 'host=$PGHOST port=$PGPORT dbname=${prefix}_router user=$su'
jwt_secret = $secret
pool_size = 4
max_wait = 10
stream_wait = 1
map_refresh = 1
idle_timeout = 30
access_log = off
EOF
    "$deliverd" -c "$work/deliverd-cluster.conf" >"$work/deliverd-cluster.log" 2>&1 9>&- &
    cg_pid=$!
    for _ in $(seq 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break
        kill -0 "$cg_pid" 2>/dev/null || break
        sleep 0.1
    done
    export DELIVER_CLUSTER_URL=http://127.0.0.1:$port DELIVER_CLUSTER_QUEUE=${prefix}_q
}

cluster_gateway_stop() {
    local db
    [[ -n $cg_pid ]] && { kill -TERM "$cg_pid" 2>/dev/null; wait "$cg_pid" 2>/dev/null || true; }
    cg_pid=
    [[ -n $cg_prefix ]] || return 0
    for db in "${cg_prefix}_router" "${cg_prefix}_s0" "${cg_prefix}_s1"; do
        psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}
