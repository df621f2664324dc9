-- deliver_router 0.2: the router database of a deliver cluster
\echo Use "CREATE EXTENSION deliver_router" to load this file. \quit

-- (a superuser runs this: pg_catalog only, no operator a database owner put
-- in public; LOCAL: CREATE EXTENSION restores the search_path after)
SET LOCAL search_path = pg_catalog, pg_temp;

--
-- A queue of the cluster is split into a fixed number of logical
-- partitions; each partition lives on one shard (a pg_auto_failover
-- formation running deliver with deliver_shard) at a time.  The map of
-- partitions to shards is versioned: each placement of a partition has an
-- epoch, and every id a client sees is "<partition>:<epoch>:<id>", so an ack,
-- nack or redrive goes where its message is, even while the partition
-- moves.  Calls reach the shards through PL/Proxy (cluster "deliver", one
-- PL/Proxy partition per shard, padded to a power of two).
--
-- A message goes to the partition of its ordering key, else of its
-- idempotency key (deliver_cluster.partition_of: the first 32 bits of the
-- MD5 of the key's UTF-8 bytes, as an unsigned number, modulo the number of
-- partitions), else to a partition spread evenly.  So a key's messages
-- keep their order and their deduplication: both are per partition.
--

CREATE TABLE deliver_cluster.setting (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO deliver_cluster.setting VALUES ('partitions', '8');

-- The shards: conninfo finds the primary of the shard's formation (a
-- multi-host string with target_session_attrs=read-write).
CREATE TABLE deliver_cluster.shard (
    shard_id  int PRIMARY KEY CHECK (shard_id >= 0 AND shard_id < 1024),
    name      text NOT NULL UNIQUE,
    conninfo  text NOT NULL
);

-- Where each partition is: one 'active' placement takes new messages; a
-- 'draining' one (the partition moved away) is read until nothing is left
-- in it, then 'retired'.
CREATE TABLE deliver_cluster.placement (
    partition  int NOT NULL CHECK (partition >= 0),
    epoch      int NOT NULL CHECK (epoch > 0),
    shard_id   int NOT NULL REFERENCES deliver_cluster.shard,
    state      text NOT NULL CHECK (state IN ('active', 'draining', 'retired')),
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, epoch)
);
CREATE UNIQUE INDEX placement_one_active ON deliver_cluster.placement (partition) WHERE state = 'active';

