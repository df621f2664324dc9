/*
 * deliverd: pieces of SQL shared by the statements of single-node mode
 * (statements.c) and of cluster mode (cluster_api.c).  The request body is
 * one jsonb parameter, b.
 */
#ifndef DELIVERD_SQLFRAG_H
#define DELIVERD_SQLFRAG_H

/*
 * An interval from a JSON field: a number of seconds or an interval string;
 * NULL when the field is missing or null (the function's default applies).
 * Any other JSON value fails the cast to a number of seconds (22023, a 422),
 * rather than passing for "left out".
 */
#define IV(f) "(CASE jsonb_typeof(b->'" f "') WHEN 'string' THEN (b->>'" f "')::interval" \
	" WHEN 'null' THEN NULL ELSE make_interval(secs => (b->'" f "')::float8) END)"
/*
 * A timestamptz from a JSON field: an ISO 8601 string (any Postgres
 * timestamptz input) or a Unix time in seconds; NULL when missing or null.
 * Any other JSON value fails the cast to a number (22023, a 422).
 */
#define TS(f) "(CASE jsonb_typeof(b->'" f "') WHEN 'string' THEN (b->>'" f "')::timestamptz" \
	" WHEN 'null' THEN NULL ELSE to_timestamp((b->'" f "')::float8) END)"
/*
 * An integer from a JSON field that must be a number (a send's priority):
 * NULL when missing or null.  A string, boolean, array or object fails the
 * cast of the JSON value (22023, a 422), a fraction the cast of its text
 * (22P02, a 400), a number beyond int 22003 (a 400); the range is the
 * function's to check.
 */
#define INTF(f) "(CASE jsonb_typeof(b->'" f "') WHEN 'number' THEN (b->>'" f "')::int" \
	" WHEN 'null' THEN NULL ELSE (b->'" f "')::int END)"
/*
 * A boolean from a JSON field that must be true or false (a queue's
 * priorities): NULL when missing or null; any other JSON value fails the
 * cast (22023, a 422) rather than being read as text ("yes", "1").
 */
#define BOOLF(f) "(CASE jsonb_typeof(b->'" f "') WHEN 'null' THEN NULL ELSE (b->'" f "')::boolean END)"
/* the body, parameter n, as b ({} when there is none) */
#define BODY(n) " FROM (SELECT coalesce($" #n "::jsonb, '{}'::jsonb) AS b) s"

#endif
