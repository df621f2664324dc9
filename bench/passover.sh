#!/usr/bin/env bash
# bench/passover.sh: what FIFO fairness past the held-back bound costs.
# On a throwaway durable cluster (default settings: a group holds back at
# most 8,192 messages behind busy keys), FIFO queues (fifo_key_limit 1)
# drained by one consumer, receive(100) then ack_batch, a transaction
# each:
#   keys     --backlog messages (100,000 by default) over 1,000 keys,
#            interleaved: no key runs past the bound (the baseline)
#   hot_run  the same, behind a run of --run messages (30,000 by default)
#            of one key: past the bound, the rest of the run is passed
#            over and read again when the key is free
# Per queue: messages drained per second, when the last message of the
# other keys went out, and the slow receives (over ten times the median:
# the reads again are among them; they are counted and timed).
#
#   bench/passover.sh [--backlog N] [--run N] [--rounds R] [--port P]
#
# Prints a table and writes bench/results/<date>-passover.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/cluster.sh   # pgbin, as_pg, build_and_install, the cluster
source bench/pgbench.sh   # pgbench_setup, q
backlog=100000 run=30000
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --run) run=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
pgbench_setup passover "${DELIVER_PASSOVER_PORT:-55495}" "${args[@]}"
cmd="bash bench/passover.sh --backlog $backlog --run $run --rounds $rounds"

# per receive: its time (receive and ack_batch, ms) and the time since the
# drain began, commits included (at, s)
q -c "CREATE TABLE drain_log (queue text, round int, n int, others int, hot int, ms float8, at float8)" \
  -c "CREATE PROCEDURE drain(qn text, rnd int) LANGUAGE plpgsql AS \$\$
      DECLARE
          start timestamptz := clock_timestamp();
          t0 timestamptz;
          ids bigint[];
          nh int;
          i int := 0;
      BEGIN
          LOOP
              i := i + 1;
              t0 := clock_timestamp();
              SELECT array_agg(delivery_id), count(*) FILTER (WHERE ordering_key = 'hot')
                INTO ids, nh FROM deliver.receive(qn, 100);
              EXIT WHEN ids IS NULL;
              PERFORM deliver.ack_batch(qn, ids);
              INSERT INTO drain_log VALUES (qn, rnd, i, cardinality(ids) - nh, nh,
                                            extract(epoch FROM clock_timestamp() - t0) * 1000,
                                            extract(epoch FROM t0 - start));
              COMMIT;
          END LOOP;
      END \$\$" >/dev/null

# fill QUEUE RUN: a FIFO queue, a run of RUN messages of key hot, then the backlog over 1,000 keys
fill() {
    q -c "SELECT deliver.create_queue('$1', fifo => true)" >/dev/null
    local i
    for ((i = 0; i < $2; i += 10000)); do
        q -c "SELECT cardinality(deliver.send_batch('$1', array_fill('{\"pad\": \"hot\"}'::jsonb, ARRAY[least(10000, $2 - $i)]),
                                                    ordering_keys => array_fill('hot'::text, ARRAY[least(10000, $2 - $i)])))" >/dev/null
    done
    for ((i = 0; i < backlog; i += 10000)); do
        q -c "SELECT cardinality(deliver.send_batch('$1', array_fill('{\"pad\": \"k\"}'::jsonb, ARRAY[least(10000, $backlog - $i)]),
                                                    ordering_keys => ARRAY(SELECT 'k' || (g % 1000) FROM generate_series(1, least(10000, $backlog - $i)) g)))" >/dev/null
    done
}

for r in $(seq 1 "$rounds"); do
    for c in keys hot_run; do
        qn="${c}_$r"
        if [[ $c == keys ]]; then fill "$qn" 0; else fill "$qn" "$run"; fi
        q -c "CHECKPOINT" >/dev/null
        q -c "CALL drain('$qn', $r)" >/dev/null
        q -c "SELECT deliver.drop_queue('$qn')" >/dev/null
    done
done

stamp=$(date -u +%Y-%m-%d-%H%M)
out=bench/results/$stamp-passover.md
{
    echo "# FIFO fairness past the held-back bound, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`$cmd\`; $(nproc) cores (shared with other work), PostgreSQL"
    echo "$(q -c 'SHOW server_version' | cut -d' ' -f1), fsync on, synchronous_commit on, default deliver"
    echo "settings (a group holds back at most 8,192 messages behind busy keys). One consumer drains"
    echo "each FIFO queue (fifo_key_limit 1): receive(100), then ack_batch, a transaction each."
    echo "keys: $backlog messages over 1,000 keys, interleaved. hot_run: the same behind a run of"
    echo "$run messages of one key, which goes out one per receive; past the bound its rest is passed"
    echo "over and read again when the key is free. \"others out\": when the last message of the"
    echo "1,000 keys went out. Times in s are wall times of the drain, commits included; a"
    echo "receive's time (ms) is its receive and ack_batch. \"slow\": receives over ten times"
    echo "the median (where the run is passed over, its reads again are among them)."
    echo
    echo "| queue | round | messages | receives | total s | msgs/s | others out at s | median receive+ack ms | slow | their mean ms | their max ms |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    q -F ' | ' -c "
        WITH l AS (SELECT split_part(queue, '_', 1) || CASE WHEN queue LIKE 'hot%' THEN '_run' ELSE '' END AS c,
                          round AS r, n, others, hot, ms, at FROM drain_log),
             m AS (SELECT c, r, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med FROM l GROUP BY c, r)
        SELECT '| ' || l.c, l.r, sum(others + hot), count(*), round(max(at)::numeric, 1),
               round((sum(others + hot) / max(at))::numeric),
               round((max(at) FILTER (WHERE others > 0))::numeric, 1),
               round(m.med::numeric, 2),
               count(*) FILTER (WHERE ms > 10 * m.med),
               coalesce(round(avg(ms) FILTER (WHERE ms > 10 * m.med)::numeric, 1), 0),
               round(max(ms)::numeric, 1) || ' |'
          FROM l JOIN m USING (c, r) GROUP BY l.c, l.r, m.med ORDER BY l.r, l.c DESC"
} >"$out"
cat "$out"
echo "passover: wrote $out"
