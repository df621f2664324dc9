#!/usr/bin/env bash
# bench/curves.sh: how cost grows along each axis (consumers, producers,
# payload, active queues, backlog, consumer groups), deliver side by side
# with the textbook queue and PgQ where they can run the same shape, on one
# dedicated durable cluster. Writes bench/results/<stamp>-curves.md and a
# png per axis.
#
#   bench/curves.sh [--axis NAME[,NAME...] | --axis all] [--duration S]
#                   [--systems deliver,textbook,pgq] [--port N]
#                   [--backlogs N,N,...] [--queue-counts N,N,...] [--keep]
#                   [--set 'SETTING = VALUE']...   (server settings, last wins)
#
# Axes: consumers producers payload queues backlog groups (all: every one).
# See bench/README.md ("Scale curves") for what each point runs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
source "$here/cpu.sh"       # instance_ticks, us_per_msg
bench_prog=curves.sh
source "$here/common.sh"    # log, fail, packages, builds, RESULT fields

all_axes=consumers,producers,payload,queues,backlog,groups
axes=all
duration=10
systems=deliver,textbook,pgq
port=55498
backlogs=0,1000000,10000000
queue_counts=1,10,100,1000,10000
keep=0
extra_conf=()

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --axis) axes=${2:?--axis needs a name}; shift ;;
        --duration) duration=${2:?--duration needs seconds}; shift ;;
        --systems) systems=${2:?--systems needs a list}; shift ;;
        --port) port=${2:?--port needs a number}; shift ;;
        --backlogs) backlogs=${2:?--backlogs needs a list}; shift ;;
        --queue-counts) queue_counts=${2:?--queue-counts needs a list}; shift ;;
        --keep) keep=1 ;;
        --set) extra_conf+=("${2:?--set needs a setting line}"); shift ;;
        -h|--help) usage 0 ;;
        *) echo "curves.sh: unknown option $1" >&2; usage 1 ;;
    esac
    shift
done
[[ $axes == all ]] && axes=$all_axes
IFS=, read -r -a axis_list <<<"$axes"
for a in "${axis_list[@]}"; do
    [[ ",$all_axes," == *",$a,"* ]] || fail "unknown axis $a (one of $all_axes, or all)"
done
IFS=, read -r -a sys_list <<<"$systems"
for s in "${sys_list[@]}"; do
    case $s in deliver|textbook|pgq) ;; *) fail "unknown system $s" ;; esac
done
has_system() { [[ ",$systems," == *",$1,"* ]]; }
[[ $duration =~ ^[0-9]+$ && $duration -ge 1 ]] || fail "--duration must be whole seconds"
drain=30
stall=10

IFS=, read -r -a queue_list <<<"$queue_counts"
# The largest queue count the cluster must hold (deliver.max_queues).
queue_slots=100
for q in "${queue_list[@]}"; do
    [[ $q =~ ^[0-9]+$ && $q -ge 1 ]] || fail "--queue-counts: $q is not a count"
    [[ $((q + 100)) -le $queue_slots ]] || queue_slots=$((q + 100))
done

# ---------------------------------------------------------------------------
# cluster
# ---------------------------------------------------------------------------

psql_b() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d bench "$@"; }

start_cluster() {
    log "initdb (port $port)"
    # 64 producers or consumers plus the rest; deliver's shared memory sized
    # for the queues axis (deliver.max_queues, one default group per queue)
    bench_cluster_start "$port" "max_connections = 150" "shared_buffers = 1GB" \
        "checkpoint_timeout = 15min" "max_prepared_transactions = 10" \
        "deliver.max_queues = $queue_slots" \
        "deliver.max_consumer_groups = $((queue_slots * 2))" \
        "max_locks_per_transaction = 256" ${extra_conf[@]+"${extra_conf[@]}"} ||
        fail "the benchmark cluster does not start"
    log "cluster in $pgdata, socket in $work"
    psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION pgq"
    if has_system deliver; then
        psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION deliver" ||
            fail "CREATE EXTENSION deliver failed"
    fi
    dsn="host=$work port=$port dbname=bench user=postgres application_name=deliverbench"
}

