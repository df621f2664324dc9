#!/usr/bin/env bash
# The console's browser tests: a Postgres cluster of their own (its
# maintenance worker serving the test database, alerts checked every
# second, wal_level logical for a push subscription), deliverd built from
# this tree serving the console built from this tree, and Debian's chromium
# driven headless by puppeteer-core. One test per page and per action;
# each saves a screenshot under $DELIVER_RESULTS_DIR/console (or
# gateway/ui/results) and prints one line:
#   console/NAME ... ok      (or ... FAILED, after its output)
# Run by scripts/test (pattern: console) as the postgres user, or alone as
# any user but root (initdb refuses root):
#   bash gateway/ui/test.sh            every test
#   bash gateway/ui/test.sh --list     the tests, one a line
#   bash gateway/ui/test.sh NAME...    only these
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

if [[ ${1:-} == --list ]]; then
    exec node test/run.mjs --list
fi
[[ $EUID -ne 0 ]] || { echo "console: run the tests as a user other than root (initdb refuses root)" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "console: node and npm are needed (bash scripts/install-deps)" >&2; exit 1; }
chromium=${CHROMIUM:-$(command -v chromium || true)}
[[ -x $chromium ]] || { echo "console: Debian's chromium is needed (bash scripts/install-deps)" >&2; exit 1; }

source "$here/../../scripts/lib.sh"     # pgbin (DELIVER_PGBIN), push_plugin_conf
work=$(mktemp -d "${TMPDIR:-/tmp}/console-test.XXXXXX")
results=${DELIVER_RESULTS_DIR:-$here/results}/console
mkdir -p "$results"
# npm needs a writable home and cache (scripts/test runs this as postgres)
if [[ -z ${HOME:-} || ! -w ${HOME:-/nonexistent} ]]; then export HOME=$work/home; mkdir -p "$HOME"; fi
export npm_config_cache=${npm_config_cache:-$HOME/.npm} npm_config_update_notifier=false \
       npm_config_fund=false npm_config_audit=false

if [[ ! -x node_modules/.bin/esbuild || ! -d node_modules/puppeteer-core ]]; then
    npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1 || { cat "$work/npm.log"; exit 1; }
fi
node build.mjs

# deliverd: the one built in this tree (make), else the installed one
deliverd=$here/../deliverd
[[ -x $deliverd ]] || deliverd=$pgbin/deliverd
[[ -x $deliverd ]] || { echo "console: no deliverd (make -C gateway)" >&2; exit 1; }

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
pgport=$(free_port)
pgdata=$work/pgdata
gw_pid=
cleanup() {
    local rc=$?
    [[ -n $gw_pid ]] && { kill -TERM "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null || true; }
    [[ -f $pgdata/postmaster.pid ]] && "$pgbin/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
    if [[ $rc -eq 0 ]]; then rm -rf "$work"; else echo "console: test files kept in $work"; fi
    exit $rc
}
trap cleanup EXIT

"$pgbin/initdb" -D "$pgdata" -A trust -N -E UTF8 >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; exit 1; }
{ echo "shared_preload_libraries = 'deliver'"
  echo "wal_level = logical"
  echo "track_commit_timestamp = on"
  echo "max_replication_slots = 4"
  echo "max_wal_senders = 4"
  echo "fsync = off"
  echo "port = $pgport"
  echo "listen_addresses = ''"
  echo "unix_socket_directories = '$work'"
  echo "deliver.database = 'console'"
  echo "deliver.alert_interval = '1s'"
  push_plugin_conf
} >>"$pgdata/postgresql.conf"
"$pgbin/pg_ctl" -D "$pgdata" -l "$work/server.log" -w start >/dev/null 9>&- ||
    { tail -n 30 "$work/server.log"; exit 1; }
export PGHOST=$work PGPORT=$pgport PGUSER=$(id -un) PGDATABASE=console
psql() { PGOPTIONS="-c client_min_messages=warning" "$pgbin/psql" -XAtq -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE console"
# the console's roles: an operator who may redrive and delete dead letters
# and read the workers, and a role of no queue; deliverd logs in as
# console_gateway (NOINHERIT), which may only become them
psql -d console >/dev/null <<'SQL'
CREATE EXTENSION deliver;
CREATE ROLE console_operator NOLOGIN;
CREATE ROLE console_stranger NOLOGIN;
CREATE ROLE console_gateway LOGIN NOINHERIT IN ROLE console_operator, console_stranger;
GRANT USAGE ON SCHEMA deliver TO console_operator, console_stranger;
GRANT EXECUTE ON FUNCTION deliver.redrive(text, bigint[], text, text),
                          deliver.delete_dead_letters(text, bigint[], text),
                          deliver.worker_status() TO console_operator;
SQL

secret=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
gwport=$(free_port)
cat >"$work/deliverd.conf" <<EOF
listen = 127.0.0.1
port = $gwport
conninfo = 'host=$work port=$pgport dbname=console user=console_gateway'
jwt_secret = $secret
pool_size = 6
ui_dir = $here/dist
access_log = $work/access.log
EOF
"$deliverd" -c "$work/deliverd.conf" >"$work/deliverd.log" 2>&1 9>&- &
gw_pid=$!
for _ in $(seq 100); do
    node -e "fetch('http://127.0.0.1:$gwport/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" && break
    kill -0 "$gw_pid" 2>/dev/null || { cat "$work/deliverd.log"; exit 1; }
    sleep 0.1
done

export CONSOLE_URL=http://127.0.0.1:$gwport CONSOLE_JWT_SECRET=$secret CONSOLE_RESULTS=$results \
       CHROMIUM=$chromium PSQL="$pgbin/psql"
if node test/run.mjs "$@"; then
    exit 0
fi
echo "---- deliverd log (tail)"; tail -n 20 "$work/deliverd.log"
exit 1
