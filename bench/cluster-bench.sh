#!/usr/bin/env bash
# The cluster's benchmark: the same load (bench/deliverbench) sent to one
# shard directly and through the router to two shards, in one run, on a
# throw-away `scripts/cluster` (two formations of a primary and a
# synchronous standby, the router, the monitor), and the CPU each part
# spent per message.
#
#   bench/cluster-bench.sh [--duration S] [--port N] [--keep]
#
# Writes bench/results/<date-time>-cluster.md and the raw logs in
# bench/results/<date-time>-cluster/.  On one machine every instance shares
# the same cores: the throughput of two shards here is not twice one
# shard's; the CPU microseconds per message say what each part costs, from
# which a capacity on separate machines can be argued (docs/cluster.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
duration=15
port=7000
keep=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --duration) duration=${2:?}; shift ;;
        --port) port=${2:?}; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "cluster-bench.sh: unknown option $1" >&2; exit 1 ;;
    esac
    shift
done

stamp=$(date -u +%Y-%m-%d-%H%M)
out=$here/results/$stamp-cluster
mkdir -p "$out"
report=$here/results/$stamp-cluster.md
data=$(mktemp -d /var/tmp/deliver-cluster-bench.XXXXXX)
chmod 755 "$data"
export DELIVER_CLUSTER_DATA=$data/cluster DELIVER_CLUSTER_PORT=$port DELIVER_CLUSTER_PARTITIONS=8
cleanup() {
    if [[ $keep == 0 ]]; then
        bash "$repo/scripts/cluster" destroy >/dev/null 2>&1 || true
        rm -rf "$data"
    else
        echo "cluster kept in $data (bash scripts/cluster destroy with DELIVER_CLUSTER_DATA=$data/cluster)"
    fi
}
trap cleanup EXIT

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

log "building bench/deliverbench"
make -s -C "$here" deliverbench
log "starting the cluster in $data (scripts/cluster up)"
bash "$repo/scripts/cluster" up >"$out/cluster-up.log" 2>&1 || { cat "$out/cluster-up.log" >&2; exit 1; }

shard0="host=127.0.0.1,127.0.0.1 port=$((port + 10)),$((port + 11)) dbname=deliver user=postgres target_session_attrs=read-write"
router="host=127.0.0.1 port=$((port + 100)) dbname=deliver user=postgres"

source "$here/cpu.sh"   # instance_ticks, machine_ticks, hz
dirs=(shard0 "$data/cluster/shard0-node0" "$data/cluster/shard0-node1"
      shard1 "$data/cluster/shard1-node0" "$data/cluster/shard1-node1"
      router "$data/cluster/router" monitor "$data/cluster/monitor")
