/*
 * deliverd: Prometheus metrics (metrics.c): requests and latency histograms
 * by route and status, the pool, and deliver's queue gauges, served at
 * /metrics.
 */
#ifndef DELIVERD_METRICS_H
#define DELIVERD_METRICS_H

#include "http.h"
#include "router.h"

/* Count a finished request of route r: its status and how long it took. */
void		metrics_record(route_id r, int status, double seconds);
/* Answer GET /metrics. */
enum MHD_Result metrics_serve(struct MHD_Connection *c, request_t *rq);

#endif
