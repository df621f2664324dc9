/*
 * deliverd: the routes served (api.c): for each route, the statement it
 * runs, its parameters and its answer.
 */
#ifndef DELIVERD_API_H
#define DELIVERD_API_H

#include "http.h"

/* Serve the matched, authenticated request rq. */
enum MHD_Result api_dispatch(struct MHD_Connection *c, request_t *rq);

#endif
