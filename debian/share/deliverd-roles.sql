-- The database roles of deliverd's default configuration (/etc/deliver/deliverd.conf):
--   deliverd     LOGIN NOINHERIT, not a superuser: the gateway's login, with
--                no rights of its own; it may only SET ROLE to the roles
--                granted to it, as each request's token says
--   deliver_app  NOLOGIN: the application's role, named by tokens; may create
--                and administer queues; each queue is granted to it with
--                SELECT deliver.grant_queue('QUEUE', 'deliver_app', 'all');
-- Run it as a superuser in the database deliverd serves, after CREATE
-- EXTENSION deliver:
--   sudo -u postgres psql -d deliver -f /usr/share/deliver/deliverd-roles.sql
-- It may run again: it makes what is missing and changes nothing else.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'deliver') THEN
        RAISE EXCEPTION 'the extension deliver is not installed in database %', current_database()
            USING HINT = 'Run CREATE EXTENSION deliver in this database first.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'deliverd') THEN
        CREATE ROLE deliverd LOGIN NOINHERIT;
    ELSIF EXISTS (SELECT FROM pg_roles WHERE rolname = 'deliverd' AND rolsuper) THEN
        RAISE EXCEPTION 'role deliverd exists and is a superuser'
            USING HINT = 'The gateway''s login must have no rights of its own: ALTER ROLE deliverd NOSUPERUSER NOINHERIT.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'deliver_app') THEN
        CREATE ROLE deliver_app NOLOGIN;
    END IF;
END $$;

GRANT deliver_app TO deliverd;

-- deliver_app administers queues (these functions are not for PUBLIC)
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'deliver'::regnamespace
                AND p.proname IN ('create_queue', 'drop_queue', 'purge_queue', 'alter_queue',
                                  'create_consumer_group', 'drop_consumer_group',
                                  'redrive', 'set_alert') LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO deliver_app', f);
    END LOOP;
END $$;
