#!/usr/bin/env bash
# bench/soak.sh: deliver under a steady load while a transaction holds xmin,
# then after it ends; what storage, the catalog and WAL do minute by minute.
#
#   bench/soak.sh [--hold-min M] [--after-min M] [--rate N] [--port N]
#                 [--sample-s S] [--idle-queues N] [--no-build] [--name NAME]
#                 [--keep] [-- SETTING...]
#   bench/soak.sh --report DIR     (writes the report of a run's DIR again)
#
# Defaults: 60 minutes with xmin held, then 10 minutes without, at 20,000
# msgs/s (batch 10, 4 producers, 4 consumers, 100-byte payloads), one sample
# a minute, port 55530.  Each SETTING after "--" is a postgresql.conf line
# added to the cluster's (e.g. "deliver.rotation_interval = '30s'").
# --idle-queues N adds N queues nobody sends to, each polled by a consumer
# (deliver.receive) once a second.  --no-build uses the deliver extension
# installed in DELIVER_PGBIN as it is (to compare two builds).
#
# The xmin holder: BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;
# SELECT txid_current(); then idle until the hold ends.  Its snapshot (taken
# by the SELECT) holds the database's xmin horizon; txid_current() gives it
# an xid as well, so backend_xmin and backend_xid both stay put.  It is
# ended by its backend's pid (pg_terminate_backend) when the hold is over.
#
# Writes bench/results/<stamp>-soak-xmin.md, <stamp>-soak-xmin.png and the
# raw samples and load generator log in bench/results/<stamp>-soak-xmin/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
source "$here/cluster.sh"   # pgbin, PG_CONFIG, as_pg, build_and_install, the cluster
source "$here/cpu.sh"       # instance_ticks, us_per_msg

hold_min=60
after_min=10
rate=20000
port=55530
sample_s=60
name=soak-xmin
keep=0
idle_queues=0
build=1
report_only=
settings=()

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --hold-min) hold_min=${2:?--hold-min needs minutes}; shift ;;
        --after-min) after_min=${2:?--after-min needs minutes}; shift ;;
        --rate) rate=${2:?--rate needs msgs/s}; shift ;;
        --port) port=${2:?--port needs a number}; shift ;;
        --sample-s) sample_s=${2:?--sample-s needs seconds}; shift ;;
        --name) name=${2:?--name needs a word}; shift ;;
        --idle-queues) idle_queues=${2:?--idle-queues needs a number}; shift ;;
        --no-build) build=0 ;;
        --report) report_only=${2:?--report needs a directory}; shift ;;
        --keep) keep=1 ;;
        --) shift; settings=("$@"); break ;;
        -h|--help) usage 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; usage 1 ;;
    esac
    shift
done

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf 'soak.sh: %s\n' "$*" >&2; exit 1; }

# the columns of samples.txt
columns="t_s db_mb catalog_mb pg_class_mb pg_attribute_mb pg_type_mb pg_depend_mb pg_statistic_mb seg_mb done_mb other_mb wal_mb pg_class_dead pg_class_writes pg_statistic_writes datfrozenxid_age xmin_held server_ticks"

# slope SAMPLES FROM TO EXPR: MB per minute of EXPR (an awk expression over
# a sample's columns, e.g. $2) over the samples from FROM to TO seconds: the
# least-squares line, so that the sawtooth of the live segments (filled for
# a rotation interval, then truncated) weighs little
slope() {
    awk -v a="$2" -v b="$3" '!/^#/ && $1 >= a && $1 <= b {
        x = $1 / 60; y = '"$4"'; n++; sx += x; sy += y; sxx += x * x; sxy += x * y }
        END { d = n * sxx - sx * sx
              if (n > 2 && d > 0) printf "%.3f", (n * sxy - sx * sy) / d; else print "-" }' "$1"
}

# range SAMPLES FROM TO EXPR: "min-max" of EXPR over those samples
range() {
    awk -v a="$2" -v b="$3" '!/^#/ && $1 >= a && $1 <= b {
        y = '"$4"'; if (!n++ || y < lo) lo = y; if (n == 1 || y > hi) hi = y }
        END { if (n) printf "%.1f-%.1f", lo, hi; else print "-" }' "$1"
}

