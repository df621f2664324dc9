/*
 * deliverd: the routes served.  Every /v1 route runs one prepared statement
 * (statements.c) through the pool (pool.c) as the caller's role (auth.c).
 */
#include "api.h"
#include "cluster.h"
#include "config.h"
#include "main.h"
#include "metrics.h"
#include "openapi.h"
#include "received.h"
#include "statements.h"
#include "stream.h"
#include "ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The hint of a 400 for an id in a request body that is no 64-bit integer
 * (Postgres says which value; a body that is not JSON has a detail of its
 * own and keeps it).
 */
static const char *
id_hint(int stmt, const exec_result *er)
{
	if (er->hint || er->detail ||
		(strcmp(er->sqlstate, "22P02") != 0 && strcmp(er->sqlstate, "22003") != 0))
		return NULL;
	if (stmt == S_ACK_BATCH)
		return "delivery_ids are 64-bit integers: strings of digits, as the gateway sends them, "
			"or integer numbers.";
	if (stmt == S_REDRIVE || stmt == S_DELETE_DEAD_LETTERS)
		return "message_ids are 64-bit integers: strings of digits, as the gateway sends them, "
			"or integer numbers.";
	return NULL;
}

/*
 * Run statement stmt as the caller's role and answer with its result, the
 * last column of its one row, with ok_status; an empty result is null, or a
 * 404 when not_found_if_empty.  A receive's rows are made into its JSON here.
 */
static enum MHD_Result
run_route(struct MHD_Connection *c, request_t *rq, int stmt, int nparams,
		  const char *const *params, int ok_status, bool long_poll, bool not_found_if_empty)
{
	exec_result er;
	enum MHD_Result ret;

	pool_exec(rq->role[0] ? rq->role : NULL, stmt, nparams, params, long_poll, &er);
	if (er.status != 200)
	{
		/* a long poll ended by shutdown is an empty answer, not an error */
		if (long_poll && shutting_down() && strcmp(er.sqlstate, "57014") == 0)
		{
			exec_result_clear(&er);
			return send_json(c, rq, 200, "[]");
		}
		if (id_hint(stmt, &er))
			er.hint = strdup(id_hint(stmt, &er));
		ret = send_exec_error(c, rq, &er);
	}
	else if (stmt == S_RECEIVE)
	{
		/* a receive's rows are made JSON here (received.c), [] when none */
		buf_t		b;

		buf_init(&b);
		received_json(er.res, &b);
		ret = send_response(c, rq, ok_status, "application/json", b.data, b.len, 0);
		buf_free(&b);
	}
	else if (!er.res || PQntuples(er.res) == 0)
	{
		if (not_found_if_empty)
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "queue \"%s\" does not exist", rq->rm.queue);
			ret = send_error(c, rq, 404, msg, NULL, NULL, "42704", 0);
		}
		else
			ret = send_json(c, rq, ok_status, "null");
	}
	else
		ret = send_json(c, rq, ok_status, PQgetvalue(er.res, 0, PQnfields(er.res) - 1));
	exec_result_clear(&er);
	return ret;
}

/* the request body, NULL when there is none */
static const char *
body_or_null(request_t *rq)
{
	return rq->body.len ? rq->body.data : NULL;
}

/* where a parameter of a route's statement comes from */
typedef enum
{
	P_QUEUE,					/* the queue named in the path */
	P_GROUP,					/* the group named in the path */
	P_DELIVERY,					/* the delivery id in the path */
	P_BODY,						/* the request body, NULL when empty */
	P_IDEMPOTENCY_KEY			/* the Idempotency-Key header */
} param_source;

/*
 * The routes that run their statement with parameters from the path, the
 * body and the headers, and answer with its result (run_route).  When
 * body_hint is set the body is required: a request without one is a 400
 * with that hint.
 */
typedef struct
{
	route_id	route;
	int			stmt;
	int			nparams;
	param_source params[3];
	int			ok_status;
	bool		not_found_if_empty;
	const char *body_hint;
} statement_route;

/*
 * The query arguments group and max (parse_group_and_max); false after
 * answering 400.
 */
