/*
 * deliverd: the HTTP status of a Postgres error, by its SQLSTATE.  No I/O,
 * so the fuzz target can drive it.
 */
#ifndef DELIVERD_SQLSTATE_H
#define DELIVERD_SQLSTATE_H

#include <stdbool.h>

/* SQLSTATE to HTTP status; NULL or malformed (a libpq-side failure): 503 */
int			http_status_for_sqlstate(const char *sqlstate);
/* true when the error says "retry later" (503) */
bool		sqlstate_is_unavailable(const char *sqlstate);

#endif
