#!/usr/bin/env bash
# bench/run.sh: end-to-end throughput and latency of deliver against two
# baselines (a textbook SKIP LOCKED table queue and PgQ), in one run, on one
# dedicated durable cluster. Writes bench/results/<stamp>.md and .png.
#
#   bench/run.sh [--quick | --full] [--soak] [--held-xmin] [--group-commit] [--waits]
#                [--systems deliver,textbook,pgq] [--port N] [--duration S]
#                [--soak-duration S] [--scenarios NAME,...] [--keep]
#
# See bench/README.md for what each scenario measures.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin (DELIVER_PGBIN), PG_CONFIG, as_pg, the cluster
source "$here/cpu.sh"       # instance_ticks, us_per_msg
bench_prog=run.sh
source "$here/common.sh"    # log, fail, packages, builds, RESULT fields

mode=full
soak=0
held_xmin=0
group_commit=0
waits=0
systems=deliver,textbook,pgq
port=55499
duration=
soak_duration=600
soak_rate=20000
keep=0
tick_ms=10
only=

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) mode=quick ;;
        --full) mode=full ;;
        --soak) soak=1 ;;
        --held-xmin) held_xmin=1 ;;
        --group-commit) group_commit=1 ;;
        --waits) waits=1 ;;
        --systems) systems=${2:?--systems needs a list}; shift ;;
        --port) port=${2:?--port needs a number}; shift ;;
        --duration) duration=${2:?--duration needs seconds}; shift ;;
        --soak-duration) soak_duration=${2:?--soak-duration needs seconds}; shift ;;
        --scenarios) only=${2:?--scenarios needs a list}; shift ;;
        --keep) keep=1 ;;
        -h|--help) usage 0 ;;
        *) echo "run.sh: unknown option $1" >&2; usage 1 ;;
    esac
    shift
done

IFS=, read -r -a sys_list <<<"$systems"
for s in "${sys_list[@]}"; do
    case $s in deliver|textbook|pgq) ;; *) echo "run.sh: unknown system $s" >&2; exit 1 ;; esac
done
has_system() { [[ ",$systems," == *",$1,"* ]]; }

if [[ $mode == quick ]]; then
    duration=${duration:-5}; drain=20; stall=8
else
    duration=${duration:-30}; drain=60; stall=15
fi

# ---------------------------------------------------------------------------
# 1. packages and builds
# ---------------------------------------------------------------------------

install_packages() { bench_install_packages; }

build() {
    bench_build "$(has_system deliver && echo 1 || echo 0)" \
        "Benchmark the baselines alone with: bench/run.sh --systems textbook,pgq${mode:+ --$mode}"
}

# ---------------------------------------------------------------------------
# 3. a dedicated cluster, durable settings
# ---------------------------------------------------------------------------

psql_b() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d bench "$@"; }

