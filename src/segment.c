/*
 * segment.c
 *		A queue's segments: which one takes new rows, the finish records
 *		written to the done table of that segment, and the checks that
 *		let deliver.maintain() truncate a closed segment.
 *
 * Segments rotate (maintain.c): the active one takes new
 * messages; one switched away from is truncated, with its done table,
 * once every message in it is behind every group's restart point.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "catalog.h"
#include "checkpoint.h"
#include "deliver.h"
#include "insert.h"
#include "registry.h"
#include "segment.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(deliver_checkpoint_groups);
PG_FUNCTION_INFO_V1(deliver_next_xid);

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
	args[0] = Int32GetDatum(group_id);
	args[1] = CharGetDatum(kind);
	args[2] = PointerGetDatum(construct_array(idd, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = dsnap_to_datum(done);
	{
		/* written_at: now(), as the column's default */
		Datum		row[DONE_NCOLUMNS] = {args[0], args[1], args[2], args[3],
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp())};
		bool		row_nulls[DONE_NCOLUMNS] = {false, false, false, false, false};

		if (done_insert(q->done_rel[seg], row, row_nulls))
			return;
	}
	snprintf(key, sizeof(key), "done:%d:%d", q->queue_id, seg);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.%s (group_id, kind, message_ids, done) "
			 "VALUES ($1, $2, $3, $4)", queue_relname(rel, QUEUE_DONE, q->queue_id, seg));
	rc = spi_run(q->owner, key, sql, 4, types, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "deliver: could not record finished messages: %s", SPI_result_code_string(rc));
}

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
 * Write each consumer group's current restart point into the active done
 * table (so older done tables are not needed to resume), and say for each
 * of the n closed segments (all of whose writers have xids below its
 * closed_xmax[k]) whether it holds only finished messages for every group,
 * so that it can be truncated with its done table: ok[k].
 *
 * That is so when each group's restart point D has D.xmax >= X and no
 * transaction below X that D saw running has rows in any segment: every
 * message below X is then behind every restart point, and no done record
 * written below X is needed to resume.  A transaction that never sends to
 * the queue (one merely holding xmin, say) does not hold reclamation back.
 * ok[k] comes in false for a segment not to consider.
 */
void
checkpoint_groups(QueueInfo *q, const uint64 *closed_xmax, bool *ok, int n)
{
	DSnap	   *done = palloc(deliver_snap_size);
	Relation	rels[DELIVER_MAX_SEGMENTS];
	int			i;
	int			k;

	/* table locks before group locks (recovery reads the done tables) */
	for (i = 0; i < q->nsegments; i++)
		rels[i] = table_open(q->done_rel[i], AccessShareLock);
	/*
	 * and the one the restart points go to, before they are read: a
	 * reset_consumer_group (which locks it) ends first, so no restart point
	 * of before the reset is written after it
	 */
	LockRelationOid(q->done_rel[queue_current_segment(q)], RowExclusiveLock);
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

		for (k = 0; k < n; k++)
		{
			if (!ok[k])
				continue;
			if (done->xmax < closed_xmax[k])
			{
				ok[k] = false;
				continue;
			}
			for (x = 0; x < done->nxip && done->xip[x] < closed_xmax[k]; x++)
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
	pfree(done);
}

/*
 * deliver._checkpoint_groups(queue_id, closed_xmax xid8[]) returns bool[]:
 * checkpoint_groups() for those closed segments (deliver.maintain() calls
 * it directly; this is for inspection).
 */
Datum
deliver_checkpoint_groups(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	ArrayType  *closed_a = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *closed;
	bool	   *closed_nulls;
	int			nclosed;
	uint64	   *xmax;
	bool	   *ok;
	Datum	   *result;
	int			k;

	deconstruct_array(closed_a, XID8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &closed, &closed_nulls, &nclosed);
	ok = palloc(sizeof(bool) * Max(nclosed, 1));
	xmax = palloc(sizeof(uint64) * Max(nclosed, 1));
	for (k = 0; k < nclosed; k++)
	{
		ok[k] = !closed_nulls[k];
		xmax[k] = ok[k] ? U64FromFullTransactionId(DatumGetFullTransactionId(closed[k])) : 0;
	}
	SPI_connect();
	q = queue_lookup_by_id(PG_GETARG_INT32(0));
	checkpoint_groups(q, xmax, ok, nclosed);
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