static bool
group_and_max(struct MHD_Connection *c, request_t *rq, const char **group, char *max, size_t cap,
			  long dflt, enum MHD_Result *ret)
{
	const char *err = parse_group_and_max(get_arg, c, dflt, group, max, cap);

	if (err)
		*ret = send_error(c, rq, 400, err, NULL, NULL, NULL, 0);
	return err == NULL;
}

static const statement_route statement_routes[] = {
	{R_QUEUES_LIST, S_LIST_QUEUES, 0, {P_QUEUE}, 200, false, NULL},
	{R_QUEUE_CREATE, S_CREATE_QUEUE, 1, {P_BODY}, 201, false, NULL},
	{R_QUEUE_GET, S_GET_QUEUE, 1, {P_QUEUE}, 200, true, NULL},
	{R_QUEUE_DROP, S_DROP_QUEUE, 1, {P_QUEUE}, 200, false, NULL},
	{R_GROUPS_LIST, S_LIST_GROUPS, 1, {P_QUEUE}, 200, false, NULL},
	{R_GROUP_CREATE, S_CREATE_GROUP, 2, {P_QUEUE, P_BODY}, 201, false, NULL},
	{R_GROUP_DROP, S_DROP_GROUP, 2, {P_QUEUE, P_GROUP}, 200, false, NULL},
	{R_SEND, S_SEND, 3, {P_QUEUE, P_BODY, P_IDEMPOTENCY_KEY}, 201, false,
	"Send {\"payload\": ...}."},
	{R_SEND_BATCH, S_SEND_BATCH, 3, {P_QUEUE, P_BODY, P_IDEMPOTENCY_KEY}, 201, false,
	"Send {\"messages\": [{\"payload\": ...}]}."},
	{R_ACK, S_ACK, 2, {P_QUEUE, P_DELIVERY}, 200, false, NULL},
	{R_ACK_BATCH, S_ACK_BATCH, 2, {P_QUEUE, P_BODY}, 200, false, "Send {\"delivery_ids\": [...]}."},
	{R_NACK, S_NACK, 3, {P_QUEUE, P_DELIVERY, P_BODY}, 200, false, NULL},
	{R_EXTEND, S_EXTEND, 3, {P_QUEUE, P_DELIVERY, P_BODY}, 200, false, NULL},
	{R_REDRIVE, S_REDRIVE, 2, {P_QUEUE, P_BODY}, 200, false, NULL},
	{R_QUEUE_METRICS, S_QUEUE_METRICS, 1, {P_QUEUE}, 200, false, NULL},
	{R_DEAD_LETTERS_DELETE, S_DELETE_DEAD_LETTERS, 2, {P_QUEUE, P_BODY}, 200, false,
	"Send {\"message_ids\": [...]}."},
	{R_ALL_QUEUE_METRICS, S_ALL_QUEUE_METRICS, 0, {P_QUEUE}, 200, false, NULL},
	{R_ALERTS, S_ALERTS, 0, {P_QUEUE}, 200, false, NULL},
	{R_WORKERS, S_WORKERS, 0, {P_QUEUE}, 200, false, NULL},
	{R_PUSH_SUBSCRIPTIONS, S_PUSH_SUBSCRIPTIONS, 0, {P_QUEUE}, 200, false, NULL},
	{R_GROUP_PAUSE, S_PAUSE_GROUP, 2, {P_QUEUE, P_GROUP}, 200, false, NULL},
	{R_GROUP_RESUME, S_RESUME_GROUP, 2, {P_QUEUE, P_GROUP}, 200, false, NULL},
	{R_GROUP_RATE, S_SET_GROUP_RATE, 3, {P_QUEUE, P_GROUP, P_BODY}, 200, false,
	"Send {\"per_second\": N, \"burst\": N} (per_second null: no limit)."},
	{R_FIFO_KEY_LIMIT, S_SET_FIFO_KEY_LIMIT, 2, {P_QUEUE, P_BODY}, 200, false,
	"Send {\"max_in_flight_per_key\": N}."},
	/* topic routing (GET /v1/bindings and /v1/routing take query arguments: api_dispatch) */
	{R_PUBLISH, S_PUBLISH, 2, {P_BODY, P_IDEMPOTENCY_KEY}, 201, false,
	"Send {\"routing_key\": ..., \"payload\": ...}."},
	{R_BINDING_CREATE, S_BIND, 1, {P_BODY}, 200, false, "Send {\"pattern\": ..., \"queue\": ...}."},
	{R_BINDING_DELETE, S_UNBIND, 1, {P_BODY}, 200, false, "Send {\"pattern\": ..., \"queue\": ...}."},
	{R_MESSAGE_DELETE, S_DELETE_MESSAGE, 2, {P_QUEUE, P_DELIVERY}, 200, false, NULL},
	{R_GROUP_RESET, S_RESET_GROUP, 3, {P_QUEUE, P_GROUP, P_BODY}, 200, false,
	"Send {\"to\": \"earliest\" | \"latest\" | a message id | a time}."},
	{R_GROUP_REPLAY, S_REPLAY_ARCHIVE, 3, {P_QUEUE, P_GROUP, P_BODY}, 200, false,
	"Send {\"since\": a time, \"after_id\": an id, \"max_messages\": n} (each may be left out)."},
	{R_QUEUE_ALTER, S_ALTER_QUEUE, 2, {P_QUEUE, P_BODY}, 200, false,
	"Send {\"message_ttl\": ..., \"on_expire\": ..., ...}."},
};

