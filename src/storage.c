/*
 * storage.c
 *		Durable writes besides sending: finish records, delayed messages
 *		coming due.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "catalog.h"
#include "checkpoint.h"
#include "deliver.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

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
	char		key[STATEMENT_KEY_LEN];
	char		sql[256];
	char		rel[NAMEDATALEN];
	int			i;
	int			rc;
	int			seg;

	(void) GetTopTransactionId();	/* before the segment is read */
	seg = queue_current_segment(q);
	for (i = 0; i < n; i++)
		idd[i] = Int64GetDatum(ids[i]);
	snprintf(key, sizeof(key), "done:%d:%d", q->queue_id, seg);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.%s (group_id, kind, message_ids, done) "
			 "VALUES ($1, $2, $3, $4)", queue_relname(rel, QUEUE_DONE, q->queue_id, seg));
	args[0] = Int32GetDatum(group_id);
	args[1] = CharGetDatum(kind);
	args[2] = PointerGetDatum(construct_array(idd, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = dsnap_to_datum(done);
	rc = spi_run(q->owner, key, sql, 4, types, args, NULL, false, 0);
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

	SpinLockAcquire(&qs->mutex);
	due = qs->delayed_due;
	version = qs->delayed_version;
	SpinLockRelease(&qs->mutex);
	if (due == 0 || due > GetCurrentTimestamp())
		return;

	(void) GetTopTransactionId();	/* before the segment is read */
	seg = queue_current_segment(q);

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
			 "ordering_key, headers, payload) "
			 "SELECT pg_current_xact_id(), t.message_id, x.target, t.enqueued_at, "
			 "t.ordering_key, t.headers, t.payload "
			 "FROM t CROSS JOIN LATERAL unnest(t.targets) AS x(target) "
			 "ORDER BY t.deliver_at, t.message_id",
			 queue_relname(delayed, QUEUE_DELAYED, q->queue_id, 0), delayed, deliver_max_batch,
			 q->queue_id, queue_relname(segment, QUEUE_SEGMENT, q->queue_id, seg));

	/* an internal step: it runs as the queue's owner, like maintenance */
	rc = spi_run(q->owner, key, sql, 0, NULL, NULL, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "deliver: could not move due messages: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
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
}

/*
 * The segment that takes new rows.  Writers take their transaction id
 * before they read it: a segment switched away from is only ever written by
 * transactions older than the next xid read after the switch, which is what
 * deliver.maintain() waits for before it truncates the segment.
 */
int
queue_current_segment(QueueInfo *q)
{
	int			seg = deliver_queues[q->queue_idx].cur_seg;

	if (seg < 0 || seg >= q->nsegments)
		elog(ERROR, "deliver: queue \"%s\" has no active segment", q->name);
	return seg;
}

PG_FUNCTION_INFO_V1(deliver_checkpoint_groups);
PG_FUNCTION_INFO_V1(deliver_next_xid);

/*
 * Does any segment of the queue hold a row (committed or not) of this
 * transaction?  An index probe per segment.
 */
static bool
txid_has_rows(QueueInfo *q, uint64 txid)
{
	int			seg;
	bool		found = false;

	for (seg = 0; seg < q->nsegments && !found; seg++)
	{
		Relation	heap = table_open(q->seg_rel[seg], AccessShareLock);
		Relation	index = index_open(q->seg_idx[seg], AccessShareLock);
		ScanKeyData key;
		IndexScanDesc scan;
		TupleTableSlot *tuple = table_slot_create(heap, NULL);

		ScanKeyInit(&key, SEG_POS_COL_TXID, BTEqualStrategyNumber, F_XID8EQ,
					FullTransactionIdGetDatum(FullTransactionIdFromU64(txid)));
		scan = index_beginscan(heap, index, SnapshotAny, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, tuple);
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(tuple);
		index_close(index, AccessShareLock);
		table_close(heap, AccessShareLock);
	}
	return found;
}

/*
 * deliver._checkpoint_groups(queue_id, closed_xmax xid8[]) returns bool[]:
 * write each consumer group's current restart point into the active done
 * table (so older done tables are not needed to resume), and say for each
 * closed segment (all of whose writers have xids below its closed_xmax X)
 * whether it holds only finished messages for every group, so that it can
 * be truncated with its done table.
 *
 * That is so when each group's restart point D has D.xmax >= X and no
 * transaction below X that D saw running has rows in any segment: every
 * message below X is then behind every restart point, and no done record
 * written below X is needed to resume.  A transaction that never sends to
 * the queue (one merely holding xmin, say) does not hold reclamation back.
 */
Datum
deliver_checkpoint_groups(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	DSnap	   *done;
	Relation	rels[DELIVER_MAX_SEGMENTS];
	ArrayType  *closed_a = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *closed;
	bool	   *closed_nulls;
	int			nclosed;
	bool	   *ok;
	Datum	   *result;
	int			i;
	int			k;

	deconstruct_array(closed_a, XID8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &closed, &closed_nulls, &nclosed);
	ok = palloc(sizeof(bool) * Max(nclosed, 1));
	for (k = 0; k < nclosed; k++)
		ok[k] = !closed_nulls[k];

	SPI_connect();
	q = queue_lookup_by_id(PG_GETARG_INT32(0));
	done = palloc(deliver_snap_size);
	/* table locks before group locks (recovery reads the done tables) */
	for (i = 0; i < q->nsegments; i++)
		rels[i] = table_open(q->done_rel[i], AccessShareLock);
	for (i = 0; i < q->ngroups; i++)
	{
		int			gidx;
		GroupEntry *gs = group_lock(q, q->groups[i].group_id, &gidx);
		uint32		x;

		/* drop restart points left with nothing unfinished (an idle group
		 * finishes nothing that would drop them) */
		checkpoint_count_add(gs, 0, 0);
		checkpoint_restart_point(gs, gidx, done);
		LWLockRelease(&gs->lock);
		done_write(q, q->groups[i].group_id, DONE_CHECKPOINT, NULL, 0, done);

		for (k = 0; k < nclosed; k++)
		{
			uint64		xmax = U64FromFullTransactionId(DatumGetFullTransactionId(closed[k]));

			if (!ok[k])
				continue;
			if (done->xmax < xmax)
			{
				ok[k] = false;
				continue;
			}
			for (x = 0; x < done->nxip && done->xip[x] < xmax; x++)
			{
				if (txid_has_rows(q, done->xip[x]))
				{
					ok[k] = false;
					break;
				}
			}
		}
	}
	for (i = 0; i < q->nsegments; i++)
		table_close(rels[i], AccessShareLock);
	SPI_finish();

	result = palloc(sizeof(Datum) * Max(nclosed, 1));
	for (k = 0; k < nclosed; k++)
		result[k] = BoolGetDatum(ok[k]);
	PG_RETURN_ARRAYTYPE_P(construct_array(result, nclosed, BOOLOID, 1, true, TYPALIGN_CHAR));
}

/*
 * deliver._next_xid() returns xid8: the next transaction id to be assigned.
 */
Datum
deliver_next_xid(PG_FUNCTION_ARGS)
{
	PG_RETURN_FULLTRANSACTIONID(FullTransactionIdFromU64(dsnap_next_txid()));
}

PG_FUNCTION_INFO_V1(deliver_move_due);

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
	move_due_delayed(q);
	SPI_finish();
	PG_RETURN_VOID();
}