# write_report: <stamp>-<name>.md and .png from the files of a run in logdir
# (samples.txt, progress.txt, deliverbench.log) and its settings (run.txt)
write_report() {
    local md=$resdir/$stamp-$name.md png=$resdir/$stamp-$name.png result
    local samples=$logdir/samples.txt hold_s=$((hold_min * 60)) what expr c
    field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
    result=$(grep '^RESULT ' "$logdir/deliverbench.log" | tail -n 1 || true)
    local h0=$sample_s r1=$(((hold_min + after_min) * 60))
    local metrics=("database:\$2" "database without segments and done tables:\$2-\$9-\$10"
                   "pg_catalog:\$3" "pg_class:\$4" "pg_statistic:\$8" "segments:\$9"
                   "done tables:\$10" "other deliver tables:\$11")
    {
        echo "# soak with xmin held: $hold_min min held, then $after_min min released ($stamp)"
        echo
        echo "Command: \`DELIVER_PGBIN=$pgbin bench/soak.sh --hold-min $hold_min --after-min $after_min --rate $rate --port $port --sample-s $sample_s --idle-queues $idle_queues$([[ $build == 1 ]] || echo " --no-build") --name $name${settings_text:+ -- $settings_text}\`"
        echo
        echo "deliver only (the baselines are not part of this run). Load: deliverbench,"
        echo "$rate msgs/s paced, batches of 10, 4 producers, 4 consumers (receive up to"
        echo "100, ack_batch), 100-byte payloads, at-least-once; maintenance worker on."
        if [[ $idle_queues -gt 0 ]]; then
            echo "Plus $idle_queues queues nobody sends to, each polled once a second (deliver.receive)."
        fi
        echo "The xmin holder: \`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1;"
        echo "SELECT txid_current();\` then idle; its snapshot (and its xid) hold xmin."
        echo "Terminated (pg_terminate_backend of its pid) at minute $hold_min."
        echo
        echo "Source: $source_rev. $(nproc) CPUs, load average at the end $loadavg (shared machine)."
        echo
        echo "## Result"
        echo
        echo "| | value |"
        echo "| --- | --- |"
        echo "| messages sent | $(field "$result" sent) (drain: $(field "$result" drain), undrained $(field "$result" undrained)) |"
        echo "| sent / acked per s (whole run) | $(field "$result" sent_per_s) / $(field "$result" acked_per_s) |"
        echo "| send->ack p50 / p99 / max ms (whole run) | $(field "$result" p50_ms) / $(field "$result" p99_ms) / $(field "$result" max_ms) |"
        echo "| lost / duplicated | $(field "$result" lost) / $(field "$result" dup) |"
        echo "| server CPU us per message (whole run) | $cpu_us |"
        echo
        echo "Growth in MB per minute (least-squares slope over the samples) and the"
        echo "range seen, MB; held: the samples from minute 1 (the first fills the"
        echo "segments) to minute $hold_min; released: from minute $hold_min to $((hold_min + after_min)) (not the"
        echo "sample after the drain)."
        echo
        echo "| | held: MB/min | held: range | released: MB/min | released: range |"
        echo "| --- | ---: | ---: | ---: | ---: |"
        for c in "${metrics[@]}"; do
            what=${c%%:*}; expr=${c#*:}
            echo "| $what | $(slope "$samples" "$h0" "$hold_s" "$expr") | $(range "$samples" "$h0" "$hold_s" "$expr") | $(slope "$samples" "$hold_s" "$r1" "$expr") | $(range "$samples" "$hold_s" "$r1" "$expr") |"
        done
        echo "| WAL written | $(slope "$samples" "$h0" "$hold_s" '$12') | | $(slope "$samples" "$hold_s" "$r1" '$12') | |"
        echo
        echo "## Per sample"
        echo
        echo "Sizes in MB, each table with its indexes and TOAST; catalog = all of pg_catalog;"
        echo "seg = the queues' segments, done = their done tables, other = deliver's other"
        echo "tables, rest = db - seg - done; WAL = MB written since the previous sample;"
        echo "pg_class writes = inserted + updated + deleted rows since the previous"
        echo "sample (likewise pg_statistic); sent/s, acked/s and p99 of the period"
        echo "ending at the sample (paced load: latency counts from the scheduled send"
        echo "time, so it grows without bound while the producers fall behind);"
        echo "server CPU us/msg = the server's CPU time over the period / messages sent in it."
        echo
        echo "| t (s) | xmin held | db | rest | catalog | pg_class | pg_attribute | pg_type | pg_depend | pg_statistic | seg | done | other | WAL | pg_class dead | pg_class writes | pg_statistic writes | sent/s | acked/s | p99 ms | server CPU us/msg |"
        echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        awk 'NR == FNR { if ($1 != "") { k = int($1 + 0.5); ps[k] = $2; pa[k] = $3; pq[k] = $4 } next }
             /^#/ { next }
             { s = "-"; a = "-"; l = "-"
               for (d = -2; d <= 2; d++) if ((int($1) + d) in pa) { s = ps[int($1) + d]; a = pa[int($1) + d]; l = pq[int($1) + d] }
               cpu = "-"
               if (n && $18 != "" && s != "-" && s + 0 > 0 && $1 > t)
                   cpu = sprintf("%.1f", ($18 - tk) / hz * 1e6 / (s * ($1 - t)))
               printf "| %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                 $1, ($17 > 0 ? "yes" : "no"), $2, $2 - $9 - $10, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                 (n++ ? sprintf("%.1f", $12 - w) : "-"), $13,
                 (n > 1 ? $14 - cw : "-"), (n > 1 ? $15 - sw : "-"), s, a, l, cpu
               w = $12; cw = $14; sw = $15; tk = $18; t = $1 }' hz="$hz" "$logdir/progress.txt" "$samples"
        echo
        echo "![soak]($stamp-$name.png)"
        echo
        echo "Raw: \`$stamp-$name/samples.txt\` (columns: $columns),"
        echo "\`$stamp-$name/progress.txt\` (t sent/s acked/s p99_ms backlog), \`$stamp-$name/deliverbench.log\`."
    } >"$md"

    # per-sample WAL MB for the chart
    awk '!/^#/ { if (n++) print $1 / 60, $12 - w; w = $12 }' "$samples" >"$logdir/wal.txt"
    gnuplot <<GP || log "gnuplot failed; no chart"
set terminal pngcairo size 1400,900 font "sans,10"
set output "$png"
set termoption noenhanced
set xrange [0:*]
set grid
set key top left
set xlabel "minutes"
set arrow 1 from $hold_min, graph 0 to $hold_min, graph 1 nohead dashtype 2 lc rgb "red"
set multiplot layout 2,3 title "deliver at $rate msgs/s offered, xmin held for $hold_min min then released ($stamp)"
set title "database and deliver tables (MB)"
plot "$samples" using (\$1/60):2 with linespoints title "database", \
     "" using (\$1/60):(\$2-\$9-\$10) with linespoints title "database without segments, done tables", \
     "" using (\$1/60):9 with lines title "segments", \
     "" using (\$1/60):10 with lines title "done tables", \
     "" using (\$1/60):11 with lines title "other deliver"
set title "catalog (MB)"
set y2tics
plot "$samples" using (\$1/60):3 axes x1y2 with linespoints title "pg_catalog (right axis)", \
     "" using (\$1/60):4 with lines title "pg_class", \
     "" using (\$1/60):5 with lines title "pg_attribute", \
     "" using (\$1/60):6 with lines title "pg_type", \
     "" using (\$1/60):7 with lines title "pg_depend", \
     "" using (\$1/60):8 with lines title "pg_statistic"
unset y2tics
set title "WAL written per sample (MB)"
plot "$logdir/wal.txt" using 1:2 with linespoints title "WAL"
set title "msgs/s"
plot "$logdir/progress.txt" using (\$1/60):2 with linespoints title "sent/s", \
     "" using (\$1/60):3 with linespoints title "acked/s"
set title "p99 send->ack per sample (ms)"
set logscale y
plot "$logdir/progress.txt" using (\$1/60):4 with linespoints title "p99"
unset logscale y
set title "pg_class dead rows"
plot "$samples" using (\$1/60):13 with linespoints title "n_dead_tup"
unset multiplot
GP
    log "wrote $md"
}

resdir=$here/results
if [[ -n $report_only ]]; then
    logdir=$(cd "$report_only" && pwd)
    # shellcheck disable=SC1091
    source "$logdir/run.txt"
    write_report
    exit 0
fi

hold_s=$((hold_min * 60))
total_s=$(((hold_min + after_min) * 60))
[[ $total_s -gt 0 ]] || fail "nothing to run (--hold-min and --after-min are 0)"

stamp=$(date +%Y-%m-%d-%H%M)
resdir=$here/results
logdir=$resdir/$stamp-$name
mkdir -p "$logdir"
samples=$logdir/samples.txt
benchlog=$logdir/deliverbench.log

cd "$repo"
if [[ $build == 1 ]]; then
    build_and_install >"$logdir/build.log" 2>&1 || { tail -n 30 "$logdir/build.log" >&2; fail "the extension does not build"; }
fi
make -s -C "$here" PG_CONFIG="$PG_CONFIG" >/dev/null || fail "bench/deliverbench does not build"

psql_b() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p "$port" -d bench "$@"; }

