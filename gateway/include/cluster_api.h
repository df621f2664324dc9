/*
 * deliverd (cluster mode): what the files of the cluster routes share
 * (cluster_api.c dispatches, cluster_request.c answers and runs statements
 * on shards and the router, cluster_send.c and cluster_receive.c carry the
 * message routes).  Not for the rest of deliverd: cluster.h is.
 */
#ifndef DELIVERD_CLUSTER_API_H
#define DELIVERD_CLUSTER_API_H

#include <stdbool.h>

#include <jansson.h>

#include "cluster.h"
#include "result.h"

/* a map younger than this is not read again for a request that found it stale */
#define STALE_MAP_MS 250

typedef struct
{
	struct MHD_Connection *c;
	request_t  *rq;
	const char *role;
	long long	deadline;		/* mono_ms(): the whole request ends by then */
	cmap	   *map;			/* held */
} rctx;

typedef enum
{
	PL_WRITE,					/* the partition's active placement */
	PL_READ,					/* the placement receives read */
	PL_ID						/* the placement an id names */
} pl_kind;

/* the deadline of one statement that waits wait_ms on the server */
long long	cl_stmt_deadline(const rctx *x, long wait_ms);
/* the shard said the partition is not there (55000) */
bool		cl_not_on_shard(const exec_result *er);
void		cl_set_err(exec_result *er, int status, const char *sqlstate, const char *msg,
					   const char *detail, const char *hint);
/* error answers: {"error", "detail", "hint", "sqlstate"} (+ "code": "in_doubt", + extra members) */
enum MHD_Result cl_answer_error(rctx *x, const exec_result *er, const char *extra);
enum MHD_Result cl_answer(rctx *x, int status, const char *sqlstate, const char *msg,
						  const char *detail, const char *hint);
enum MHD_Result cl_answer_no_queue(rctx *x);
enum MHD_Result cl_answer_shard_error(rctx *x, const exec_result *er);
void		cl_no_placement(rctx *x, pl_kind kind, int p, int epoch, exec_result *er);
/* sql on the shard of partition p, once more after reading the map again when it was stale */
void		cl_shard_exec(rctx *x, pl_kind kind, int p, int epoch, const char *sql, int n,
						  const char *const *params, int flags, long wait_ms, exec_result *er);
/* sql on the router, answered with the last column of its row */
enum MHD_Result cl_router_route(rctx *x, const char *sql, int n, const char *const *params,
								int ok_status, bool queue_check, bool not_found_if_empty, int flags);
const char *cl_body(request_t *rq);
json_t	   *cl_parse_body(rctx *x, enum MHD_Result *ret);
/* 413: a batch of n messages or ids is over the gateway's max_batch */
enum MHD_Result cl_batch_too_large(rctx *x, int n);
bool		cl_key_field(json_t *m, const char *field, const char **out);
int			cl_partition_for(const cmap *m, const char *okey, const char *ikey);

/* the message routes */
enum MHD_Result cluster_send(rctx *x);
enum MHD_Result cluster_send_batch(rctx *x);
enum MHD_Result cluster_receive(rctx *x);
enum MHD_Result cluster_by_id(rctx *x, const char *sql, int nparams);
enum MHD_Result cluster_ack_batch(rctx *x);

#endif
