/*
 * scan.c
 *		Reading a queue's segments through their index on (txid,
 *		message_id).
 *
 * A scan (ScanCtx) holds the queue's tables, locked and open, a snapshot
 * and the consumer group it reads for.  The index is read directly, so no
 * plan can turn into a sequential scan; rows meant for another group are
 * skipped, and those written before the group's recovery go through its
 * recovery filter (recovery.c).  The cursor (cursor.c) reads a window in
 * commit order with scan_index; scan_window reads one in transaction-id
 * order, to count what is left (metrics.c) or to show it (peek.c).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/tableam.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "expiry.h"
#include "recovery.h"
#include "scan.h"
#include "shmem.h"
#include "snap.h"
#include "tables.h"

/*
 * Lock and open the queue's tables; every table lock is taken before the
 * group's lock (recovery reads the done tables under it).  The order, per
 * segment done table then segment then index, is the one maintain()'s
 * TRUNCATE takes too.
 */
void
scan_open(ScanCtx *c)
{
	int			i;

	if (c->open)
		return;
	for (i = 0; i < c->q->nsegments; i++)
	{
		/* a queue dropped since it was looked up has no tables any more */
		c->done[i] = try_relation_open(c->q->done_rel[i], AccessShareLock);
		c->heap[i] = c->done[i] ? try_relation_open(c->q->seg_rel[i], AccessShareLock) : NULL;
		c->index[i] = c->heap[i] ? try_relation_open(c->q->seg_idx[i], AccessShareLock) : NULL;
		if (c->index[i] == NULL)
		{
			if (c->heap[i])
				relation_close(c->heap[i], AccessShareLock);
			if (c->done[i])
				relation_close(c->done[i], AccessShareLock);
			while (--i >= 0)
			{
				relation_close(c->index[i], AccessShareLock);
				relation_close(c->heap[i], AccessShareLock);
				relation_close(c->done[i], AccessShareLock);
			}
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue \"%s\" does not exist", c->q->name),
					 errdetail("It was dropped.")));
		}
	}
	c->open = true;
}

/*
 * Close the tables scan_open opened (their locks stay until the end of the
 * transaction).
 */
void
scan_close(ScanCtx *c)
{
	int			i;

	if (!c->open)
		return;
	for (i = 0; i < c->q->nsegments; i++)
	{
		relation_close(c->index[i], AccessShareLock);
		relation_close(c->heap[i], AccessShareLock);
		relation_close(c->done[i], AccessShareLock);
	}
	c->open = false;
}

/*
 * qsort comparator of rows: by transaction id, then message id.
 */
int
message_row_cmp(const void *a, const void *b)
{
	const MessageRow *x = a;
	const MessageRow *y = b;

	if (x->txid != y->txid)
		return x->txid < y->txid ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/*
 * The sending transaction of a segment row, read into tuple.
 */
uint64
tuple_txid(TupleTableSlot *tuple)
{
	bool		isnull;

	return U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(tuple, SEG_COL_TXID,
																		   &isnull)));
}

/*
 * The sender's expires_at of a segment row read into tuple; DT_NOEND when
 * none (NULL, or a segment of 0.1 without the column).
 */
static inline TimestampTz
row_expires_at(TupleTableSlot *tuple)
{
	bool		isnull;
	Datum		d;

	if (tuple->tts_tupleDescriptor->natts < SEG_COL_EXPIRES_AT)
		return DT_NOEND;
	d = slot_getattr(tuple, SEG_COL_EXPIRES_AT, &isnull);
	return isnull ? DT_NOEND : DatumGetTimestampTz(d);
}

/*
 * The sender's priority of a segment row read into tuple: 0 when none
 * (NULL, or a segment of 0.1 without the column).
 */
static inline uint8
row_priority(TupleTableSlot *tuple)
{
	bool		isnull;
	Datum		d;

	if (tuple->tts_tupleDescriptor->natts < SEG_COL_PRIORITY)
		return 0;
	d = slot_getattr(tuple, SEG_COL_PRIORITY, &isnull);
	/* (send writes 1-9 only; anything else an owner wrote counts as 0) */
	if (isnull || DatumGetInt16(d) < 0 || DatumGetInt16(d) > DELIVER_MAX_PRIORITY)
		return 0;
	return (uint8) DatumGetInt16(d);
}

/*
 * Copy a row of a segment out of the tuple it was read into.
 */
