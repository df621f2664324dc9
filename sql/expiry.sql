--
-- Message expiry and depth limits (see docs/sql-reference.md, "Expiry and
-- depth limits")
--

-- Check a queue's expiry settings: message_ttl NULL (none) or between
-- 1 millisecond and 365 days; on_expire 'dead_letter' or 'drop'.
CREATE FUNCTION deliver._check_expiry(message_ttl interval, on_expire text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF message_ttl IS NOT NULL THEN
        PERFORM deliver._check_interval('message_ttl', message_ttl, '1 millisecond', '365 days');
    END IF;
    IF on_expire IS NULL OR on_expire NOT IN ('dead_letter', 'drop') THEN
        RAISE EXCEPTION 'invalid on_expire "%"', left(on_expire, 80)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use dead_letter or drop.';
    END IF;
END $$;

-- Check a queue's depth limit: max_depth NULL (none) or 1 to 10^12;
-- overflow 'reject' or 'drop_oldest' (not for at_most_once queues: their
-- messages have no lease a rolled-back send could give back).
CREATE FUNCTION deliver._check_depth(max_depth bigint, overflow text, guarantee text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF max_depth IS NOT NULL AND (max_depth < 1 OR max_depth > 1000000000000) THEN
        RAISE EXCEPTION 'max_depth must be between 1 and 10^12'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use 0 (or NULL at creation) for no limit.';
    END IF;
    IF overflow IS NULL OR overflow NOT IN ('reject', 'drop_oldest') THEN
        RAISE EXCEPTION 'invalid overflow "%"', left(overflow, 80)
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use reject or drop_oldest.';
    END IF;
    IF overflow = 'drop_oldest' AND guarantee = 'at_most_once' THEN
        RAISE EXCEPTION 'overflow "drop_oldest" is not available on an at_most_once queue'
            USING ERRCODE = 'feature_not_supported', HINT = 'Use reject.';
    END IF;
END $$;
