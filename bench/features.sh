#!/usr/bin/env bash
# bench/features.sh: what each optional feature costs when it is used.  On
# a throwaway durable cluster, pgbench (4 clients) runs one message's whole
# life per script: a send, then a receive of one message and its ack (two
# durable transactions), against a queue of each kind:
#   plain         at-least-once queue, nothing optional (the baseline)
#   expires_at    the same, each send with expires_at (an hour ahead)
#   message_ttl   a queue with message_ttl 1 hour
#   max_depth     a queue with max_depth 1,000,000,000 (overflow reject)
#   backlog       plain, with a second consumer group that never receives
#                 and 100,000 messages waiting for it (a slow consumer)
#   max_depth_backlog  the same with max_depth 1,000,000,000: the depth
#                 a send checks is that group's
#   drop_oldest   the same with overflow drop_oldest
#   rate_limit    its group limited to 1,000,000 msgs/s (never reached)
#   fifo          a FIFO queue, 1,000 ordering keys, one in flight per key
#   fifo_limit_4  the same with set_fifo_key_limit 4 (keys served in turn:
#                 each receive reads ahead and sorts what waits)
#   fifo_backlog  a FIFO queue (one in flight per key) with 100,000
#                 messages over 1,000 keys waiting for the receiving group
#   fifo_limit_4_backlog  the same with set_fifo_key_limit 4: each receive
#                 serves the keys in turn among deliver.priority_window
#                 (1,000) read ahead
#   priorities    a queue with priorities, each send with a priority 0-9
#   own_backlog   plain, with 100,000 messages waiting for the receiving
#                 group itself (each script sends one and takes one)
#   priorities_backlog  the same on a queue with priorities, the 100,000
#                 and every send with a priority 0-9: each receive chooses
#                 among deliver.priority_window (1,000) read ahead
# Rounds run the cases in turn, so noise on the machine spreads over all.
# FEATURES_CASES="plain fifo ..." runs only those cases (plain, the
# baseline of the last column, always) and fills only their backlogs; an
# unknown name stops the script before the cluster is set up.
# Per case: scripts per second, the script's p50 and p99 (pgbench's log),
# and the server's CPU microseconds per script (bench/cpu.sh), the figure
# that noise moves least.  Topic routing has its own: bench/routing.sh.
#
#   bench/features.sh [--duration S] [--clients N] [--rounds R] [--port P]
#
# Prints a table and writes bench/results/<date>-features.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
source bench/pgbench.sh   # pgbench_case
source bench/cpu.sh       # instance_ticks, us_per_msg
payload="'{\"order\": 1, \"pad\": \"$(printf 'x%.0s' {1..80})\"}'"
# cycle QUEUE [SEND ARGUMENTS]: the script of one message's life
cycle() {
    printf '%s\n%s\n' \
        "SELECT deliver.send('$1', $payload${2:+, $2});" \
        "SELECT deliver.ack('$1', delivery_id) FROM deliver.receive('$1', 1);"
}
cases=(plain expires_at message_ttl max_depth drop_oldest rate_limit fifo fifo_limit_4 backlog max_depth_backlog
       priorities own_backlog priorities_backlog fifo_backlog fifo_limit_4_backlog)
if [[ -n ${FEATURES_CASES:-} ]]; then
    read -ra chosen <<<"$FEATURES_CASES"
    cases=(plain)
    for c in "${chosen[@]}"; do [[ $c == plain ]] || cases+=("$c"); done
fi
script_of() {
    case $1 in
        plain) cycle f_plain ;;
        expires_at) cycle f_plain "expires_at => now() + interval '1 hour'" ;;
        message_ttl) cycle f_ttl ;;
        max_depth) cycle f_depth ;;
        drop_oldest) cycle f_drop ;;
        rate_limit) cycle f_rate ;;
        fifo) cycle f_fifo "ordering_key => 'k' || :k" ;;
        fifo_limit_4) cycle f_fifo4 "ordering_key => 'k' || :k" ;;
        backlog) cycle f_backlog ;;
        max_depth_backlog) cycle f_depth_b ;;
        priorities) cycle f_prio "priority => :k % 10" ;;
        own_backlog) cycle f_own ;;
        priorities_backlog) cycle f_prio_own "priority => :k % 10" ;;
        fifo_backlog) cycle f_fifo_own "ordering_key => 'k' || :k" ;;
        fifo_limit_4_backlog) cycle f_fifo4_own "ordering_key => 'k' || :k" ;;
        *) echo "features: no case $1" >&2; exit 2 ;;
    esac
}
# an unknown case stops the script here, before the backlogs are filled
for c in "${cases[@]}"; do script_of "$c" >/dev/null; done
# wanted CASE...: is one of them among the cases to run (its queue's backlog is filled only then)
wanted() {
    local c w
    for c in "${cases[@]}"; do for w in "$@"; do [[ $c == "$w" ]] && return 0; done; done
    return 1
}
pgbench_setup features "${DELIVER_FEATURES_PORT:-55497}" "$@"
if [[ -n ${FEATURES_CASES:-} ]]; then cmd="FEATURES_CASES=\"$FEATURES_CASES\" $cmd"; fi
q -c "SELECT deliver.create_queue('f_plain')" \
  -c "SELECT deliver.create_queue('f_ttl', message_ttl => '1 hour')" \
  -c "SELECT deliver.create_queue('f_depth', max_depth => 1000000000)" \
  -c "SELECT deliver.create_queue('f_drop', max_depth => 1000000000, overflow => 'drop_oldest')" \
  -c "SELECT deliver.create_queue('f_rate')" \
  -c "SELECT deliver.set_consumer_group_rate('f_rate', 'default', 1000000)" \
  -c "SELECT deliver.create_queue('f_fifo', fifo => true)" \
  -c "SELECT deliver.create_queue('f_fifo4', fifo => true)" \
  -c "SELECT deliver.set_fifo_key_limit('f_fifo4', 4)" \
  -c "SELECT deliver.create_queue('f_backlog')" \
  -c "SELECT deliver.create_consumer_group('f_backlog', 'idle')" \
  -c "SELECT deliver.create_queue('f_depth_b', max_depth => 1000000000)" \
  -c "SELECT deliver.create_consumer_group('f_depth_b', 'idle')" \
  -c "SELECT deliver.create_queue('f_prio', priorities => true)" \
  -c "SELECT deliver.create_queue('f_own')" \
  -c "SELECT deliver.create_queue('f_fifo_own', fifo => true)" \
  -c "SELECT deliver.create_queue('f_fifo4_own', fifo => true)" \
  -c "SELECT deliver.set_fifo_key_limit('f_fifo4_own', 4)" \
  -c "SELECT deliver.create_queue('f_prio_own', priorities => true)" >/dev/null
