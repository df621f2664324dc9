# shellcheck shell=bash
# CPU time of a PostgreSQL instance, shared by bench/*.sh (sourced): the
# server's CPU per message is a figure a noisy machine moves much less than
# throughput.

hz=$(getconf CLK_TCK)

# instance_ticks DATADIR: CPU time (clock ticks) spent so far by the
# postgres instance of a data directory: its postmaster with the children
# it reaped (backends that ended), and every live process working in that
# directory.
instance_ticks() {
    local dir=$1 pm total=0 pid f st
    pm=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    for f in /proc/[0-9]*; do
        pid=${f#/proc/}
        [[ $(readlink "$f/cwd" 2>/dev/null) == "$dir" ]] || continue
        # fields after the command: utime stime cutime cstime are 14-17
        st=$(sed 's/^.*) //' "$f/stat" 2>/dev/null) || continue
        read -r -a a <<<"$st"
        total=$((total + a[11] + a[12]))
        [[ $pid == "$pm" ]] && total=$((total + a[13] + a[14]))
    done
    echo "$total"
}

# machine_ticks: CPU time spent so far by the whole machine (user, nice,
# system, irq, softirq).
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

# us_per_msg TICKS MESSAGES: microseconds of CPU per message, or "-".
us_per_msg() {
    awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { if (n + 0 > 0 && t + 0 > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }'
}
