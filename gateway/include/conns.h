/*
 * deliverd: how long a connection may take to send a request, and to read
 * its answer (conns.c).
 *
 * libmicrohttpd's own timeout counts silence: a client that sends a byte
 * now and then, or reads one now and then, keeps its connection, and its
 * thread, for as long as it likes.  Here each connection is watched from
 * libmicrohttpd's connection callbacks, and a reaper thread cuts one that
 * took more than idle_timeout seconds to send a request's headers (from
 * its opening, or from the end of its last answer), or then its body, or
 * then to read the answer once it is queued.  A request being answered (a
 * long poll waiting for messages) and a stream are not timed here.
 */
#ifndef DELIVERD_CONNS_H
#define DELIVERD_CONNS_H

#include <microhttpd.h>

typedef enum
{
	CONN_HEADERS,				/* opened, or answered: waiting for a request's headers */
	CONN_BODY,					/* headers read: waiting for the body */
	CONN_ANSWERING,				/* the request is being answered, or streams (not timed) */
	CONN_SENDING				/* its answer is queued: the client reads it */
} conn_phase;

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback */
void		conns_notify(void *cls, struct MHD_Connection *c, void **socket_context,
						 enum MHD_ConnectionNotificationCode code);
/* the connection's request moved on to phase (its clock restarts) */
void		conns_phase(struct MHD_Connection *c, conn_phase phase);
/* start and stop the reaper; start: 0 or -1 */
int			conns_start(void);
void		conns_stop(void);
/* connections cut for taking too long, since the start (for /metrics) */
long		conns_cut_count(void);

#endif