CREATE TABLE deliver_cluster.queue (
    queue_name text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

SELECT pg_catalog.pg_extension_config_dump('deliver_cluster.setting', '');
SELECT pg_catalog.pg_extension_config_dump('deliver_cluster.shard', '');
SELECT pg_catalog.pg_extension_config_dump('deliver_cluster.placement', '');
SELECT pg_catalog.pg_extension_config_dump('deliver_cluster.queue', '');

-- PL/Proxy finds the shards through this server (its options p0..pN-1;
-- the first one a placeholder until a shard is added).
CREATE SERVER deliver FOREIGN DATA WRAPPER plproxy OPTIONS (p0 'dbname=no_shard_yet');
CREATE USER MAPPING FOR PUBLIC SERVER deliver;

--
-- The map
--

CREATE FUNCTION deliver_cluster.partitions() RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT value::int FROM deliver_cluster.setting WHERE key = 'partitions' $$;

-- The partition of a key among n: the first 32 bits of its MD5, unsigned,
-- modulo n (NULL for a NULL key).  Written with qualified names and no SET
-- clause so that a query calling it per message inlines it.
CREATE FUNCTION deliver_cluster.hash_partition(key text, n int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT ((('x' OPERATOR(pg_catalog.||)
              pg_catalog.left(pg_catalog.md5(pg_catalog.convert_to(key, 'UTF8')), 8))::pg_catalog.bit(32)::pg_catalog.int8)
            OPERATOR(pg_catalog.%) n)::pg_catalog.int4
$$;

-- The partition of a key in this cluster (or among partitions).
CREATE FUNCTION deliver_cluster.partition_of(key text, partitions int DEFAULT NULL) RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT deliver_cluster.hash_partition(key, coalesce(partitions, deliver_cluster.partitions())) $$;

-- The shard that takes new messages of partition p.
CREATE FUNCTION deliver_cluster._write_shard(p int) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s int;
BEGIN
    SELECT x.shard_id INTO s FROM deliver_cluster.placement x WHERE x.partition = p AND x.state = 'active';
    IF s IS NULL THEN
        RAISE EXCEPTION 'partition % has no shard', p
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add shards with deliver_cluster.add_shard() and place the partitions with deliver_cluster.place_partitions().';
    END IF;
    RETURN s;
END $$;

-- The shard receives of partition p read: the oldest placement not retired
-- (a partition that moved is read where it was until that is drained).
CREATE FUNCTION deliver_cluster._read_shard(p int) RETURNS int
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.shard_id FROM deliver_cluster.placement x
     WHERE x.partition = p AND x.state <> 'retired' ORDER BY x.epoch LIMIT 1
$$;

-- The shard an id names (its partition and epoch), or an error.
CREATE FUNCTION deliver_cluster._shard_of_id(id text) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s int;
BEGIN
    IF id IS NULL THEN
        RAISE EXCEPTION 'id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF id !~ '^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$' THEN
        RAISE EXCEPTION 'invalid id "%"', left(id, 80)
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = 'An id of a partitioned queue is partition:epoch:id, as the router returned it.';
    END IF;
    SELECT x.shard_id INTO s FROM deliver_cluster.placement x
     WHERE x.partition = split_part(id, ':', 1)::int AND x.epoch = split_part(id, ':', 2)::int;
    IF s IS NULL THEN
        RAISE EXCEPTION 'id "%" names no placement of this cluster', id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN s;
END $$;

-- The shards of ids, in their order (one query for a batch); the error of
-- the first id that is invalid or names no placement.
CREATE FUNCTION deliver_cluster._shards_of_ids(ids text[]) RETURNS int[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r int[];
    bad int;
BEGIN
    SELECT min(u.i) INTO bad FROM unnest(ids) WITH ORDINALITY AS u(id, i)
     WHERE u.id IS NULL OR u.id !~ '^[0-9]{1,6}:[0-9]{1,9}:[0-9]{1,19}$';
    IF bad IS NULL THEN
        r := ARRAY(SELECT x.shard_id FROM unnest(ids) WITH ORDINALITY AS u(id, i)
                     LEFT JOIN deliver_cluster.placement x
                            ON x.partition = split_part(u.id, ':', 1)::int
                           AND x.epoch = split_part(u.id, ':', 2)::int
                    ORDER BY u.i);
        bad := array_position(r, NULL);
    END IF;
    IF bad IS NOT NULL THEN
        PERFORM deliver_cluster._shard_of_id(ids[bad]);   -- raises its error
    END IF;
    RETURN r;
END $$;

-- The options of the PL/Proxy server: one per shard, by shard_id, padded
-- to a power of two by repeating the last one.
CREATE FUNCTION deliver_cluster._sync_server() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    conns text[] := ARRAY(SELECT s.conninfo FROM deliver_cluster.shard s ORDER BY s.shard_id);
    n int := coalesce(array_length(conns, 1), 0);
    size int := 1;
    opts text;
    old text;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM deliver_cluster.shard s WHERE s.shard_id >= n) THEN
        RAISE EXCEPTION 'shard ids must be 0 .. n-1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WHILE size < n LOOP
        size := size * 2;
    END LOOP;
    -- the old options dropped and the new ones added in one statement (the
    -- server must always have a power of two of them)
    SELECT string_agg(format('DROP %I', split_part(o, '=', 1)), ', ') INTO old
      FROM pg_foreign_server f, unnest(f.srvoptions) o WHERE f.srvname = 'deliver';
    SELECT string_agg(format('ADD p%s %L', i, conns[least(i + 1, n)]), ', ' ORDER BY i) INTO opts
      FROM generate_series(0, size - 1) AS i;
    EXECUTE format('ALTER SERVER deliver OPTIONS (%s)', concat_ws(', ', old, opts));
END $$;

--
-- Setting up the cluster
--

-- The number of logical partitions (1 to 4096); only before any queue.
CREATE FUNCTION deliver_cluster.set_partitions(partitions int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF partitions IS NULL OR partitions < 1 OR partitions > 4096 THEN
        RAISE EXCEPTION 'partitions must be between 1 and 4096' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM deliver_cluster.placement) THEN
        RAISE EXCEPTION 'the partitions are placed already' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE deliver_cluster.setting SET value = partitions::text WHERE key = 'partitions';
END $$;

-- Add a shard (its primary found by conninfo); returns its id.
CREATE FUNCTION deliver_cluster.add_shard(name text, conninfo text) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id int;
BEGIN
    IF name IS NULL OR conninfo IS NULL THEN
        RAISE EXCEPTION 'name and conninfo must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT coalesce(max(s.shard_id) + 1, 0) INTO id FROM deliver_cluster.shard s;
    INSERT INTO deliver_cluster.shard VALUES (id, name, conninfo);
    PERFORM deliver_cluster._sync_server();
    RETURN id;
END $$;

-- Change where a shard is found (its formation's hosts changed).
CREATE FUNCTION deliver_cluster.set_shard_conninfo(name text, conninfo text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE deliver_cluster.shard s SET conninfo = set_shard_conninfo.conninfo WHERE s.name = set_shard_conninfo.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'shard "%" does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM deliver_cluster._sync_server();
END $$;

-- Place every partition on a shard, round robin over the shards (before
-- any queue exists).
CREATE FUNCTION deliver_cluster.place_partitions() RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int := (SELECT count(*) FROM deliver_cluster.shard);
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'no shard' USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF EXISTS (SELECT 1 FROM deliver_cluster.placement) THEN
        RAISE EXCEPTION 'the partitions are placed already' USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Move them with deliver_cluster.move_partition().';
    END IF;
    INSERT INTO deliver_cluster.placement (partition, epoch, shard_id, state)
    SELECT p, 1, p % n, 'active' FROM generate_series(0, deliver_cluster.partitions() - 1) AS p;
    RETURN deliver_cluster.partitions();
END $$;

-- The map: each partition's placements.
CREATE FUNCTION deliver_cluster.partition_map()
RETURNS TABLE (partition int, epoch int, shard text, state text, conninfo text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.partition, x.epoch, s.name, x.state, s.conninfo
      FROM deliver_cluster.placement x JOIN deliver_cluster.shard s USING (shard_id)
     ORDER BY x.partition, x.epoch
$$;

-- Where to connect to work with partition p of a queue directly (an
-- exactly-once consumer's effects and acks share the shard's transaction):
-- the shard's conninfo and the name of the partition's queue there.
CREATE FUNCTION deliver_cluster.partition_conninfo(queue_name text, partition int,
                                                   OUT conninfo text, OUT shard_queue text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.conninfo, queue_name || '.p' || partition
      FROM deliver_cluster.shard s WHERE s.shard_id = deliver_cluster._read_shard(partition)
$$;

--
-- PL/Proxy calls (internal): each runs on the shard given first (or on all)
--
-- Each takes, last, caller: the role the shards run deliver's functions as
-- (deliver_shard.act_as), so the shards check the caller's rights on each
-- queue as one node would.  It defaults to current_user, and the shards
-- are chosen through _as/_as_all, which refuse any other role: a role
-- allowed to call a _px_ function cannot name another role there.  (The
-- user of the shards' connection strings must be allowed to take each
-- caller's role: a superuser, or a member of those roles.)
--

-- shard, once caller is the role this runs as (42501 otherwise).
CREATE FUNCTION deliver_cluster._as(caller text, shard int) RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF caller IS DISTINCT FROM current_user::text THEN
        RAISE EXCEPTION 'a call to the shards must run as its caller''s role'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('It names role "%s", but runs as "%s".', left(caller, 80), current_user);
    END IF;
    IF shard IS NULL THEN
        RAISE EXCEPTION 'shard must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    RETURN shard;
END $$;

-- Every shard, once caller is the role this runs as (RUN ON ALL, checked).
CREATE FUNCTION deliver_cluster._as_all(caller text) RETURNS SETOF int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._as(caller, 0);
    RETURN QUERY SELECT s.shard_id FROM deliver_cluster.shard s ORDER BY 1;
END $$;

CREATE FUNCTION deliver_cluster._px_create(shards int[], partitions int[], epochs int[], queue_name text,
    guarantee text, visibility_timeout interval, max_attempts int, fifo boolean,
    dedup_window interval, retry_base interval, retry_max interval,
    message_ttl interval, on_expire text, max_depth bigint, overflow text, ack_commit text, priorities boolean,
    caller text DEFAULT current_user)
RETURNS TABLE (partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, partitions, epochs;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.create_partitions;
$$;

CREATE FUNCTION deliver_cluster._px_drop(queue_name text, caller text DEFAULT current_user) RETURNS TABLE (partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.drop_partitions;
$$;

CREATE FUNCTION deliver_cluster._px_each(queue_name text, call text, args text[], caller text DEFAULT current_user)
RETURNS TABLE (partition int, result text)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.for_each_partition;
$$;

CREATE FUNCTION deliver_cluster._px_send(shard int, partition int, queue_name text, payload jsonb,
    headers jsonb, ordering_key text, idempotency_key text, delay interval, expires_at timestamptz, priority int,
    caller text DEFAULT current_user)
RETURNS text
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.global_id(partition, e.epoch,
               deliver.send(deliver_shard.queue_of(queue_name, partition), payload, headers,
                            ordering_key, idempotency_key, delay, expires_at, priority))
      FROM deliver_shard.enter(queue_name, partition, caller, true) e(epoch);
$$;

CREATE FUNCTION deliver_cluster._px_send_batch(shards int[], partitions int[], ords int[], queue_name text,
    payloads jsonb[], headers jsonb[], ordering_keys text[], idempotency_keys text[], delay interval,
    expires_at timestamptz, priority int, caller text DEFAULT current_user)
RETURNS TABLE (ord int, message_id text)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, partitions, ords, payloads, headers, ordering_keys, idempotency_keys;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.send_batch;
$$;

-- (the receive runs as the shard's own statement: an at-most-once receive
-- must be a transaction of its own)
CREATE FUNCTION deliver_cluster._px_receive(shard int, partition int, queue_name text, max_messages int,
    visibility_timeout interval, wait interval, consumer_group text, caller text DEFAULT current_user)
RETURNS TABLE (message_id text, delivery_id text, payload jsonb, headers jsonb, ordering_key text,
               attempt int, enqueued_at timestamptz, lease_expires_at timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.global_id(partition, e.epoch, r.message_id) AS message_id,
           deliver_shard.global_id(partition, e.epoch, r.delivery_id) AS delivery_id,
           r.payload AS payload, r.headers AS headers, r.ordering_key AS ordering_key,
           r.attempt AS attempt, r.enqueued_at AS enqueued_at, r.lease_expires_at AS lease_expires_at
      FROM deliver_shard.enter(queue_name, partition, caller) e(epoch),
           LATERAL deliver.receive(CASE WHEN e.epoch IS NOT NULL THEN deliver_shard.queue_of(queue_name, partition) END,
                                   max_messages, visibility_timeout, wait, consumer_group) r;
$$;

CREATE FUNCTION deliver_cluster._px_ack(shard int, queue_name text, delivery_id text, caller text DEFAULT current_user) RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver.ack(deliver_shard.queue_of(queue_name, (deliver_shard.parse_id(delivery_id)).partition),
                       (deliver_shard.parse_id(delivery_id)).local_id)
      FROM deliver_shard.act_as(caller);
$$;

CREATE FUNCTION deliver_cluster._px_ack_batch(shards int[], delivery_ids text[], queue_name text, caller text DEFAULT current_user)
RETURNS SETOF int
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, delivery_ids;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.ack_batch;
$$;

CREATE FUNCTION deliver_cluster._px_nack(shard int, queue_name text, delivery_id text, error text,
                                         retry_after interval, caller text DEFAULT current_user) RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver.nack(deliver_shard.queue_of(queue_name, (deliver_shard.parse_id(delivery_id)).partition),
                        (deliver_shard.parse_id(delivery_id)).local_id, error, retry_after)
      FROM deliver_shard.act_as(caller);
$$;

CREATE FUNCTION deliver_cluster._px_extend_lease(shard int, queue_name text, delivery_id text,
                                                 visibility_timeout interval, caller text DEFAULT current_user) RETURNS timestamptz
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver.extend_lease(deliver_shard.queue_of(queue_name, (deliver_shard.parse_id(delivery_id)).partition),
                                (deliver_shard.parse_id(delivery_id)).local_id, visibility_timeout)
      FROM deliver_shard.act_as(caller);
$$;

CREATE FUNCTION deliver_cluster._px_dead_letters(queue_name text, consumer_group text, max_messages int, caller text DEFAULT current_user)
RETURNS TABLE (message_id text, group_name text, payload jsonb, headers jsonb, ordering_key text,
               attempts int, reason text, last_error text, enqueued_at timestamptz, dead_at timestamptz,
               partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.dead_letters;
$$;

CREATE FUNCTION deliver_cluster._px_redrive(shards int[], message_ids text[], queue_name text,
                                            consumer_group text, to_queue text, caller text DEFAULT current_user) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, message_ids;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.redrive;
$$;

CREATE FUNCTION deliver_cluster._px_redrive_all(queue_name text, consumer_group text, to_queue text, caller text DEFAULT current_user)
RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    SELECT deliver_shard.redrive(NULL, NULL, queue_name, consumer_group, to_queue, caller);
$$;

CREATE FUNCTION deliver_cluster._px_delete_dead_letters(shards int[], message_ids text[], queue_name text,
                                                        consumer_group text, caller text DEFAULT current_user) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, message_ids;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.delete_dead_letters;
$$;

CREATE FUNCTION deliver_cluster._px_metrics(queue_name text, caller text DEFAULT current_user)
RETURNS TABLE (partition int, epoch int, consumer_group text, depth bigint, in_flight bigint,
               delayed bigint, dead_letters bigint, oldest_age interval, sent_total bigint,
               acked_total bigint, dead_total bigint)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.metrics;
$$;

CREATE FUNCTION deliver_cluster._px_stop_writes(shard int, partition int, caller text DEFAULT current_user) RETURNS int
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.stop_writes(partition, caller);
$$;

CREATE FUNCTION deliver_cluster._px_drained(shard int, queue_name text, partition int, caller text DEFAULT current_user) RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.drained(queue_name, partition, caller);
$$;

CREATE FUNCTION deliver_cluster._px_groups(shard int, queue_name text, partition int, caller text DEFAULT current_user) RETURNS text[]
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.groups_of(queue_name, partition, caller);
$$;

-- The options of partition p of a queue where it is now.
CREATE FUNCTION deliver_cluster._px_options(shard int, queue_name text, partition int, caller text DEFAULT current_user,
    OUT guarantee text, OUT visibility_timeout interval, OUT max_attempts int, OUT fifo boolean,
    OUT dedup_window interval, OUT retry_base interval, OUT retry_max interval,
    OUT message_ttl interval, OUT on_expire text, OUT max_depth bigint, OUT overflow text, OUT ack_commit text,
    OUT archive_retention interval, OUT priorities boolean, OUT consumer_groups text[])
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT q.guarantee, q.visibility_timeout, q.max_attempts, q.fifo, q.dedup_window, q.retry_base, q.retry_max,
           q.message_ttl, q.on_expire, q.max_depth, q.overflow, q.ack_commit, q.archive_retention, q.priorities,
           q.consumer_groups
      FROM deliver.list_queues() q WHERE q.queue_name = deliver_shard.queue_of(queue_name, partition);
$$;

-- Set the archive retention of partition p of a queue on a shard (a move
-- copies it: create_queue has no such option).
CREATE FUNCTION deliver_cluster._px_set_archive_retention(shard int, queue_name text, partition int,
                                                          retention interval, caller text DEFAULT current_user) RETURNS int
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.set_archive_retention(queue_name, partition, retention, caller);
$$;

--
-- The front door
--

-- Create a queue on the cluster: its partitions on their shards.  The
-- options are deliver.create_queue's (NULL: the default), each set on
-- every partition's queue as given: max_depth bounds each partition (the
-- queue holds at most max_depth times the number of partitions).
CREATE FUNCTION deliver_cluster.create_queue(
    queue_name text, guarantee text DEFAULT NULL, visibility_timeout interval DEFAULT NULL,
    max_attempts int DEFAULT NULL, fifo boolean DEFAULT NULL, dedup_window interval DEFAULT NULL,
    retry_base interval DEFAULT NULL, retry_max interval DEFAULT NULL,
    message_ttl interval DEFAULT NULL, on_expire text DEFAULT NULL, max_depth bigint DEFAULT NULL,
    overflow text DEFAULT NULL, ack_commit text DEFAULT NULL, priorities boolean DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int;
BEGIN
    IF queue_name IS NULL THEN
        RAISE EXCEPTION 'queue name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF length(queue_name) > 57 OR queue_name !~ '^[A-Za-z0-9_][A-Za-z0-9_.-]*$' THEN
        RAISE EXCEPTION 'invalid queue name "%"', left(queue_name, 80)
            USING ERRCODE = 'invalid_name',
                  DETAIL = 'A queue of the cluster is 1 to 57 characters: letters, digits, "_", "." and "-", not starting with "." or "-" (its partitions add ".p<n>").';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM deliver_cluster.placement) THEN
        RAISE EXCEPTION 'the partitions are not placed yet' USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Add shards with deliver_cluster.add_shard(), then call deliver_cluster.place_partitions().';
    END IF;
    INSERT INTO deliver_cluster.queue (queue_name) VALUES (create_queue.queue_name);
    SELECT count(*) INTO n FROM deliver_cluster._px_create(
        ARRAY(SELECT x.shard_id FROM deliver_cluster.placement x WHERE x.state = 'active' ORDER BY x.partition),
        ARRAY(SELECT x.partition FROM deliver_cluster.placement x WHERE x.state = 'active' ORDER BY x.partition),
        ARRAY(SELECT x.epoch FROM deliver_cluster.placement x WHERE x.state = 'active' ORDER BY x.partition),
        queue_name, guarantee, visibility_timeout, max_attempts, fifo, dedup_window, retry_base, retry_max,
        message_ttl, on_expire, max_depth, overflow, ack_commit, priorities);
    RETURN n;
END $$;

CREATE FUNCTION deliver_cluster.drop_queue(queue_name text) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int;
BEGIN
    DELETE FROM deliver_cluster.queue q WHERE q.queue_name = drop_queue.queue_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'queue "%" does not exist', left(queue_name, 80) USING ERRCODE = 'undefined_object';
    END IF;
    SELECT count(*) INTO n FROM deliver_cluster._px_drop(queue_name);
    RETURN n;
END $$;

CREATE FUNCTION deliver_cluster.list_queues() RETURNS TABLE (queue_name text, created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT q.queue_name, q.created_at FROM deliver_cluster.queue q ORDER BY 1 $$;

-- One queue as deliver.list_queues() shows it on a node: the settings and
-- consumer groups of its partition 0 (create_queue, alter_queue and
-- create_consumer_group set them on every partition), the router's
-- creation time, and how many partitions it has.  No row for a queue the
-- router does not know.  Reads partition 0's shard (its old shard while
-- it moves).
CREATE FUNCTION deliver_cluster.queue_settings(name text)
RETURNS TABLE (queue_name text, guarantee text, visibility_timeout interval, max_attempts int, fifo boolean,
               dedup_window interval, retry_base interval, retry_max interval, archive_retention interval,
               consumer_groups text[], created_at timestamptz, message_ttl interval, on_expire text,
               max_depth bigint, overflow text, ack_commit text, priorities boolean, partitions int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    created timestamptz;
    o record;
BEGIN
    SELECT q.created_at INTO created FROM deliver_cluster.queue q WHERE q.queue_name = queue_settings.name;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO o FROM deliver_cluster._px_options(deliver_cluster._read_shard(0), name, 0);
    RETURN QUERY SELECT name, o.guarantee, o.visibility_timeout, o.max_attempts, o.fifo, o.dedup_window,
                        o.retry_base, o.retry_max, o.archive_retention, o.consumer_groups,
                        created, o.message_ttl, o.on_expire, o.max_depth, o.overflow, o.ack_commit,
                        o.priorities, deliver_cluster.partitions();
END $$;

-- deliver's administration on every partition of a queue.
CREATE FUNCTION deliver_cluster.create_consumer_group(queue_name text, consumer_group text,
                                                      start_from text DEFAULT 'latest') RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*)::int FROM deliver_cluster._px_each(queue_name, 'create_consumer_group',
                                                          ARRAY[consumer_group, start_from]) $$;

CREATE FUNCTION deliver_cluster.drop_consumer_group(queue_name text, consumer_group text) RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*)::int FROM deliver_cluster._px_each(queue_name, 'drop_consumer_group', ARRAY[consumer_group]) $$;

CREATE FUNCTION deliver_cluster.grant_queue(queue_name text, role_name text, privilege text DEFAULT 'all') RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*)::int FROM deliver_cluster._px_each(queue_name, 'grant_queue', ARRAY[role_name, privilege]) $$;

CREATE FUNCTION deliver_cluster.purge_queue(queue_name text) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT sum(result::bigint)::bigint FROM deliver_cluster._px_each(queue_name, 'purge_queue', '{}') $$;

-- The partition a message goes to.
CREATE FUNCTION deliver_cluster._partition_for(ordering_key text, idempotency_key text) RETURNS int
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(deliver_cluster.partition_of(ordering_key), deliver_cluster.partition_of(idempotency_key),
                    floor(random() * deliver_cluster.partitions())::int)
$$;

-- Send a message; returns its id ("partition:epoch:id").
CREATE FUNCTION deliver_cluster.send(queue_name text, payload jsonb, headers jsonb DEFAULT NULL,
                                     ordering_key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                     delay interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
                                     priority int DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p int := deliver_cluster._partition_for(ordering_key, idempotency_key);
BEGIN
    RETURN deliver_cluster._px_send(deliver_cluster._write_shard(p), p, queue_name, payload, headers,
                                    ordering_key, idempotency_key, delay, expires_at, priority);
END $$;

-- Send a batch, split by partition (one call per shard, in parallel; each
-- shard's part is one transaction there).  Returns the ids in the order of
-- the payloads.  Messages without a key all go to one partition chosen at
-- random for the call (spread over calls, not within one: a batch stays a
-- batch on its shard, as a sticky partitioner does).
-- An array argument of send_batch (NULL: none) is one-dimensional with n
-- elements, or 2202E as deliver.send_batch says it.
CREATE FUNCTION deliver_cluster._check_batch_array(name text, a anyarray, n int) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF a IS NULL THEN
        RETURN;
    END IF;
    IF array_ndims(a) > 1 THEN
        RAISE EXCEPTION '% must be a one-dimensional array', name USING ERRCODE = 'array_subscript_error';
    END IF;
    IF cardinality(a) <> n THEN
        RAISE EXCEPTION '% has % elements, payloads has %', name, cardinality(a), n
            USING ERRCODE = 'array_subscript_error';
    END IF;
END $$;

CREATE FUNCTION deliver_cluster.send_batch(queue_name text, payloads jsonb[], headers jsonb[] DEFAULT NULL,
                                           ordering_keys text[] DEFAULT NULL,
                                           idempotency_keys text[] DEFAULT NULL, delay interval DEFAULT NULL,
                                           expires_at timestamptz DEFAULT NULL, priority int DEFAULT NULL)
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int := coalesce(array_length(payloads, 1), 0);
    np int := deliver_cluster.partitions();
    start int := floor(random() * np)::int;
    parts int[];
    shards int[];
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'payloads must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- deliver.send_batch's checks of the arrays (each part is checked on its
    -- shard again), here so that PL/Proxy splits only arrays of one length
    PERFORM deliver_cluster._check_batch_array('payloads', payloads, n),
            deliver_cluster._check_batch_array('headers', headers, n),
            deliver_cluster._check_batch_array('ordering_keys', ordering_keys, n),
            deliver_cluster._check_batch_array('idempotency_keys', idempotency_keys, n);
    -- subscripts from 1 (an array from elsewhere, '[5:6]={...}' say, is copied)
    IF array_lower(payloads, 1) <> 1 THEN
        payloads := ARRAY(SELECT x FROM unnest(payloads) WITH ORDINALITY u(x, i) ORDER BY i);
    END IF;
    IF array_lower(headers, 1) <> 1 THEN
        headers := ARRAY(SELECT x FROM unnest(headers) WITH ORDINALITY u(x, i) ORDER BY i);
    END IF;
    IF array_lower(ordering_keys, 1) <> 1 THEN
        ordering_keys := ARRAY(SELECT x FROM unnest(ordering_keys) WITH ORDINALITY u(x, i) ORDER BY i);
    END IF;
    IF array_lower(idempotency_keys, 1) <> 1 THEN
        idempotency_keys := ARRAY(SELECT x FROM unnest(idempotency_keys) WITH ORDINALITY u(x, i) ORDER BY i);
    END IF;
    parts := ARRAY(SELECT coalesce(deliver_cluster.hash_partition(ordering_keys[i], np),
                                   deliver_cluster.hash_partition(idempotency_keys[i], np),
                                   start)
                     FROM generate_series(1, n) AS i ORDER BY i);
    shards := ARRAY(SELECT x.shard_id FROM unnest(parts) WITH ORDINALITY AS u(p, i)
                      LEFT JOIN deliver_cluster.placement x ON x.partition = u.p AND x.state = 'active'
                     ORDER BY u.i);
    IF array_position(shards, NULL) IS NOT NULL THEN
        PERFORM deliver_cluster._write_shard(parts[array_position(shards, NULL)]);   -- raises its error
    END IF;
    RETURN ARRAY(SELECT b.message_id FROM deliver_cluster._px_send_batch(
        shards, parts, ARRAY(SELECT generate_series(1, n)), queue_name, payloads,
        coalesce(headers, array_fill(NULL::jsonb, ARRAY[n])),
        coalesce(ordering_keys, array_fill(NULL::text, ARRAY[n])),
        coalesce(idempotency_keys, array_fill(NULL::text, ARRAY[n])), delay, expires_at, priority) b
        ORDER BY b.ord);
END $$;

-- Receive from one partition of a queue (a consumer takes its share of
-- the partitions, or goes round them; deliverd does so for HTTP clients).
CREATE FUNCTION deliver_cluster.receive(queue_name text, partition int, max_messages int DEFAULT 1,
                                        visibility_timeout interval DEFAULT NULL, wait interval DEFAULT '0',
                                        consumer_group text DEFAULT 'default')
RETURNS TABLE (message_id text, delivery_id text, payload jsonb, headers jsonb, ordering_key text,
               attempt int, enqueued_at timestamptz, lease_expires_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s int;
BEGIN
    IF partition IS NULL OR partition < 0 OR partition >= deliver_cluster.partitions() THEN
        RAISE EXCEPTION 'partition must be between 0 and %', deliver_cluster.partitions() - 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    s := deliver_cluster._read_shard(partition);
    RETURN QUERY SELECT * FROM deliver_cluster._px_receive(s, partition, queue_name, max_messages,
                                                          visibility_timeout, wait, consumer_group);
END $$;

CREATE FUNCTION deliver_cluster.ack(queue_name text, delivery_id text) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT deliver_cluster._px_ack(deliver_cluster._shard_of_id(delivery_id), queue_name, delivery_id) $$;

CREATE FUNCTION deliver_cluster.ack_batch(queue_name text, delivery_ids text[]) RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(n), 0)::int FROM deliver_cluster._px_ack_batch(
        deliver_cluster._shards_of_ids(delivery_ids), delivery_ids, queue_name) AS n
$$;

CREATE FUNCTION deliver_cluster.nack(queue_name text, delivery_id text, error text DEFAULT NULL,
                                     retry_after interval DEFAULT NULL) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT deliver_cluster._px_nack(deliver_cluster._shard_of_id(delivery_id), queue_name, delivery_id,
                                      error, retry_after) $$;

CREATE FUNCTION deliver_cluster.extend_lease(queue_name text, delivery_id text, visibility_timeout interval)
RETURNS timestamptz
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT deliver_cluster._px_extend_lease(deliver_cluster._shard_of_id(delivery_id), queue_name,
                                              delivery_id, visibility_timeout) $$;

CREATE FUNCTION deliver_cluster.dead_letters(queue_name text, consumer_group text DEFAULT NULL,
                                             max_messages int DEFAULT 100)
RETURNS TABLE (message_id text, group_name text, payload jsonb, headers jsonb, ordering_key text,
               attempts int, reason text, last_error text, enqueued_at timestamptz, dead_at timestamptz,
               partition int)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM deliver_cluster._px_dead_letters(queue_name, consumer_group, max_messages) d
     ORDER BY d.dead_at, d.message_id LIMIT max_messages
$$;

-- Send dead letters back (all, or those message_ids name) to the group
-- they died in; with to_queue (a queue of the cluster), to that queue
-- instead: each dead letter goes to the same partition of to_queue, which
-- is on the same shard (partitions are placed for all queues at once) and
-- is where a send with its ordering key would go.  Each shard's part is one
-- transaction there (deliver.redrive's), so a dead letter is either still
-- one or sent, never both; shards differ: a shard that fails leaves the
-- others' parts done (call again: what was redriven is no dead letter any
-- more).  Dead letters at a place their partition moved away from are not
-- redriven (sent there again they would not be read): all leaves them, an
-- id naming one is refused (55000); 55000 too when to_queue's partition
-- takes no new messages on the shard (moving: call again).
CREATE FUNCTION deliver_cluster.redrive(queue_name text, message_ids text[] DEFAULT NULL,
                                        consumer_group text DEFAULT NULL, to_queue text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_queue IS NOT NULL THEN
        PERFORM deliver_cluster._check_queue(queue_name);
        PERFORM deliver_cluster._check_queue(to_queue);
    END IF;
    IF message_ids IS NULL THEN
        RETURN (SELECT coalesce(sum(n), 0) FROM deliver_cluster._px_redrive_all(queue_name, consumer_group,
                                                                                to_queue) AS n);
    END IF;
    RETURN (SELECT coalesce(sum(n), 0) FROM deliver_cluster._px_redrive(
        deliver_cluster._shards_of_ids(message_ids), message_ids, queue_name, consumer_group, to_queue) AS n);
END $$;

-- Delete the dead letters of these messages ("partition:epoch:id") for
-- good, of one consumer group or (NULL) of every group; returns how many.
-- An id that is no dead letter (of that group), or of a placement replaced
-- since, counts nothing.  Each shard's part is one transaction there.
CREATE FUNCTION deliver_cluster.delete_dead_letters(queue_name text, message_ids text[],
                                                    consumer_group text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    IF message_ids IS NULL THEN
        RAISE EXCEPTION 'message_ids must not be NULL' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'To empty a queue, purge_queue.';
    END IF;
    IF cardinality(message_ids) = 0 THEN
        RETURN 0;
    END IF;
    RETURN (SELECT coalesce(sum(n), 0) FROM deliver_cluster._px_delete_dead_letters(
        deliver_cluster._shards_of_ids(message_ids), message_ids, queue_name, consumer_group) AS n);
END $$;

-- Metrics of every partition of a queue (one row per partition, placement
-- and consumer group).
CREATE FUNCTION deliver_cluster.metrics(queue_name text)
RETURNS TABLE (partition int, epoch int, consumer_group text, depth bigint, in_flight bigint,
               delayed bigint, dead_letters bigint, oldest_age interval, sent_total bigint,
               acked_total bigint, dead_total bigint)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM deliver_cluster._px_metrics(queue_name) m ORDER BY m.partition, m.epoch, m.consumer_group $$;

--
-- Moving a partition (online)
--

-- Move partition p of every queue to a shard: (1) its queues are created
-- there, with the same consumer groups, and the new placement becomes the
-- one new messages go to, while receives still read the old one; (2) once
-- the old place has nothing left to deliver (every message acked or dead)
-- the old placement retires and receives read the new one.  A key's
-- messages keep their order: those sent before the switch are all read
-- before any sent after it.  Returns the new epoch; wait_for (default 10
-- minutes) bounds the wait for the drain (the move then stays half done:
-- call finish_move later).
CREATE PROCEDURE deliver_cluster.move_partition(p int, to_shard text, wait_for interval DEFAULT '10 minutes')
LANGUAGE plpgsql
AS $$
DECLARE
    -- first: a procedure that commits takes no SET clause, so it would run
    -- with its caller's search_path, where the database's owner may have
    -- put operators that match better than pg_catalog's (for the
    -- superuser who moves partitions); set again after each COMMIT
    pinned text := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    old deliver_cluster.placement;
    target int;
    e int;
    q record;
    o record;
    g text;
    deadline timestamptz := clock_timestamp() + wait_for;
BEGIN
    SELECT * INTO old FROM deliver_cluster.placement x WHERE x.partition = p AND x.state = 'active' FOR UPDATE;
    IF old IS NULL THEN
        RAISE EXCEPTION 'partition % has no active placement', p USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM deliver_cluster.placement x WHERE x.partition = p AND x.state = 'draining') THEN
        RAISE EXCEPTION 'partition % is moving already', p USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT s.shard_id INTO target FROM deliver_cluster.shard s WHERE s.name = to_shard;
    IF target IS NULL THEN
        RAISE EXCEPTION 'shard "%" does not exist', to_shard USING ERRCODE = 'undefined_object';
    END IF;
    IF target = old.shard_id THEN
        RAISE EXCEPTION 'partition % is on shard "%" already', p, to_shard USING ERRCODE = 'invalid_parameter_value';
    END IF;
    e := old.epoch + 1;
    -- (1) the new place, with every queue (its options as they are) and its
    -- consumer groups (creating them again is harmless: a move cut short
    -- is called again)
    FOR q IN SELECT * FROM deliver_cluster.queue ORDER BY queue_name LOOP
        SELECT * INTO o FROM deliver_cluster._px_options(old.shard_id, q.queue_name, p);
        PERFORM * FROM deliver_cluster._px_create(ARRAY[target], ARRAY[p], ARRAY[e], q.queue_name,
                                                  o.guarantee, o.visibility_timeout, o.max_attempts, o.fifo,
                                                  o.dedup_window, o.retry_base, o.retry_max, o.message_ttl,
                                                  o.on_expire, o.max_depth, o.overflow, o.ack_commit,
                                                  o.priorities);
        IF o.archive_retention IS NOT NULL THEN
            PERFORM deliver_cluster._px_set_archive_retention(target, q.queue_name, p, o.archive_retention);
        END IF;
        FOREACH g IN ARRAY deliver_cluster._px_groups(old.shard_id, q.queue_name, p) LOOP
            CONTINUE WHEN g = ANY (deliver_cluster._px_groups(target, q.queue_name, p));
            PERFORM * FROM deliver_cluster._px_each_one(target, q.queue_name, p, 'create_consumer_group',
                                                       ARRAY[g, 'earliest']);
        END LOOP;
        -- the FIFO key limit, and the groups' pause and rate
        PERFORM deliver_cluster._px_set_flow(target, q.queue_name, p,
                                             deliver_cluster._px_flow_of(old.shard_id, q.queue_name, p));
    END LOOP;
    -- the old place takes no new message from now (a client with an older
    -- map is told to call again), so nothing lands there after its drain
    PERFORM deliver_cluster._px_stop_writes(old.shard_id, p);
    UPDATE deliver_cluster.placement x SET state = 'draining', changed_at = now()
     WHERE x.partition = p AND x.epoch = old.epoch;
    INSERT INTO deliver_cluster.placement (partition, epoch, shard_id, state) VALUES (p, e, target, 'active');
    COMMIT;
    pinned := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- (2) drain the old place, then read the new one
    CALL deliver_cluster.finish_move(p, deadline - clock_timestamp());
END $$;

-- Retire the draining placement of partition p once nothing is left to
-- deliver there (waits at most wait_for; raises 55006 when it is not
-- drained by then).
CREATE PROCEDURE deliver_cluster.finish_move(p int, wait_for interval DEFAULT '10 minutes')
LANGUAGE plpgsql
AS $$
DECLARE
    -- first, as in move_partition: no SET clause here (the caller's path is
    -- given back when nothing is done: a CALL in the caller's transaction)
    caller_path text := pg_catalog.current_setting('search_path');
    pinned text := pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    old deliver_cluster.placement;
    q record;
    drained boolean;
    deadline timestamptz := clock_timestamp() + wait_for;
BEGIN
    SELECT * INTO old FROM deliver_cluster.placement x WHERE x.partition = p AND x.state = 'draining';
    IF old IS NULL THEN
        pinned := pg_catalog.set_config('search_path', caller_path, true);
        RETURN;
    END IF;
    LOOP
        drained := true;
        FOR q IN SELECT * FROM deliver_cluster.queue ORDER BY queue_name LOOP
            drained := drained AND deliver_cluster._px_drained(old.shard_id, q.queue_name, p);
        END LOOP;
        EXIT WHEN drained;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'partition % is not drained yet on its old shard', p
                USING ERRCODE = 'object_in_use',
                      HINT = 'Its consumers go on reading it there; call deliver_cluster.finish_move() again later.';
        END IF;
        PERFORM pg_catalog.pg_sleep(0.2);
    END LOOP;
    UPDATE deliver_cluster.placement x SET state = 'retired', changed_at = now()
     WHERE x.partition = p AND x.epoch = old.epoch;
    COMMIT;
END $$;

CREATE FUNCTION deliver_cluster._px_each_one(shard int, queue_name text, partition int, call text, args text[], caller text DEFAULT current_user)
RETURNS text
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.call_on_partition(queue_name, partition, call, args, caller);
$$;

--
-- Queue settings, flow control and inspection over every partition of a
-- queue.  Each setting is set on every partition's queue as given, so a
-- limit is each partition's: max_depth bounds each partition (the queue
-- holds at most max_depth times the number of partitions), a group's rate
-- is each partition's rate (a consumer going round all the partitions gets
-- at most per_second times their number), the FIFO key limit is per key as
-- on one node (a key's messages are all in one partition).  The calls run
-- on each shard in a transaction of that shard: a shard that fails (its
-- check, or it is unavailable) leaves the others changed; the calls are
-- idempotent, so call again.  Each returns how many partitions it changed
-- (a partition being moved counts once).
--

-- The queue exists, or 42704.
CREATE FUNCTION deliver_cluster._check_queue(queue_name text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM deliver_cluster.queue q WHERE q.queue_name = _check_queue.queue_name) THEN
        RAISE EXCEPTION 'queue "%" does not exist', left(queue_name, 80) USING ERRCODE = 'undefined_object';
    END IF;
END $$;

CREATE FUNCTION deliver_cluster._px_alter(queue_name text, visibility_timeout interval,
    max_attempts int, dedup_window interval, retry_base interval, retry_max interval,
    archive_retention interval, message_ttl interval, on_expire text, max_depth bigint,
    overflow text, ack_commit text, priorities boolean, caller text DEFAULT current_user)
RETURNS TABLE (partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.alter_partitions;
$$;

CREATE FUNCTION deliver_cluster._px_set_group_rate(queue_name text, consumer_group text,
                                                   per_second double precision, burst int, caller text DEFAULT current_user)
RETURNS TABLE (partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.set_group_rate;
$$;

CREATE FUNCTION deliver_cluster._px_set_fifo_key_limit(queue_name text, max_in_flight_per_key int, caller text DEFAULT current_user)
RETURNS TABLE (partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.set_fifo_key_limit;
$$;

CREATE FUNCTION deliver_cluster._px_peek(queue_name text, max_messages int, consumer_group text, caller text DEFAULT current_user)
RETURNS TABLE (message_id text, payload jsonb, headers jsonb, ordering_key text, attempt int,
               enqueued_at timestamptz, redelivery boolean, partition int)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.peek;
$$;

CREATE FUNCTION deliver_cluster._px_delete_message(shard int, queue_name text, message_id text, caller text DEFAULT current_user)
RETURNS boolean
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.delete_message(queue_name, message_id, caller);
$$;

-- A partition's flow control where it is, and set on its new place (a move).
CREATE FUNCTION deliver_cluster._px_flow_of(shard int, queue_name text, partition int, caller text DEFAULT current_user) RETURNS jsonb
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.flow_of(queue_name, partition, caller);
$$;

CREATE FUNCTION deliver_cluster._px_set_flow(shard int, queue_name text, partition int, flow jsonb, caller text DEFAULT current_user) RETURNS int
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT deliver_shard.set_flow(queue_name, partition, flow, caller);
$$;

-- deliver.alter_queue on every partition (NULL: left as it is).
CREATE FUNCTION deliver_cluster.alter_queue(
    queue_name text, visibility_timeout interval DEFAULT NULL, max_attempts int DEFAULT NULL,
    dedup_window interval DEFAULT NULL, retry_base interval DEFAULT NULL, retry_max interval DEFAULT NULL,
    archive_retention interval DEFAULT NULL, message_ttl interval DEFAULT NULL, on_expire text DEFAULT NULL,
    max_depth bigint DEFAULT NULL, overflow text DEFAULT NULL, ack_commit text DEFAULT NULL,
    priorities boolean DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN (SELECT count(DISTINCT a.partition)::int FROM deliver_cluster._px_alter(
        queue_name, visibility_timeout, max_attempts, dedup_window, retry_base, retry_max,
        archive_retention, message_ttl, on_expire, max_depth, overflow, ack_commit, priorities) a);
END $$;

-- Pause a consumer group on every partition: the partitions where it was
-- not paused yet (0: it was paused everywhere).
CREATE FUNCTION deliver_cluster.pause_consumer_group(queue_name text, consumer_group text DEFAULT 'default')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN (SELECT count(DISTINCT f.partition)::int
              FROM deliver_cluster._px_each(queue_name, 'pause_consumer_group', ARRAY[consumer_group]) f
             WHERE f.result::boolean);
END $$;

-- Resume it on every partition: the partitions where it was paused.
CREATE FUNCTION deliver_cluster.resume_consumer_group(queue_name text, consumer_group text DEFAULT 'default')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN (SELECT count(DISTINCT f.partition)::int
              FROM deliver_cluster._px_each(queue_name, 'resume_consumer_group', ARRAY[consumer_group]) f
             WHERE f.result::boolean);
END $$;

-- The rate of a consumer group on each partition (per_second NULL: no
-- limit): the group gets at most per_second messages a second from each
-- partition, burst at once from each.
CREATE FUNCTION deliver_cluster.set_consumer_group_rate(queue_name text, consumer_group text,
                                                        per_second double precision, burst int DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN (SELECT count(DISTINCT f.partition)::int
              FROM deliver_cluster._px_set_group_rate(queue_name, consumer_group, per_second, burst) f);
END $$;

-- The FIFO key limit of every partition (a key's messages are in one).
CREATE FUNCTION deliver_cluster.set_fifo_key_limit(queue_name text, max_in_flight_per_key int)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN (SELECT count(DISTINCT f.partition)::int
              FROM deliver_cluster._px_set_fifo_key_limit(queue_name, max_in_flight_per_key) f);
END $$;

-- The next messages of a consumer group, without leasing them: up to
-- max_messages (1 to 1000) from each partition, merged oldest first
-- (enqueued_at, then partition and id), the first max_messages of that.
-- A partition's own order is its delivery order; the merge is by time, as
-- no order across partitions exists.
CREATE FUNCTION deliver_cluster.peek(queue_name text, max_messages int DEFAULT 10,
                                     consumer_group text DEFAULT 'default')
RETURNS TABLE (message_id text, payload jsonb, headers jsonb, ordering_key text, attempt int,
               enqueued_at timestamptz, redelivery boolean, partition int)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN QUERY SELECT * FROM deliver_cluster._px_peek(queue_name, max_messages, consumer_group) m
                  ORDER BY m.enqueued_at, m.partition, split_part(m.message_id, ':', 3)::bigint
                  LIMIT max_messages;
END $$;

-- Delete a message by its id ("partition:epoch:id"): true when it was
-- stored and is gone now, false when it was not there (any more).
CREATE FUNCTION deliver_cluster.delete_message(queue_name text, message_id text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    RETURN deliver_cluster._px_delete_message(deliver_cluster._shard_of_id(message_id), queue_name, message_id);
END $$;

-- Move a consumer group's position on every partition: "to" is
-- 'earliest', 'latest' or a time (timestamptz text); a message id is
-- refused (22023: it names one partition's position).
CREATE FUNCTION deliver_cluster.reset_consumer_group(queue_name text, consumer_group text, "to" text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    IF "to" ~ '^-?[0-9]{1,19}$' OR "to" ~ '^[0-9]+:[0-9]+:[0-9]+$' THEN
        RAISE EXCEPTION 'a message id is no position of a partitioned queue'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use earliest, latest or a time: every partition moves to it.';
    END IF;
    RETURN (SELECT count(DISTINCT r.partition)::int
              FROM deliver_cluster._px_each(queue_name, 'reset_consumer_group', ARRAY[consumer_group, "to"]) r);
END $$;

CREATE FUNCTION deliver_cluster._px_replay_archive(queue_name text, consumer_group text, since timestamptz,
                                                   after text[], max_messages int, caller text DEFAULT current_user)
RETURNS TABLE (partition int, replayed bigint, position_id text)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.replay_archive;
$$;

-- Replay the archive of every partition into one consumer group: up to
-- max_messages from each partition's archive per call (deliver.replay_archive
-- on each partition's queue where it takes new messages).  A message id of
-- one partition is no position of the others, so the position is one per
-- partition: after is what the last call returned as positions (global ids
-- "partition:epoch:id", the last message replayed of each partition; NULL:
-- from the start), and the call is repeated with it until replayed is 0.
-- A partition that moved since starts again from its new place's archive
-- (the old place's stays there).  Each shard's part is one transaction
-- there.
CREATE FUNCTION deliver_cluster.replay_archive(queue_name text, consumer_group text,
                                               since timestamptz DEFAULT NULL, after text[] DEFAULT NULL,
                                               max_messages int DEFAULT 100,
                                               OUT replayed bigint, OUT positions text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._check_queue(queue_name);
    IF consumer_group IS NULL THEN
        RAISE EXCEPTION 'consumer_group must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF after IS NOT NULL THEN
        PERFORM deliver_cluster._shards_of_ids(after);    -- each a position of this cluster
    END IF;
    SELECT coalesce(sum(r.replayed), 0)::bigint,
           coalesce(array_agg(r.position_id ORDER BY r.partition) FILTER (WHERE r.position_id IS NOT NULL), '{}')
      INTO replayed, positions
      FROM deliver_cluster._px_replay_archive(queue_name, consumer_group, since, after, max_messages) r;
END $$;

--
-- Topic routing over the cluster: deliver's topic exchange (bind, unbind,
-- list_bindings, publish, test_routing; the same rules for patterns and
-- routing keys) with the bindings here, in the router, where the queues of
-- the cluster are known.  A publish sends its copies to one partition: the
-- partition of its ordering key, else of its idempotency key, else one at
-- random for the call; partition p of every queue is placed on the same
-- shard, so every copy goes to that shard and all are sent in one
-- transaction there (all or none), as deliver.publish on one node.
--

CREATE TABLE deliver_cluster.binding (
    pattern    text NOT NULL,
    queue_name text NOT NULL REFERENCES deliver_cluster.queue ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pattern, queue_name)
);
SELECT pg_catalog.pg_extension_config_dump('deliver_cluster.binding', '');

-- The words of a pattern or routing key, checked as deliver checks them
-- (22004 NULL, 22023 otherwise): at most 255 bytes, words of at least one
-- character between single dots; "*" and "#" only as whole words of a
-- pattern; the empty pattern is refused, the empty routing key has no words.
CREATE FUNCTION deliver_cluster._routing_words(x text, pattern boolean) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    what text := CASE WHEN pattern THEN 'pattern' ELSE 'routing key' END;
    w text[];
BEGIN
    IF x IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF octet_length(x) > 255 THEN
        RAISE EXCEPTION '% is longer than 255 bytes', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF x = '' THEN
        IF pattern THEN
            RAISE EXCEPTION 'pattern must not be empty' USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Use "#" to match every routing key.';
        END IF;
        RETURN '{}';
    END IF;
    w := string_to_array(x, '.');
    IF '' = ANY (w) THEN
        RAISE EXCEPTION '% has an empty word', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pattern AND x ~ '[*#]' THEN
        RAISE EXCEPTION 'routing key must not contain wildcards' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(w) u WHERE u ~ '[*#]' AND length(u) <> 1) THEN
        RAISE EXCEPTION 'pattern has a wildcard inside a word' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN w;
END $$;

-- A checked pattern as a regular expression over "." || routing key (""
-- for the empty key): "*" one word, "#" zero or more, other words literal.
CREATE FUNCTION deliver_cluster._pattern_regex(pattern text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '^' || string_agg(CASE u.w WHEN '*' THEN '\.[^.]+' WHEN '#' THEN '(\.[^.]+)*'
                             ELSE '\.' || regexp_replace(u.w, '([][(){}*+?^$|\\])', '\\\1', 'g') END,
                             '' ORDER BY u.i) || '$'
      FROM unnest(deliver_cluster._routing_words(pattern, true)) WITH ORDINALITY AS u(w, i)
$$;

-- Bind a queue of the cluster to a pattern: true if the binding is new.
CREATE FUNCTION deliver_cluster.bind(pattern text, queue_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._routing_words(pattern, true);
    PERFORM deliver_cluster._check_queue(queue_name);
    INSERT INTO deliver_cluster.binding (pattern, queue_name) VALUES (bind.pattern, bind.queue_name)
    ON CONFLICT DO NOTHING;
    RETURN FOUND;
END $$;

-- Remove a binding: true if there was one.
CREATE FUNCTION deliver_cluster.unbind(pattern text, queue_name text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM deliver_cluster._routing_words(pattern, true);
    PERFORM deliver_cluster._check_queue(queue_name);
    DELETE FROM deliver_cluster.binding b WHERE b.pattern = unbind.pattern AND b.queue_name = unbind.queue_name;
    RETURN FOUND;
END $$;

-- The bindings (of one queue, or all), by queue and pattern.
CREATE FUNCTION deliver_cluster.list_bindings(queue_name text DEFAULT NULL)
RETURNS TABLE (pattern text, queue_name text, created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.pattern, b.queue_name, b.created_at FROM deliver_cluster.binding b
     WHERE list_bindings.queue_name IS NULL OR b.queue_name = list_bindings.queue_name
     ORDER BY b.queue_name, b.pattern
$$;

-- The bindings a publish with this routing key matches, by queue and
-- pattern (nothing is sent).
CREATE FUNCTION deliver_cluster.test_routing(routing_key text)
RETURNS TABLE (queue_name text, pattern text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    k text := CASE WHEN cardinality(deliver_cluster._routing_words(routing_key, false)) = 0 THEN ''
                   ELSE '.' || routing_key END;
BEGIN
    RETURN QUERY SELECT b.queue_name, b.pattern FROM deliver_cluster.binding b
                  WHERE k ~ deliver_cluster._pattern_regex(b.pattern)
                  ORDER BY b.queue_name, b.pattern;
END $$;

CREATE FUNCTION deliver_cluster._px_publish(shard int, partition int, queue_names text[], payload jsonb,
    headers jsonb, ordering_key text, idempotency_key text, delay interval, expires_at timestamptz, priority int,
    caller text DEFAULT current_user)
RETURNS TABLE (queue_name text, message_id text)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as(caller, shard);
    SELECT p.queue_name, p.message_id
      FROM deliver_shard.publish(partition, queue_names, payload, headers, ordering_key, idempotency_key,
                                 delay, expires_at, priority, caller) p;
$$;

-- Publish: a send of the message to every queue with a binding matching
-- the routing key, each once, all to the same partition (the ordering
-- key's, else the idempotency key's, else one at random), so all on one
-- shard, in one transaction there: every copy is sent or none (a queue
-- that refuses, e.g. no send right 42501, refuses the publish).  Returns
-- (queue, message id "partition:epoch:id") by queue name; no binding
-- matches: no rows, or with mandatory 42704.
CREATE FUNCTION deliver_cluster.publish(routing_key text, payload jsonb, headers jsonb DEFAULT NULL,
                                        ordering_key text DEFAULT NULL, idempotency_key text DEFAULT NULL,
                                        delay interval DEFAULT NULL, mandatory boolean DEFAULT false,
                                        expires_at timestamptz DEFAULT NULL, priority int DEFAULT NULL)
RETURNS TABLE (queue_name text, message_id text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    queues text[] := ARRAY(SELECT DISTINCT t.queue_name FROM deliver_cluster.test_routing(routing_key) t ORDER BY 1);
    p int;
BEGIN
    -- (deliver.publish's check, here too: one matching no queue is refused alike)
    IF priority NOT BETWEEN 0 AND 9 THEN
        RAISE EXCEPTION 'priority must be between 0 and 9' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('It is %s.', priority);
    END IF;
    IF cardinality(queues) = 0 THEN
        IF coalesce(mandatory, false) THEN
            RAISE EXCEPTION 'no queue is bound to routing key "%"', left(routing_key, 80)
                USING ERRCODE = 'undefined_object';
        END IF;
        RETURN;
    END IF;
    p := deliver_cluster._partition_for(ordering_key, idempotency_key);
    RETURN QUERY SELECT x.queue_name, x.message_id
                   FROM deliver_cluster._px_publish(deliver_cluster._write_shard(p), p, queues, payload, headers,
                                                    ordering_key, idempotency_key, delay, expires_at, priority) x
                  ORDER BY x.queue_name;
END $$;

--
-- The web console's views over the cluster (deliverd's GET /v1/metrics,
-- /v1/workers, /v1/alerts, /v1/push-subscriptions): one call to every
-- shard (a shard that is unavailable fails the call).  The shards' deliver
-- checks the rights as on one node.
--

CREATE FUNCTION deliver_cluster._px_all_metrics(caller text DEFAULT current_user)
RETURNS TABLE (queue_name text, partition int, epoch int, consumer_group text, depth bigint,
               in_flight bigint, delayed bigint, dead_letters bigint, oldest_age interval,
               sent_total bigint, acked_total bigint, dead_total bigint,
               worker_last_run timestamptz, worker_lag interval, worker_errors bigint)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    RUN ON deliver_cluster._as_all(caller);
    TARGET deliver_shard.all_metrics;
$$;

-- Every queue of the cluster the caller may read metrics of, one row per
-- queue and consumer group, merged over its partitions (every place a
-- partition has a queue, as metrics(queue): a partition moved counts where
-- it still holds messages): the counts and totals summed, oldest_age the largest, and of
-- the shards' maintenance workers the oldest last run, the largest lag and
-- the most errors; partitions: how many partitions the row merges.
CREATE FUNCTION deliver_cluster.all_metrics()
RETURNS TABLE (queue_name text, consumer_group text, depth bigint, in_flight bigint, delayed bigint,
               dead_letters bigint, oldest_age interval, sent_total bigint, acked_total bigint,
               dead_total bigint, worker_last_run timestamptz, worker_lag interval, worker_errors bigint,
               partitions int)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.queue_name, m.consumer_group, sum(m.depth)::bigint, sum(m.in_flight)::bigint,
           sum(m.delayed)::bigint, sum(m.dead_letters)::bigint, max(m.oldest_age),
           sum(m.sent_total)::bigint, sum(m.acked_total)::bigint, sum(m.dead_total)::bigint,
           min(m.worker_last_run), max(m.worker_lag), max(m.worker_errors),
           count(DISTINCT m.partition)::int
      FROM deliver_cluster._px_all_metrics() m
      JOIN deliver_cluster.queue q ON q.queue_name = m.queue_name
     GROUP BY m.queue_name, m.consumer_group
     ORDER BY m.queue_name, m.consumer_group
$$;

CREATE FUNCTION deliver_cluster._px_worker_status(shards int[], names text[], caller text DEFAULT current_user)
RETURNS TABLE (shard text, database text, pid int, started_at timestamptz, last_run_at timestamptz,
               last_run_duration interval, runs bigint, errors bigint,
               expired_total bigint, dead_total bigint, released_total bigint,
               last_error text, last_error_at timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, names;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.worker_status;
$$;

-- The maintenance workers of every shard's primary (deliver.worker_status
-- there: pg_monitor's, 42501 otherwise), each with its shard's name.
CREATE FUNCTION deliver_cluster.worker_status()
RETURNS TABLE (shard text, database text, pid int, started_at timestamptz, last_run_at timestamptz,
               last_run_duration interval, runs bigint, errors bigint,
               expired_total bigint, dead_total bigint, released_total bigint,
               last_error text, last_error_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.* FROM deliver_cluster._px_worker_status(
        ARRAY(SELECT s.shard_id FROM deliver_cluster.shard s ORDER BY s.shard_id),
        ARRAY(SELECT s.name FROM deliver_cluster.shard s ORDER BY s.shard_id)) w
     ORDER BY w.shard, w.database
$$;

CREATE FUNCTION deliver_cluster._px_list_alerts(shards int[], names text[], caller text DEFAULT current_user)
RETURNS TABLE (shard text, queue_name text, partition int, metric text, threshold numeric, firing boolean,
               value numeric, changed_at timestamptz)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, names;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.list_alerts;
$$;

-- The alerts set on the partitions' queues (deliver.set_alert on a shard,
-- on queue "<queue>.p<partition>": an alert is a partition's), each with
-- its queue of the cluster, partition and shard.
CREATE FUNCTION deliver_cluster.list_alerts()
RETURNS TABLE (queue_name text, partition int, shard text, metric text, threshold numeric, firing boolean,
               value numeric, changed_at timestamptz)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT a.queue_name, a.partition, a.shard, a.metric, a.threshold, a.firing, a.value, a.changed_at
      FROM deliver_cluster._px_list_alerts(
        ARRAY(SELECT s.shard_id FROM deliver_cluster.shard s ORDER BY s.shard_id),
        ARRAY(SELECT s.name FROM deliver_cluster.shard s ORDER BY s.shard_id)) a
      JOIN deliver_cluster.queue q ON q.queue_name = a.queue_name
     ORDER BY a.queue_name, a.partition, a.shard, a.metric
$$;

CREATE FUNCTION deliver_cluster._px_list_push_subscriptions(shards int[], names text[], caller text DEFAULT current_user)
RETURNS TABLE (shard text, subscription_name text, queue_name text, partition int, consumer_group text,
               active boolean, confirmed_lsn pg_lsn, created_at timestamptz, lag_bytes numeric,
               retained_wal_bytes numeric)
LANGUAGE plproxy AS $$
    CLUSTER 'deliver';
    SPLIT shards, names;
    RUN ON deliver_cluster._as(caller, shards);
    TARGET deliver_shard.list_push_subscriptions;
$$;

-- The push subscriptions of the partitions' queues (each made on a shard,
-- on one partition's queue, with deliver.create_push_subscription there),
-- each with its shard, queue of the cluster and partition; the lag is the
-- shard's WAL since the subscription's consumer last confirmed.
CREATE FUNCTION deliver_cluster.list_push_subscriptions()
RETURNS TABLE (subscription_name text, shard text, queue_name text, partition int, consumer_group text,
               active boolean, confirmed_lsn pg_lsn, created_at timestamptz, lag_bytes numeric,
               retained_wal_bytes numeric)
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.subscription_name, p.shard, p.queue_name, p.partition, p.consumer_group, p.active,
           p.confirmed_lsn, p.created_at, p.lag_bytes, p.retained_wal_bytes
      FROM deliver_cluster._px_list_push_subscriptions(
        ARRAY(SELECT s.shard_id FROM deliver_cluster.shard s ORDER BY s.shard_id),
        ARRAY(SELECT s.name FROM deliver_cluster.shard s ORDER BY s.shard_id)) p
      JOIN deliver_cluster.queue q ON q.queue_name = p.queue_name
     ORDER BY p.subscription_name, p.shard
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA deliver_cluster FROM PUBLIC;
-- (only checks: every role calling the shards through PL/Proxy needs them)
GRANT EXECUTE ON FUNCTION deliver_cluster._as(text, int), deliver_cluster._as_all(text) TO PUBLIC;
REVOKE EXECUTE ON PROCEDURE deliver_cluster.move_partition(int, text, interval),
                            deliver_cluster.finish_move(int, interval) FROM PUBLIC;