stop_cluster() {
    stop_sampler
    bench_cluster_stop
    if [[ -n ${work:-} && -d $work ]]; then
        if [[ $keep == 1 ]]; then
            log "cluster kept in $work"
        else
            cp "$work/postgres.log" "$logdir/postgres.log" 2>/dev/null || true
            rm -rf "$work"
        fi
    fi
}

# Remove what a run left behind, then checkpoint so every run starts alike.
clean_between_runs() {
    psql_b -c "SET client_min_messages = warning" \
        -c "SELECT pgq.drop_queue(queue_name, true) FROM pgq.queue" >/dev/null
    local t
    for t in $(psql_b -tAc "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname ~ '^bench(_[0-9]+)?$'"); do
        psql_b -c "DROP TABLE IF EXISTS public.$t" >/dev/null
    done
    if has_system deliver; then
        # one transaction per queue (many queues: locks)
        psql_b -tAc "SELECT queue_name FROM deliver.queue" |
            sed "s/.*/SELECT deliver.drop_queue('&');/" | psql_b >/dev/null || true
    fi
    psql_b -c "VACUUM" -c "CHECKPOINT" >/dev/null
}

# ---------------------------------------------------------------------------
# sampling while a run goes: wait events of the load's sessions, the
# server's memory (sum of PSS), deliver's maintenance run time
# ---------------------------------------------------------------------------

# One psql session for the whole run (a new connection per sample would
# cost the server more CPU than a slow point's messages); the loop ends when
# its flag file goes.
sampler_pid=
start_sampler() {
    local out=$1
    sampler_flag=$logdir/.sampling
    : >"$sampler_flag"
    (
        while [[ -e $sampler_flag ]]; do
            echo "SELECT 'W ' || coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)
                    FROM pg_stat_activity
                   WHERE application_name = 'deliverbench' AND state = 'active' GROUP BY 1;"
            if has_system deliver; then
                echo "SELECT 'M', coalesce(round(extract(epoch FROM last_run_duration) * 1000, 1), 0)
                        FROM deliver.worker_status();"
            fi
            pm=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null) || break
            pss=0
            for p in $pm $(ps -o pid= --ppid "$pm"); do
                v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
                pss=$((pss + ${v:-0}))
            done
            echo "\\echo P $pss"
            sleep 0.5
        done
    ) | as_pg "$pgbin/psql" -X -q -tA -F ' ' -h "$work" -p "$port" -d bench >"$out" 2>/dev/null &
    sampler_pid=$!
}

stop_sampler() {
    if [[ -n ${sampler_pid:-} ]]; then
        rm -f "$sampler_flag"
        wait "$sampler_pid" 2>/dev/null || true
    fi
    sampler_pid=
}

# Summaries of a sample file: the three commonest wait states of the load's
# active sessions (share of samples), the peak PSS (MB), the maintenance
# run time (ms, largest seen).
top_waits() {
    awk '$1 == "W" { n[$2] += $3; t += $3 }
         END { for (k in n) printf "%d %s\n", n[k], k; }' "$1" |
        sort -rn | head -n 3 |
        awk -v t="$(awk '$1 == "W" { t += $3 } END { print t + 0 }' "$1")" \
            '{ printf "%s%s %d%%", (NR > 1 ? ", " : ""), $2, (t > 0 ? 100 * $1 / t : 0) }'
}
peak_pss_mb() { awk '$1 == "P" && $2 > m { m = $2 } END { printf "%.0f", m / 1024 }' "$1"; }
maint_ms() { awk '$1 == "M" && $2 > m { m = $2 } END { if (m == "") print "-"; else print m }' "$1"; }

# ---------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------

# Every point: "axis|x|systems|deliverbench arguments"
points=()
add() { points+=("$1|$2|$3|$4"); }
want_axis() { [[ ",$axes," == *",$1,"* ]]; }

if want_axis consumers; then
    for c in 1 2 4 8 16 64; do
        add consumers "$c" deliver,textbook,pgq "--producers 4 --batch 100 --recv-batch 100 --payload 100 --consumers $c"
    done