start_cluster() {
    local preload=""
    has_system deliver && preload=deliver
    log "initdb (port $port)"
    bench_cluster_start "$port" "max_connections = 100" "shared_buffers = 1GB" \
        "checkpoint_timeout = 15min" "max_prepared_transactions = 10" \
        "shared_preload_libraries = '$preload'" "log_autovacuum_min_duration = 0" ||
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
    if [[ -n ${xmin_pid:-} ]]; then kill "$xmin_pid" 2>/dev/null || true; fi
    if [[ -n ${sampler_pid:-} ]]; then kill "$sampler_pid" 2>/dev/null || true; fi
    if [[ -n ${waits_pid:-} ]]; then kill "$waits_pid" 2>/dev/null || true; fi
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

# ---------------------------------------------------------------------------
# 4. scenarios
# ---------------------------------------------------------------------------

# Every scenario: "name|systems|guarantee|deliverbench arguments".
# Baselines run at-least-once; "-" in the guarantee column means that.
scenarios=()
add() {
    if [[ -z $only || ",$only," == *",$1,"* ]]; then scenarios+=("$1|$2|$3|$4"); fi
}
all=deliver,textbook,pgq

if [[ $mode == quick ]]; then
    add b100-c4-p100 $all - "--batch 100 --consumers 4 --payload 100"
    add b100-c1-p100 $all - "--batch 100 --consumers 1 --payload 100"
    add b1-c4-p100 $all - "--batch 1 --recv-batch 100 --consumers 4 --payload 100"
    add steady-2000 $all - "--batch 1 --recv-batch 100 --consumers 4 --payload 100 --rate 2000"
    add steady-150000 $all - "--batch 100 --consumers 4 --payload 100 --rate 150000"
    add b100-c4-p100 deliver exactly_once "--batch 100 --consumers 4 --payload 100"
    add b100-c4-p100 deliver at_most_once "--batch 100 --consumers 4 --payload 100"
else
    for p in 100 1024; do
        for b in 1 100; do
            for c in 1 4; do
                add "b$b-c$c-p$p" $all - "--batch $b --recv-batch 100 --consumers $c --payload $p"
            done
        done
    done
    add steady-2000 $all - "--batch 1 --recv-batch 100 --consumers 4 --payload 100 --rate 2000"
    # the target load: latency is only meaningful when nobody is swamped
    add steady-150000 $all - "--batch 100 --consumers 4 --payload 100 --rate 150000"
    for g in exactly_once at_most_once; do
        add b100-c4-p100 deliver $g "--batch 100 --consumers 4 --payload 100"
        add b1-c4-p100 deliver $g "--batch 1 --recv-batch 100 --consumers 4 --payload 100"
    done
    add steady-2000 deliver exactly_once "--batch 1 --recv-batch 100 --consumers 4 --payload 100 --rate 2000"
    add fanout-g2-c2-b100 deliver,pgq - "--batch 100 --consumers 2 --groups 2 --payload 100"
fi
# single-message consumers: producers send 1 per call, consumers
# receive 1 and ack it (deliver.ack, one commit per message); deliver with
# its queue's ack_commit durable (the default) and async
one="--batch 1 --recv-batch 1 --consumers 4 --payload 100"
add one-c4-p100 $all - "$one"
add one-c4-p100-async deliver - "$one --ack-commit async"
if [[ $group_commit == 1 ]]; then
    # the same with the server's group commit on (commit_delay in µs,
    # commit_siblings 1): COMMIT_DELAY=N is set for the run, then reset
    for d in 100 1000; do
        add "one-c4-p100-cd$d" $all - "$one COMMIT_DELAY=$d"
    done
fi
if [[ $held_xmin == 1 ]]; then
    add xmin-b100-c4-p100 $all - "--batch 100 --consumers 4 --payload 100 XMIN"
fi
if [[ $soak == 1 ]]; then
    soak_args="--batch 10 --recv-batch 100 --consumers 4 --payload 100 --rate $soak_rate --pgq-rotation 1min SOAK"
    [[ $held_xmin == 1 ]] && soak_args+=" XMIN"
    add "soak-$soak_rate" $all - "$soak_args"
fi

# A transaction holding back xmin for the whole of a run (like an idle
# application transaction); ended by its backend's pid, nothing broader.
start_xmin_holder() {
    local secs=$1
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench \
        -c "SET application_name = 'deliverbench-xmin'" \
        -c "BEGIN" -c "SELECT txid_current()" -c "SELECT pg_sleep($secs)" -c "COMMIT" \
        >/dev/null 2>&1 &
    xmin_pid=$!
    for _ in $(seq 50); do
        [[ -n $(psql_b -tAc "SELECT 1 FROM pg_stat_activity WHERE application_name = 'deliverbench-xmin' AND backend_xid IS NOT NULL") ]] && return
        sleep 0.1
    done
    fail "the xmin-holding transaction did not start"
}

stop_xmin_holder() {
    psql_b -tAc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'deliverbench-xmin'" >/dev/null || true
    wait "$xmin_pid" 2>/dev/null || true
    xmin_pid=
}

# Sample database size and server memory (sum of PSS) every 10 s.
start_sampler() {
    local out=$1
    (
        local t0=$SECONDS pm pids pss
        echo "# t_s db_mb pss_mb wal_mb"
        while sleep 10; do
            pm=$(head -n 1 "$pgdata/postmaster.pid" 2>/dev/null) || break
            pids="$pm $(ps -o pid= --ppid "$pm" | tr '\n' ' ')"
            pss=0
            for p in $pids; do
                v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
                pss=$((pss + ${v:-0}))
            done
            echo "$((SECONDS - t0)) $(psql_b -tAc "SELECT round(pg_database_size('bench') / 1048576.0, 1), $((pss / 1024)), round(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') / 1048576.0)" | tr '|' ' ')"
        done
    ) >"$out" 2>/dev/null &
    sampler_pid=$!
}

stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
}

# Sample what the benchmark's backends wait for (pg_stat_activity, every
# 100 ms) while a run produces: one line per active backend and sample,
# "wait_event_type:wait_event (CPU when none) | the statement's start".
start_wait_sampler() {
    local out=$1
    (
        while sleep 0.1; do
            psql_b -tAc "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') || ' | ' || left(regexp_replace(query, '\s+', ' ', 'g'), 40) FROM pg_stat_activity WHERE application_name = 'deliverbench' AND state = 'active' AND pid <> pg_backend_pid()" 2>/dev/null || true
        done
    ) >"$out" &
    waits_pid=$!
}

stop_wait_sampler() {
    kill "$waits_pid" 2>/dev/null || true
    wait "$waits_pid" 2>/dev/null || true
    waits_pid=
}

# Remove what a run left behind, then checkpoint so every run starts alike.
clean_between_runs() {
    psql_b -c "SET client_min_messages = warning" \
        -c "DROP TABLE IF EXISTS public.bench" \
        -c "SELECT pgq.drop_queue(queue_name, true) FROM pgq.queue" >/dev/null
    if has_system deliver; then
        psql_b -c "SELECT deliver.drop_queue(queue_name) FROM deliver.queue" >/dev/null || true
    fi
    psql_b -c "CHECKPOINT" >/dev/null
}

run_scenario() {
    local name=$1 sys=$2 guarantee=$3 args=$4 n=$5 total=$6
    local dur=$duration xmin=0 soak_run=0 extra=() logf cdelay=
    [[ $args == *XMIN* ]] && xmin=1
    if [[ $args =~ COMMIT_DELAY=([0-9]+) ]]; then
        cdelay=${BASH_REMATCH[1]}
        args=${args//COMMIT_DELAY=$cdelay/}
    fi
    [[ $args == *SOAK* ]] && { soak_run=1; dur=$soak_duration; }
    args=${args//XMIN/}
    args=${args//SOAK/}
    [[ $sys != pgq ]] && args=${args//--pgq-rotation 1min/}
    [[ $guarantee != - ]] && extra+=(--guarantee "$guarantee")
    if [[ $guarantee == - ]]; then logf=$logdir/$sys-$name.log; else logf=$logdir/$sys-$name-$guarantee.log; fi
    printf '%s [%d/%d] %-8s %-20s %-13s ' "$(date +%H:%M:%S)" "$n" "$total" "$sys" "$name" \
        "${guarantee/#-/at_least_once}"
    clean_between_runs
    [[ $xmin == 1 ]] && start_xmin_holder $((dur + drain + 60))
    [[ $soak_run == 1 ]] && start_sampler "${logf%.log}.samples"
    if [[ -n $cdelay ]]; then
        psql_b -c "ALTER SYSTEM SET commit_delay = $cdelay" -c "ALTER SYSTEM SET commit_siblings = 1" \
            -c "SELECT pg_reload_conf()" >/dev/null
    fi
    local rc=0 t0 t1
    [[ $waits == 1 ]] && start_wait_sampler "${logf%.log}.waits"
    t0=$(instance_ticks "$pgdata")
    # shellcheck disable=SC2086
    "$here/deliverbench" --system "$sys" --dsn "$dsn" --scenario "$name" \
        --duration "$dur" --drain "$drain" --stall "$stall" --tick-ms "$tick_ms" \
        --progress "$([[ $soak_run == 1 ]] && echo 10 || echo 1)" \
        "${extra[@]}" $args >"$logf" 2>&1 || rc=$?
    t1=$(instance_ticks "$pgdata")
    [[ $waits == 1 ]] && stop_wait_sampler
    if [[ -n $cdelay ]]; then
        psql_b -c "ALTER SYSTEM RESET commit_delay" -c "ALTER SYSTEM RESET commit_siblings" \
            -c "SELECT pg_reload_conf()" >/dev/null
    fi
    if [[ $soak_run == 1 ]]; then stop_sampler; fi
    if [[ $xmin == 1 ]]; then stop_xmin_holder; fi
    local line
    line=$(grep '^RESULT ' "$logf" | tail -n 1 || true)
    if [[ -z $line ]]; then
        echo "FAILED (exit $rc): $(grep -v '^PROGRESS' "$logf" | tail -n 3 | tr '\n' ' ')"
        echo "FAILED system=$sys scenario=$name guarantee=${guarantee/#-/at_least_once} log=$(basename "$logf")" >>"$resfile"
        return
    fi
    [[ $xmin == 1 ]] && line+=" held_xmin=1"
    # the server's CPU over the run and its drain, per message sent (its
    # send, and the receive and ack of every group)
    line+=" server_cpu_us=$(us_per_msg $((t1 - t0)) "$(field "$line" sent)")"
    echo "$line log=$(basename "$logf")" >>"$resfile"
    printf '%9s msgs/s  p50 %8s ms  p99 %8s ms  CPU %6s us/msg  lost %s dup %s\n' \
        "$(field "$line" acked_per_s)" "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" \
        "$(field "$line" server_cpu_us)" \
        "$(lost_cell "$line")" "$(field "$line" dup)"
    if [[ $(field "$line" lost) != 0 || $(field "$line" dup) != 0 ]]; then
        echo "!!!!!!!! $sys $name: LOST $(field "$line" lost) DUPLICATED $(field "$line" dup) (see $logf)"
    fi
}

# ---------------------------------------------------------------------------
# 5. report
# ---------------------------------------------------------------------------

# The RESULT line of a system/scenario/guarantee, or nothing.
result_of() {
    grep "^RESULT system=$1 scenario=$2 guarantee=$3 " "$resfile" | tail -n 1 || true
}

check() {   # check "what" "value" op "limit" -> PASS/FAIL line
    local what=$1 val=$2 op=$3 lim=$4 ok
    if [[ -z $val || $val == - ]]; then
        echo "| $what | not measured | |"
        return
    fi
    ok=$(awk -v v="${val%x}" -v l="$lim" -v op="$op" 'BEGIN {
        if (op == ">=") r = (v + 0 >= l + 0); else r = (v + 0 < l + 0); print r ? "PASS" : "FAIL" }')
    echo "| $what | $val | $ok |"
}

write_report() {
    local md=$resdir/$stamp.md png=$resdir/$stamp.png
    local line sys scen g tb pg
    {
        echo "# deliver benchmark, $stamp ($mode mode)"
        echo
        echo "One dedicated cluster, every system in the same run. Producers: 4."
        echo "Each run produces for ${duration} s (soak: ${soak_duration} s), then drains."
        echo "msgs/s = messages acked per second (per consumer group) while producing;"
        echo "latencies are send->ack (ack committed), in ms; lost/dup are exact"
        echo "(per-producer sequence bitmaps); \"undrained\" = still queued when the drain"
        echo "time ran out (late, not lost). PgQ ticker period: ${tick_ms} ms."
        echo "CPU µs/msg = the server's CPU time (every process of the benchmark's"
        echo "Postgres instance, backends that ended included, from /proc) over the run"
        echo "and its drain, per message sent: its send and the receive and ack of every"
        echo "group; the load generator's CPU is not counted."
        echo
        echo "| system | guarantee | scenario | msgs/s | sent/s | p50 | p99 | p99.9 | max | lost | dup | vs textbook | vs pgq | CPU µs/msg |"
        echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        while IFS= read -r line; do
            if [[ $line == FAILED* ]]; then
                echo "| $(field " $line" system) | $(field " $line" guarantee) | $(field " $line" scenario) | FAILED | | | | | | | | | | |"
                continue
            fi
            sys=$(field "$line" system); scen=$(field "$line" scenario); g=$(field "$line" guarantee)
            tb=$(field "$(result_of textbook "$scen" at_least_once)" acked_per_s)
            pg=$(field "$(result_of pgq "$scen" at_least_once)" acked_per_s)
            local rt rp
            if [[ $(field "$line" rate) != 0 ]]; then rt=-; rp=-; else
                rt=$(ratio "$(field "$line" acked_per_s)" "$tb"); rp=$(ratio "$(field "$line" acked_per_s)" "$pg"); fi
            [[ $sys == textbook ]] && rt=-
            [[ $sys == pgq ]] && rp=-
            echo "| $sys | $g | $scen | $(field "$line" acked_per_s) | $(field "$line" sent_per_s) | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" p999_ms) | $(field "$line" max_ms) | $(lost_cell "$line") | $(field "$line" dup) | $rt | $rp | $(field "$line" server_cpu_us) |"
        done <"$resfile"
        echo
        echo "Scenario names: bB-cC-pP = B messages per send call (receive takes up to"
        echo "max(B, 100) for B = 1), C consumers (PgQ: C queues, one consumer each),"
        echo "P-byte payloads; steady-N = paced at N msgs/s in total; fanout-gG = G"
        echo "consumer groups each receiving every message; xmin- = a transaction"
        echo "holding xmin open for the whole run; soak-N = paced long run."
        echo
        if has_system deliver; then
            local d dp dt de d1 p1 ds dr
            d=$(result_of deliver b100-c4-p100 at_least_once)
            dp=$(ratio "$(field "$d" acked_per_s)" "$(field "$(result_of pgq b100-c4-p100 at_least_once)" acked_per_s)")
            dt=$(ratio "$(field "$d" acked_per_s)" "$(field "$(result_of textbook b100-c4-p100 at_least_once)" acked_per_s)")
            de=$(result_of deliver b100-c4-p100 exactly_once)
            d1=$(field "$(result_of deliver b1-c4-p100 at_least_once)" acked_per_s)
            p1=$(field "$(result_of pgq b1-c4-p100 at_least_once)" acked_per_s)
            ds=$(result_of deliver steady-2000 at_least_once)
            dr=$(result_of deliver steady-150000 at_least_once)
            echo "## Targets (design.md, Performance)"
            echo
            echo "| target | measured | |"
            echo "| --- | ---: | --- |"
            check "at-least-once b100-c4 flat out: >= 150,000 msgs/s" "$(field "$d" acked_per_s)" ">=" 150000
            check "at-least-once, 150,000 msgs/s offered (b100-c4): acked >= 99% of it" "$(field "$dr" acked_per_s)" ">=" 148500
            check "at-least-once, 150,000 msgs/s offered (b100-c4): p99 < 50 ms" "$(field "$dr" p99_ms)" "<" 50
            check "at-least-once b100-c4: >= 1.2x PgQ" "$dp" ">=" 1.2
            check "at-least-once b100-c4: >= 3.5x textbook" "$dt" ">=" 3.5
            check "exactly-once b100-c4: >= 100,000 msgs/s" "$(field "$de" acked_per_s)" ">=" 100000
            check "single-message sends b1-c4: >= PgQ" "$(ratio "$d1" "$p1")" ">=" 1.0
            check "steady 2,000 msgs/s: p99 < 5 ms" "$(field "$ds" p99_ms)" "<" 5
            local lostsum
            lostsum=$(awk '/^RESULT/ { for (i = 1; i <= NF; i++) if ($i ~ /^(lost|dup)=/) { split($i, kv, "="); s += kv[2] } } END { print s + 0 }' "$resfile")
            check "no message lost or duplicated (all runs)" "$lostsum" "<" 1
            echo
        fi
        if grep -q ' scenario=one-c4-p100' "$resfile"; then
            echo "## Single-message consumers (one-c4-p100*)"
            echo
            echo "Producers send 1 message per call; consumers receive 1 and ack it"
            echo "(deliver: deliver.ack; textbook: DELETE; PgQ has no per-message ack:"
            echo "a consumer takes a batch per tick and finishes it with one commit)."
            echo "Keeping up means acked/s = produced/s; the backlog grows by the difference."
            echo
            echo "| system | scenario | produced/s | acked/s | backlog growth/s | p50 ms | p99 ms | CPU µs/msg |"
            echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
            while IFS= read -r line; do
                [[ $line == RESULT*" scenario=one-c4-p100"* ]] || continue
                echo "| $(field "$line" system) | $(field "$line" scenario) | $(field "$line" sent_per_s) | $(field "$line" acked_per_s) | $(awk -v s="$(field "$line" sent_per_s)" -v a="$(field "$line" acked_per_s)" 'BEGIN { printf "%.0f", s - a }') | $(field "$line" p50_ms) | $(field "$line" p99_ms) | $(field "$line" server_cpu_us) |"
            done <"$resfile"
            echo
            if has_system deliver; then
                local o oa
                o=$(result_of deliver one-c4-p100 at_least_once)
                oa=$(result_of deliver one-c4-p100-async at_least_once)
                echo "| target | measured | |"
                echo "| --- | ---: | --- |"
                check "one-c4-p100 durable: acked >= 99% of produced" "$(ratio "$(field "$o" acked_per_s)" "$(field "$o" sent_per_s)")" ">=" 0.99
                check "one-c4-p100 durable: p99 send->ack < 50 ms" "$(field "$o" p99_ms)" "<" 50
                check "one-c4-p100-async: acked >= 99% of produced" "$(ratio "$(field "$oa" acked_per_s)" "$(field "$oa" sent_per_s)")" ">=" 0.99
                check "one-c4-p100-async: p99 send->ack < 50 ms" "$(field "$oa" p99_ms)" "<" 50
                echo
            fi
        fi
        if [[ $waits == 1 ]]; then
            echo "## What the backends waited for (--waits)"
            echo
            echo "pg_stat_activity sampled every 100 ms during each run (producing and"
            echo "drain): share of the samples of active benchmark backends, by wait"
            echo "event and statement (CPU = no wait event); the top 6 per run."
            echo
            local wf
            for wf in "$logdir"/*.waits; do
                [[ -s $wf ]] || continue
                echo "**$(basename "${wf%.waits}")** ($(wc -l <"$wf") samples)"
                echo
                echo '```'
                sort "$wf" | uniq -c | sort -rn | head -n 6 |
                    awk -v n="$(wc -l <"$wf")" '{ c = $1; $1 = ""; printf "%5.1f%% %s\n", 100 * c / n, $0 }'
                echo '```'
                echo
            done
        fi
        echo "## Environment"
        echo
        echo "- load average when the run started: $loadavg_start (other work on the machine skews results)"
        echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
        echo "- server: $(psql_b -tAc 'SELECT version()' | cut -d, -f1), fsync on, synchronous_commit on, full_page_writes on, shared_buffers 1GB, max_wal_size 8GB, wal_level logical, data on $(df -T "$pgdata" | awk 'NR == 2 {print $2}')"
        echo "- PgQ $(psql_b -tAc "SELECT extversion FROM pg_extension WHERE extname = 'pgq'"), ticked by deliverbench every ${tick_ms} ms (ticker_max_lag 0), maintenance every 30 s"
        if has_system deliver; then echo "- deliver $(psql_b -tAc "SELECT extversion FROM pg_extension WHERE extname = 'deliver'"), source $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "(no commit)")$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo " with local changes")"; fi
        echo "- raw output: results/$stamp/ (one log per run; RESULT lines in results.txt)"
        echo
        if [[ -f $png ]]; then echo "![throughput and p99]($stamp.png)"; fi
        if [[ -f $resdir/$stamp-soak.png ]]; then echo "![soak]($stamp-soak.png)"; fi
    } >"$md"
    log "report: $md"
}

# Bar charts: throughput and p99 against batch size and consumer count.
write_plot() {
    local dat=$logdir/plot.dat png=$resdir/$stamp.png line sys scen f v
    local configs=(b1-c1-p100 b1-c4-p100 b100-c1-p100 b100-c4-p100)
    {
        echo "# config textbook pgq deliver textbook_p99 pgq_p99 deliver_p99"
        for scen in "${configs[@]}"; do
            [[ -n $(grep " scenario=$scen " "$resfile" || true) ]] || continue
            printf '%s' "${scen%-p100}"
            for f in acked_per_s p99_ms; do
                for sys in textbook pgq deliver; do
                    line=$(result_of "$sys" "$scen" at_least_once)
                    v=$(field "$line" "$f")
                    printf ' %s' "${v:-?}"
                done
            done
            echo
        done
    } >"$dat"
    [[ $(wc -l <"$dat") -gt 1 ]] || return 0
    # plot only the systems that have numbers
    local tp="" lp="" col=2
    for sys in textbook pgq deliver; do
        if awk -v c=$col 'NR > 1 && $c != "?" { found = 1 } END { exit !found }' "$dat"; then
            tp+="\"$dat\" using $col:xtic(1) title \"$sys\", "
            lp+="\"$dat\" using $((col + 3)):xtic(1) title \"$sys\", "
        fi
        col=$((col + 1))
    done
    local rows
    rows=$(grep -vc '^#' "$dat")
    gnuplot <<GP || log "gnuplot failed; no chart"
set terminal pngcairo size 1200,500 font "sans,10"
set output "$png"
set xrange [-0.6:$rows - 0.4]
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set grid ytics
set multiplot layout 1,2 title "deliver vs baselines, at-least-once, 100-byte payloads, 4 producers ($stamp)"
set title "throughput (msgs/s acked), by batch (b) and consumers (c)"
set yrange [0:*]
set format y "%.0s%c"
plot ${tp%, }
set title "p99 send->ack latency (ms, log scale)"
set logscale y
set yrange [*:*]
set format y "%g"
plot ${lp%, }
unset multiplot
GP
}

# Soak charts: throughput, p99, database size and server memory over time.
write_soak_plot() {
    local png=$resdir/$stamp-soak.png plots=() f sys
    local p1="" p2="" p3="" p4=""
    for sys in textbook pgq deliver; do
        f=$logdir/$sys-soak-$soak_rate.log
        [[ -f $f ]] || continue
        awk '/^PROGRESS/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
             print v["t"], v["acked_per_s"], v["p99_ms"], v["backlog"] }' "$f" >"${f%.log}.progress"
        plots+=("$sys")
        p1+="\"${f%.log}.progress\" using 1:2 with lines title \"$sys\", "
        p2+="\"${f%.log}.progress\" using 1:3 with lines title \"$sys\", "
        p3+="\"${f%.log}.samples\" using 1:2 with lines title \"$sys\", "
        p4+="\"${f%.log}.samples\" using 1:3 with lines title \"$sys\", "
    done
    [[ ${#plots[@]} -gt 0 ]] || return 0
    gnuplot <<GP || log "gnuplot failed; no soak chart"
set terminal pngcairo size 1200,800 font "sans,10"
set output "$png"
set grid
set key top left
set xlabel "seconds"
set multiplot layout 2,2 title "soak at $soak_rate msgs/s ($stamp)"
set title "acked msgs/s"
plot ${p1%, }
set title "p99 send->ack (ms, per 10 s)"
set logscale y
plot ${p2%, }
unset logscale y
set title "database size (MB)"
plot ${p3%, }
set title "server memory, sum of PSS (MB)"
plot ${p4%, }
unset multiplot
GP
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${loadavg_start%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    log "warning: the machine is busy (load average $loadavg_start): results will be skewed"
fi
install_packages
build

stamp=$(date +%Y-%m-%d-%H%M)
resdir=$here/results
logdir=$resdir/$stamp
mkdir -p "$logdir"
resfile=$logdir/results.txt
: >"$resfile"
trap stop_cluster EXIT
start_cluster

# count the runs
total=0
for s in "${scenarios[@]}"; do
    IFS='|' read -r _ ssys _ _ <<<"$s"
    for sys in textbook pgq deliver; do
        [[ ",$ssys," == *",$sys,"* ]] && has_system "$sys" && total=$((total + 1))
    done
done
log "$mode mode: $total runs of ${duration} s each$([[ $soak == 1 ]] && echo ", soak ${soak_duration} s"), systems $systems"

n=0
for s in "${scenarios[@]}"; do
    IFS='|' read -r name ssys guarantee args <<<"$s"
    for sys in textbook pgq deliver; do
        if [[ ",$ssys," != *",$sys,"* ]] || ! has_system "$sys"; then continue; fi
        n=$((n + 1))
        run_scenario "$name" "$sys" "$guarantee" "$args" "$n" "$total"
    done
done

write_plot
write_soak_plot
write_report
cat "$resdir/$stamp.md"
