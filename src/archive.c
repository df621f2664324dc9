/*
 * archive.c
 *		deliver.archived: reading the finished messages a queue keeps when
 *		its archive is on (deliver.q<id>_archive, filled by maintenance);
 *		deliver.replay_archive: sending them again to a consumer group.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "send.h"
#include "spi.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(deliver_archived);
PG_FUNCTION_INFO_V1(deliver_replay_archive);

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
	spi_return_query(rsinfo, q->owner, key, sql, 2, types, args, NULL, "the archive");
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.replay_archive(queue_name, consumer_group, since DEFAULT NULL,
 * after_id DEFAULT 0, max_messages DEFAULT 100, OUT replayed, OUT last_id):
 * archived messages (enqueued at or after since, with ids after after_id;
 * by id, at most max_messages) are sent again, to that consumer group only,
 * as new messages keeping their time of first sending, ordering key,
 * headers and payload.  The archive keeps its copies.  last_id is the last
 * id replayed (NULL: none), the after_id of the next call.  Errors when
 * the queue keeps no archive, or since lies before what it keeps.
 */
Datum
deliver_replay_archive(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	QueueInfo  *q;
	const GroupInfo *g;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			rtypes[1] = {INT4OID};
	Datum		rargs[1];
	Oid			types[3] = {INT8OID, TIMESTAMPTZOID, INT4OID};
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	Datum		values[2];
	bool		rnulls[2] = {false, false};
	Interval   *retention;
	bool		isnull;
	uint64		n;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "consumer_group");
	g = queue_group(q, PG_GETARG_TEXT_PP(1));
	arg_not_null(fcinfo, 3, "after_id");
	args[0] = PG_GETARG_DATUM(3);
	args[1] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[1] = PG_ARGISNULL(2) ? 'n' : ' ';
	args[2] = Int32GetDatum(arg_max_messages(fcinfo, 4));

	/* the archive, and how far back it reaches */
	rargs[0] = Int32GetDatum(q->queue_id);
	if (spi_run(catalog_owner(), "archive_retention",
				"SELECT archive_retention FROM deliver.queue WHERE queue_id = $1",
				1, rtypes, rargs, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "deliver: queue \"%s\" is not in the catalog", q->name);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("queue \"%s\" keeps no archive", q->name),
				 errhint("Turn it on with deliver.alter_queue(queue_name, archive_retention => ...); "
						 "messages finished from then on can be replayed.")));
	retention = DatumGetIntervalP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (!PG_ARGISNULL(2))
	{
		TimestampTz oldest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
																	 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
																	 IntervalPGetDatum(retention)));

		if (PG_GETARG_TIMESTAMPTZ(2) < oldest)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("since is older than what the archive of queue \"%s\" keeps", q->name),
					 errdetail("The archive keeps finished messages for %s, that is since %s.",
							   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(retention))),
							   timestamptz_to_str(oldest)),
					 errhint("Use a later since, or leave it NULL to replay what the archive holds.")));
	}

	snprintf(key, sizeof(key), "replay:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT message_id, enqueued_at, ordering_key, headers, payload FROM deliver.%s "
			 "WHERE message_id > $1 AND ($2::timestamptz IS NULL OR enqueued_at >= $2) "
			 "ORDER BY message_id LIMIT $3",
			 queue_relname(rel, QUEUE_ARCHIVE, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 3, types, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not read the archive of queue \"%s\"", q->name);
	n = SPI_processed;
	values[0] = Int64GetDatum((int64) n);
	if (n > 0)
	{
		values[1] = SPI_getbinval(SPI_tuptable->vals[n - 1], SPI_tuptable->tupdesc, 1, &isnull);
		send_rows(q, SPI_tuptable, 0, (int) n, 2, true, g->group_id);
	}
	else
		rnulls[1] = true;
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, rnulls)));
}