#define NSTATEMENT_ROUTES (sizeof(statement_routes) / sizeof(statement_routes[0]))

/* Serve a route of statement_routes: gather its parameters, run it. */
static enum MHD_Result
run_statement_route(struct MHD_Connection *c, request_t *rq, const statement_route *r)
{
	const char *p[3];
	int			i;

	for (i = 0; i < r->nparams; i++)
	{
		switch (r->params[i])
		{
			case P_QUEUE:
				p[i] = rq->rm.queue;
				break;
			case P_GROUP:
				p[i] = rq->rm.group;
				break;
			case P_DELIVERY:
				p[i] = rq->rm.delivery_id;
				break;
			case P_BODY:
				p[i] = body_or_null(rq);
				if (!p[i] && r->body_hint)
					return send_error(c, rq, 400, "request body required", NULL, r->body_hint,
									  NULL, 0);
				break;
			case P_IDEMPOTENCY_KEY:
				p[i] = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
				break;
		}
	}
	return run_route(c, rq, r->stmt, r->nparams, p, r->ok_status, false, r->not_found_if_empty);
}

/*
 * Each route: its parameters, its statement, its answer.  The routes that
 * need more than a statement's result come first; the others are served
 * from statement_routes.
 */
enum MHD_Result
api_dispatch(struct MHD_Connection *c, request_t *rq)
{
	route_match *m = &rq->rm;
	const char *p[5];
	receive_params rp;
	receive_args ra;
	const char *err;
	char		max[24];

	/* the console's files, and who the token is: the same in cluster mode */
	if (m->id == R_UI)
		return ui_serve(c, rq);
	if (m->id == R_WHOAMI)
	{
		buf_t		b;
		enum MHD_Result ret;

		buf_init(&b);
		buf_puts(&b, "{\"role\":");
		buf_json_str(&b, rq->role);
		buf_printf(&b, ",\"read_only\":%s,\"cluster\":%s}", rq->read_only ? "true" : "false",
				   cluster_mode() ? "true" : "false");
		ret = send_json(c, rq, 200, b.data);
		buf_free(&b);
		return ret;
	}
	/* a cluster: the /v1 routes and /readyz go to its shards and router */
	if (cluster_mode() && m->id != R_HEALTHZ && m->id != R_METRICS && m->id != R_OPENAPI)
		return cluster_dispatch(c, rq);
	switch (m->id)
	{
		case R_HEALTHZ:
			if (shutting_down())
				return send_json(c, rq, 503, "{\"status\":\"shutting down\"}");
			return send_json(c, rq, 200, "{\"status\":\"ok\"}");
		case R_READYZ:
			{
				exec_result er;
				enum MHD_Result ret;

				if (shutting_down())
					return send_error(c, rq, 503, "shutting down", NULL, NULL, NULL, 1);
				pool_exec(NULL, S_PING, 0, NULL, false, &er);
				if (er.status == 200)
					ret = send_json(c, rq, 200, "{\"status\":\"ready\"}");
				else
					ret = send_exec_error(c, rq, &er);
				exec_result_clear(&er);
				return ret;
			}
		case R_METRICS:
			if (cfg.metrics_token &&
				!auth_bearer_is(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
								cfg.metrics_token))
				return send_error(c, rq, 401, "/metrics needs its token", NULL,
								  "Send Authorization: Bearer <the gateway's metrics_token>.", "28000", 0);
			return metrics_serve(c, rq);
		case R_OPENAPI:
			return send_json(c, rq, 200, openapi_json);
		case R_RECEIVE:
		case R_STREAM:
			err = parse_receive_params(get_arg, c, cfg.max_wait_ms,
									   m->id == R_STREAM ? STREAM_DEFAULT_MAX : RECEIVE_DEFAULT_MAX,
									   &rp);
			if (err)
				return send_error(c, rq, 400, err, NULL, NULL, NULL, 0);
			if (m->id == R_STREAM)
				return stream_serve(c, rq, &rp);
			/* not past the token's expiry: nothing is handed out after it */
			if (rq->exp > 0)
			{
				long		left = ms_until(rq->exp);

				if (rp.wait_ms > left)
					rp.wait_ms = left > 0 ? left : 0;
			}
			/* keep one connection for short requests; no waiting at shutdown */
			if (rp.wait_ms > 0 && (shutting_down() || !pool_long_poll_begin()))
				rp.wait_ms = 0;
			receive_args_fill(&ra, m->queue, &rp);
			if (rp.wait_ms == 0)
				return run_route(c, rq, S_RECEIVE, 5, ra.p, 200, false, false);
			{
				enum MHD_Result ret = run_route(c, rq, S_RECEIVE, 5, ra.p, 200, true, false);

				pool_long_poll_end();
				return ret;
			}
		case R_DEAD_LETTERS:
			{
				const char *g;
				enum MHD_Result ret;

				if (!group_and_max(c, rq, &g, max, sizeof(max), DEAD_LETTERS_DEFAULT_MAX, &ret))
					return ret;
				p[0] = m->queue;
				p[1] = g;
				p[2] = max;
				return run_route(c, rq, S_DEAD_LETTERS, 3, p, 200, false, false);
			}
		case R_PEEK:
			{
				const char *g;
				enum MHD_Result ret;

				if (!group_and_max(c, rq, &g, max, sizeof(max), PEEK_DEFAULT_MAX, &ret))
					return ret;
				p[0] = m->queue;
				p[1] = max;
				p[2] = g ? g : PEEK_DEFAULT_GROUP;
				return run_route(c, rq, S_PEEK, 3, p, 200, false, false);
			}
		case R_BINDINGS_LIST:
			/* ?queue=NAME: that queue's bindings only */
			p[0] = get_arg(c, "queue");
			if (p[0] && !valid_name(p[0]))
				return send_error(c, rq, 400, "queue must be " NAME_RULE, NULL, NULL, NULL, 0);
			return run_route(c, rq, S_LIST_BINDINGS, 1, p, 200, false, false);
		case R_ROUTING:
			/* ?key=ROUTING_KEY (its rules are deliver's: 22023, a 422) */
			p[0] = get_arg(c, "key");
			if (!p[0])
				return send_error(c, rq, 400, "key is required", NULL,
								  "GET /v1/routing?key=ROUTING_KEY (URL-encoded).", NULL, 0);
			return run_route(c, rq, S_TEST_ROUTING, 1, p, 200, false, false);
		default:
			{
				size_t		i;

				for (i = 0; i < NSTATEMENT_ROUTES; i++)
					if (statement_routes[i].route == m->id)
						return run_statement_route(c, rq, &statement_routes[i]);
				return send_error(c, rq, 404, "no such route", NULL, "See /openapi.json.", NULL, 0);
			}
	}
}
