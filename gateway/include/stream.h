/*
 * deliverd: the server-sent event stream of a queue (stream.c):
 * GET /v1/queues/{queue}/stream.
 */
#ifndef DELIVERD_STREAM_H
#define DELIVERD_STREAM_H

#include "http.h"
#include "router.h"

/*
 * Messages per receive of a stream when the request does not say: the
 * gateway's own choice, more than a single receive's default because a
 * stream is for a steady flow.
 */
#define STREAM_DEFAULT_MAX 10

/* Answer a stream request whose query parameters were parsed into p. */
enum MHD_Result stream_serve(struct MHD_Connection *c, request_t *rq, const receive_params *p);
/* Streams open now (for /metrics). */
int			stream_open_count(void);

#endif
