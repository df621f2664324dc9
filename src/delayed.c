/*
 * delayed.c
 *		Delayed messages coming due: moving them from the queue's delayed
 *		table into its current segment.
 *
 * send puts a message with a delay into deliver.q<id>_delayed; once due it
 * is moved into the current segment by the transaction of the maintenance
 * worker (or, without one in the database, of a receive), and the cursors
 * find it when that transaction commits: it takes its place in its key's
 * order at its due time.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "delayed.h"
#include "deliver.h"
#include "segment.h"
#include "settings.h"
#include "shmem.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_move_due);

/* Has a delayed message of the queue come due (or is it unknown whether one has)? */
bool
delayed_came_due(QueueInfo *q)
{
	QueueEntry *qs = &deliver_queues[q->queue_idx];
	TimestampTz due;

	SpinLockAcquire(&qs->mutex);
	due = qs->delayed_due;
	SpinLockRelease(&qs->mutex);
	return due != 0 && due <= GetCurrentTimestamp();
}

/*
 * Move delayed messages that have come due into the current segment, where
 * the cursors find them once this transaction commits.  Cheap when nothing
 * is due: the queue's shared state knows the earliest due time.  Returns
 * how many messages it moved.
 */
int64
move_due_delayed(QueueInfo *q)
{
	QueueEntry *qs = &deliver_queues[q->queue_idx];
	TimestampTz due;
	uint64		version;
	TimestampTz next = 0;
	char		key[STATEMENT_KEY_LEN];
	char		sql[2048];
	char		delayed[NAMEDATALEN];
	char		segment[NAMEDATALEN];
	int			rc;
	bool		isnull;
	Datum		d;
	int			seg;
	int64		moved;

	SpinLockAcquire(&qs->mutex);
	due = qs->delayed_due;
	version = qs->delayed_version;
	SpinLockRelease(&qs->mutex);
	if (due == 0 || due > GetCurrentTimestamp())
		return 0;

	(void) GetTopTransactionId();	/* before the segment is read */
	seg = queue_current_segment(q);

	/*
	 * The segment before the delayed table: the order drop_queue and
	 * purge_queue lock them in (deliver._lock_queue), as send does.
	 */
	queue_lock_table(q, q->seg_rel[seg], RowExclusiveLock);

	/*
	 * A moved message gets the mover's transaction id, so it goes to the
	 * groups that existed when it was sent (whose start snapshot does not
	 * see the sender), one row per group when that is not all of them.
	 */
	snprintf(key, sizeof(key), "due:%d:%d", q->queue_id, seg);
	snprintf(sql, sizeof(sql),
			 "WITH d AS (DELETE FROM deliver.%s WHERE message_id IN "
			 "(SELECT message_id FROM deliver.%s WHERE deliver_at <= clock_timestamp() "
			 "ORDER BY deliver_at LIMIT %d) RETURNING *), "
			 "g AS (SELECT group_id, start_snapshot FROM deliver.consumer_group WHERE queue_id = %d), "
			 "t AS (SELECT d.*, CASE "
			 "  WHEN d.target_group IS NOT NULL THEN ARRAY[d.target_group] "
			 "  WHEN NOT EXISTS (SELECT 1 FROM g WHERE pg_visible_in_snapshot(d.txid, g.start_snapshot)) "
			 "    THEN ARRAY[NULL::int] "
			 "  ELSE (SELECT array_agg(g.group_id) FROM g "
			 "        WHERE NOT pg_visible_in_snapshot(d.txid, g.start_snapshot)) END AS targets "
			 "  FROM d) "
			 "INSERT INTO deliver.%s (txid, message_id, target_group, enqueued_at, "
			 "ordering_key, headers, payload, expires_at, priority) "
			 "SELECT pg_current_xact_id(), t.message_id, x.target, t.enqueued_at, "
			 "t.ordering_key, t.headers, t.payload, t.expires_at, t.priority "
			 "FROM t CROSS JOIN LATERAL unnest(t.targets) AS x(target) "
			 "ORDER BY t.deliver_at, t.message_id",
			 queue_relname(delayed, QUEUE_DELAYED, q->queue_id, 0), delayed, deliver_max_batch,
			 q->queue_id, queue_relname(segment, QUEUE_SEGMENT, q->queue_id, seg));

	/* an internal step: it runs as the queue's owner, like maintenance */
	rc = spi_run(q->owner, key, sql, 0, NULL, NULL, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "deliver: could not move due messages: %s", SPI_result_code_string(rc));
	moved = (int64) SPI_processed;
	if (moved > 0)
	{
		xact_note_sent(q->queue_idx, (int64) SPI_processed, 0);
		xact_note_moved_delayed(q->queue_idx);
	}

	snprintf(key, sizeof(key), "nextdue:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT min(deliver_at) FROM deliver.%s", delayed);
	rc = spi_run(q->owner, key, sql, 0, NULL, NULL, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
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
	return moved;
}

/*
 * deliver._move_due(queue_name) returns void: move the queue's delayed
 * messages that came due into its active segment.
 */
Datum
deliver_move_due(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	(void) move_due_delayed(q);
	SPI_finish();
	PG_RETURN_VOID();
}
