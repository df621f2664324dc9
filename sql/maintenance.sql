--
-- Maintenance: reclaim storage, rotate segments, expire idempotency keys
-- and dead letters older than deliver.dead_letter_retention.
-- Call it every second or so (the background worker does); it is cheap
-- when there is nothing to do.
--
CREATE FUNCTION deliver.maintain(queue_name text DEFAULT NULL)
RETURNS TABLE (queue text, truncated int, rotated boolean, expired_keys bigint,
               expired_dead_letters bigint, archived bigint, expired_archive bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q       deliver.queue;
    segs    int[];
    xmaxes  xid8[];
    lsns    pg_lsn[];
    ok      boolean[];
    i       int;
    act     deliver.segment;
    nxt     deliver.segment;
    every   interval := current_setting('deliver.rotation_interval')::interval;
    n       bigint;
    keep    interval := current_setting('deliver.dead_letter_retention')::interval;
BEGIN
    IF maintain.queue_name IS NOT NULL THEN
        PERFORM deliver._queue(maintain.queue_name);
    END IF;
    FOR q IN SELECT * FROM deliver.queue x
              WHERE maintain.queue_name IS NULL OR x.queue_name = maintain.queue_name
              ORDER BY x.queue_id LOOP
        -- one maintainer per queue at a time
        PERFORM 1 FROM deliver.queue x WHERE x.queue_id = q.queue_id FOR UPDATE;
        maintain.queue := q.queue_name;
        truncated := 0;
        rotated := false;
        archived := 0;
        expired_archive := 0;

        -- Segments switched away from by an earlier (committed) run: every
        -- transaction that wrote to them has an xid below the next one now.
        UPDATE deliver.segment x SET state = 'closed', closed_xmax = deliver._next_xid(),
                                     changed_at = now()
         WHERE x.queue_id = q.queue_id AND x.state = 'closing';

        -- Once no transaction below closed_xmax runs, every commit that
        -- wrote to the segment lies before the current WAL insert position.
        UPDATE deliver.segment x SET closed_lsn = pg_current_wal_insert_lsn()
         WHERE x.queue_id = q.queue_id AND x.state = 'closed' AND x.closed_lsn IS NULL
           AND pg_snapshot_xmin(pg_current_snapshot()) >= x.closed_xmax;

        -- A closed segment that holds only finished messages for every
        -- group is truncated with its done table (each group's restart
        -- point was just written anew; see _checkpoint_groups), once every
        -- push slot (plugin deliver) of this database confirmed past it,
        -- and while none of the queue's push subscriptions is without its
        -- slot (after a failover: logical slots are not replicated) or
        -- restored and not yet confirmed past its new start: its consumer
        -- has a backlog to read (push_backlog).
        SELECT coalesce(array_agg(x.seg ORDER BY x.seg), '{}'),
               coalesce(array_agg(x.closed_xmax ORDER BY x.seg), '{}'),
               coalesce(array_agg(x.closed_lsn ORDER BY x.seg), '{}')
          INTO segs, xmaxes, lsns
          FROM deliver.segment x WHERE x.queue_id = q.queue_id AND x.state = 'closed';
        ok := deliver._checkpoint_groups(q.queue_id, xmaxes);
        IF EXISTS (SELECT 1 FROM deliver.push_subscription p
                     LEFT JOIN pg_replication_slots r ON r.slot_name = p.subscription_name
                    WHERE p.queue_id = q.queue_id
                      AND (r.slot_name IS NULL OR r.confirmed_flush_lsn <= p.restored_lsn)) THEN
            segs := '{}';
        END IF;
        FOR i IN 1 .. coalesce(array_length(segs, 1), 0) LOOP
            CONTINUE WHEN NOT ok[i];
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM pg_replication_slots r
                 WHERE r.plugin = 'deliver' AND r.database = current_database()
                   AND (lsns[i] IS NULL OR r.confirmed_flush_lsn IS NULL
                        OR r.confirmed_flush_lsn < lsns[i]));
            BEGIN
                PERFORM set_config('lock_timeout', current_setting('deliver.maintenance_lock_timeout'), true);
                IF q.archive_retention IS NOT NULL THEN
                    -- every message of the segment is finished: keep a copy
                    EXECUTE format($f$
                        INSERT INTO deliver.%I (message_id, enqueued_at, ordering_key, headers, payload)
                        SELECT message_id, enqueued_at, ordering_key, headers, payload FROM deliver.%I
                        ON CONFLICT (message_id) DO NOTHING$f$,
                        format('q%s_archive', q.queue_id), format('q%s_s%s', q.queue_id, segs[i]));
                    GET DIAGNOSTICS n = ROW_COUNT;
                    archived := archived + n;
                END IF;
                -- done table first: the lock order of receive (no deadlock)
                EXECUTE format('TRUNCATE deliver.%I, deliver.%I',
                               format('q%s_done%s', q.queue_id, segs[i]),
                               format('q%s_s%s', q.queue_id, segs[i]));
                UPDATE deliver.segment x SET state = 'empty', closed_xmax = NULL, closed_lsn = NULL,
                                             changed_at = now()
                 WHERE x.queue_id = q.queue_id AND x.seg = segs[i];
                truncated := truncated + 1;
            EXCEPTION WHEN lock_not_available THEN
                NULL;           -- busy: next time
            END;
        END LOOP;

        -- Switch to the next segment when the active one is old enough and
        -- the next one is empty.
        SELECT * INTO act FROM deliver.segment x WHERE x.queue_id = q.queue_id AND x.state = 'active';
        SELECT * INTO nxt FROM deliver.segment x
         WHERE x.queue_id = q.queue_id AND x.seg = (act.seg + 1) % q.segments;
        IF nxt.state = 'empty' AND act.changed_at <= now() - every THEN
            UPDATE deliver.segment x SET state = 'closing', changed_at = now()
             WHERE x.queue_id = q.queue_id AND x.seg = act.seg;
            UPDATE deliver.segment x SET state = 'active', changed_at = now()
             WHERE x.queue_id = q.queue_id AND x.seg = nxt.seg;
            PERFORM deliver._catalog_changed(q.queue_id, 'switch', nxt.seg);
            rotated := true;
        END IF;

        EXECUTE format('DELETE FROM deliver.%I WHERE expires_at < now()', format('q%s_dedup', q.queue_id));
        GET DIAGNOSTICS expired_keys = ROW_COUNT;

        expired_dead_letters := 0;
        IF keep > interval '0' THEN
            EXECUTE format('DELETE FROM deliver.%I WHERE dead_at < now() - $1', format('q%s_dead', q.queue_id))
              USING keep;
            GET DIAGNOSTICS expired_dead_letters = ROW_COUNT;
        END IF;
        -- the archive keeps what was archived within its retention (also
        -- after the archive is turned off)
        EXECUTE format('DELETE FROM deliver.%I WHERE archived_at < now() - $1', format('q%s_archive', q.queue_id))
          USING coalesce(q.archive_retention, interval '0');
        GET DIAGNOSTICS expired_archive = ROW_COUNT;
        RETURN NEXT;
    END LOOP;
END $$;
