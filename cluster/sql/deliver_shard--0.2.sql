-- deliver_shard 0.2: the shard side of a deliver cluster
\echo Use "CREATE EXTENSION deliver_shard" to load this file. \quit

-- (a superuser runs this: pg_catalog only, no operator a database owner put
-- in public; LOCAL: CREATE EXTENSION restores the search_path after)
SET LOCAL search_path = pg_catalog, pg_temp;

--
-- A partitioned queue q is, on each shard, one deliver queue per logical
-- partition the shard hosts, named "q.p<partition>".  The router
-- (deliver_router) decides which shard hosts which partition and calls the
-- functions below (or deliver's own functions) on it.  Every id a client
-- sees names its partition and the placement of that partition it came
-- from: "<partition>:<epoch>:<id on the shard>".
--

-- The partitions of each queue hosted here, and the placement (epoch) this
-- shard has them in.  Written by create_partitions.
CREATE TABLE deliver_shard.partition (
    queue_name  text NOT NULL,
    partition   int NOT NULL CHECK (partition >= 0),
    epoch       int NOT NULL CHECK (epoch > 0),
    writable    boolean NOT NULL DEFAULT true,   -- false once it moved away (stop_writes)
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue_name, partition)
);
SELECT pg_catalog.pg_extension_config_dump('deliver_shard.partition', '');

-- The deliver queue of partition p of queue q.
CREATE FUNCTION deliver_shard.queue_of(queue_name text, partition int) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT queue_name || '.p' || partition $$;

-- The epoch this shard holds partition p of queue q in, or an error.
CREATE FUNCTION deliver_shard.epoch_of(queue_name text, partition int) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e int;
BEGIN
    SELECT x.epoch INTO e FROM deliver_shard.partition x
     WHERE x.queue_name = epoch_of.queue_name AND x.partition = epoch_of.partition;
    IF e IS NULL THEN
        RAISE EXCEPTION 'partition % of queue "%" is not on this shard', partition, left(queue_name, 80)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The partition map of the router changed: call again.';
    END IF;
    RETURN e;
END $$;

-- The epoch of partition p of queue q here, for a send: an error once the
-- partition moved away (its messages here are still delivered from here
-- until drained, but new ones go to its new shard).
CREATE FUNCTION deliver_shard.write_epoch_of(queue_name text, partition int) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e int := deliver_shard.epoch_of(queue_name, partition);
BEGIN
    IF NOT (SELECT x.writable FROM deliver_shard.partition x
             WHERE x.queue_name = write_epoch_of.queue_name AND x.partition = write_epoch_of.partition) THEN
        RAISE EXCEPTION 'partition % of queue "%" is not on this shard for new messages', partition,
                        left(queue_name, 80)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It moved to another shard; what it holds here is still delivered from here.',
                  HINT = 'The partition map of the router changed: call again.';
    END IF;
    RETURN e;
END $$;

-- Partition p of every queue takes no new messages here any more (the
-- router moves it to another shard).  Returns how many queues.
CREATE FUNCTION deliver_shard.stop_writes(partition int, caller text DEFAULT NULL) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int;
BEGIN
    -- as the caller: a move is for who may write deliver_shard's map here
    PERFORM deliver_shard.act_as(caller);
    WITH s AS (UPDATE deliver_shard.partition x SET writable = false
                WHERE x.partition = stop_writes.partition RETURNING 1)
    SELECT count(*)::int INTO n FROM s;
    RETURN n;
END $$;

