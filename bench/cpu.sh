# shellcheck shell=bash
# CPU time of a PostgreSQL instance, shared by bench/*.sh (sourced): the
# server's CPU per message is a figure a noisy machine moves much less than
# throughput.

hz=$(getconf CLK_TCK)

# instance_ticks DATADIR: CPU time (clock ticks) spent so far by the
# postgres instance of a data directory: its postmaster, its children
# (live or ended and not yet reaped), and the children it reaped (its
# cutime + cstime).  A child reaped while the processes are read would be
# counted twice (live, then in the postmaster's times) or not at all, so
# the reading is taken again until the postmaster's reaped times did not
# move meanwhile.  (Process ids wrap around: no order of reading helps.)
instance_ticks() {
    local dir=$1 pm total reaped before f st try
    pm=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    for ((try = 0; try < 20; try++)); do
        before=$(reaped_ticks "$pm") || { echo 0; return; }
        total=0
        for f in /proc/[0-9]*; do
            st=$(sed 's/^.*) //' "$f/stat" 2>/dev/null) || continue
            read -r -a a <<<"$st"
            # after the command: state ppid ... utime stime are fields 14-15
            [[ ${f#/proc/} == "$pm" || ${a[1]} == "$pm" ]] || continue
            total=$((total + a[11] + a[12]))
        done
        reaped=$(reaped_ticks "$pm") || { echo 0; return; }
        [[ $reaped == "$before" ]] && break
    done
    echo $((total + reaped))
}

# reaped_ticks PID: the CPU time of the children PID reaped (cutime + cstime)
reaped_ticks() {
    local st
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    read -r -a a <<<"$st"
    echo $((a[13] + a[14]))
}

# machine_ticks: CPU time spent so far by the whole machine (user, nice,
# system, irq, softirq).
machine_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }

# us_per_msg TICKS MESSAGES: microseconds of CPU per message, or "-".
us_per_msg() {
    awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN { if (n + 0 > 0 && t + 0 > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }'
}