xmin_pid=
idle_pid=
sampler_pid=
bench_pid=
cleanup() {
    [[ -z $bench_pid ]] || kill "$bench_pid" 2>/dev/null || true
    [[ -z $sampler_pid ]] || kill "$sampler_pid" 2>/dev/null || true
    [[ -z $xmin_pid ]] || kill "$xmin_pid" 2>/dev/null || true
    [[ -z $idle_pid ]] || kill "$idle_pid" 2>/dev/null || true
    bench_cluster_stop
    if [[ -n ${work:-} && -d $work ]]; then
        cp "$work/postgres.log" "$logdir/postgres.log" 2>/dev/null || true
        if [[ $keep == 1 ]]; then log "cluster kept in $work"; else rm -rf "$work"; fi
    fi
}
trap cleanup EXIT

log "initdb (port $port)"
bench_cluster_start "$port" "max_connections = 100" "shared_buffers = 1GB" \
    "checkpoint_timeout = 15min" "max_prepared_transactions = 10" \
    "log_autovacuum_min_duration = 0" "${settings[@]}" ||
    fail "the benchmark cluster does not start"
psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION deliver" ||
    fail "CREATE EXTENSION deliver failed"
dsn="host=$work port=$port dbname=bench user=postgres application_name=deliverbench"

