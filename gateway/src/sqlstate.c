/*
 * deliverd: the HTTP status of a Postgres error, by its SQLSTATE.  Pure
 * functions (no I/O), so the fuzz target can drive them directly.
 */
#include "sqlstate.h"

#include <string.h>

bool
sqlstate_is_unavailable(const char *s)
{
	if (!s || strlen(s) != 5)
		return true;			/* no SQLSTATE: a libpq-side failure */
	return strncmp(s, "08", 2) == 0 ||	/* connection exception */
		strcmp(s, "57P01") == 0 ||	/* admin shutdown */
		strcmp(s, "57P02") == 0 ||	/* crash shutdown */
		strcmp(s, "57P03") == 0 ||	/* cannot connect now */
		strcmp(s, "57014") == 0 ||	/* query canceled (shutdown) */
		strcmp(s, "53300") == 0 ||	/* too many connections */
		strcmp(s, "53400") == 0 ||	/* configuration limit (lease slots) */
		strcmp(s, "40001") == 0 ||	/* serialization failure: retry */
		strcmp(s, "40P01") == 0;	/* deadlock: retry */
}

int
http_status_for_sqlstate(const char *s)
{
	if (sqlstate_is_unavailable(s))
		return 503;
	if (strcmp(s, "42704") == 0)
		return 404;
	if (strcmp(s, "42501") == 0)
		return 403;
	if (strcmp(s, "28000") == 0 || strcmp(s, "28P01") == 0)
		return 401;
	if (strcmp(s, "54000") == 0)
		return 413;
	if (strcmp(s, "55000") == 0 || strcmp(s, "55P03") == 0 ||
		strcmp(s, "42710") == 0 || strcmp(s, "25001") == 0)
		return 409;
	/* malformed input (bad JSON, number or interval syntax): 400 */
	if (strcmp(s, "22P02") == 0 || strcmp(s, "22007") == 0 ||
		strcmp(s, "22008") == 0 || strcmp(s, "22003") == 0 ||
		strcmp(s, "42602") == 0)
		return 400;
	/* well-formed but unacceptable values (NULLs, out of range, bad option) */
	if (strncmp(s, "22", 2) == 0 || strcmp(s, "2202E") == 0)
		return 422;
	return 500;
}
