/*
 * deliverd: the HTTP status of a Postgres error, by its SQLSTATE, from one
 * table.  Pure functions (no I/O), so the fuzz target can drive them
 * directly.
 */
#include "sqlstate.h"

#include <stddef.h>
#include <string.h>

/*
 * A code of five characters is matched exactly; one of two is a class and
 * matches every code in it that has no entry of its own.  A code in neither
 * is a 500.
 */
typedef struct
{
	const char *code;
	int			status;
} sqlstate_status;

static const sqlstate_status sqlstate_statuses[] = {
	/* the database is unavailable or asks for a retry: 503 with Retry-After */
	{"08", 503},				/* connection exception */
	{"57P01", 503},				/* admin shutdown */
	{"57P02", 503},				/* crash shutdown */
	{"57P03", 503},				/* cannot connect now */
	{"57014", 503},				/* query canceled (shutdown) */
	{"53300", 503},				/* too many connections */
	{"53400", 503},				/* configuration limit (lease slots) */
	{"40001", 503},				/* serialization failure: retry */
	{"40P01", 503},				/* deadlock: retry */
	/* no such queue, group or message */
	{"42704", 404},				/* undefined object */
	/* the caller's role may not */
	{"42501", 403},				/* insufficient privilege */
	{"28000", 401},				/* invalid authorization */
	{"28P01", 401},				/* invalid password */
	{"54000", 413},				/* program limit exceeded (payload size) */
	/* the state of a queue or message does not allow it */
	{"55000", 409},				/* object not in prerequisite state */
	{"55P03", 409},				/* lock not available */
	{"42710", 409},				/* duplicate object */
	{"25001", 409},				/* active SQL transaction */
	{"0A000", 501},				/* feature not supported (e.g. drop_oldest on an at-most-once queue) */
	/* malformed input (bad JSON, number or interval syntax): 400 */
	{"22P02", 400},				/* invalid text representation */
	{"22007", 400},				/* invalid datetime format */
	{"22008", 400},				/* datetime field overflow */
	{"22003", 400},				/* numeric value out of range */
	{"42602", 400},				/* invalid name */
	/* well-formed but unacceptable values (NULLs, out of range, bad option) */
	{"22", 422},				/* data exception */
};

#define NSTATUSES (sizeof(sqlstate_statuses) / sizeof(sqlstate_statuses[0]))

int
http_status_for_sqlstate(const char *s)
{
	const sqlstate_status *class = NULL;
	size_t		i;

	if (!s || strlen(s) != 5)
		return 503;				/* no SQLSTATE: a libpq-side failure */
	for (i = 0; i < NSTATUSES; i++)
	{
		const char *code = sqlstate_statuses[i].code;

		if (strcmp(code, s) == 0)
			return sqlstate_statuses[i].status;
		if (!class && strlen(code) == 2 && strncmp(code, s, 2) == 0)
			class = &sqlstate_statuses[i];
	}
	return class ? class->status : 500;
}

bool
sqlstate_is_unavailable(const char *s)
{
	return http_status_for_sqlstate(s) == 503;
}