static void
row_from_tuple(MessageRow *r, TupleTableSlot *tuple, int seg, MemoryContext cxt, bool body)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		isnull;

	r->txid = tuple_txid(tuple);
	r->id = DatumGetInt64(slot_getattr(tuple, SEG_COL_MESSAGE_ID, &isnull));
	r->seg = seg;
	r->enqueued_at = DatumGetTimestampTz(slot_getattr(tuple, SEG_COL_ENQUEUED_AT, &isnull));
	r->expires_at = row_expires_at(tuple);
	r->priority = row_priority(tuple);
	r->key = slot_getattr(tuple, SEG_COL_ORDERING_KEY, &r->key_null);
	if (!r->key_null)
		r->key = datumCopy(r->key, false, -1);
	if (!body)
	{
		r->headers_null = true;
		r->headers = (Datum) 0;
		r->payload = (Datum) 0;
		r->pending_xid = InvalidTransactionId;
		MemoryContextSwitchTo(old);
		return;
	}
	r->headers = slot_getattr(tuple, SEG_COL_HEADERS, &r->headers_null);
	if (!r->headers_null)
		r->headers = datumCopy(r->headers, false, -1);
	r->payload = datumCopy(slot_getattr(tuple, SEG_COL_PAYLOAD, &isnull), false, -1);
	r->pending_xid = InvalidTransactionId;
	MemoryContextSwitchTo(old);
}

/*
 * count_after: is the row at or before the position (in commit order), so
 * taken already?
 */
static bool
taken_already(ScanCtx *c, TupleTableSlot *tuple)
{
	bool		isnull;
	uint64		txid = tuple_txid(tuple);
	int64		id = DatumGetInt64(slot_getattr(tuple, SEG_COL_MESSAGE_ID, &isnull));

	if (txid != c->cts_txid)
	{
		c->cts_txid = txid;
		c->cts = txid_commit_time(txid);
	}
	return c->cts < c->after_cts ||
		(c->cts == c->after_cts && (txid < c->after_txid ||
									(txid == c->after_txid && id <= c->after_id)));
}

/*
 * Count a row for metrics (count_only): the backlog, and the oldest
 * enqueued_at.
 */
static void
count_row(ScanCtx *c, TupleTableSlot *tuple)
{
	bool		isnull;
	TimestampTz t = DatumGetTimestampTz(slot_getattr(tuple, SEG_COL_ENQUEUED_AT, &isnull));

	c->counted++;
	if (c->oldest == 0 || t < c->oldest)
		c->oldest = t;
}

/*
 * Scan one segment's index over keys with txid in [from, to] and, when
 * after_id is given, message_id > after_id (then from == to).  Rows that
 * pass the filters go to out[], at most limit of them.  Returns how many;
 * *more says whether the scan stopped at the limit.
 */
int
scan_index(ScanCtx *c, int seg, uint64 from, uint64 to, bool use_after, int64 after_id,
		   const DSnap *hi, MessageRow *out, int limit, bool *more)
{
	ScanKeyData keys[3];
	int			nkeys = 0;
	IndexScanDesc scan;
	TupleTableSlot *tuple;
	int			n = 0;

	*more = false;
	if (limit <= 0)
	{
		*more = true;
		return 0;
	}
	ScanKeyInit(&keys[nkeys++], SEG_POS_COL_TXID, BTGreaterEqualStrategyNumber, F_XID8GE,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(from)));
	ScanKeyInit(&keys[nkeys++], SEG_POS_COL_TXID, BTLessEqualStrategyNumber, F_XID8LE,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(to)));
	if (use_after)
		ScanKeyInit(&keys[nkeys++], SEG_POS_COL_MESSAGE_ID, BTGreaterStrategyNumber, F_INT8GT,
					Int64GetDatum(after_id));

	tuple = table_slot_create(c->heap[seg], NULL);
	scan = index_beginscan(c->heap[seg], c->index[seg], c->snap, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, tuple))
	{
		bool		isnull;
		uint64		txid;
		Datum		g;

		txid = tuple_txid(tuple);
		if (hi && !dsnap_visible(hi, txid))
			continue;
		g = slot_getattr(tuple, SEG_COL_TARGET_GROUP, &isnull);
		if (!isnull && DatumGetInt32(g) != c->group_id)
			continue;
		if (c->count_after && taken_already(c, tuple))
			continue;
		if (c->skip_expired &&
			message_expired(c->q, DatumGetTimestampTz(slot_getattr(tuple, SEG_COL_ENQUEUED_AT, &isnull)),
							row_expires_at(tuple), c->now))
			continue;
		if (n >= limit)
		{
			*more = true;
			break;
		}
		if (txid < c->gs->horizon_txid)
		{
			TransactionId pending = InvalidTransactionId;
			int64		id = DatumGetInt64(slot_getattr(tuple, SEG_COL_MESSAGE_ID, &isnull));

			if (recovery_filter(c->q, c->gs, id, &pending) == 0)
				continue;		/* finished before the restart */
			if (c->count_only)
			{
				count_row(c, tuple);
				if (c->count_stop > 0 && c->counted >= c->count_stop)
				{
					*more = true;
					break;
				}
				continue;
			}
			row_from_tuple(&out[n], tuple, seg, c->cxt, !c->no_body);
			out[n].pending_xid = pending;
			n++;
			continue;
		}
		if (c->count_only)
		{
			count_row(c, tuple);
			if (c->count_stop > 0 && c->counted >= c->count_stop)
			{
				*more = true;
				break;
			}
			continue;
		}
		row_from_tuple(&out[n++], tuple, seg, c->cxt, !c->no_body);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(tuple);
	return n;
}

