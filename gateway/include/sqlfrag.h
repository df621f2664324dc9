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
/* the body, parameter n, as b ({} when there is none) */
#define BODY(n) " FROM (SELECT coalesce($" #n "::jsonb, '{}'::jsonb) AS b) s"

#endif
