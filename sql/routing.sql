--
-- Topic routing
--
-- A binding ties a pattern to a queue; deliver.publish sends a message once
-- to every queue with a binding whose pattern matches its routing key.
-- Patterns and routing keys are words separated by dots, at most 255
-- bytes; in a pattern "*" matches exactly one word and "#" zero or more.
--

-- 22023 unless pattern is a valid binding pattern.
CREATE FUNCTION deliver._check_pattern(pattern text) RETURNS void
    AS 'MODULE_PATHNAME', 'deliver_check_pattern' LANGUAGE C IMMUTABLE;

-- Every change of deliver.binding (bind, unbind, the cascade of drop_queue)
-- tells the backends to compile the bindings anew (src/routing.c).
CREATE FUNCTION deliver._bindings_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'deliver_bindings_changed' LANGUAGE C;
CREATE TRIGGER binding_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON deliver.binding
    FOR EACH STATEMENT EXECUTE FUNCTION deliver._bindings_changed();

-- Bind the queue to the pattern: true if the binding is new, false if it
-- was there.
CREATE FUNCTION deliver.bind(pattern text, queue_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue;
BEGIN
    PERFORM deliver._check_pattern(pattern);
    q := deliver._queue(queue_name);
    INSERT INTO deliver.binding AS b (pattern, queue_id)
    VALUES (bind.pattern, q.queue_id)
    ON CONFLICT ON CONSTRAINT binding_pkey DO NOTHING;
    RETURN FOUND;
END $$;

-- Remove the binding: true if there was one.
CREATE FUNCTION deliver.unbind(pattern text, queue_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q deliver.queue;
BEGIN
    PERFORM deliver._check_pattern(pattern);
    q := deliver._queue(queue_name);
    DELETE FROM deliver.binding b WHERE b.pattern = unbind.pattern AND b.queue_id = q.queue_id;
    RETURN FOUND;
END $$;

-- The bindings (of one queue, or of all), by queue and pattern.
CREATE FUNCTION deliver.list_bindings(queue_name text DEFAULT NULL)
RETURNS TABLE (pattern text, queue_name text, created_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.pattern, q.queue_name, b.created_at
      FROM deliver.binding b JOIN deliver.queue q USING (queue_id)
     WHERE list_bindings.queue_name IS NULL OR q.queue_name = list_bindings.queue_name
     ORDER BY q.queue_name, b.pattern
$$;

CREATE FUNCTION deliver.publish(
    routing_key     text,
    payload         jsonb,
    headers         jsonb DEFAULT NULL,
    ordering_key    text DEFAULT NULL,
    idempotency_key text DEFAULT NULL,
    delay           interval DEFAULT NULL,
    mandatory       boolean DEFAULT false,
    expires_at      timestamptz DEFAULT NULL,
    priority        int DEFAULT NULL)
RETURNS TABLE (queue_name text, message_id bigint)
    AS 'MODULE_PATHNAME', 'deliver_publish' LANGUAGE C VOLATILE ROWS 10;

-- The bindings a publish with this routing key would match, by queue and
-- pattern (nothing is sent).
CREATE FUNCTION deliver.test_routing(routing_key text)
RETURNS TABLE (queue_name text, pattern text)
    AS 'MODULE_PATHNAME', 'deliver_test_routing' LANGUAGE C STABLE ROWS 10;