fi
if want_axis payload; then
    # backlog cap 20,000: at 100 kB that is 2 GB waiting
    for b in 100 1000 10000 100000; do
        add payload "$b" deliver,textbook,pgq "--producers 4 --batch 10 --recv-batch 100 --payload $b --consumers 4 --max-backlog 20000"
    done
fi
if want_axis groups; then
    for g in 1 4 16; do
        add groups "$g" deliver,pgq "--producers 4 --batch 100 --recv-batch 100 --payload 100 --consumers 2 --groups $g"
    done
fi
if want_axis queues; then
    for q in "${queue_list[@]}"; do
        add queues "$q" deliver,textbook,pgq "--producers 4 --batch 10 --recv-batch 100 --payload 100 --consumers 4 --queues $q"
    done
fi
if want_axis producers; then
    for p in 1 4 16 64; do
        add producers "$p" deliver,textbook,pgq "--producers $p --batch 1 --recv-batch 100 --payload 100 --consumers 4"
    done
fi
if want_axis backlog; then
    IFS=, read -r -a bl <<<"$backlogs"
    # stall 60 s: with a large backlog one PgQ batch holds a queue's whole
    # share of it (2.5 M events at 10 M), and fetching it can take longer
    # than the usual 10 s without an ack, which would end the drain early
    # and count the rest as lost
    for b in "${bl[@]}"; do
        add backlog "$b" deliver,textbook,pgq "--producers 4 --batch 10 --recv-batch 100 --payload 100 --consumers 4 --backlog $b --rate 2000 --max-backlog 0 --drain 300 --stall 60 BACKLOG"
    done
fi

# ---------------------------------------------------------------------------
# the fsync limit (producers axis): pg_test_fsync on the cluster's disk and
# a single client's one-row INSERT transactions
# ---------------------------------------------------------------------------

fsync_ops=-
insert_tps=-
measure_fsync_limit() {
    log "fsync limit: pg_test_fsync (2 s per method) and a one-client INSERT loop (5 s)"
    local f=$work/fsync.test out
    out=$(as_pg "$pgbin/pg_test_fsync" -s 2 -f "$f" 2>&1 || true)
    printf '%s\n' "$out" >"$logdir/pg_test_fsync.txt"
    # the first section (one 8 kB write per sync), the server's method
    fsync_ops=$(awk '/one 8kB write/ { s = 1 } s && /fdatasync/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ops/sec") { print int($i); exit } }' <<<"$out")
    fsync_ops=${fsync_ops:--}
    rm -f "$f"
    psql_b -c "CREATE TABLE fsync_probe (x int)" >/dev/null
    echo "INSERT INTO fsync_probe VALUES (1);" | as_pg tee "$work/probe.sql" >/dev/null
    out=$(as_pg "$pgbin/pgbench" -n -h "$work" -p "$port" -c 1 -T 5 -f "$work/probe.sql" bench 2>&1 || true)
    printf '%s\n' "$out" >"$logdir/insert-loop.txt"
    insert_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1 | cut -d. -f1)
    insert_tps=${insert_tps:--}
    psql_b -c "DROP TABLE fsync_probe" >/dev/null
    log "fsync limit: fdatasync $fsync_ops/s, one-client INSERT $insert_tps/s"
}

# ---------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------

