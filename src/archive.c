/*
 * archive.c
 *		deliver.archived: reading the finished messages a queue keeps when
 *		its archive is on (deliver.q<id>_archive, filled by maintenance).
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "spi.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(deliver_archived);

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
