#!/usr/bin/env bash
# The Python client's tests against a running deliver cluster (PGHOST,
# PGPORT, as scripts/test sets them): makes a database client_python with the
# extension and a role, starts deliverd on a free port for the HTTP tests,
# runs each test file with /usr/bin/python3 -m pytest and prints one line per
# file:
#   clients/python/tests/test_x.py ... ok      (or ... FAILED, after its output)
# then drops what it made and stops deliverd.
#   bash clients/python/test.sh            every test file
#   bash clients/python/test.sh --list     the test files, one a line
#   bash clients/python/test.sh FILE...    only these (tests/test_x.py)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

shopt -s nullglob
if [[ $# -gt 0 && $1 != --list ]]; then tests=("$@"); else tests=(tests/test_*.py); fi
if [[ ${1:-} == --list ]]; then
    printf 'clients/python/%s\n' "${tests[@]}"
    exit 0
fi

python=${DELIVER_PYTHON:-/usr/bin/python3}
"$python" -c 'import psycopg, pytest, mypy' 2>/dev/null ||
    { echo "clients/python: $python needs psycopg 3, pytest and mypy (bash scripts/install-deps)" >&2; exit 1; }

export PGHOST=${PGHOST:-/var/run/postgresql} PGPORT=${PGPORT:-5432}
export PGUSER=${PGUSER:-$(id -un)}
db=client_python
role=client_py_app
work=$(mktemp -d "${TMPDIR:-/tmp}/client-python.XXXXXX")

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

# the tests import the package from src/ (no install needed), and the
# consumer processes they start do too
export PYTHONPATH=$here/src${PYTHONPATH:+:$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1
export DELIVER_TEST_DSN="dbname=$db" DELIVER_TEST_ROLE=$role DELIVER_PYTHON=$python PGDATABASE=$db

# deliverd on a free port, signing tokens with a secret of this run
deliverd=$here/../../gateway/deliverd
[[ -x $deliverd ]] || deliverd=$(command -v deliverd || true)
if [[ -n $deliverd ]]; then
    secret=$("$python" -c 'import secrets; print(secrets.token_hex(24))')
    gateway_start deliverd "$work" "$deliverd" "$(printf '%s\n' \
        "conninfo = 'host=$PGHOST port=$PGPORT dbname=$db user=$PGUSER'" "jwt_secret = $secret" "pool_size = 8")"
    export DELIVER_TEST_HTTP=$gw_url DELIVER_TEST_JWT_SECRET=$secret
    # and a cluster's gateway (the cluster tests: ids partition:epoch:id)
    cluster_gateway_start client_py "$role" "$secret" "$work" "$deliverd"
else
    echo "clients/python: no deliverd found: the HTTP tests will fail" >&2
fi

failed=0
for t in "${tests[@]}"; do
    if timeout 600 "$python" -m pytest -q -p no:cacheprovider -o console_output_style=classic -o faulthandler_timeout=120 "$t" >"$work/out" 2>&1; then
        # pytest's summary: "N passed in S.SSs"
        echo "clients/python/$t ... ok ($(grep -E '^[0-9]+ passed' "$work/out" | tail -n 1))"
    else
        cat "$work/out"
        if [[ $t == *http* ]]; then echo "---- deliverd log (tail)"; tail -n 30 "$work/deliverd.log"; fi
        if [[ $t == *cluster* ]]; then echo "---- deliverd (cluster) log (tail)"; tail -n 30 "$work/deliverd-cluster.log"; fi
        echo "clients/python/$t ... FAILED"
        failed=$((failed + 1))
    fi
done
[[ $failed -eq 0 ]]
