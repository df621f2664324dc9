/*
 * storage.c
 *		Durable writes besides sending: finish records, delayed messages
 *		coming due.
 */
#include "deliver.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/lsyscache.h"

/*
 * Record that messages of a group are finished (acked, consumed or dead),
 * together with the group's restart point.  One row per call.
 */
void
done_write(QueueInfo *q, int32 group_id, char kind, int64 *ids, int n, DSnap *done)
{
	Oid			types[4] = {INT4OID, CHAROID, INT8ARRAYOID, PG_SNAPSHOTOID};
	Datum		args[4];
	Datum	   *idd = palloc(sizeof(Datum) * n);
	char		key[64];
	char		sql[256];
	int			i;
	int			rc;

	for (i = 0; i < n; i++)
		idd[i] = Int64GetDatum(ids[i]);
	snprintf(key, sizeof(key), "done:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.q%d_done (group_id, kind, message_ids, done) "
			 "VALUES ($1, $2, $3, $4)", q->queue_id);
	args[0] = Int32GetDatum(group_id);
	args[1] = CharGetDatum(kind);
	args[2] = PointerGetDatum(construct_array(idd, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = dsnap_to_datum(done);
	rc = SPI_execute_plan(spi_plan_cached(key, sql, 4, types), args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "deliver: could not record finished messages: %s", SPI_result_code_string(rc));
}

/*
 * Move delayed messages that have come due into the current segment, where
 * the cursors find them once this transaction commits.  Cheap when nothing
 * is due: the queue's shared state knows the earliest due time.
 */
void
move_due_delayed(QueueInfo *q)
{
	QueueShared *qs = &deliver_queues[q->queue_idx];
	TimestampTz due;
	uint64		version;
	TimestampTz next = 0;
	char		key[64];
	char		sql[1024];
	int			rc;
	bool		isnull;
	Datum		d;

	SpinLockAcquire(&qs->mutex);
	due = qs->delayed_due;
	version = qs->delayed_version;
	SpinLockRelease(&qs->mutex);
	if (due == 0 || due > GetCurrentTimestamp())
		return;
	if (pg_class_aclcheck(q->delayed_rel, GetUserId(), ACL_DELETE) != ACLCHECK_OK)
		return;					/* a sender-only role; someone else moves them */

	snprintf(key, sizeof(key), "due:%d:%d", q->queue_id, 0);
	snprintf(sql, sizeof(sql),
			 "WITH d AS (DELETE FROM deliver.q%d_delayed WHERE message_id IN "
			 "(SELECT message_id FROM deliver.q%d_delayed WHERE deliver_at <= clock_timestamp() "
			 "ORDER BY deliver_at LIMIT %d FOR UPDATE SKIP LOCKED) RETURNING *) "
			 "INSERT INTO deliver.q%d_s%d (txid, message_id, target_group, enqueued_at, "
			 "ordering_key, headers, payload) "
			 "SELECT pg_current_xact_id(), message_id, target_group, enqueued_at, "
			 "ordering_key, headers, payload FROM d ORDER BY deliver_at, message_id",
			 q->queue_id, q->queue_id, deliver_max_batch, q->queue_id, 0);
	rc = SPI_execute_plan(spi_plan_cached(key, sql, 0, NULL), NULL, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "deliver: could not move due messages: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		xact_note_sent(q->queue_idx, (int64) SPI_processed, 0);
		xact_note_moved_delayed(q->queue_idx);
	}

	snprintf(key, sizeof(key), "nextdue:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT min(deliver_at) FROM deliver.q%d_delayed", q->queue_id);
	rc = SPI_execute_plan(spi_plan_cached(key, sql, 0, NULL), NULL, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not read delayed messages");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		next = DatumGetTimestampTz(d);

	/* a sender that committed meanwhile may have set an earlier time */
	SpinLockAcquire(&qs->mutex);
	if (qs->delayed_version == version)
		qs->delayed_due = next;
	else if (next != 0 && (qs->delayed_due == 0 || next < qs->delayed_due))
		qs->delayed_due = next;
	SpinLockRelease(&qs->mutex);
}