run_point() {
    local axis=$1 x=$2 sys=$3 args=$4 n=$5 total=$6
    local logf=$logdir/$axis-$x-$sys.log samples=$logdir/$axis-$x-$sys.samples extra=()
    local backlog_run=0
    [[ $args == *BACKLOG* ]] && backlog_run=1
    args=${args//BACKLOG/}
    # PgQ: a queue per consumer at least (its batches are one consumer's)
    if [[ $sys == pgq && $axis == queues && $x -lt 4 ]]; then
        args=${args/--consumers 4/--consumers $x}
    fi
    # the backlog axis times receive calls: deliver polls without waiting,
    # as the baselines do, so a call's time is its work, not a wait
    [[ $backlog_run == 1 && $sys == deliver ]] && extra+=(--recv-wait 0)
    printf '%s [%d/%d] %-9s %-6s %-8s ' "$(date +%H:%M:%S)" "$n" "$total" "$axis" "$x" "$sys"
    clean_between_runs
    local db0 cat0 rc=0 t0 t1 line
    db0=$(psql_b -tAc "SELECT pg_database_size('bench')")
    cat0=$(psql_b -tAc "SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r'")
    # the queues axis: the queues are made first, timed apart, so that the
    # run's CPU per message is the messages' alone
    local create_s=- create_cpu_s=-
    if [[ $axis == queues ]]; then
        t0=$(instance_ticks "$pgdata")
        # shellcheck disable=SC2086
        "$here/deliverbench" --system "$sys" --dsn "$dsn" --setup-only \
            ${extra[@]+"${extra[@]}"} $args >"${logf%.log}-setup.log" 2>&1 || true
        t1=$(instance_ticks "$pgdata")
        create_s=$(field "$(grep '^SETUP ' "${logf%.log}-setup.log" || true)" setup_s)
        create_cpu_s=$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }')
        extra+=(--no-setup)
    fi
    start_sampler "$samples"
    t0=$(instance_ticks "$pgdata")
    # shellcheck disable=SC2086
    "$here/deliverbench" --system "$sys" --dsn "$dsn" --scenario "$axis-$x" \
        --duration "$duration" --drain "$drain" --stall "$stall" --progress 5 \
        ${extra[@]+"${extra[@]}"} $args >"$logf" 2>&1 || rc=$?
    t1=$(instance_ticks "$pgdata")
    stop_sampler
    line=$(grep '^RESULT ' "$logf" | tail -n 1 || true)
    if [[ -z $line ]]; then
        echo "FAILED (exit $rc): $(grep -v '^PROGRESS' "$logf" | tail -n 3 | tr '\n' ' ')"
        echo "FAILED axis=$axis x=$x system=$sys log=$(basename "$logf")" >>"$resfile"
        return
    fi
    local msgs cat1 db1 drain_s
    msgs=$(field "$line" sent)
    # the backlog's messages were sent, received and acked in the run too
    [[ $backlog_run == 1 ]] && msgs=$((msgs + $(field "$line" backlog)))
    cat1=$(psql_b -tAc "SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relnamespace = 'pg_catalog'::regnamespace AND relkind = 'r'")
    db1=$(psql_b -tAc "SELECT pg_database_size('bench')")
    # how long the drain took (the backlog axis: when the last message was acked)
    drain_s=$(sed -n 's/^ *producing time .*, drain \([0-9.]*\) s (.*$/\1/p' "$logf" | tail -n 1)
    line+=" drain_s=${drain_s:--}"
    line+=" server_cpu_us=$(us_per_msg $((t1 - t0)) "$msgs")"
    line+=" catalog_mb=$(awk -v a="$cat1" 'BEGIN { printf "%.1f", a / 1048576 }')"
    line+=" catalog_growth_mb=$(awk -v a="$cat0" -v b="$cat1" 'BEGIN { printf "%.1f", (b - a) / 1048576 }')"
    line+=" db_growth_mb=$(awk -v a="$db0" -v b="$db1" 'BEGIN { printf "%.1f", (b - a) / 1048576 }')"
    line+=" peak_pss_mb=$(peak_pss_mb "$samples") maint_ms=$(maint_ms "$samples")"
    line+=" create_s=${create_s:--} create_cpu_s=$create_cpu_s"
    echo "$line axis=$axis x=$x waits=\"$(top_waits "$samples" | tr ' ' '~')\" log=$(basename "$logf")" >>"$resfile"
    printf '%9s msgs/s  p50 %8s ms  p99 %8s ms  CPU %6s us/msg  lost %s dup %s\n' \
        "$(field "$line" acked_per_s)" "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" \
        "$(field "$line" server_cpu_us)" "$(lost_cell "$line")" "$(field "$line" dup)"
    if [[ $(field "$line" lost) != 0 || $(field "$line" dup) != 0 ]]; then
        echo "!!!!!!!! $sys $axis=$x: LOST $(field "$line" lost) DUPLICATED $(field "$line" dup) (see $logf)"
    fi
}

# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

