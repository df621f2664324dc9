/*
 * deliverd: the SQL of every route, prepared once per pooled connection.
 * User input only ever arrives as parameters: path names ($1, $2), query
 * parameters parsed by the router, and the request body as one jsonb
 * parameter that Postgres itself parses.
 */
#include "statements.h"
#include "sqlfrag.h"

#include <stdio.h>

/*
 * A receive's rows as received.c makes them into JSON (its columns, in its
 * order): the answer of a receive, and the stream's events.
 */
#define RECEIVED_ROWS "SELECT r.message_id, r.delivery_id, r.payload, r.headers, r.ordering_key," \
	" r.attempt, to_json(r.enqueued_at), to_json(r.lease_expires_at) FROM deliver.receive($1," \
	" $2::int, $3::interval, $4::interval, $5) r"

/*
 * Ids are bigints, and over JSON they are strings: a JavaScript number holds
 * 53 bits, and delivery ids are larger.  So every answer names its columns
 * and casts each id to text (in a subquery, so row_to_json and json_agg
 * keep their compact output; received.c quotes a receive's ids).  Ids in a
 * request may be strings or numbers: jsonb keeps a number exact, and either
 * form casts to bigint (a fraction or a value beyond 64 bits is 22P02 or
 * 22003, a 400).
 */
#define DEAD_LETTER "d.message_id::text AS message_id, d.group_name, d.payload, d.headers," \
	" d.ordering_key, d.attempts, d.reason, d.last_error, d.enqueued_at, d.dead_at"

