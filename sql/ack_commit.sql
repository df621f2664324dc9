--
-- How acks commit (src/ackcommit.c): a queue's ack_commit
--

-- ack_commit 'durable' (an ack's commit waits for the WAL flush, as every
-- commit does) or 'async' (an ack that is its transaction's only work
-- commits without waiting: after a crash the message may be delivered
-- again).  Only at_least_once queues may take 'async': an exactly-once ack
-- commits with the consumer's own effects, and an at-most-once receive
-- must be durable before the message is seen.
CREATE FUNCTION deliver._check_ack_commit(ack_commit text, guarantee text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ack_commit IS NULL OR ack_commit NOT IN ('durable', 'async') THEN
        RAISE EXCEPTION 'invalid ack_commit "%"', left(ack_commit, 80)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use durable or async.';
    END IF;
    IF ack_commit = 'async' AND guarantee <> 'at_least_once' THEN
        RAISE EXCEPTION 'ack_commit "async" is not available on an % queue', guarantee
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = CASE guarantee
                      WHEN 'exactly_once' THEN 'An exactly-once ack commits with the consumer''s own effects, which must be durable.'
                      ELSE 'An at-most-once receive removes the message durably before it is seen.' END,
                  HINT = 'Use durable, or an at_least_once queue.';
    END IF;
END $$;
