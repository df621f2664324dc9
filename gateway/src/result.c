/*
 * deliverd: statement outcomes and the helpers both connection pools share
 * (see result.h).
 */
#include "result.h"
#include "sqlstate.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
xstrdup(const char *s)
{
	char	   *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		abort();
	return d;
}

void
first_line(char *dst, size_t cap, const char *s)
{
	snprintf(dst, cap, "%s", s ? s : "");
	dst[strcspn(dst, "\n")] = '\0';
}

void
exec_result_clear(exec_result *r)
{
	if (r->res)
		PQclear(r->res);
	free(r->message);
	free(r->detail);
	free(r->hint);
	memset(r, 0, sizeof(*r));
}

void
exec_result_set_error(exec_result *out, int status, const char *sqlstate,
					  const char *msg, const char *detail, const char *hint)
{
	out->status = status;
	snprintf(out->sqlstate, sizeof(out->sqlstate), "%s", sqlstate ? sqlstate : "");
	free(out->message);
	free(out->detail);
	free(out->hint);
	out->message = xstrdup(msg);
	out->detail = xstrdup(detail);
	out->hint = xstrdup(hint);
	if (status == 503 && out->retry_after <= 0)
		out->retry_after = 1;
}

void
exec_result_from_pg(exec_result *out, PGconn *conn, const PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char		buf[512];

	if (!msg)
	{
		first_line(buf, sizeof(buf), r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
		msg = buf[0] ? buf : "database connection lost";
	}
	if (!state || PQstatus(conn) == CONNECTION_BAD)
		state = state && strncmp(state, "57P0", 4) == 0 ? state : "08006";
	exec_result_set_error(out, http_status_for_sqlstate(state), state, msg,
						  r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL,
						  r ? PQresultErrorField(r, PG_DIAG_MESSAGE_HINT) : NULL);
}

bool
pg_idle_conn_alive(PGconn *c)
{
	struct pollfd pfd;

	if (PQstatus(c) != CONNECTION_OK)
		return false;
	pfd.fd = PQsocket(c);
	pfd.events = POLLIN;
	pfd.revents = 0;
	/*
	 * Nothing to read and no error or hangup (poll reports POLLERR and
	 * POLLHUP unasked): the socket is as it was left.  (A read here would
	 * only find EAGAIN: one system call per request for nothing.)
	 */
	if (pfd.fd < 0 || poll(&pfd, 1, 0) != 0)
		return false;
	return PQtransactionStatus(c) == PQTRANS_IDLE;
}