part_ticks() {    # "shard0 N shard1 N router N monitor N"
    local i name="" n=0 res=""
    for ((i = 0; i < ${#dirs[@]}; i++)); do
        if [[ ${dirs[i]} != /* ]]; then
            [[ -n $name ]] && res+="$name $n "
            name=${dirs[i]}; n=0
        else
            n=$((n + $(instance_ticks "${dirs[i]}")))
        fi
    done
    echo "$res$name $n"
}

results=$out/results.txt
: >"$results"
# run NAME SYSTEM DSN BATCH [deliverbench options...]
run() {
    local name=$1 sys=$2 dsn=$3 batch=$4; shift 4
    local logf=$out/$sys-$name-${*: -1}.log before after m0 m1
    logf=${logf//--/}
    log "run $sys $name (${duration} s)"
    before=$(part_ticks); m0=$(machine_ticks)
    # the load generator's own CPU: the subshell's children times, after it
    ( "$here/deliverbench" --system "$sys" --dsn "$dsn" \
        --scenario "$name" --producers 4 --batch "$batch" --recv-batch 100 --duration "$duration" \
        --queue cbench "$@" || echo "deliverbench failed: $?"
      times >"$logf.times"    # (a builtin in a pipe would run in another subshell)
    ) >"$logf" 2>&1
    tail -n 1 "$logf.times" | awk '{ gsub(/[ms]/, " ", $0); split($0, a, " ");
                                    printf "bench_cpu_s=%.3f+%.3f\n", a[1]*60+a[2], a[3]*60+a[4] }' >>"$logf"
    rm -f "$logf.times"
    grep -q '^RESULT ' "$logf" || { log "FAILED: see $logf"; tail -5 "$logf" >&2; }
    after=$(part_ticks); m1=$(machine_ticks)
    local line; line=$(grep '^RESULT ' "$logf" | tail -n 1) || line=""
    local bcpu; bcpu=$(grep -o 'bench_cpu_s=[0-9.+]*' "$logf" | tail -n 1 | cut -d= -f2)
    echo "$line before=[$before] after=[$after] machine_ticks=$((m1 - m0)) bench_cpu_s=$bcpu" >>"$results"
}

pgbin=$(bash -c "source '$repo/scripts/lib.sh'; echo \$pgbin")

run b100-c4-p100 deliver "$shard0" 100 --consumers 4
run b100-c4-p100 router "$router" 100 --consumers 4
run b1-c4-p100 deliver "$shard0" 1 --consumers 4
run b1-c4-p100 router "$router" 1 --consumers 4
run b100-c4-p100 deliver "$shard0" 100 --consumers 4 --guarantee exactly_once
run b100-c4-p100 router "$router" 100 --consumers 4 --guarantee exactly_once

# the report
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
ticks_of() { sed -n "s/.*$2=\[[^]]*\b$3 \([0-9]*\).*/\1/p" <<<"$1"; }
{
    echo "# Cluster benchmark $stamp"
    echo
    echo "Command: \`bench/cluster-bench.sh --duration $duration\`, on \`scripts/cluster\`: two shards,"
    echo "each a pg_auto_failover formation of a primary and a synchronous standby"
    echo "(every commit waits for the standby), 8 partitions, the router (PL/Proxy),"
    echo "all on this machine's $(nproc) cores with the cluster's small settings"
    echo "(shared_buffers 64MB per instance). \`deliver\` rows: a plain queue on"
    echo "shard 0's primary, called directly; \`router\` rows: a partitioned queue"
    echo "through \`deliver_cluster.*\` (sends spread over the 8 partitions, so over"
    echo "both shards; each consumer receives from its partitions in turn)."
    echo "4 producers, 4 consumers, 100-byte payloads, receive batches up to 100."
    echo
    echo "| system | guarantee | scenario | msgs/s | p50 ms | p99 ms | p99.9 ms | lost | dup | CPU µs/msg: machine | shard 0 | shard 1 | router | load generator |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    while read -r line; do
        [[ $line == RESULT* ]] || continue
        sys=$(field "$line" system); rate=$(field "$line" acked_per_s)
        dur=$(field "$line" duration_s)
        msgs=$(awk -v r="$rate" -v d="$dur" 'BEGIN{printf "%d", r*d}')
        us() { us_per_msg "$1" "$msgs"; }
        s0=$(( $(ticks_of "$line" after shard0) - $(ticks_of "$line" before shard0) ))
        s1=$(( $(ticks_of "$line" after shard1) - $(ticks_of "$line" before shard1) ))
        rt=$(( $(ticks_of "$line" after router) - $(ticks_of "$line" before router) ))
        mt=$(field "$line" machine_ticks)
        bc=$(field "$line" bench_cpu_s)
        bt=$(awk -v s="$bc" -v hz="$hz" 'BEGIN{split(s, a, "+"); printf "%d", (a[1]+a[2])*hz}')
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
            "$sys" "$(field "$line" guarantee)" "$(field "$line" scenario)" \
            "$(printf "%'d" "${rate%.*}")" "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" \
            "$(field "$line" p999_ms)" "$(field "$line" lost)" "$(field "$line" dup)" \
            "$(us "$mt")" "$(us "$s0")" "$(us "$s1")" "$(us "$rt")" "$(us "$bt")"
    done <"$results"
    echo
    echo "CPU µs per message: the CPU time each part spent during the run (postgres"
    echo "instances: every process of the primary and the standby, by data"
    echo "directory) divided by the messages acked in the run; \"machine\" is all"
    echo "the busy time of the machine. The producing window is ${duration} s; the drain after it is"
    echo "not counted in msgs/s but its CPU is in the CPU columns (a small overstatement)."
    echo
    echo "Environment: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $("$pgbin/postgres" --version), deliver source $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo " with local changes")."
} >"$report"
cat "$report"
log "wrote $report"