# (each queue's backlog only when its case runs: QUEUE:CASE)
for qc in f_backlog:backlog f_depth_b:max_depth_backlog; do
    qn=${qc%%:*}; wanted "${qc#*:}" || continue
    for _ in $(seq 1 100); do
        q -c "SELECT cardinality(deliver.send_batch('$qn', array_agg('{\"pad\": \"backlog\"}'::jsonb))) FROM generate_series(1, 1000)" >/dev/null
    done
    # the default group takes its share: only 'idle' keeps the 100,000
    while [[ $(q -c "SELECT count(deliver.ack('$qn', delivery_id)) FROM deliver.receive('$qn', 1000)") != 0 ]]; do :; done
done

for qc in f_own:own_backlog f_prio_own:priorities_backlog; do
    qn=${qc%%:*}; wanted "${qc#*:}" || continue
    p=NULL
    [[ $qn == f_prio_own ]] && p='(random() * 9)::int'
    for i in $(seq 0 99); do
        q -c "SELECT cardinality(deliver.send_batch('$qn', array_agg('{\"pad\": \"backlog\"}'::jsonb), priority => $p)) FROM generate_series(1, 1000)" >/dev/null
    done
done
# the FIFO backlogs: 100 messages for each of 1,000 keys, keys interleaved
for qc in f_fifo_own:fifo_backlog f_fifo4_own:fifo_limit_4_backlog; do
    qn=${qc%%:*}; wanted "${qc#*:}" || continue
    for i in $(seq 0 99); do
        q -c "SELECT count(deliver.send('$qn', '{\"pad\": \"backlog\"}', ordering_key => 'k' || (g % 1000 + 1))) FROM generate_series(1, 1000) g" >/dev/null
    done
done

declare -A res
for r in $(seq 1 "$rounds"); do
    for c in "${cases[@]}"; do
        t0=$(instance_ticks "$pgdata")
        out=$(pgbench_case "$c" 1000 "$(script_of "$c")")
        t1=$(instance_ticks "$pgdata")
        read -r tps p50 p99 <<<"$out"
        cpu=$(us_per_msg $((t1 - t0)) "$(awk -v t="$tps" -v d="$duration" 'BEGIN { printf "%d", t * d }')")
        res[$c.$r]="$tps $p50 $p99 $cpu"
        printf 'round %s %-13s %6s scripts/s  p50 %7s ms  p99 %7s ms  CPU %6s us/script\n' "$r" "$c" "$tps" "$p50" "$p99" "$cpu"
    done
done
left=$(q -c "SELECT string_agg(format('%s %s', queue_name, depth), ', ') FROM deliver.metrics() WHERE depth > 0 AND consumer_group <> 'idle'")

stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-features.md
{
    echo "# What each feature costs when used, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$cmd\`; $(nproc) cores, PostgreSQL"
    echo "$(q -c 'SHOW server_version' | cut -d' ' -f1), fsync on, synchronous_commit on; deliver $(git rev-parse --short HEAD)."
    echo "One script = one message's life: a send, then a receive of one message and its"
    echo "ack (two durable transactions); $clients pgbench clients, ${duration} s per case, cases in turn"
    echo "within each round. CPU = the server's CPU microseconds per script (every"
    echo "process of the instance, from /proc), the figure noise on the machine moves least."
    echo
    echo "| case | round | scripts/s | p50 ms | p99 ms | server CPU µs/script | CPU vs plain |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for c in "${cases[@]}"; do
        for r in $(seq 1 "$rounds"); do
            read -r tps p50 p99 cpu <<<"${res[$c.$r]}"
            read -r _ _ _ base <<<"${res[plain.$r]}"
            printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$r" "$tps" "$p50" "$p99" "$cpu" \
                "$(awk -v a="$cpu" -v b="$base" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "-" }')"
        done
    done
    echo
    echo "backlog and max_depth_backlog: 100,000 messages (and every one sent since) wait for a second group that never receives."
    echo "own_backlog and priorities_backlog: 100,000 messages wait for the receiving group itself (priorities 0-9 in the second)."
    echo "fifo_backlog and fifo_limit_4_backlog: 100,000 messages over 1,000 keys wait for the receiving group itself (keys in turn in the second)."
    echo
    echo "Queues left with messages at the end (a receive may find the message of a send"
    echo "still in flight elsewhere empty-handed): ${left:-none}."
} >"$out"
cat "$out"
echo "features: wrote $out"