# One sample: sizes in MB (tables with their indexes and TOAST), cumulative
# WAL in MB, and pg_class's and pg_statistic's row counters.
sample_sql="
WITH rel AS (
  SELECT c.oid, c.relname, n.nspname, pg_total_relation_size(c.oid) AS sz
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'm', 'p')
), d AS (
  SELECT sum(sz) FILTER (WHERE relname ~ '^q[0-9]+_s[0-9]+\$') AS seg,
         sum(sz) FILTER (WHERE relname ~ '^q[0-9]+_done[0-9]+\$') AS done,
         sum(sz) FILTER (WHERE relname !~ '^q[0-9]+_(s|done)[0-9]+\$') AS other
    FROM rel WHERE nspname = 'deliver'
), s AS (
  SELECT relname, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_del
    FROM pg_stat_sys_tables WHERE schemaname = 'pg_catalog'
)
SELECT round(pg_database_size(current_database()) / 1048576.0, 2),
       round((SELECT sum(sz) FROM rel WHERE nspname = 'pg_catalog') / 1048576.0, 2),
       round(pg_total_relation_size('pg_class') / 1048576.0, 2),
       round(pg_total_relation_size('pg_attribute') / 1048576.0, 2),
       round(pg_total_relation_size('pg_type') / 1048576.0, 2),
       round(pg_total_relation_size('pg_depend') / 1048576.0, 2),
       round(pg_total_relation_size('pg_statistic') / 1048576.0, 2),
       round(coalesce(d.seg, 0) / 1048576.0, 2),
       round(coalesce(d.done, 0) / 1048576.0, 2),
       round(coalesce(d.other, 0) / 1048576.0, 2),
       round(pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') / 1048576.0, 2),
       (SELECT n_dead_tup FROM s WHERE relname = 'pg_class'),
       (SELECT n_tup_ins + n_tup_upd + n_tup_del FROM s WHERE relname = 'pg_class'),
       (SELECT n_tup_ins + n_tup_upd + n_tup_del FROM s WHERE relname = 'pg_statistic'),
       (SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()),
       (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deliverbench-xmin')
  FROM d"

take_sample() {
    local row
    row=$(psql_b -tA -F ' ' -c "$sample_sql") || return 1
    # the server's CPU so far (clock ticks, bench/cpu.sh)
    echo "$1 $row $(instance_ticks "$pgdata")"
}

start_xmin_holder() {
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench \
        -c "SET application_name = 'deliverbench-xmin'" \
        -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT 1" -c "SELECT txid_current()" \
        -c "SELECT pg_sleep($((total_s + 3600)))" -c "COMMIT" >/dev/null 2>&1 &
    xmin_pid=$!
    for _ in $(seq 100); do
        [[ -n $(psql_b -tAc "SELECT 1 FROM pg_stat_activity WHERE application_name = 'deliverbench-xmin' AND backend_xid IS NOT NULL AND backend_xmin IS NOT NULL") ]] && return
        sleep 0.1
    done
    fail "the xmin-holding transaction did not start"
}

stop_xmin_holder() {
    psql_b -tAc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'deliverbench-xmin'" >/dev/null || true
    wait "$xmin_pid" 2>/dev/null || true
    xmin_pid=
}

# the idle queues and their consumer: one session receiving from each in
# turn, a transaction per receive, one pass a second
if [[ $idle_queues -gt 0 ]]; then
    psql_b -c "SELECT count(deliver.create_queue('idle_' || i)) FROM generate_series(1, $idle_queues) i" >/dev/null
    as_pg "$pgbin/psql" -X -q -h "$work" -p "$port" -d bench \
        -c "SET application_name = 'deliverbench-idle'" \
        -c "CREATE PROCEDURE pg_temp.poll(n int) LANGUAGE plpgsql AS \$\$
            BEGIN
                LOOP
                    FOR i IN 1 .. n LOOP
                        PERFORM count(*) FROM deliver.receive('idle_' || i, 10);
                        COMMIT;
                    END LOOP;
                    PERFORM pg_sleep(1);
                END LOOP;
            END \$\$" \
        -c "CALL pg_temp.poll($idle_queues)" >/dev/null 2>&1 &
    idle_pid=$!
fi

if [[ $hold_s -gt 0 ]]; then
    log "starting the xmin holder"
    start_xmin_holder
fi

log "load: $rate msgs/s for $hold_min min with xmin held, then $after_min min without"
echo "# $columns" >"$samples"
take_sample 0 >>"$samples"
t_start=$(date +%s)
ticks0=$(instance_ticks "$pgdata")
"$here/deliverbench" --system deliver --dsn "$dsn" --scenario "$name" \
    --duration "$total_s" --drain 60 --stall 15 --progress "$sample_s" \
    --batch 10 --recv-batch 100 --consumers 4 --payload 100 --rate "$rate" \
    >"$benchlog" 2>&1 &
bench_pid=$!

# the sampler: one sample every sample_s seconds from the start of the load
(
    k=1
    while :; do
        due=$((t_start + k * sample_s))
        now=$(date +%s)
        [[ $due -gt $now ]] && sleep $((due - now))
        take_sample $((k * sample_s)) || true
        k=$((k + 1))
    done
) >>"$samples" 2>/dev/null &
sampler_pid=$!

if [[ $hold_s -gt 0 ]]; then
    now=$(date +%s)
    [[ $((t_start + hold_s)) -gt $now ]] && sleep $((t_start + hold_s - now))
    stop_xmin_holder
    log "xmin released after $hold_min min"
fi
rc=0
wait "$bench_pid" || rc=$?
bench_pid=
ticks1=$(instance_ticks "$pgdata")
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
# a last sample once the load is over and drained
sleep 5
take_sample "$(($(date +%s) - t_start))" >>"$samples" || true

result=$(grep '^RESULT ' "$benchlog" | tail -n 1 || true)
[[ -n $result ]] || fail "deliverbench failed (exit $rc): $(tail -n 5 "$benchlog")"
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
sent=$(field "$result" sent)
cpu_us=$(us_per_msg $((ticks1 - ticks0)) "$sent")

# progress lines: t acked/s p99
awk '/^PROGRESS/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
     print v["t"], v["sent_per_s"], v["acked_per_s"], v["p99_ms"], v["backlog"] }' "$benchlog" >"$logdir/progress.txt"

# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

# the run's settings, for the report (and bench/soak.sh --report)
settings_text="${settings[*]}"
source_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "?")
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
for v in stamp name hold_min after_min rate port sample_s idle_queues build pgbin settings_text \
         cpu_us source_rev loadavg; do
    printf '%s=%q\n' "$v" "${!v}"
done >"$logdir/run.txt"
write_report
cat "$resdir/$stamp-$name.md"
