#!/usr/bin/env bash
# The TypeScript client's tests against a running deliver cluster (PGHOST,
# PGPORT, as scripts/test sets them): installs the dependencies from the
# lockfile when node_modules is missing, builds with tsc, makes a database
# client_typescript with the extension and a role, starts deliverd on a free
# port for the HTTP tests, runs each test file with node's test runner and
# prints one line per file:
#   clients/typescript/test/x.test.js ... ok      (or ... FAILED, after its output)
# then drops what it made and stops deliverd.
#   bash clients/typescript/test.sh            every test file
#   bash clients/typescript/test.sh --list     the test files, one a line
#   bash clients/typescript/test.sh FILE...    only these (test/x.test.js)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

shopt -s nullglob
if [[ $# -gt 0 && $1 != --list ]]; then tests=("$@"); else tests=(test/*.test.js); fi
if [[ ${1:-} == --list ]]; then
    printf 'clients/typescript/%s\n' "${tests[@]}"
    exit 0
fi

export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-$(id -un)}
db=client_typescript
role=client_ts_app
work=$(mktemp -d "${TMPDIR:-/tmp}/client-typescript.XXXXXX")
# npm needs a writable home and cache (scripts/test runs this as postgres,
# whose HOME may be root's or not writable)
if [[ -z ${HOME:-} || ! -w ${HOME:-/nonexistent} ]]; then export HOME=$work/home; mkdir -p "$HOME"; fi
export npm_config_cache=${npm_config_cache:-$HOME/.npm} npm_config_update_notifier=false \
       npm_config_fund=false npm_config_audit=false

command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "clients/typescript: node and npm are needed (bash scripts/install-deps)" >&2; exit 1; }
if [[ ! -d node_modules/pg || ! -x node_modules/.bin/tsc ]]; then
    npm ci --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1 || { cat "$work/npm.log"; exit 1; }
fi
node_modules/.bin/tsc -p tsconfig.json

pgbin=${PG_CONFIG:+$("$PG_CONFIG" --bindir)/}
psql() { PGOPTIONS="-c client_min_messages=warning" "${pgbin}psql" -XAtq -v ON_ERROR_STOP=1 "$@"; }

# shellcheck source=../test-gateways.sh
source "$here/../test-gateways.sh"
cleanup() {
    local rc=$?
    gateways_stop
    psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1 || true
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" \
     -c "DROP ROLE IF EXISTS $role" -c "CREATE ROLE $role NOLOGIN" >/dev/null
psql -d "$db" -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION deliver' \
     -c "GRANT USAGE ON SCHEMA deliver TO $role" >/dev/null

# deliverd on a free port, signing tokens with a secret of this run
deliverd=$here/../../gateway/deliverd
[[ -x $deliverd ]] || deliverd=$(command -v deliverd || true)
export DELIVER_TEST_ROLE=$role PGDATABASE=$db
if [[ -n $deliverd ]]; then
    secret=$(node -e 'console.log(require("crypto").randomBytes(24).toString("hex"))')
    gateway_start deliverd "$work" "$deliverd" "$(printf '%s\n' \
        "conninfo = 'host=$PGHOST port=$PGPORT dbname=$db user=$PGUSER'" "jwt_secret = $secret" "pool_size = 8")"
    export DELIVER_HTTP_URL=$gw_url DELIVER_JWT_SECRET=$secret
    # and a cluster's gateway (the cluster tests: ids partition:epoch:id)
    cluster_gateway_start client_ts "$role" "$secret" "$work" "$deliverd"
else
    echo "clients/typescript: no deliverd found: the HTTP tests will fail" >&2
fi

failed=0
for t in "${tests[@]}"; do
    if timeout 300 node --test "$t" >"$work/out" 2>&1; then
        echo "clients/typescript/$t ... ok"
    else
        cat "$work/out"
        if [[ $t == *http* ]]; then echo "---- deliverd log (tail)"; tail -n 30 "$work/deliverd.log"; fi
        if [[ $t == *cluster* ]]; then echo "---- deliverd (cluster) log (tail)"; tail -n 30 "$work/deliverd-cluster.log"; fi
        echo "clients/typescript/$t ... FAILED"
        failed=$((failed + 1))
    fi
done
[[ $failed -eq 0 ]]