# The RESULT line of an axis point and system, or nothing.
point_of() { grep "^RESULT system=$3 " "$resfile" | grep " axis=$1 x=$2 " | tail -n 1 || true; }
# The x values measured on an axis, in order.
axis_points() {
    { grep "^RESULT" "$resfile" || true; } | { grep " axis=$1 " || true; } |
        sed -n 's/.* x=\([0-9]*\) .*/\1/p' | sort -n | uniq
}
waits_of() { sed -n 's/.* waits="\([^"]*\)".*/\1/p' <<<"$1" | tr '~' ' '; }

axis_title() {
    case $1 in
        consumers) echo "consumers on one queue (4 producers, batches of 100, 100 B)" ;;
        producers) echo "producers with single-message sends (4 consumers, 100 B)" ;;
        payload) echo "payload size (4 producers, batches of 10, 4 consumers)" ;;
        queues) echo "active queues, sends and receives spread evenly (4 producers, batches of 10, 4 consumers)" ;;
        backlog) echo "backlog sent before consumers start (then 2,000 msgs/s paced, 4 consumers)" ;;
        groups) echo "consumer groups on one queue, each gets every message (2 consumers per group)" ;;
    esac
}

axis_unit() {
    case $1 in
        consumers) echo "consumers" ;; producers) echo "producers" ;; payload) echo "payload (bytes)" ;;
        queues) echo "active queues" ;; backlog) echo "backlog (messages)" ;; groups) echo "consumer groups" ;;
    esac
}

# Seconds from the consumers' start to the last ack (producing + drain), or
# "not within S (timeout)" when the drain ended first.
all_acked_cell() {
    local d e
    d=$(field "$1" drain_s) e=$(field "$1" duration_s)
    [[ -n $d && $d != - ]] || { echo -; return; }
    if [[ $(field "$1" drain) == complete ]]; then
        awk -v a="$e" -v b="$d" 'BEGIN { printf "%.1f", a + b }'
    else
        awk -v a="$e" -v b="$d" -v s="$(field "$1" drain)" 'BEGIN { printf "not within %.0f (%s)", a + b, s }'
    fi
}

write_axis_table() {
    local axis=$1 x sys line xs
    xs=$(axis_points "$axis")
    [[ -n $xs ]] || return 0
    echo "## $(axis_title "$axis")"
    echo
    if [[ $axis == producers ]]; then
        echo "The fsync limit on this disk: pg_test_fsync fdatasync (one 8 kB write) **$fsync_ops/s**;"
        echo "one client's one-row INSERT transactions **$insert_tps/s** (pgbench, 5 s). With single-message"
        echo "sends every message is a durable commit; \"x fsync\" = msgs/s / the one-client INSERT rate"
        echo "(how many commits share a WAL flush: group commit)."
        echo
    fi
    local extra_h="" extra_s=""
    case $axis in
        payload) extra_h=" MB/s |"; extra_s=" ---: |" ;;
        producers) extra_h=" x fsync |"; extra_s=" ---: |" ;;
        queues) extra_h=" create s (server CPU s) | catalog MB (+growth) | server PSS peak MB | maint. run ms | empty receives |"; extra_s=" ---: | ---: | ---: | ---: | ---: |" ;;
        backlog) extra_h=" load s | all acked after s | receive call p50 / p99 ms |"; extra_s=" ---: | ---: | ---: |" ;;
        groups) extra_h=" deliveries/s (all groups) |"; extra_s=" ---: |" ;;
    esac
    echo "| $(axis_unit "$axis") | system | msgs/s | p50 ms | p99 ms | CPU µs/msg | lost | dup |$extra_h busiest wait states |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |$extra_s --- |"
    for x in $xs; do
        for sys in deliver textbook pgq; do
            line=$(point_of "$axis" "$x" "$sys")
            if [[ -z $line ]]; then
                if grep -q "^FAILED axis=$axis x=$x system=$sys " "$resfile"; then
                    echo "| $x | $sys | FAILED | | | | | |${extra_s//---:/} |"
                fi
                continue
            fi
            local a ex="" p50 p99
            a=$(field "$line" acked_per_s)
            p50=$(field "$line" p50_ms) p99=$(field "$line" p99_ms)
            # the drain ran out before any message sent in the window was
            # acked: no latency was measured (not a latency of 0)
            if [[ $p50 == 0.000 && -n $(field "$line" undrained) && $(field "$line" undrained) != 0 ]]; then
                p50=- p99=-
            fi
            case $axis in
                payload) ex=" $(awk -v a="$a" -v p="$x" 'BEGIN { printf "%.1f", a * p / 1e6 }') |" ;;
                producers) ex=" $(ratio "$a" "$insert_tps") |" ;;
                queues) ex=" $(field "$line" create_s) ($(field "$line" create_cpu_s)) | $(field "$line" catalog_mb) (+$(field "$line" catalog_growth_mb)) | $(field "$line" peak_pss_mb) | $([[ $sys == deliver ]] && field "$line" maint_ms || echo -) | $(field "$line" empty_polls) |" ;;
                backlog) ex=" $(field "$line" load_s) | $(all_acked_cell "$line") | $(field "$line" recv_call_p50_ms) / $(field "$line" recv_call_p99_ms) |" ;;
                groups) ex=" $(awk -v a="$a" -v g="$x" 'BEGIN { printf "%.0f", a * g }') |" ;;
            esac
            echo "| $x | $sys | $a | $p50 | $p99 | $(field "$line" server_cpu_us) | $(lost_cell "$line") | $(field "$line" dup) |$ex $(waits_of "$line") |"
        done
    done
    echo
    echo "![${axis}]($stamp-curves-$axis.png)"
    echo
}