/*
 * Rows of the txid range [from, to] after the cursor position, merged over
 * the segments, at most limit.  *exhausted when the range has no more.
 * out[] must have room for limit rows per segment.
 */
static int
scan_range(ScanCtx *c, uint64 from, uint64 to, const DSnap *hi, MessageRow *out, int limit,
		   bool *exhausted)
{
	GroupEntry *gs = c->gs;
	int			seg;
	int			n = 0;
	bool		more_any = false;

	if (gs->pos_txid > to)
	{
		*exhausted = true;
		return 0;
	}
	for (seg = 0; seg < c->q->nsegments; seg++)
	{
		bool		more;
		int			got = 0;

		if (gs->pos_txid >= from)
		{
			/* the rest of the position's transaction, then what follows */
			got = scan_index(c, seg, gs->pos_txid, gs->pos_txid, true, gs->pos_id, hi,
							 out + n, limit, &more);
			if (!more && gs->pos_txid < to)
			{
				bool		more2;

				got += scan_index(c, seg, gs->pos_txid + 1, to, false, 0, hi,
								  out + n + got, limit - got, &more2);
				more = more2;
			}
		}
		else
			got = scan_index(c, seg, from, to, false, 0, hi, out + n, limit, &more);
		n += got;
		more_any |= more;
	}
	if (c->q->nsegments > 1 && n > 1)
		qsort(out, n, sizeof(MessageRow), message_row_cmp);
	if (n > limit)
	{
		n = limit;
		more_any = true;
	}
	*exhausted = !more_any;
	return n;
}

/*
 * The next rows of the current window after the position, at most limit;
 * *exhausted when the window has nothing more.
 */
int
scan_window(ScanCtx *c, const DSnap *lo, const DSnap *hi, MessageRow *out, int limit,
			bool *exhausted)
{
	int			n = 0;
	uint32		i;
	bool		ex = true;

	/* transactions running at lo that have finished by hi */
	for (i = 0; i < lo->nxip && n < limit; i++)
	{
		uint64		x = lo->xip[i];

		if (!dsnap_visible(hi, x) || x < c->gs->pos_txid)
			continue;
		n += scan_range(c, x, x, NULL, out + n, limit - n, &ex);
		if (!ex)
			break;
	}
	if (n < limit && ex && hi->xmax > lo->xmax)
		n += scan_range(c, lo->xmax, hi->xmax - 1, hi, out + n, limit - n, &ex);
	*exhausted = ex && n < limit;
	if (n == limit)
		*exhausted = false;
	return n;
}

/*
 * Fetch a message by its position (for redeliveries and dead letters).
 */
bool
fetch_row(ScanCtx *c, MessageRow *r)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *tuple;
	bool		found = false;
	int			seg = r->seg;

	ScanKeyInit(&keys[0], SEG_POS_COL_TXID, BTEqualStrategyNumber, F_XID8EQ,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(r->txid)));
	ScanKeyInit(&keys[1], SEG_POS_COL_MESSAGE_ID, BTEqualStrategyNumber, F_INT8EQ,
				Int64GetDatum(r->id));
	tuple = table_slot_create(c->heap[seg], NULL);
	scan = index_beginscan(c->heap[seg], c->index[seg], c->snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, tuple))
	{
		row_from_tuple(r, tuple, seg, c->cxt, true);
		found = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(tuple);
	return found;
}
