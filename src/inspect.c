/*
 * inspect.c
 *		Reading a queue's state for those who may: dead letters, the
 *		archive, metrics, privileges.
 *
 * Like every function of deliver's, these check the caller's right on the
 * queue and then read its tables as their owner (spi_run).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "lease.h"
#include "settings.h"
#include "shmem.h"
#include "spi.h"
#include "tables.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(deliver_dead_letters);
PG_FUNCTION_INFO_V1(deliver_archived);
PG_FUNCTION_INFO_V1(deliver_metrics);
PG_FUNCTION_INFO_V1(deliver_has_queue_privilege);
PG_FUNCTION_INFO_V1(deliver_lease_slots);

/*
 * deliver.dead_letters(queue_name, consumer_group, max_messages) returns
 * setof (message_id, group_name, payload, headers, ordering_key, attempts,
 * reason, last_error, enqueued_at, dead_at): the oldest first; the dead
 * letters of one group, or (NULL) of every group.
 */
Datum
deliver_dead_letters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	int32		max;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	int			rc;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	q = queue_lookup_readonly(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	max = arg_int_at_least(fcinfo, 2, 1, "max_messages");
	queue_check_privilege(q, ACL_SELECT, "read dead letters of");
	if (PG_ARGISNULL(1))
		nulls[0] = 'n';
	else
		args[0] = Int32GetDatum(queue_group(q, PG_GETARG_TEXT_PP(1))->group_id);
	args[1] = Int32GetDatum(max);
	snprintf(key, sizeof(key), "deadlist:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT d.message_id, g.group_name, d.payload, d.headers, d.ordering_key, "
			 "d.attempts, d.reason, d.last_error, d.enqueued_at, d.dead_at "
			 "FROM deliver.%s d JOIN deliver.consumer_group g USING (group_id) "
			 "WHERE $1 IS NULL OR d.group_id = $1 "
			 "ORDER BY d.dead_at, d.message_id LIMIT $2",
			 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
	rc = spi_run(q->owner, key, sql, 2, types, args, nulls, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not read dead letters: %s", SPI_result_code_string(rc));
	spi_return_rows(rsinfo);
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.archived(queue_name, max_messages, after_id) returns setof
 * (message_id, payload, headers, ordering_key, enqueued_at, archived_at):
 * finished messages of a queue whose archive is on, by id, after after_id.
 */
Datum
deliver_archived(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		args[2];
	int			rc;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	q = queue_lookup_readonly(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	args[1] = Int32GetDatum(arg_int_at_least(fcinfo, 1, 1, "max_messages"));
	arg_not_null(fcinfo, 2, "after_id");
	args[0] = PG_GETARG_DATUM(2);
	queue_check_privilege(q, ACL_SELECT, "read the archive of");
	snprintf(key, sizeof(key), "archived:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT message_id, payload, headers, ordering_key, enqueued_at, archived_at "
			 "FROM deliver.%s WHERE message_id > $1 ORDER BY message_id LIMIT $2",
			 queue_relname(rel, QUEUE_ARCHIVE, q->queue_id, 0));
	rc = spi_run(q->owner, key, sql, 2, types, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not read the archive: %s", SPI_result_code_string(rc));
	spi_return_rows(rsinfo);
	SPI_finish();
	return (Datum) 0;
}

/*
 * The number of rows of a table of the queue, counted as its owner.
 */
static int64
queue_count(QueueInfo *q, const char *what, QueueRel rel)
{
	char		key[STATEMENT_KEY_LEN];
	char		sql[256];
	char		relname[NAMEDATALEN];
	bool		isnull;
	Datum		d;

	snprintf(key, sizeof(key), "%s:%d", what, q->queue_id);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM deliver.%s",
			 queue_relname(relname, rel, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 0, NULL, NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not count %s", what);
	if (SPI_processed == 0)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The metrics rows of one queue: one per consumer group.
 */
static void
queue_metrics_rows(ReturnSetInfo *rsinfo, QueueInfo *q, const WorkerStatus *w)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int64		delayed = queue_count(q, "delayed", QUEUE_DELAYED);
	int			i;

	for (i = 0; i < q->ngroups; i++)
	{
		GroupLive	st;
		Datum		values[13];
		bool		nulls[13] = {false};
		char		key[STATEMENT_KEY_LEN];
		char		sql[256];
		char		rel[NAMEDATALEN];
		Oid			types[1] = {INT4OID};
		Datum		args[1];
		bool		isnull;

		group_live_state(q, q->groups[i].group_id, &st);
		snprintf(key, sizeof(key), "deadcount:%d", q->queue_id);
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM deliver.%s WHERE group_id = $1",
				 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
		args[0] = Int32GetDatum(q->groups[i].group_id);
		if (spi_run(q->owner, key, sql, 1, types, args, NULL, true, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "deliver: could not count dead letters");

		values[0] = CStringGetTextDatum(q->name);
		values[1] = CStringGetTextDatum(q->groups[i].name);
		values[2] = Int64GetDatum(st.backlog + st.ready + st.blocked);
		values[3] = Int64GetDatum(st.in_flight);
		values[4] = Int64GetDatum(delayed);
		values[5] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (st.oldest != 0)
			values[6] = IntervalPGetDatum(DatumGetIntervalP(
						DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(now),
											TimestampTzGetDatum(st.oldest))));
		nulls[6] = (st.oldest == 0);
		values[7] = Int64GetDatum(st.sent_total);
		values[8] = Int64GetDatum(st.acked_total);
		values[9] = Int64GetDatum(st.dead_total);
		nulls[10] = nulls[11] = nulls[12] = true;
		if (w != NULL && w->last_run_at != 0)
		{
			values[10] = TimestampTzGetDatum(w->last_run_at);
			values[11] = DirectFunctionCall2(timestamp_mi,
											 TimestampTzGetDatum(GetCurrentTimestamp()),
											 TimestampTzGetDatum(w->last_run_at));
			nulls[10] = nulls[11] = false;
		}
		if (w != NULL)
		{
			values[12] = Int64GetDatum(w->errors);
			nulls[12] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * deliver.metrics(queue_name DEFAULT NULL) returns setof (queue_name,
 * consumer_group, depth, in_flight, delayed, dead_letters, oldest_age,
 * sent_total, acked_total, dead_total, worker_last_run, worker_lag,
 * worker_errors): one row per consumer group, of one queue or (NULL) of
 * every queue the caller may read metrics of (receive rights, or
 * membership of pg_monitor).
 */
Datum
deliver_metrics(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerStatus w;
	bool		have_worker;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	have_worker = deliver_worker_status_here(&w);
	if (!PG_ARGISNULL(0))
	{
		QueueInfo  *q = queue_lookup(PG_GETARG_TEXT_PP(0));

		queue_check_metrics_privilege(q);
		queue_metrics_rows(rsinfo, q, have_worker ? &w : NULL);
	}
	else
	{
		bool		monitor = has_privs_of_role(GetUserId(), ROLE_PG_MONITOR);
		List	   *names = NIL;
		ListCell   *lc;
		uint64		r;

		if (spi_run(catalog_owner(), "queue_names",
					"SELECT queue_name FROM deliver.queue ORDER BY queue_name",
					0, NULL, NULL, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "deliver: could not list queues");
		for (r = 0; r < SPI_processed; r++)
			names = lappend(names, SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1));
		foreach(lc, names)
		{
			QueueInfo  *q = queue_lookup(cstring_to_text(lfirst(lc)));

			if (monitor || queue_has_privilege(q, GetUserId(), ACL_SELECT))
				queue_metrics_rows(rsinfo, q, have_worker ? &w : NULL);
		}
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.has_queue_privilege(queue_name, privilege) returns boolean: may
 * the current user 'send', 'receive' or (for 'all') both?
 */
Datum
deliver_has_queue_privilege(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	char	   *priv;
	AclMode		mode;
	bool		result;

	arg_not_null(fcinfo, 1, "privilege");
	priv = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(priv, "send") == 0)
		mode = ACL_INSERT;
	else if (strcmp(priv, "receive") == 0)
		mode = ACL_SELECT;
	else if (strcmp(priv, "all") == 0)
		mode = ACL_INSERT | ACL_SELECT;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid privilege \"%s\"", clip_text(priv, ERROR_QUOTE_BYTES)),
				 errhint("Use send, receive or all.")));
	SPI_connect();
	q = queue_lookup_readonly(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	result = queue_has_privilege(q, GetUserId(), mode & ACL_INSERT ? ACL_INSERT : ACL_SELECT) &&
		queue_has_privilege(q, GetUserId(), mode & ACL_SELECT ? ACL_SELECT : ACL_INSERT);
	SPI_finish();
	PG_RETURN_BOOL(result);
}

/*
 * deliver.lease_slots() returns (total, free, reserved, reserve_per_queue,
 * max_per_queue, queues): how the lease slots of the whole server are
 * used and shared (see lease_reserve in slots.c).
 */
Datum
deliver_lease_slots(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {false};
	int			i;
	int32		queues = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	deliver_check_primary();
	LWLockAcquire(deliver_shared->slot_lock, LW_SHARED);
	values[0] = Int32GetDatum(deliver_max_leases);
	values[1] = Int32GetDatum(deliver_shared->free_count);
	values[2] = Int64GetDatum(deliver_shared->reserved);
	LWLockRelease(deliver_shared->slot_lock);
	values[3] = Int32GetDatum(lease_reserve());
	values[4] = Int32GetDatum(lease_queue_cap());
	for (i = 0; i < deliver_max_queues; i++)
		if (deliver_queues[i].used)
			queues++;
	values[5] = Int32GetDatum(queues);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