# One png per axis: msgs/s, CPU µs/msg and p99 against the axis, per system.
write_axis_plot() {
    local axis=$1 dat=$logdir/$axis.dat png=$resdir/$stamp-curves-$axis.png x sys line xs
    xs=$(axis_points "$axis")
    [[ -n $xs ]] || return 0
    {
        echo "# x deliver textbook pgq (msgs/s) deliver textbook pgq (cpu) deliver textbook pgq (p99)"
        for x in $xs; do
            printf '%s' "$x"
            for f in acked_per_s server_cpu_us p99_ms; do
                for sys in deliver textbook pgq; do
                    line=$(point_of "$axis" "$x" "$sys")
                    v=$(field "$line" "$f")
                    [[ $v == - ]] && v=
                    printf ' %s' "${v:-?}"
                done
            done
            echo
        done
    } >"$dat"
    local logx="set logscale x"
    [[ $axis == backlog ]] && logx="unset logscale x"
    local p1="" p2="" p3="" col=2
    for sys in deliver textbook pgq; do
        if awk -v c=$col '!/^#/ && $c != "?" { found = 1 } END { exit !found }' "$dat"; then
            p1+="\"$dat\" using 1:$col with linespoints title \"$sys\", "
            p2+="\"$dat\" using 1:$((col + 3)) with linespoints title \"$sys\", "
            p3+="\"$dat\" using 1:$((col + 6)) with linespoints title \"$sys\", "
        fi
        col=$((col + 1))
    done
    [[ -n $p1 ]] || return 0
    gnuplot <<GP || log "gnuplot failed; no chart for $axis"
set terminal pngcairo size 1500,450 font "sans,10"
set output "$png"
set datafile missing "?"
set grid
set key top left
$logx
set xlabel "$(axis_unit "$axis")"
set multiplot layout 1,3 title "$(axis_title "$axis") ($stamp)"
set title "msgs/s acked (per group)"
set yrange [0:*]
set format y "%.0s%c"
plot ${p1%, }
set title "server CPU µs per message"
set format y "%g"
plot ${p2%, }
set title "p99 send->ack (ms, log scale)"
set logscale y
set yrange [*:*]
plot ${p3%, }
unset multiplot
GP
}

