--
-- Message expiry (see docs/sql-reference.md, "Expiry and depth limits")
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
