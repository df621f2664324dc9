/*
 * deliverd (cluster mode): the partition map of a deliver cluster, read
 * from its router database, and a pool per shard (cluster.c); the routes
 * served over it (cluster_api.c).
 */
#ifndef DELIVERD_CLUSTER_H
#define DELIVERD_CLUSTER_H

#include <stdbool.h>

#include "buf.h"
#include "http.h"
#include "result.h"
#include "router.h"
#include "shardpool.h"

/* true when deliverd serves a cluster (the router setting) */
bool		cluster_mode(void);
/* Connect to the router, read the map, start the refresher; 0 or -1. */
int			cluster_init(void);
void		cluster_shutdown(void);

/* A version of the partition map; held with cmap_get, let go with cmap_put. */
typedef struct cmap cmap;

/* the current map (NULL before one was read) */
cmap	   *cmap_get(void);
void		cmap_put(cmap *m);
int			cmap_partitions(const cmap *m);
/* the shard taking new messages of partition p (its active placement), or NULL */
shardpool  *cmap_write_pool(const cmap *m, int p);
/* the shard receives of p read (its oldest placement not retired), or NULL */
shardpool  *cmap_read_pool(const cmap *m, int p);
/* the shard of placement (p, epoch), whatever its state, or NULL */
shardpool  *cmap_placement_pool(const cmap *m, int p, int epoch);

/*
 * Read the map again unless the current one is younger than min_age_ms
 * (requests that find it stale ask with a small age, so a burst of them
 * reads it once); puts old (when not NULL) and returns the current map,
 * held.
 */
cmap	   *cluster_refresh(cmap *old, int min_age_ms, long long deadline);

/* the router's pool (administration calls, the map) */
shardpool  *cluster_router(void);

/* The next partition a receive of queue and group starts from (a per-queue rotation). */
unsigned	cluster_cursor_next(const char *queue, const char *group);

/* how many shards have a connection now */
int			cluster_shards_up(void);

/* Prometheus lines: the map and each shard's pool. */
void		cluster_metrics(buf_t *b);
/* {"shards": {"name": "up"|"down", ...}, "partitions": n, "map_age_seconds": s} */
void		cluster_status_json(buf_t *b);

/*
 * The event stream of a queue in cluster mode (stream.c): its receives go
 * round the partitions as cluster receives do, its acks to the shards the
 * delivery ids name, as role (NULL or empty: the connection's user).
 */
typedef struct cl_stream cl_stream;
/* a received message: row of res (message_id, delivery_id, the message as JSON), the nth of its round */
typedef void (*cl_row_fn) (void *arg, const PGresult *res, int row, int nth);

cl_stream  *cl_stream_open(const char *queue, const char *role);
/*
 * One receive round (waiting up to rp->wait_ms), each message to fn.  200,
 * or the error's status with er set (404 for a queue the shards do not
 * have).  When no shard answered: 503 if opening, else 200 with nothing.
 */
int			cl_stream_receive(cl_stream *s, const receive_params *rp, bool opening, cl_row_fn fn,
							  void *arg, exec_result *er);
/* Ack deliveries the stream handed out; false with the error in er. */
bool		cl_stream_ack(cl_stream *s, char *const *ids, int n, exec_result *er);
void		cl_stream_close(cl_stream *s);

/* Serve a /v1 route or /readyz in cluster mode. */
enum MHD_Result cluster_dispatch(struct MHD_Connection *c, request_t *rq);

#endif