-- "<partition>:<epoch>:<local id>" (NULL for a NULL id).
-- Qualified names and no SET clause: a query calling it per row inlines it.
CREATE FUNCTION deliver_shard.global_id(partition int, epoch int, local_id bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT partition::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
           epoch::pg_catalog.text OPERATOR(pg_catalog.||) ':' OPERATOR(pg_catalog.||)
           local_id::pg_catalog.text
$$;

-- The parts of a global id, checked: partition, epoch, local id.
CREATE FUNCTION deliver_shard.parse_id(id text, OUT partition int, OUT epoch int, OUT local_id bigint)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF id !~ '^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'invalid id "%"', left(id, 80)
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = 'An id of a partitioned queue is partition:epoch:id, as the router returned it.';
    END IF;
    partition := split_part(id, ':', 1)::int;
    epoch := split_part(id, ':', 2)::int;
    local_id := split_part(id, ':', 3)::bigint;
END $$;

-- Global ids (partition:epoch:id) by the place they name: every id is
-- checked first (parse_id's error for a bad one), then one row per
-- partition and epoch with its local ids, in the order given, and the
-- smallest global id (for an error message).
CREATE FUNCTION deliver_shard.ids_by_place(ids text[])
RETURNS TABLE (partition int, epoch int, local_ids bigint[], first_id text)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.parse_id(d) FROM unnest(ids) d     -- raises the error of a bad id
     WHERE d IS NULL OR d !~ '^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$' LIMIT 1;
    RETURN QUERY
        SELECT split_part(d, ':', 1)::int, split_part(d, ':', 2)::int,
               array_agg(split_part(d, ':', 3)::bigint ORDER BY i), min(d)
          FROM unnest(ids) WITH ORDINALITY AS u(d, i) GROUP BY 1, 2 ORDER BY 1, 2;
END $$;

--
-- Whose rights: every function the router calls here takes, last, the role
-- its caller runs as on the router (caller; the router checks that it is
-- the caller's own role, deliver_cluster._as) and calls deliver's
-- functions as that role, so deliver checks the caller's rights on each
-- queue here as on one node.  The router's connection user (the user of
-- the shards' connection strings) must be allowed to take that role: a
-- superuser, or a member of the roles (as PostgREST's authenticator).
-- deliver_shard's own bookkeeping runs as the connection user.  caller
-- NULL (a call made on the shard itself): as the invoker, nothing taken.
--

-- Take the caller's role for what follows in this transaction; returns
-- the role setting it replaced (for act_back).
CREATE FUNCTION deliver_shard.act_as(caller text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev text := current_setting('role');
BEGIN
    IF caller IS NOT NULL THEN
        IF caller = '' OR lower(caller) = 'none' THEN
            RAISE EXCEPTION 'invalid caller role "%"', left(caller, 80) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM set_config('role', caller, true);
    END IF;
    RETURN prev;
END $$;

-- Back to the role setting act_as replaced.
CREATE FUNCTION deliver_shard.act_back(prev text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM set_config('role', prev, true);
END $$;

-- The epoch of partition p of queue q here (epoch_of's error if it is not
-- here; for_write: write_epoch_of's), then the caller's role for the rest
-- of the transaction: for a statement whose deliver call comes after it
-- (the router's send and receive: a function scan, then the call).
CREATE FUNCTION deliver_shard.enter(queue_name text, partition int, caller text, for_write boolean DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e int := CASE WHEN for_write THEN deliver_shard.write_epoch_of(queue_name, partition)
                  ELSE deliver_shard.epoch_of(queue_name, partition) END;
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN e;
END $$;

--
-- Administration (the router calls these with SPLIT: each shard gets the
-- partitions it hosts; the routing arrays themselves are not used here)
--
CREATE FUNCTION deliver_shard.create_partitions(
    shards int[], partitions int[], epochs int[], queue_name text,
    guarantee text, visibility_timeout interval, max_attempts int, fifo boolean,
    dedup_window interval, retry_base interval, retry_max interval,
    message_ttl interval DEFAULT NULL, on_expire text DEFAULT NULL, max_depth bigint DEFAULT NULL,
    overflow text DEFAULT NULL, ack_commit text DEFAULT NULL, priorities boolean DEFAULT NULL,
    caller text DEFAULT NULL)
RETURNS TABLE (partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i int;
    prev text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(partitions, 1), 0) LOOP
        -- a partition created here in this placement already (a move called
        -- again) is left as it is
        CONTINUE WHEN EXISTS (SELECT 1 FROM deliver_shard.partition x
                               WHERE x.queue_name = create_partitions.queue_name
                                 AND x.partition = partitions[i] AND x.epoch = epochs[i]);
        prev := deliver_shard.act_as(caller);
        PERFORM deliver.create_queue(deliver_shard.queue_of(queue_name, partitions[i]), guarantee,
                                     visibility_timeout, max_attempts, fifo, dedup_window,
                                     retry_base, retry_max, message_ttl, on_expire, max_depth,
                                     overflow, ack_commit, priorities);
        PERFORM deliver_shard.act_back(prev);
        INSERT INTO deliver_shard.partition (queue_name, partition, epoch)
        VALUES (create_partitions.queue_name, partitions[i], epochs[i]);
        create_partitions.partition := partitions[i];
        RETURN NEXT;
    END LOOP;
END $$;

CREATE FUNCTION deliver_shard.drop_partitions(queue_name text, caller text DEFAULT NULL)
RETURNS TABLE (partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    prev text;
BEGIN
    FOR p IN SELECT x.partition FROM deliver_shard.partition x
              WHERE x.queue_name = drop_partitions.queue_name ORDER BY 1 LOOP
        prev := deliver_shard.act_as(caller);
        PERFORM deliver.drop_queue(deliver_shard.queue_of(queue_name, p));
        PERFORM deliver_shard.act_back(prev);
        DELETE FROM deliver_shard.partition x
         WHERE x.queue_name = drop_partitions.queue_name AND x.partition = p;
        drop_partitions.partition := p;
        RETURN NEXT;
    END LOOP;
END $$;

-- Run one of deliver's administration calls on partition p of a queue:
-- create_consumer_group, drop_consumer_group, grant_queue, revoke_queue,
-- purge_queue, pause_consumer_group, resume_consumer_group,
-- reset_consumer_group (the partition's queue is the first argument, args
-- the rest, all text).
CREATE FUNCTION deliver_shard.call_on_partition(queue_name text, partition int, call text, args text[],
                                                caller text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result text;
    prev text;
BEGIN
    IF call IS NULL OR call NOT IN ('create_consumer_group', 'drop_consumer_group', 'grant_queue',
                                    'revoke_queue', 'purge_queue', 'pause_consumer_group',
                                    'resume_consumer_group', 'reset_consumer_group') THEN
        RAISE EXCEPTION 'unknown call "%"', left(call, 80) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM deliver_shard.epoch_of(queue_name, partition);
    prev := deliver_shard.act_as(caller);
    EXECUTE format('SELECT deliver.%I($1%s)::text', call,
                   (SELECT coalesce(string_agg(format(', $2[%s]', i), '' ORDER BY i), '')
                      FROM generate_series(1, coalesce(array_length(args, 1), 0)) i))
       INTO result USING deliver_shard.queue_of(queue_name, partition), args;
    PERFORM deliver_shard.act_back(prev);
    RETURN result;
END $$;

-- The same call on every partition of the queue hosted here.
CREATE FUNCTION deliver_shard.for_each_partition(queue_name text, call text, args text[],
                                                 caller text DEFAULT NULL)
RETURNS TABLE (partition int, result text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
BEGIN
    FOR p IN SELECT x.partition FROM deliver_shard.partition x
              WHERE x.queue_name = for_each_partition.queue_name ORDER BY 1 LOOP
        for_each_partition.partition := p;
        for_each_partition.result := deliver_shard.call_on_partition(queue_name, p, call, args, caller);
        RETURN NEXT;
    END LOOP;
END $$;

--
-- Messages
--

-- Send a batch; each message goes to the partition partitions[i] gave it.
-- Returns (ord, message id) for each message, ords[] being the caller's
-- positions.  One transaction for the whole call on this shard.
CREATE FUNCTION deliver_shard.send_batch(
    shards int[], partitions int[], ords int[], queue_name text,
    payloads jsonb[], headers jsonb[], ordering_keys text[], idempotency_keys text[],
    delay interval, expires_at timestamptz DEFAULT NULL, priority int DEFAULT NULL, caller text DEFAULT NULL)
RETURNS TABLE (ord int, message_id text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    e int;
    idx int[];
    ids bigint[];
    k int;
    prev text;
BEGIN
    FOR p IN SELECT DISTINCT x FROM unnest(partitions) AS x ORDER BY 1 LOOP
        e := deliver_shard.write_epoch_of(queue_name, p);
        idx := ARRAY(SELECT i FROM generate_subscripts(partitions, 1) AS i WHERE partitions[i] = p ORDER BY i);
        prev := deliver_shard.act_as(caller);
        ids := deliver.send_batch(deliver_shard.queue_of(queue_name, p),
                                  ARRAY(SELECT payloads[i] FROM unnest(idx) AS i),
                                  ARRAY(SELECT headers[i] FROM unnest(idx) AS i),
                                  ARRAY(SELECT ordering_keys[i] FROM unnest(idx) AS i),
                                  CASE WHEN deliver_shard.bool_or_keys(idempotency_keys, idx)
                                       THEN ARRAY(SELECT idempotency_keys[i] FROM unnest(idx) AS i) END,
                                  delay, expires_at, priority);
        PERFORM deliver_shard.act_back(prev);
        FOR k IN 1 .. array_length(idx, 1) LOOP
            send_batch.ord := ords[idx[k]];
            send_batch.message_id := deliver_shard.global_id(p, e, ids[k]);
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;

-- Does any of the messages idx[] of the batch have an idempotency key?
CREATE FUNCTION deliver_shard.bool_or_keys(keys text[], idx int[]) RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce(bool_or(keys[i] IS NOT NULL), false) FROM unnest(idx) AS i $$;

-- Ack deliveries (global ids) of this shard's partitions; returns how many.
-- One ack_batch per partition; an id of another epoch of its partition
-- (the partition moved away and back since) is not current.
CREATE FUNCTION deliver_shard.ack_batch(shards int[], delivery_ids text[], queue_name text,
                                        caller text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    n int := 0;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.ids_by_place(delivery_ids) LOOP
        IF x.epoch <> deliver_shard.epoch_of(queue_name, x.partition) THEN
            RAISE EXCEPTION 'delivery "%" is not current on queue "%"', x.first_id, left(queue_name, 80)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Its partition has moved since it was received.';
        END IF;
        prev := deliver_shard.act_as(caller);
        n := n + deliver.ack_batch(deliver_shard.queue_of(queue_name, x.partition), x.local_ids);
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
    RETURN n;
END $$;

--
-- Dead letters, metrics, moves
--

CREATE FUNCTION deliver_shard.dead_letters(queue_name text, consumer_group text, max_messages int,
                                           caller text DEFAULT NULL)
RETURNS TABLE (message_id text, group_name text, payload jsonb, headers jsonb, ordering_key text,
               attempts int, reason text, last_error text, enqueued_at timestamptz, dead_at timestamptz,
               partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.partition y WHERE y.queue_name = dead_letters.queue_name ORDER BY y.partition LOOP
        prev := deliver_shard.act_as(caller);
        RETURN QUERY
            SELECT deliver_shard.global_id(x.partition, x.epoch, d.message_id), d.group_name, d.payload,
                   d.headers, d.ordering_key, d.attempts, d.reason, d.last_error, d.enqueued_at, d.dead_at,
                   x.partition
              FROM deliver.dead_letters(deliver_shard.queue_of(queue_name, x.partition), consumer_group,
                                        max_messages) d;
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
END $$;

-- Send dead letters back (all, or those message_ids name); returns how many.
-- With to_queue, each goes to the same partition of to_queue instead, here
-- (a partition is placed on one shard for every queue, and a message with
-- an ordering key is in its key's partition: where a send of it would go),
-- in deliver.redrive's one transaction.  Dead letters at a place their
-- partition moved away from are not redriven (they would not be read):
-- all leaves them, ids naming them are refused (55000), as is a to_queue
-- whose partition takes no new messages here (nothing is redriven on this
-- shard then).
CREATE FUNCTION deliver_shard.redrive(shards int[], message_ids text[], queue_name text, consumer_group text,
                                      to_queue text DEFAULT NULL, caller text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    n bigint := 0;
    ids bigint[];
    q text;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.partition y WHERE y.queue_name = redrive.queue_name ORDER BY y.partition LOOP
        q := deliver_shard.queue_of(queue_name, x.partition);
        IF message_ids IS NULL THEN
            ids := NULL;
        ELSIF EXISTS (SELECT 1 FROM unnest(message_ids) m WHERE (deliver_shard.parse_id(m)).partition = x.partition) THEN
            ids := ARRAY(SELECT (deliver_shard.parse_id(m)).local_id FROM unnest(message_ids) m
                          WHERE (deliver_shard.parse_id(m)).partition = x.partition
                            AND (deliver_shard.parse_id(m)).epoch = x.epoch);
        ELSE
            CONTINUE;
        END IF;
        IF NOT x.writable THEN
            -- moved away: what were sent here would not be read (all: the
            -- placements that take new messages only)
            IF cardinality(ids) > 0 THEN
                RAISE EXCEPTION 'dead letters of partition % of queue "%" are at a place the partition moved away from',
                                x.partition, left(queue_name, 80)
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = 'A message sent there again would not be read.',
                          HINT = 'Read them (dead_letters), send them again, and delete them (delete_dead_letters).';
            END IF;
            CONTINUE;
        END IF;
        IF to_queue IS NOT NULL THEN
            PERFORM deliver_shard.write_epoch_of(to_queue, x.partition);
        END IF;
        prev := deliver_shard.act_as(caller);
        n := n + deliver.redrive(q, ids, consumer_group, deliver_shard.queue_of(to_queue, x.partition));
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
    RETURN n;
END $$;

-- Delete dead letters (global ids) of this shard's partitions for good (of
-- one consumer group, or NULL: of every group); returns how many.  An id of
-- another placement of its partition than the one here counts nothing.
CREATE FUNCTION deliver_shard.delete_dead_letters(shards int[], message_ids text[], queue_name text,
                                                  consumer_group text, caller text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    n bigint := 0;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.ids_by_place(message_ids) LOOP
        CONTINUE WHEN x.epoch <> deliver_shard.epoch_of(queue_name, x.partition);
        prev := deliver_shard.act_as(caller);
        n := n + deliver.delete_dead_letters(deliver_shard.queue_of(queue_name, x.partition), x.local_ids,
                                             consumer_group);
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION deliver_shard.metrics(queue_name text, caller text DEFAULT NULL)
RETURNS TABLE (partition int, epoch int, consumer_group text, depth bigint, in_flight bigint,
               delayed bigint, dead_letters bigint, oldest_age interval, sent_total bigint,
               acked_total bigint, dead_total bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.partition y WHERE y.queue_name = metrics.queue_name ORDER BY y.partition LOOP
        prev := deliver_shard.act_as(caller);
        RETURN QUERY
            SELECT x.partition, x.epoch, m.consumer_group, m.depth, m.in_flight, m.delayed, m.dead_letters,
                   m.oldest_age, m.sent_total, m.acked_total, m.dead_total
              FROM deliver.metrics(deliver_shard.queue_of(queue_name, x.partition)) m;
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
END $$;

-- Has partition p of the queue nothing left to deliver here (every group:
-- nothing waiting, in flight or delayed)?  A partition moving away is
-- drained before the new place is read.  A send that read the partition
-- writable before stop_writes committed may commit after it: no client
-- transaction that began before that commit may still be running (the
-- commit time of the partition's row, track_commit_timestamp), or its
-- message would be left behind in a place nobody reads any more.
CREATE FUNCTION deliver_shard.drained(queue_name text, partition int, caller text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN NOT EXISTS (
               SELECT 1 FROM deliver_shard.partition x, pg_stat_activity a
                WHERE x.queue_name = drained.queue_name AND x.partition = drained.partition
                  AND NOT x.writable
                  AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
                  AND a.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
                  AND a.xact_start <= coalesce(pg_xact_commit_timestamp(x.xmin), 'infinity'))
       AND (SELECT coalesce(bool_and(m.depth = 0 AND m.in_flight = 0 AND m.delayed = 0), true)
              FROM deliver.metrics(deliver_shard.queue_of(queue_name, partition)) m);
END $$;

-- The consumer groups of partition p of a queue (a new place creates them).
CREATE FUNCTION deliver_shard.groups_of(queue_name text, partition int, caller text DEFAULT NULL) RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN (SELECT coalesce(array_agg(g.consumer_group ORDER BY g.created_at), '{}')
              FROM deliver.list_consumer_groups(deliver_shard.queue_of(queue_name, partition)) g);
END $$;

--
-- Queue settings, flow control and inspection on every partition of a
-- queue hosted here (both placements of a partition that is moving: what
-- is still read here gets the setting too).  Each returns the partitions
-- it changed; deliver's own function checks the values and the rights.
--

-- deliver.alter_queue on each partition (NULL: left as it is).
CREATE FUNCTION deliver_shard.alter_partitions(queue_name text, visibility_timeout interval,
    max_attempts int, dedup_window interval, retry_base interval, retry_max interval,
    archive_retention interval, message_ttl interval, on_expire text, max_depth bigint,
    overflow text, ack_commit text, priorities boolean DEFAULT NULL, caller text DEFAULT NULL)
RETURNS TABLE (partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    prev text;
BEGIN
    FOR p IN SELECT x.partition FROM deliver_shard.partition x
              WHERE x.queue_name = alter_partitions.queue_name ORDER BY 1 LOOP
        prev := deliver_shard.act_as(caller);
        PERFORM deliver.alter_queue(deliver_shard.queue_of(queue_name, p), visibility_timeout, max_attempts,
                                    dedup_window, retry_base, retry_max, archive_retention, message_ttl,
                                    on_expire, max_depth, overflow, ack_commit, priorities);
        PERFORM deliver_shard.act_back(prev);
        alter_partitions.partition := p;
        RETURN NEXT;
    END LOOP;
END $$;

-- The rate of a consumer group on each partition (per_second, burst:
-- deliver.set_consumer_group_rate's own, on each partition).  Pause and
-- resume go through for_each_partition.
CREATE FUNCTION deliver_shard.set_group_rate(queue_name text, consumer_group text,
                                             per_second double precision, burst int, caller text DEFAULT NULL)
RETURNS TABLE (partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    prev text;
BEGIN
    FOR p IN SELECT x.partition FROM deliver_shard.partition x
              WHERE x.queue_name = set_group_rate.queue_name ORDER BY 1 LOOP
        prev := deliver_shard.act_as(caller);
        PERFORM deliver.set_consumer_group_rate(deliver_shard.queue_of(queue_name, p), consumer_group,
                                                per_second, burst);
        PERFORM deliver_shard.act_back(prev);
        set_group_rate.partition := p;
        RETURN NEXT;
    END LOOP;
END $$;

-- deliver.set_fifo_key_limit on each partition.
CREATE FUNCTION deliver_shard.set_fifo_key_limit(queue_name text, max_in_flight_per_key int,
                                                 caller text DEFAULT NULL)
RETURNS TABLE (partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    prev text;
BEGIN
    FOR p IN SELECT x.partition FROM deliver_shard.partition x
              WHERE x.queue_name = set_fifo_key_limit.queue_name ORDER BY 1 LOOP
        prev := deliver_shard.act_as(caller);
        PERFORM deliver.set_fifo_key_limit(deliver_shard.queue_of(queue_name, p), max_in_flight_per_key);
        PERFORM deliver_shard.act_back(prev);
        set_fifo_key_limit.partition := p;
        RETURN NEXT;
    END LOOP;
END $$;

-- The next messages of a consumer group on each partition here (at most
-- max_messages from each, global ids), without leasing them.
CREATE FUNCTION deliver_shard.peek(queue_name text, max_messages int, consumer_group text,
                                   caller text DEFAULT NULL)
RETURNS TABLE (message_id text, payload jsonb, headers jsonb, ordering_key text, attempt int,
               enqueued_at timestamptz, redelivery boolean, partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    prev text;
BEGIN
    FOR x IN SELECT * FROM deliver_shard.partition y WHERE y.queue_name = peek.queue_name ORDER BY y.partition LOOP
        prev := deliver_shard.act_as(caller);
        RETURN QUERY
            SELECT deliver_shard.global_id(x.partition, x.epoch, m.message_id), m.payload, m.headers,
                   m.ordering_key, m.attempt, m.enqueued_at, m.redelivery, x.partition
              FROM deliver.peek(deliver_shard.queue_of(queue_name, x.partition), max_messages, consumer_group) m;
        PERFORM deliver_shard.act_back(prev);
    END LOOP;
END $$;

-- Delete a message (global id) of this shard: false when its placement is
-- no longer here (the partition moved away and back: the message is gone).
CREATE FUNCTION deliver_shard.delete_message(queue_name text, message_id text, caller text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int;
    e int;
    l bigint;
BEGIN
    SELECT * INTO p, e, l FROM deliver_shard.parse_id(message_id);
    IF e <> deliver_shard.epoch_of(queue_name, p) THEN
        RETURN false;
    END IF;
    PERFORM deliver_shard.act_as(caller);
    RETURN deliver.delete_message(deliver_shard.queue_of(queue_name, p), l);
END $$;

-- The flow control of partition p of a queue here: its FIFO key limit and
-- each consumer group's pause and rate (a partition's new place copies
-- them when it moves).
CREATE FUNCTION deliver_shard.flow_of(queue_name text, partition int, caller text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text;
BEGIN
    PERFORM deliver_shard.epoch_of(queue_name, partition);
    q := deliver_shard.queue_of(queue_name, partition);
    PERFORM deliver_shard.act_as(caller);
    RETURN jsonb_build_object(
        'fifo_key_limit', (SELECT x.fifo_key_limit FROM deliver.queue x WHERE x.queue_name = q),
        'groups', coalesce((SELECT jsonb_agg(jsonb_build_object('name', g.consumer_group, 'paused', g.paused,
                                                                'per_second', g.rate_per_second,
                                                                'burst', g.rate_burst))
                              FROM deliver.list_consumer_groups(q) g), '[]'));
END $$;

-- Set what flow_of gave on partition p of a queue here (its groups exist).
CREATE FUNCTION deliver_shard.set_flow(queue_name text, partition int, flow jsonb, caller text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text;
    g jsonb;
    n int := 0;
BEGIN
    PERFORM deliver_shard.epoch_of(queue_name, partition);
    q := deliver_shard.queue_of(queue_name, partition);
    PERFORM deliver_shard.act_as(caller);
    IF coalesce((flow->>'fifo_key_limit')::int, 1) <> 1 THEN
        PERFORM deliver.set_fifo_key_limit(q, (flow->>'fifo_key_limit')::int);
    END IF;
    FOR g IN SELECT * FROM jsonb_array_elements(coalesce(flow->'groups', '[]')) LOOP
        IF coalesce((g->>'paused')::boolean, false) THEN
            PERFORM deliver.pause_consumer_group(q, g->>'name');
        ELSE
            PERFORM deliver.resume_consumer_group(q, g->>'name');
        END IF;
        PERFORM deliver.set_consumer_group_rate(q, g->>'name', (g->>'per_second')::float8,
                                                CASE WHEN g->>'per_second' IS NOT NULL THEN (g->>'burst')::int END);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Set the archive retention of partition p of a queue here (a move copies
-- it to the partition's new place).  Returns 1.
CREATE FUNCTION deliver_shard.set_archive_retention(queue_name text, partition int, retention interval,
                                                    caller text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.epoch_of(queue_name, partition);
    PERFORM deliver_shard.act_as(caller);
    PERFORM deliver.alter_queue(deliver_shard.queue_of(queue_name, partition), archive_retention => retention);
    RETURN 1;
END $$;

-- Replay the archive of each partition of a queue here that takes new
-- messages into one consumer group (deliver.replay_archive on each, at most
-- max_messages from each).  after: positions, global ids
-- ("partition:epoch:id"): a partition goes on after the id of the element
-- naming it and its placement here (none, or of another placement: from
-- its start).  Returns each partition's count and position: the global id
-- of the last message replayed, else the position it started from (NULL:
-- the start).  Archives at a place a partition moved away from are not
-- replayed (what were sent there again would not be read).
CREATE FUNCTION deliver_shard.replay_archive(queue_name text, consumer_group text, since timestamptz,
                                             after text[], max_messages int, caller text DEFAULT NULL)
RETURNS TABLE (partition int, replayed bigint, position_id text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    x record;
    start bigint;
    r record;
    prev text;
BEGIN
    PERFORM deliver_shard.parse_id(a) FROM unnest(after) a     -- raises the error of a bad position
     WHERE a IS NULL OR a !~ '^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$' LIMIT 1;
    FOR x IN SELECT * FROM deliver_shard.partition y
              WHERE y.queue_name = replay_archive.queue_name AND y.writable ORDER BY y.partition LOOP
        SELECT coalesce(max(split_part(a, ':', 3)::bigint), 0) INTO start FROM unnest(after) a
         WHERE split_part(a, ':', 1)::int = x.partition AND split_part(a, ':', 2)::int = x.epoch;
        prev := deliver_shard.act_as(caller);
        SELECT * INTO r FROM deliver.replay_archive(deliver_shard.queue_of(queue_name, x.partition), consumer_group,
                                                    since, start, max_messages);
        PERFORM deliver_shard.act_back(prev);
        replay_archive.partition := x.partition;
        replay_archive.replayed := r.replayed;
        replay_archive.position_id := deliver_shard.global_id(x.partition, x.epoch,
                                                           coalesce(r.last_id, nullif(start, 0)));
        RETURN NEXT;
    END LOOP;
END $$;

-- A publish's copies: deliver.send of the message to partition p of each
-- queue (all here: partition p of every queue is placed on one shard), in
-- this call's one transaction: all are sent or none.  Returns (queue,
-- global message id).
CREATE FUNCTION deliver_shard.publish(partition int, queue_names text[], payload jsonb, headers jsonb,
                                      ordering_key text, idempotency_key text, delay interval,
                                      expires_at timestamptz, priority int DEFAULT NULL, caller text DEFAULT NULL)
RETURNS TABLE (queue_name text, message_id text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text;
    e int;
    prev text;
BEGIN
    FOREACH q IN ARRAY queue_names LOOP
        e := deliver_shard.write_epoch_of(q, partition);
        publish.queue_name := q;
        prev := deliver_shard.act_as(caller);
        publish.message_id := deliver_shard.global_id(partition, e,
            deliver.send(deliver_shard.queue_of(q, partition), payload, headers, ordering_key, idempotency_key,
                         delay, expires_at, priority));
        PERFORM deliver_shard.act_back(prev);
        RETURN NEXT;
    END LOOP;
END $$;

--
-- The web console's views of a cluster (deliverd's GET /v1/metrics,
-- /v1/workers, /v1/alerts, /v1/push-subscriptions): what deliver shows on
-- this shard, the rows of the partitions hosted here tagged with their
-- queue of the cluster and partition.  The router calls them on every
-- shard (the shard's name in names: SPLIT gives each shard its own).
-- deliver's functions check the rights: metrics() shows the queues the
-- caller may read metrics of, worker_status() is pg_monitor's.
--

-- Every partition's metrics here that the caller may read.
CREATE FUNCTION deliver_shard.all_metrics(caller text DEFAULT NULL)
RETURNS TABLE (queue_name text, partition int, epoch int, consumer_group text, depth bigint,
               in_flight bigint, delayed bigint, dead_letters bigint, oldest_age interval,
               sent_total bigint, acked_total bigint, dead_total bigint,
               worker_last_run timestamptz, worker_lag interval, worker_errors bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN QUERY SELECT x.queue_name, x.partition, x.epoch, m.consumer_group, m.depth, m.in_flight, m.delayed,
           m.dead_letters, m.oldest_age, m.sent_total, m.acked_total, m.dead_total,
           m.worker_last_run, m.worker_lag, m.worker_errors
      FROM deliver.metrics() m
      JOIN deliver_shard.partition x ON deliver_shard.queue_of(x.queue_name, x.partition) = m.queue_name;
END $$;

-- This shard's maintenance workers (deliver.worker_status), with its name.
CREATE FUNCTION deliver_shard.worker_status(shards int[], names text[], caller text DEFAULT NULL)
RETURNS TABLE (shard text, database text, pid int, started_at timestamptz, last_run_at timestamptz,
               last_run_duration interval, runs bigint, errors bigint,
               expired_total bigint, dead_total bigint, released_total bigint,
               last_error text, last_error_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN QUERY SELECT n.name, w.database, w.pid, w.started_at, w.last_run_at, w.last_run_duration, w.runs, w.errors,
           w.expired_total, w.dead_total, w.released_total, w.last_error, w.last_error_at
      FROM unnest(names) AS n(name), deliver.worker_status() w;
END $$;

-- The alerts of the partitions' queues here (deliver.list_alerts).
CREATE FUNCTION deliver_shard.list_alerts(shards int[], names text[], caller text DEFAULT NULL)
RETURNS TABLE (shard text, queue_name text, partition int, metric text, threshold numeric, firing boolean,
               value numeric, changed_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN QUERY SELECT n.name, x.queue_name, x.partition, a.metric, a.threshold, a.firing, a.value, a.changed_at
      FROM unnest(names) AS n(name), deliver.list_alerts() a
      JOIN deliver_shard.partition x ON deliver_shard.queue_of(x.queue_name, x.partition) = a.queue_name;
END $$;

-- The push subscriptions of the partitions' queues here, with their lag
-- (deliver.list_push_subscriptions and push_metrics).
CREATE FUNCTION deliver_shard.list_push_subscriptions(shards int[], names text[], caller text DEFAULT NULL)
RETURNS TABLE (shard text, subscription_name text, queue_name text, partition int, consumer_group text,
               active boolean, confirmed_lsn pg_lsn, created_at timestamptz, lag_bytes numeric,
               retained_wal_bytes numeric)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_shard.act_as(caller);
    RETURN QUERY SELECT n.name, s.subscription_name, x.queue_name, x.partition, s.consumer_group, s.active,
           s.confirmed_lsn, s.created_at, m.lag_bytes, m.retained_wal_bytes
      FROM unnest(names) AS n(name), deliver.list_push_subscriptions() s
      JOIN deliver_shard.partition x ON deliver_shard.queue_of(x.queue_name, x.partition) = s.queue_name
      LEFT JOIN deliver.push_metrics() m ON m.subscription_name = s.subscription_name;
END $$;

-- deliver_shard's functions and its map of partitions are for every role
-- the router or the gateway acts as here (the gateway's statements name a
-- partition's queue only once deliver_shard.epoch_of found it here): the
-- functions run as their caller, deliver's own check the rights on the
-- queues, and only the map's owner writes the map.
GRANT USAGE ON SCHEMA deliver_shard TO PUBLIC;
GRANT SELECT ON deliver_shard.partition TO PUBLIC;