const stmt_def statements[S__COUNT] = {
	[S_LIST_QUEUES] = {"list_queues",
		"SELECT coalesce(json_agg(q), '[]') FROM deliver.list_queues() q", 0},
	[S_GET_QUEUE] = {"get_queue",
		"SELECT row_to_json(q) FROM deliver.list_queues() q WHERE q.queue_name = $1", 1},
	/* an option the body leaves out is NULL: deliver.create_queue's default */
	[S_CREATE_QUEUE] = {"create_queue",
		"SELECT deliver.create_queue(b->>'name', b->>'guarantee', " IV("visibility_timeout") ","
		" (b->>'max_attempts')::int, (b->>'fifo')::boolean, " IV("dedup_window") ","
		" " IV("retry_base") ", " IV("retry_max") ", " IV("message_ttl") ", b->>'on_expire',"
		" (b->>'max_depth')::bigint, b->>'overflow', b->>'ack_commit', " BOOLF("priorities") "),"
		" json_build_object('queue_name', b->>'name', 'created', true)" BODY(1), 1},
	[S_DROP_QUEUE] = {"drop_queue",
		"SELECT json_build_object('dropped', deliver.drop_queue($1))", 1},
	[S_LIST_GROUPS] = {"list_groups",
		"SELECT coalesce(json_agg(g), '[]') FROM deliver.list_consumer_groups($1) g", 1},
	[S_CREATE_GROUP] = {"create_group",
		"SELECT CASE WHEN b->>'start_from' IS NULL THEN deliver.create_consumer_group($1, b->>'name')"
		" ELSE deliver.create_consumer_group($1, b->>'name', b->>'start_from') END,"
		" json_build_object('consumer_group', b->>'name', 'created', true)" BODY(2), 2},
	[S_DROP_GROUP] = {"drop_group",
		"SELECT json_build_object('dropped', deliver.drop_consumer_group($1, $2))", 2},
	[S_SEND] = {"send",
		"SELECT json_build_object('message_id', deliver.send($1, b->'payload',"
		" nullif(b->'headers', 'null'::jsonb), b->>'ordering_key',"
		" coalesce($3, b->>'idempotency_key'), " IV("delay") ", " TS("expires_at") ","
		" " INTF("priority") ")::text)" BODY(2), 3},
	/*
	 * A batch: {"messages": [{payload, headers, ordering_key,
	 * idempotency_key}, ...], "delay": ..., "expires_at": ...,
	 * "priority": ...} (delay, expires_at and priority are the batch's); an
	 * Idempotency-Key header K gives message i (from 0) the key "K:i" unless
	 * it has its own.  The messages
	 * are read in one pass that makes the four arrays (empty, not NULL, when
	 * there are none).  Keys "K:i" are made for the first
	 * deliver.max_batch_size messages only: a larger batch is refused by
	 * send_batch, and a key per message of it would cost the server memory
	 * (a 2 MB body holds a million messages).
	 */
	[S_SEND_BATCH] = {"send_batch",
		"SELECT json_build_object('message_ids', to_json(deliver.send_batch($1, a.p, a.h, a.k, a.ik,"
		" " IV("delay") ", " TS("expires_at") ", " INTF("priority") ")::text[]))" BODY(2) ","
		" LATERAL (SELECT coalesce(array_agg(m->'payload' ORDER BY i), '{}') AS p,"
		" coalesce(array_agg(nullif(m->'headers', 'null'::jsonb) ORDER BY i), '{}') AS h,"
		" coalesce(array_agg(m->>'ordering_key' ORDER BY i), '{}') AS k,"
		" coalesce(array_agg(coalesce(m->>'idempotency_key',"
		" CASE WHEN i <= l.lim THEN $3 || ':' || (i - 1) END) ORDER BY i), '{}') AS ik"
		" FROM jsonb_array_elements(b->'messages') WITH ORDINALITY e(m, i),"
		" (SELECT coalesce(current_setting('deliver.max_batch_size', true)::int, 10000) AS lim) l) a", 3},
	/* rows, made into JSON by the gateway (received.c) */
	[S_RECEIVE] = {"receive", RECEIVED_ROWS, 5},
	/* the stream: one event per row */
	[S_RECEIVE_ROWS] = {"receive_rows", RECEIVED_ROWS, 5},
	[S_ACK] = {"ack",
		"SELECT json_build_object('acked', deliver.ack($1, $2::bigint))", 2},
	[S_ACK_BATCH] = {"ack_batch",
		"SELECT json_build_object('acked', deliver.ack_batch($1,"
		" ARRAY(SELECT jsonb_array_elements_text(b->'delivery_ids')::bigint)))" BODY(2), 2},
	[S_NACK] = {"nack",
		"SELECT json_build_object('nacked', deliver.nack($1, $2::bigint, b->>'error', "
		IV("retry_after") ", coalesce((b->'dead_letter')::boolean, false)))" BODY(3), 3},
	[S_EXTEND] = {"extend",
		"SELECT json_build_object('lease_expires_at', deliver.extend_lease($1, $2::bigint, "
		IV("visibility_timeout") "))" BODY(3), 3},
	[S_DEAD_LETTERS] = {"dead_letters",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT " DEAD_LETTER
		" FROM deliver.dead_letters($1, $2, $3::int) d) x", 3},
	[S_REDRIVE] = {"redrive",
		"SELECT json_build_object('redriven', deliver.redrive($1,"
		" CASE WHEN b ? 'message_ids' THEN ARRAY(SELECT jsonb_array_elements_text(b->'message_ids')::bigint) END,"
		" b->>'consumer_group', b->>'to_queue'))" BODY(2), 2},
	[S_QUEUE_METRICS] = {"queue_metrics",
		"SELECT coalesce(json_agg(m), '[]') FROM deliver.metrics($1) m", 1},
	/* every queue the metrics role may read metrics of (receive rights, pg_monitor) */
	[S_ALL_METRICS] = {"all_metrics",
		"SELECT m.queue_name, m.consumer_group, m.depth, m.in_flight, m.delayed, m.dead_letters,"
		" coalesce(extract(epoch FROM m.oldest_age), 0) FROM deliver.metrics() m", 0},
	[S_PEEK] = {"peek",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT p.message_id::text AS message_id, p.payload,"
		" p.headers, p.ordering_key, p.attempt, p.enqueued_at, p.redelivery"
		" FROM deliver.peek($1, $2::int, $3) p) x", 3},
	[S_DELETE_DEAD_LETTERS] = {"delete_dead_letters",
		"SELECT json_build_object('deleted', deliver.delete_dead_letters($1,"
		" CASE WHEN b ? 'message_ids' THEN ARRAY(SELECT jsonb_array_elements_text(b->'message_ids')::bigint) END,"
		" b->>'consumer_group'))" BODY(2), 2},
	/* the console's overview: every queue the caller may read metrics of */
	[S_ALL_QUEUE_METRICS] = {"all_queue_metrics",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT m.*,"
		" extract(epoch FROM m.oldest_age)::float8 AS oldest_age_seconds,"
		" extract(epoch FROM m.worker_lag)::float8 AS worker_lag_seconds"
		" FROM deliver.metrics() m) x", 0},
	[S_ALERTS] = {"alerts",
		"SELECT coalesce(json_agg(a), '[]') FROM deliver.list_alerts() a", 0},
	[S_WORKERS] = {"workers",
		"SELECT coalesce(json_agg(w), '[]') FROM deliver.worker_status() w", 0},
	[S_PUSH_SUBSCRIPTIONS] = {"push_subscriptions",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT s.subscription_name, s.queue_name,"
		" s.consumer_group, s.active, s.confirmed_lsn, s.created_at, m.lag_bytes, m.retained_wal_bytes"
		" FROM deliver.list_push_subscriptions() s"
		" LEFT JOIN deliver.push_metrics() m USING (subscription_name)) x", 0},
	/*
	 * flow control.  A rate body must name per_second (null: no limit; a
	 * body without it is a 400, not a removal); the answer's burst left out
	 * or null is deliver's default, max(1, ceil(per_second)).
	 */
	[S_PAUSE_GROUP] = {"pause_group",
		"SELECT json_build_object('paused', deliver.pause_consumer_group($1, $2))", 2},
	[S_RESUME_GROUP] = {"resume_group",
		"SELECT json_build_object('resumed', deliver.resume_consumer_group($1, $2))", 2},
	[S_SET_GROUP_RATE] = {"set_group_rate",
		"SELECT json_build_object('consumer_group', $2::text, 'rate_per_second', r.per_second,"
		" 'rate_burst', CASE WHEN r.per_second IS NOT NULL"
		" THEN coalesce(r.burst, greatest(1, ceil(least(r.per_second, 1000000)))::int) END)"
		" FROM (SELECT (CASE WHEN b ? 'per_second' THEN b->>'per_second'"
		" ELSE 'a body without per_second' END)::float8 AS per_second,"
		" (b->>'burst')::int AS burst" BODY(3) ") r,"
		" LATERAL (SELECT deliver.set_consumer_group_rate($1, $2, r.per_second, r.burst)) x", 3},
	[S_SET_FIFO_KEY_LIMIT] = {"set_fifo_key_limit",
		"SELECT deliver.set_fifo_key_limit($1, (b->>'max_in_flight_per_key')::int),"
		" json_build_object('queue_name', $1::text, 'fifo_key_limit', (b->>'max_in_flight_per_key')::int)"
		BODY(2), 2},
	[S_PING] = {"ping", "SELECT 1", 0},
	/*
	 * Topic routing.  publish: {"routing_key", "payload", "headers",
	 * "ordering_key", "idempotency_key", "delay", "mandatory",
	 * "expires_at", "priority"}, the Idempotency-Key header winning over
	 * the body's key and expires_at and priority read as send reads them;
	 * the answer lists the queues sent to, [{"queue", "message_id"}].
	 */
	[S_PUBLISH] = {"publish",
		"SELECT (SELECT coalesce(json_agg(x), '[]') FROM (SELECT p.queue_name AS queue,"
		" p.message_id::text AS message_id FROM deliver.publish(b->>'routing_key', b->'payload',"
		" nullif(b->'headers', 'null'::jsonb), b->>'ordering_key', coalesce($2, b->>'idempotency_key'),"
		" " IV("delay") ", coalesce((b->>'mandatory')::boolean, false), " TS("expires_at") ","
		" " INTF("priority") ") p) x)" BODY(1), 2},
	[S_LIST_BINDINGS] = {"list_bindings",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT l.pattern, l.queue_name AS queue, l.created_at"
		" FROM deliver.list_bindings($1) l) x", 1},
	[S_BIND] = {"bind",
		"SELECT json_build_object('pattern', b->>'pattern', 'queue', b->>'queue',"
		" 'created', deliver.bind(b->>'pattern', b->>'queue'))" BODY(1), 1},
	[S_UNBIND] = {"unbind",
		"SELECT json_build_object('pattern', b->>'pattern', 'queue', b->>'queue',"
		" 'removed', deliver.unbind(b->>'pattern', b->>'queue'))" BODY(1), 1},
	[S_TEST_ROUTING] = {"test_routing",
		"SELECT coalesce(json_agg(x), '[]') FROM (SELECT t.queue_name AS queue, t.pattern"
		" FROM deliver.test_routing($1) t) x", 1},
	[S_DELETE_MESSAGE] = {"delete_message",
		"SELECT json_build_object('deleted', deliver.delete_message($1, $2::bigint))", 2},
	/* {"to": "earliest" | "latest" | a message id (string or number) | a time} */
	[S_RESET_GROUP] = {"reset_group",
		"SELECT deliver.reset_consumer_group($1, $2, b->>'to'),"
		" json_build_object('consumer_group', $2, 'reset', true)" BODY(3), 3},
	/* {"since": a time, "after_id": id, "max_messages": n}, each optional */
	[S_REPLAY_ARCHIVE] = {"replay_archive",
		"SELECT json_build_object('replayed', r.replayed, 'last_id', r.last_id::text)" BODY(3) ","
		" deliver.replay_archive($1, $2, " TS("since") ", coalesce((b->>'after_id')::bigint, 0),"
		" coalesce((b->>'max_messages')::int, 100)) r", 3},
	/* PATCH a queue: an option the body leaves out (or null) stays as it is */
	[S_ALTER_QUEUE] = {"alter_queue",
		"SELECT deliver.alter_queue($1, " IV("visibility_timeout") ", (b->>'max_attempts')::int,"
		" " IV("dedup_window") ", " IV("retry_base") ", " IV("retry_max") ","
		" " IV("archive_retention") ", " IV("message_ttl") ", b->>'on_expire',"
		" (b->>'max_depth')::bigint, b->>'overflow', b->>'ack_commit', " BOOLF("priorities") "),"
		" json_build_object('queue_name', $1::text, 'altered', true)" BODY(2), 2},
};

void
receive_args_fill(receive_args *a, const char *queue, const receive_params *rp)
{
	snprintf(a->max, sizeof(a->max), "%ld", rp->max);
	snprintf(a->vt, sizeof(a->vt), "%ld milliseconds", rp->vt_ms);
	snprintf(a->wait, sizeof(a->wait), "%ld milliseconds", rp->wait_ms);
	a->p[0] = queue;
	a->p[1] = a->max;
	a->p[2] = rp->has_vt ? a->vt : NULL;
	a->p[3] = a->wait;
	a->p[4] = rp->has_group ? rp->group : RECEIVE_DEFAULT_GROUP;
}
