--
-- Maintenance: reclaim storage, rotate segments, expire idempotency keys,
-- dead letters older than deliver.dead_letter_retention and the archive
-- (src/maintain.c).  The background worker runs the same code every
-- second or so; call it yourself without a worker.  Cheap when there is
-- nothing to do.
--
CREATE FUNCTION deliver.maintain(queue_name text DEFAULT NULL)
RETURNS TABLE (queue text, truncated int, rotated boolean, expired_keys bigint,
               expired_dead_letters bigint, archived bigint, expired_archive bigint)
    AS 'MODULE_PATHNAME', 'deliver_maintain' LANGUAGE C VOLATILE;
