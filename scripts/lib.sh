# shellcheck shell=bash
# Shared by scripts/test and scripts/run (sourced, not run).
# DELIVER_PGBIN: another PostgreSQL 15 installation (a relocated copy, say) to build against and test with
pgbin=${DELIVER_PGBIN:-/usr/lib/postgresql/15/bin}
export PG_CONFIG=$pgbin/pg_config

# Postgres will not run as root: run server-side commands as the postgres
# user. They run from / (a directory postgres can enter: from one it cannot,
# such as a checkout under /root, its programs print "could not change
# directory"), so every path given to them must be absolute.
as_pg() { if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Install the packages, build deliver (warnings are errors) and install it
# (with sudo unless this user may write to the installation).
build_and_install() {
    bash scripts/install-deps
    echo "deliver: building"
    make -s -j2
    local sudo=as_root
    if [[ -w $("$PG_CONFIG" --pkglibdir) && -w $("$PG_CONFIG" --sharedir)/extension && -w $("$PG_CONFIG" --bindir) ]]; then
        sudo=
    fi
    $sudo make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
    # the cluster's extensions (deliver_shard, deliver_router: scripts/cluster)
    $sudo make -s -C cluster install PG_CONFIG="$PG_CONFIG" >/dev/null
}

# pg_has_setting NAME: whether this installation's server knows the setting
# (asked of the server binary, no cluster needed).
pg_has_setting() {
    local names
    names=$("$pgbin/postgres" --describe-config 2>/dev/null | cut -f1) || true
    grep -qx -- "$1" <<<"$names"
}

# The postgresql.conf line that allows the deliver output plugin (push) to
# replication users, when the server has output_plugin_libraries: it came
# with PostgreSQL 15.20, and an older 15.x refuses to start with a setting it
# does not know (it has no such restriction either: any plugin is allowed).
push_plugin_conf() {
    if pg_has_setting output_plugin_libraries; then
        echo "output_plugin_libraries = 'pgoutput, test_decoding, deliver'   # push: the deliver output plugin"
    fi
}

# One test run at a time per installation (the installed extension is
# shared): take the lock on file descriptor 9.  Root's runs and other users'
# share the lock file: whoever makes it leaves it readable by all, and it is
# opened read-only, which is all flock needs.
take_test_lock() {
    local lock=/tmp/deliver-test.lock
    [[ $pgbin == /usr/lib/postgresql/15/bin ]] || lock=/tmp/deliver-test-$(echo "$pgbin" | md5sum | cut -c1-8).lock
    [[ -e $lock ]] || (umask 022 && : >>"$lock") 2>/dev/null || true
    exec 9<"$lock"
    flock 9
}
