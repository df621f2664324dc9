--
-- Priorities (src/receive.c): a queue's priorities
--

-- A queue with priorities hands out a message of higher priority (send's
-- priority, 0 to 9) before one of lower among the messages a consumer
-- group has read ahead; read-ahead holds messages in lease slots, so an
-- at-most-once queue, which takes none, cannot have priorities.
CREATE FUNCTION deliver._check_priorities(priorities boolean, guarantee text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF priorities AND guarantee = 'at_most_once' THEN
        RAISE EXCEPTION 'priorities are not available on an at_most_once queue'
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'An at-most-once receive finishes each message as it reads it: nothing is read ahead to choose from.',
                  HINT = 'Use an at_least_once or exactly_once queue.';
    END IF;
END $$;