write_report() {
    local md=$resdir/$stamp-curves.md axis
    {
        echo "# deliver scale curves, $stamp"
        echo
        echo "Command: \`bench/curves.sh --axis $axes --duration $duration --systems $systems${extra_conf[@]+$(printf " --set '%s'" "${extra_conf[@]}")}\`"
        echo "(port $port; backlogs $backlogs; queue counts $queue_counts; DELIVER_PGBIN=$pgbin)."
        echo
        echo "One dedicated durable cluster, every system in the same run, one short"
        echo "run per point: $duration s of producing, then a drain. msgs/s = messages"
        echo "acked per second (per consumer group) while producing; p50/p99 are"
        echo "send->ack (ack committed) in ms; lost/dup are exact (per-producer"
        echo "sequence bitmaps). CPU µs/msg = the server's CPU time (every process of"
        echo "the instance, from /proc) over the run and its drain, per message sent:"
        echo "the robust figure here, since the machine is shared (2 cores, other"
        echo "work running: throughput and latency move with it). \"busiest wait"
        echo "states\" = share of the load's active sessions in each wait state,"
        echo "sampled every 0.5 s (CPU = active, not waiting; Extension:Extension ="
        echo "deliver's receive waiting for a message, i.e. an idle consumer's long poll;"
        echo "LWLock:WALWrite and IO:WALSync = commits waiting for the WAL flush)."
        echo
        for axis in consumers producers payload queues backlog groups; do
            write_axis_table "$axis"
        done
        echo "## Environment"
        echo
        echo "- load average when the run started: $loadavg_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr), shared with other work"
        echo "- server: $(psql_b -tAc 'SELECT version()' | cut -d, -f1), fsync on, synchronous_commit on, full_page_writes on, shared_buffers 1GB, max_connections 150, data on $(df -T "$pgdata" | awk 'NR == 2 {print $2}')"
        echo "- deliver settings for the queues axis: deliver.max_queues = $queue_slots, deliver.max_consumer_groups = $((queue_slots * 2)), max_locks_per_transaction = 256; deliver's shared memory: $(psql_b -tAc "SELECT pg_size_pretty(sum(allocated_size)) FROM pg_shmem_allocations WHERE name ILIKE '%deliver%'") of $(psql_b -tAc "SELECT pg_size_pretty(sum(allocated_size)) FROM pg_shmem_allocations") in all (pg_shmem_allocations; fixed at start by these settings, whatever the queue count)"
        echo "- PgQ $(psql_b -tAc "SELECT extversion FROM pg_extension WHERE extname = 'pgq'"), ticked by deliverbench every 10 ms; a queue per consumer (its shape: a consumer's batches are its own)"
        if has_system deliver; then echo "- deliver $(psql_b -tAc "SELECT extversion FROM pg_extension WHERE extname = 'deliver'"), source $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "(no commit)")$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo " with local changes")"; fi
        echo "- raw output: results/$stamp-curves/ (one log and one sample file per run; RESULT lines in results.txt)"
    } >"$md"
    log "report: $md"
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
bench_install_packages
bench_build "$(has_system deliver && echo 1 || echo 0)" \
    "Measure the baselines alone with: bench/curves.sh --systems textbook,pgq"

stamp=$(date +%Y-%m-%d-%H%M)
resdir=$here/results
logdir=$resdir/$stamp-curves
mkdir -p "$logdir"
resfile=$logdir/results.txt
: >"$resfile"
trap stop_cluster EXIT
start_cluster
want_axis producers && measure_fsync_limit

total=0
for pt in "${points[@]}"; do
    IFS='|' read -r _ _ psys _ <<<"$pt"
    for sys in deliver textbook pgq; do
        [[ ",$psys," == *",$sys,"* ]] && has_system "$sys" && total=$((total + 1))
    done
done
log "axes $axes: $total runs of $duration s each, systems $systems"

n=0
for pt in "${points[@]}"; do
    IFS='|' read -r axis x psys args <<<"$pt"
    for sys in deliver textbook pgq; do
        if [[ ",$psys," != *",$sys,"* ]] || ! has_system "$sys"; then continue; fi
        n=$((n + 1))
        run_point "$axis" "$x" "$sys" "$args" "$n" "$total"
    done
    # a table and a chart as soon as an axis is done: a long run reports as it goes
    write_axis_plot "$axis"
    write_report >/dev/null
done

write_report
cat "$resdir/$stamp-curves.md"
