--
-- Who may call what.  Functions not listed are for every role: they check
-- the caller's right on the queue themselves (deliver.grant_queue).
--
REVOKE EXECUTE ON FUNCTION deliver.create_queue(text, text, interval, int, boolean, interval, interval, interval, interval, text, bigint, text, text, boolean),
                           deliver.drop_queue(text), deliver.purge_queue(text),
                           deliver.create_consumer_group(text, text, text),
                           deliver.drop_consumer_group(text, text),
                           deliver.grant_queue(text, text, text), deliver.revoke_queue(text, text, text),
                           deliver.redrive(text, bigint[], text, text), deliver.delete_dead_letters(text, bigint[], text),
                           deliver.maintain(text),
                           deliver.create_push_subscription(text, text, text),
                           deliver.drop_push_subscription(text),
                           deliver.restore_push_subscription(text), deliver.push_backlog(text, timestamptz),
                           deliver._checkpoint_groups(int, xid8[]), deliver._move_due(text),
                           deliver._catalog_changed(int, text, int),
                           deliver.alter_queue(text, interval, int, interval, interval, interval, interval, interval, text, bigint, text, text, boolean),
                           deliver._sweep(text, int), deliver.set_alert(text, text, numeric),
                           deliver._check_alerts(), deliver.worker_status(),
                           deliver._lock_queue(deliver.queue),
                           deliver.pause_consumer_group(text, text),
                           deliver.resume_consumer_group(text, text),
                           deliver.set_consumer_group_rate(text, text, double precision, int),
                           deliver._flow_group(deliver.queue, text),
                           deliver.set_fifo_key_limit(text, int),
                           deliver.bind(text, text), deliver.unbind(text, text),
                           deliver._bindings_changed(),
                           deliver.delete_message(text, bigint),
                           deliver.reset_consumer_group(text, text, text),
                           deliver.replay_archive(text, text, timestamptz, bigint, int)
    FROM PUBLIC;
-- the maintenance workers' state (errors may name other databases' queues)
GRANT EXECUTE ON FUNCTION deliver.worker_status() TO pg_monitor;
