/*
 * receive.c
 *		deliver.receive: hand out messages to a consumer group.
 *
 * Order of service: messages due for redelivery first (nacked, expired,
 * rolled back), then new messages from the group's cursor.  The cursor
 * reads the segment index on (txid, message_id) directly, so no plan can
 * turn into a sequential scan, and it only passes rows whose transactions
 * are visible in its window's upper snapshot.
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "args.h"
#include "catalog.h"
#include "checkpoint.h"
#include "deliver.h"
#include "fifo.h"
#include "lease.h"
#include "recovery.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"
#include "worker.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_receive);
PG_FUNCTION_INFO_V1(deliver_group_state);
PG_FUNCTION_INFO_V1(deliver_sweep);

typedef struct MessageRow
{
	uint64		txid;
	int64		id;
	int			seg;
	TimestampTz enqueued_at;
	bool		key_null;
	bool		headers_null;
	Datum		key;
	Datum		headers;
	Datum		payload;
	TransactionId pending_xid;	/* finish pending in a prepared transaction */
} MessageRow;

typedef struct Delivery
{
	MessageRow	row;
	uint64		delivery_id;
	int32		slot;
	int			attempt;
	TimestampTz lease_expires;
	bool		fetched;
	char		dead_reason;	/* for dead-letter moves: REASON_* */
	char		last_error[DELIVER_ERROR_LEN];
} Delivery;

typedef struct ScanCtx
{
	QueueInfo  *q;
	GroupEntry *gs;
	int			gidx;
	int32		group_id;
	Relation	heap[DELIVER_MAX_SEGMENTS];
	Relation	index[DELIVER_MAX_SEGMENTS];
	Relation	done[DELIVER_MAX_SEGMENTS];
	Snapshot	snap;
	MemoryContext cxt;
	bool		open;			/* tables opened by scan_open */
	bool		count_only;		/* metrics: count rows, keep none */
	int64		counted;
	TimestampTz oldest;
	/* metrics: count only the rows after this position (in commit order) */
	bool		count_after;
	TimestampTz after_cts;
	uint64		after_txid;
	int64		after_id;
	uint64		cts_txid;		/* the last row's transaction and its commit time */
	TimestampTz cts;
} ScanCtx;

/*
 * Lock and open the queue's tables; every table lock is taken before the
 * group's lock (recovery reads the done tables under it).  The order, per
 * segment done table then segment then index, is the one maintain()'s
 * TRUNCATE takes too.
 */
static void
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

static void
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

static int
row_cmp(const void *a, const void *b)
{
	const MessageRow *x = a;
	const MessageRow *y = b;

	if (x->txid != y->txid)
		return x->txid < y->txid ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/*
 * Copy a row of a segment out of the tuple it was read into.
 */
static void
row_from_tuple(MessageRow *r, TupleTableSlot *tuple, int seg, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		isnull;

	r->txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(tuple, SEG_COL_TXID, &isnull)));
	r->id = DatumGetInt64(slot_getattr(tuple, SEG_COL_MESSAGE_ID, &isnull));
	r->seg = seg;
	r->enqueued_at = DatumGetTimestampTz(slot_getattr(tuple, SEG_COL_ENQUEUED_AT, &isnull));
	r->key = slot_getattr(tuple, SEG_COL_ORDERING_KEY, &r->key_null);
	if (!r->key_null)
		r->key = datumCopy(r->key, false, -1);
	r->headers = slot_getattr(tuple, SEG_COL_HEADERS, &r->headers_null);
	if (!r->headers_null)
		r->headers = datumCopy(r->headers, false, -1);
	r->payload = datumCopy(slot_getattr(tuple, SEG_COL_PAYLOAD, &isnull), false, -1);
	r->pending_xid = InvalidTransactionId;
	MemoryContextSwitchTo(old);
}

static void
count_row(ScanCtx *c, TupleTableSlot *tuple)
{
	bool		isnull;
	TimestampTz t = DatumGetTimestampTz(slot_getattr(tuple, SEG_COL_ENQUEUED_AT, &isnull));

	if (c->count_after)
	{
		uint64		txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(tuple, SEG_COL_TXID, &isnull)));
		int64		id = DatumGetInt64(slot_getattr(tuple, SEG_COL_MESSAGE_ID, &isnull));

		if (txid != c->cts_txid)
		{
			c->cts_txid = txid;
			c->cts = txid_commit_time(txid);
		}
		/* taken already: at or before the position */
		if (c->cts < c->after_cts ||
			(c->cts == c->after_cts && (txid < c->after_txid ||
										(txid == c->after_txid && id <= c->after_id))))
			return;
	}

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
static int
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

		txid = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(tuple, SEG_COL_TXID, &isnull)));
		if (hi && !dsnap_visible(hi, txid))
			continue;
		g = slot_getattr(tuple, SEG_COL_TARGET_GROUP, &isnull);
		if (!isnull && DatumGetInt32(g) != c->group_id)
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
				continue;
			}
			row_from_tuple(&out[n], tuple, seg, c->cxt);
			out[n].pending_xid = pending;
			n++;
			continue;
		}
		if (c->count_only)
		{
			count_row(c, tuple);
			continue;
		}
		row_from_tuple(&out[n++], tuple, seg, c->cxt);
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
		qsort(out, n, sizeof(MessageRow), row_cmp);
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
static int
scan_window(ScanCtx *c, const DSnap *lo, const DSnap *hi, MessageRow *out, int limit, bool *exhausted)
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
 * Commit order.  A window holds the transactions that finished between its
 * lower and its upper snapshot; they are delivered in the order of their
 * commits (commit timestamps, track_commit_timestamp), then of their ids,
 * and the messages of one transaction in the order it sent them.  So for
 * each ordering key, a message whose transaction committed first comes
 * first, though another transaction may have sent one earlier.
 *
 * The transactions of the current window that sent to the queue are listed
 * (an index probe per transaction and segment) and sorted once per window
 * by each backend that takes from it; the group's position in the window
 * is (commit time, transaction id, message id).  A window holds at most
 * WINDOW_MAX_TXNS transactions: when more finished since the last one (a
 * consumer group far behind), the window is cut at a transaction id, chosen
 * so that none of the WINDOW_LOOKAHEAD transactions after the cut
 * committed before one before it.
 */
#define WINDOW_MAX_TXNS		65536
#define WINDOW_LOOKAHEAD	4096

typedef struct WinTxn
{
	TimestampTz cts;			/* commit time (0 when not known) */
	uint64		txid;
	uint8		segs;			/* bit s: it has rows in segment s */
} WinTxn;

/* this backend's list of the transactions of a group's current window */
static struct
{
	int			gidx;
	int32		group_id;
	uint32		boot_gen;
	uint64		window_seq;
	int			n;
	WinTxn	   *txns;
	int			cap;
}			win = {-1};

static int
wintxn_txid_cmp(const void *a, const void *b)
{
	const WinTxn *x = a;
	const WinTxn *y = b;

	return (x->txid > y->txid) - (x->txid < y->txid);
}

static int
wintxn_order_cmp(const void *a, const void *b)
{
	const WinTxn *x = a;
	const WinTxn *y = b;

	if (x->cts != y->cts)
		return x->cts < y->cts ? -1 : 1;
	return (x->txid > y->txid) - (x->txid < y->txid);
}

/* add a transaction of segment seg to the list (growing it) */
static void
wintxn_add(uint64 txid, int seg)
{
	if (win.n >= win.cap)
	{
		int			cap = win.cap ? win.cap * 2 : 256;

		win.txns = win.txns ? repalloc(win.txns, sizeof(WinTxn) * cap)
			: MemoryContextAlloc(TopMemoryContext, sizeof(WinTxn) * cap);
		win.cap = cap;
	}
	win.txns[win.n].txid = txid;
	win.txns[win.n].segs = 1 << seg;
	win.txns[win.n].cts = 0;
	win.n++;
}

/*
 * List the transactions of the window (lo, hi] that have rows in the
 * queue's segments, in id order, at most cap of them (per segment: the
 * lists are merged and cut after).
 */
static void
window_list(ScanCtx *c, const DSnap *lo, const DSnap *hi, int cap)
{
	int			seg;
	int			i;
	int			n;

	win.n = 0;
	for (seg = 0; seg < c->q->nsegments; seg++)
	{
		Relation	heap = c->heap[seg];
		Relation	index = c->index[seg];
		TupleTableSlot *tuple = table_slot_create(heap, NULL);
		ScanKeyData keys[2];
		IndexScanDesc scan = index_beginscan(heap, index, c->snap, 2, 0);
		int			found = 0;
		uint32		x;
		uint64		next;

		/* transactions running at lo that finished by hi */
		for (x = 0; x < lo->nxip && found < cap; x++)
		{
			uint64		t = lo->xip[x];

			if (!dsnap_visible(hi, t))
				continue;
			/* (the scan has two keys: a rescan copies both) */
			ScanKeyInit(&keys[0], SEG_POS_COL_TXID, BTGreaterEqualStrategyNumber, F_XID8GE,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(t)));
			ScanKeyInit(&keys[1], SEG_POS_COL_TXID, BTLessEqualStrategyNumber, F_XID8LE,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(t)));
			index_rescan(scan, keys, 2, NULL, 0);
			if (index_getnext_slot(scan, ForwardScanDirection, tuple))
			{
				wintxn_add(t, seg);
				found++;
			}
		}
		/* and those that started since lo: one probe for each */
		next = lo->xmax;
		while (next < hi->xmax && found < cap)
		{
			bool		isnull;
			uint64		t;

			ScanKeyInit(&keys[0], SEG_POS_COL_TXID, BTGreaterEqualStrategyNumber, F_XID8GE,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(next)));
			ScanKeyInit(&keys[1], SEG_POS_COL_TXID, BTLessStrategyNumber, F_XID8LT,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(hi->xmax)));
			index_rescan(scan, keys, 2, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, tuple))
				break;
			t = U64FromFullTransactionId(DatumGetFullTransactionId(slot_getattr(tuple, SEG_COL_TXID, &isnull)));
			if (dsnap_visible(hi, t))
			{
				wintxn_add(t, seg);
				found++;
			}
			next = t + 1;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(tuple);
	}
	/* one entry per transaction, in id order */
	qsort(win.txns, win.n, sizeof(WinTxn), wintxn_txid_cmp);
	for (i = 0, n = 0; i < win.n; i++)
	{
		if (n > 0 && win.txns[n - 1].txid == win.txns[i].txid)
			win.txns[n - 1].segs |= win.txns[i].segs;
		else
			win.txns[n++] = win.txns[i];
	}
	win.n = n;
}

/*
 * Load this backend's list of the current window's transactions, sorted in
 * commit order.  The backend that opens the window (opening) also cuts it
 * when it holds too many transactions: its upper snapshot then stops at a
 * transaction id.
 */
static void
window_load(ScanCtx *c, bool opening)
{
	GroupEntry *gs = c->gs;
	DSnap	   *lo = group_snap(c->gidx, SNAP_LO);
	DSnap	   *hi = group_snap(c->gidx, SNAP_HI);
	int			i;

	if (!opening && win.gidx == c->gidx && win.group_id == gs->group_id &&
		win.boot_gen == gs->boot_gen && win.window_seq == gs->window_seq)
		return;
	win.gidx = -1;
	window_list(c, lo, hi, opening ? WINDOW_MAX_TXNS + WINDOW_LOOKAHEAD : INT_MAX);
	for (i = 0; i < win.n; i++)
		win.txns[i].cts = txid_commit_time(win.txns[i].txid);

	if (opening && win.n > WINDOW_MAX_TXNS)
	{
		int			cut = WINDOW_MAX_TXNS;
		TimestampTz *before_max = palloc(sizeof(TimestampTz) * (WINDOW_MAX_TXNS + 1));
		TimestampTz after_min = DT_NOEND;
		uint32		x;
		uint32		k;

		/*
		 * Cut before the transaction at index cut: the last cut (at most
		 * WINDOW_MAX_TXNS in the window) before which every listed
		 * transaction committed before every listed one after it, or
		 * WINDOW_MAX_TXNS when there is none.
		 */
		before_max[0] = 0;
		for (i = 0; i < WINDOW_MAX_TXNS; i++)
			before_max[i + 1] = Max(before_max[i], win.txns[i].cts);
		for (i = win.n - 1; i > 0; i--)
		{
			if (i <= WINDOW_MAX_TXNS && before_max[i] <= after_min)
			{
				cut = i;
				break;
			}
			after_min = Min(after_min, win.txns[i].cts);
		}
		pfree(before_max);
		/* hi becomes: what it saw, below the cut's transaction id */
		hi->xmax = win.txns[cut].txid;
		for (x = 0, k = 0; x < hi->nxip; x++)
			if (hi->xip[x] < hi->xmax)
				hi->xip[k++] = hi->xip[x];
		hi->nxip = k;
		if (hi->xmin > hi->xmax)
			hi->xmin = hi->xmax;
		win.n = cut;
	}
	qsort(win.txns, win.n, sizeof(WinTxn), wintxn_order_cmp);
	win.gidx = c->gidx;
	win.group_id = gs->group_id;
	win.boot_gen = gs->boot_gen;
	win.window_seq = gs->window_seq;
}

/*
 * The next rows of the current window after the group's position, in
 * commit order, at most limit; *exhausted when the window has nothing
 * more.  out[] has room for limit rows.
 */
static int
take_window(ScanCtx *c, MessageRow *out, int limit, bool *exhausted)
{
	GroupEntry *gs = c->gs;
	int			n = 0;
	int			lo = 0;
	int			hi;

	window_load(c, false);
	/* the first transaction at or after the position */
	hi = win.n;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;
		WinTxn		p = {gs->pos_cts, gs->pos_txid, 0};

		if (wintxn_order_cmp(&win.txns[mid], &p) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < win.n && n < limit; lo++)
	{
		WinTxn	   *t = &win.txns[lo];
		bool		same = (t->txid == gs->pos_txid && t->cts == gs->pos_cts);
		int			seg;
		int			got = 0;

		/*
		 * Each segment may give limit - n rows (out[] has room for limit
		 * per segment): a transaction that wrote to two segments (across a
		 * switch) is merged by message id before it is cut at limit.
		 */
		for (seg = 0; seg < c->q->nsegments; seg++)
		{
			bool		more;

			if (!(t->segs & (1 << seg)))
				continue;
			got += scan_index(c, seg, t->txid, t->txid, same, gs->pos_id, NULL,
							  out + n + got, limit - n, &more);
		}
		if (got > 1 && t->segs & (t->segs - 1))
			qsort(out + n, got, sizeof(MessageRow), row_cmp);
		n += got;
		if (n >= limit)
		{
			/* more may follow in this transaction or the next ones */
			*exhausted = false;
			return limit;
		}
	}
	*exhausted = true;
	return n;
}

/* the group's position moves to row r of the window */
static void
window_advance(GroupEntry *gs, MessageRow *r)
{
	if (r->txid != gs->pos_txid)
		gs->pos_cts = txid_commit_time(r->txid);
	gs->pos_txid = r->txid;
	gs->pos_id = r->id;
}

/*
 * Open a new window whose upper bound is the latest snapshot (or a cut of
 * it, see window_load), and start a new restart point when the last one is
 * old enough.
 */
static void
open_window(ScanCtx *c, TimestampTz now)
{
	GroupEntry *gs = c->gs;

	dsnap_latest(group_snap(c->gidx, SNAP_HI));
	/* the scan must see everything the new upper bound sees */
	UnregisterSnapshot(c->snap);
	c->snap = RegisterSnapshot(GetLatestSnapshot());
	gs->in_window = true;
	gs->window_seq++;
	gs->pos_cts = DT_NOBEGIN;
	gs->pos_txid = 0;
	gs->pos_id = 0;
	window_load(c, true);
	checkpoint_open(gs, c->gidx, now);
}

static void
close_window(ScanCtx *c)
{
	DSnap	   *lo = group_snap(c->gidx, SNAP_LO);

	dsnap_copy(lo, group_snap(c->gidx, SNAP_HI));
	c->gs->in_window = false;
	/* every row older than the recovery is behind the cursor now */
	if (c->gs->horizon_txid != 0 && lo->xmin >= c->gs->horizon_txid)
		c->gs->horizon_txid = 0;
}

/*
 * Lease a message in a new or reused slot.
 */
static void
lease_slot(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms)
{
	LeaseSlot  *s = &deliver_slots[idx];

	s->attempt++;
	s->delivery_id = lease_new_delivery_id(idx);
	s->state = SLOT_LEASED;
	s->lease_expires = now + vt_ms * 1000;
	slist_push(&gs->leased, idx);
	if (s->lease_expires < gs->next_expiry)
		gs->next_expiry = s->lease_expires;
	gs->delivered_total++;
	o->delivery_id = s->delivery_id;
	o->slot = idx;
	o->attempt = s->attempt;
	o->lease_expires = s->lease_expires;
	xact_note_leased(idx, s->delivery_id);
}

/*
 * Under the group lock: a message taken off the ready list is out of
 * attempts; it moves to the dead letters in this transaction (finished
 * when it commits, leased until then so nobody else takes it).
 */
static void
claim_dead(GroupEntry *gs, int32 idx, TimestampTz now, int64 vt_ms, Delivery *o)
{
	LeaseSlot  *s = &deliver_slots[idx];

	memset(o, 0, sizeof(Delivery));
	s->state = SLOT_LEASED;
	s->delivery_id = lease_new_delivery_id(idx);	/* a token of the move's own */
	s->finish_pending = true;
	s->finish_kind = DONE_DEAD;
	s->finish_xid = GetTopTransactionId();
	s->lease_expires = now + vt_ms * 1000;
	slist_push(&gs->leased, idx);
	o->slot = idx;
	o->delivery_id = s->delivery_id;
	o->attempt = s->attempt;
	o->dead_reason = s->reason;
	strlcpy(o->last_error, s->last_error, DELIVER_ERROR_LEN);
	o->row.txid = s->txid;
	o->row.id = s->message_id;
	o->row.seg = s->seg;
	xact_note_finish(idx, s->delivery_id);
}

/*
 * Most messages out of attempts one receive moves to the dead letters (the
 * room of its dead[] array): at least this many, or max_messages when more.
 */
#define RECEIVE_DEAD_BATCH	100

/*
 * Under the group lock: take up to max messages.  Redeliveries first, then
 * the cursor.  Fills out[] (room for max) and dead[] (messages out of
 * attempts, room for max_dead).
 */
static int
take_messages(ScanCtx *c, int max, int64 vt_ms, Delivery *out, Delivery *dead, int max_dead, int *ndead,
			  bool *out_of_slots)
{
	GroupEntry *gs = c->gs;
	QueueInfo  *q = c->q;
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;
	int			windows = 0;
	bool		leases = q->guarantee != G_AT_MOST_ONCE;
	MessageRow *rows = NULL;

	*ndead = 0;
	*out_of_slots = false;
	gs->last_receive = now;

	if (leases)
	{
		int32		idx;
		int32		next;

		group_expire_leases(gs, q, now);
		for (idx = gs->ready_list.head; idx >= 0 && n < max; idx = next)
		{
			LeaseSlot  *s = &deliver_slots[idx];
			Delivery   *o;

			next = s->next;
			if (s->visible_at > now)
				continue;
			if (s->attempt >= q->max_attempts)
			{
				/* dead[] is full: the rest wait for the next receive or sweep */
				if (*ndead >= max_dead)
					continue;
				slist_remove(&gs->ready_list, idx);
				claim_dead(gs, idx, now, vt_ms, &dead[(*ndead)++]);
				continue;
			}
			slist_remove(&gs->ready_list, idx);
			o = &out[n++];
			memset(o, 0, sizeof(Delivery));
			o->row.txid = s->txid;
			o->row.id = s->message_id;
			o->row.seg = s->seg;
			o->row.enqueued_at = s->enqueued_at;
			lease_slot(gs, idx, o, now, vt_ms);
		}
	}

	while (n < max && !*out_of_slots)
	{
		int			got;
		int			i;
		bool		exhausted;

		/* FIFO: a long run of one key must not take the queue's whole share */
		if (gs->blocked.count >= lease_queue_cap() / 2)
			break;

		if (!gs->in_window)
		{
			if (windows++ >= 2)
				break;
			open_window(c, now);
		}
		/* each segment may return up to max rows before they are merged */
		if (rows == NULL)
			rows = MemoryContextAlloc(c->cxt, sizeof(MessageRow) * max * q->nsegments);
		got = take_window(c, rows, max - n, &exhausted);
		for (i = 0; i < got; i++)
		{
			MessageRow *r = &rows[i];
			Delivery   *o;

			if (leases)
			{
				int32		idx = slot_alloc(q->queue_idx);
				LeaseSlot  *s;

				if (idx < 0)
				{
					*out_of_slots = true;
					exhausted = false;
					break;
				}
				s = &deliver_slots[idx];
				s->group_idx = c->gidx;
				s->message_id = r->id;
				s->txid = r->txid;
				s->seg = r->seg;
				s->enqueued_at = r->enqueued_at;
				s->has_key = !r->key_null;
				s->key_hash = r->key_null ? 0 : fifo_key_hash(r->key);
				s->cp_seq = gs->cps[gs->ncp - 1].seq;
				checkpoint_count_add(gs, s->cp_seq, 1);
				window_advance(gs, r);

				if (TransactionIdIsValid(r->pending_xid))
				{
					/* acked in a transaction still prepared: hold it */
					s->attempt = 1;
					s->delivery_id = lease_new_delivery_id(idx);
					s->state = SLOT_LEASED;
					s->finish_pending = true;
					s->finish_kind = DONE_ACK;
					s->finish_xid = r->pending_xid;
					s->lease_expires = now + vt_ms * 1000;
					slist_push(&gs->leased, idx);
					if (q->fifo && s->has_key)
						fifo_key_hold(idx);
					continue;
				}
				if (q->fifo && s->has_key && !fifo_key_take(idx))
				{
					s->state = SLOT_BLOCKED;
					slist_push(&gs->blocked, idx);
					continue;
				}
				o = &out[n++];
				memset(o, 0, sizeof(Delivery));
				o->row = *r;
				o->fetched = true;
				lease_slot(gs, idx, o, now, vt_ms);
			}
			else
			{
				window_advance(gs, r);
				o = &out[n++];
				memset(o, 0, sizeof(Delivery));
				o->row = *r;
				o->fetched = true;
				o->slot = -1;
				o->attempt = 1;
				gs->delivered_total++;
			}
		}
		if (exhausted)
			close_window(c);
		else if (got == 0)
			break;
	}
	return n;
}

/*
 * Fetch a message by its position (for redeliveries and dead letters).
 */
static bool
fetch_row(ScanCtx *c, MessageRow *r)
{
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *tuple;
	bool		found = false;
	int			seg = r->seg;

	ScanKeyInit(&keys[0], SEG_POS_COL_TXID, BTEqualStrategyNumber, F_XID8EQ,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(r->txid)));
	ScanKeyInit(&keys[1], SEG_POS_COL_MESSAGE_ID, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(r->id));
	tuple = table_slot_create(c->heap[seg], NULL);
	scan = index_beginscan(c->heap[seg], c->index[seg], c->snap, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, tuple))
	{
		row_from_tuple(r, tuple, seg, c->cxt);
		found = true;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(tuple);
	return found;
}

/*
 * Messages whose rows are gone (purged meanwhile) just leave the group.
 */
static void
drop_vanished(ScanCtx *c, Delivery *o)
{
	lease_forget_vanished(c->gs, o->slot, o->delivery_id);
}

static const char *
reason_text(int reason)
{
	switch (reason)
	{
		case REASON_EXPIRED:
			return "lease expired";
		case REASON_NACKED:
			return "nacked";
		case REASON_ABORTED:
			return "receiving transaction rolled back";
	}
	return "max attempts";
}

/*
 * Move messages that used up their attempts to the dead letters; they
 * finish when this transaction commits.
 */
static void
move_dead(ScanCtx *c, Delivery *dead, int ndead)
{
	int64	   *ids = palloc(sizeof(int64) * ndead);
	int			nids = 0;
	int			i;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[9] = {INT4OID, INT8OID, TIMESTAMPTZOID, TEXTOID, JSONBOID, JSONBOID,
	INT4OID, TEXTOID, TEXTOID};
	DSnap	   *done = palloc(deliver_snap_size);

	snprintf(key, sizeof(key), "dead:%d", c->q->queue_id);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.%s (group_id, message_id, enqueued_at, ordering_key, "
			 "headers, payload, attempts, reason, last_error) "
			 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
			 queue_relname(rel, QUEUE_DEAD, c->q->queue_id, 0));
	for (i = 0; i < ndead; i++)
	{
		Delivery   *o = &dead[i];
		Datum		args[9];
		char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		int			rc;

		if (!fetch_row(c, &o->row))
		{
			drop_vanished(c, o);
			continue;
		}
		args[0] = Int32GetDatum(c->group_id);
		args[1] = Int64GetDatum(o->row.id);
		args[2] = TimestampTzGetDatum(o->row.enqueued_at);
		args[3] = o->row.key;
		nulls[3] = o->row.key_null ? 'n' : ' ';
		args[4] = o->row.headers;
		nulls[4] = o->row.headers_null ? 'n' : ' ';
		args[5] = o->row.payload;
		args[6] = Int32GetDatum(o->attempt);
		args[7] = CStringGetTextDatum(reason_text(o->dead_reason));
		args[8] = CStringGetTextDatum(o->last_error);
		nulls[8] = o->last_error[0] ? ' ' : 'n';
		rc = spi_run(c->q->owner, key, sql, 9, types, args, nulls, false, 0);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "deliver: could not write dead letter: %s", SPI_result_code_string(rc));
		ids[nids++] = o->row.id;
	}
	if (nids == 0)
		return;
	LWLockAcquire(&c->gs->lock, LW_SHARED);
	checkpoint_restart_point(c->gs, c->gidx, done);
	LWLockRelease(&c->gs->lock);
	done_write(c->q, c->group_id, DONE_DEAD, ids, nids, done);
}

/*
 * How long to sleep in a long poll before something may be due.
 */
static long
next_wakeup_ms(QueueInfo *q, GroupEntry *gs, long remaining)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz t = now + (int64) remaining * 1000;
	int32		idx;
	/* without a worker here, this poll cannot make delayed messages visible */
	TimestampTz due = deliver_worker_serves_database() ?
		deliver_queues[q->queue_idx].delayed_due : 0;

	LWLockAcquire(&gs->lock, LW_SHARED);
	for (idx = gs->ready_list.head; idx >= 0; idx = deliver_slots[idx].next)
		t = Min(t, deliver_slots[idx].visible_at);
	if (gs->next_expiry < t)
		t = gs->next_expiry;
	LWLockRelease(&gs->lock);
	if (due > 0 && due < t)
		t = due;
	if (t <= now)
		return 1;
	return (long) ((t - now + 999) / 1000);
}

/*
 * An at-most-once receive removes what it returns when its transaction
 * commits; a transaction that fails after the client saw the messages would
 * bring them back after a restart.  So such a receive must be a
 * transaction of its own, committed as soon as it is done: not in a
 * transaction block (explicit, or the implicit one of several statements
 * sent as one query string), not after other statements of a pipeline,
 * not inside a function, DO block or procedure.  And it commits at once,
 * before the next statement of a pipeline runs (as CREATE DATABASE does).
 */
static void
at_most_once_own_transaction(QueueInfo *q)
{
	const char *where = NULL;

	if (IsTransactionBlock())
		where = "inside a transaction block";
	else if (IsSubTransaction())
		where = "inside a subtransaction";
	else if (MyXactFlags & XACT_FLAGS_PIPELINING)
		where = "after other statements of a pipeline";
	else if (!xact_statement_is_top_level())
		where = "from a function, DO block or procedure";
	if (where)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("receive from at_most_once queue \"%s\" cannot run %s", q->name, where),
				 errdetail("At-most-once removes a message when the receive commits, so the receive "
						   "must be a transaction of its own."),
				 errhint("Call deliver.receive as a statement of its own, in autocommit mode.")));
	MyXactFlags |= XACT_FLAGS_NEEDIMMEDIATECOMMIT;
}

/*
 * deliver.receive(queue_name, max_messages, visibility_timeout, wait,
 * consumer_group) returns setof (message_id, delivery_id, payload, headers,
 * ordering_key, attempt, enqueued_at, lease_expires_at)
 */
Datum
deliver_receive(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueInfo  *q;
	const GroupInfo *g;
	int			max;
	int64		vt_ms;
	int64		wait_ms;
	ScanCtx		c;
	Delivery   *out;
	Delivery   *dead;
	int			n = 0;
	int			ndead = 0;
	int			max_dead;
	int			i;
	bool		out_of_slots = false;
	TimestampTz deadline;
	bool		sleeping = false;
	bool		moved_due = false;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	arg_not_null(fcinfo, 1, "max_messages");
	max = PG_GETARG_INT32(1);
	if (max < 1 || max > deliver_max_batch)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d", deliver_max_batch),
				 errhint("The upper limit is the setting deliver.max_batch_size.")));
	vt_ms = arg_interval_ms(fcinfo, 2, q->visibility_ms, 1, DELIVER_MAX_VISIBILITY_MS,
							"visibility_timeout", "1 millisecond and " DELIVER_MAX_VISIBILITY_TEXT);
	wait_ms = arg_interval_ms(fcinfo, 3, 0, 0, DELIVER_MAX_WAIT_MS, "wait",
							  "0 and " DELIVER_MAX_WAIT_TEXT);
	g = queue_group(q, PG_ARGISNULL(4) ? NULL : PG_GETARG_TEXT_PP(4));
	queue_check_privilege(q, ACL_SELECT, "receive from");
	if (q->guarantee == G_AT_MOST_ONCE)
		at_most_once_own_transaction(q);

	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = g->group_id;
	c.cxt = CurrentMemoryContext;
	out = palloc(sizeof(Delivery) * max);
	max_dead = Max(max, RECEIVE_DEAD_BATCH);
	dead = palloc(sizeof(Delivery) * max_dead);
	deadline = GetCurrentTimestamp() + wait_ms * 1000;

	for (;;)
	{
		scan_open(&c);

		/*
		 * Delayed messages are moved by the maintenance worker, whose commit
		 * wakes long polls.  Without a worker in this database, a receive
		 * moves them itself (after locking the segments: the order of
		 * locks drop_queue follows); they become visible when its
		 * transaction commits.
		 */
		if (!moved_due && !deliver_worker_serves_database())
			move_due_delayed(q);
		moved_due = true;

		/*
		 * The scan snapshot is taken under the group's lock, so it is never
		 * older than the window another backend may have just opened.
		 */
		c.gs = group_lock(q, g->group_id, &c.gidx);
		c.snap = RegisterSnapshot(GetLatestSnapshot());
		n = take_messages(&c, max, vt_ms, out, dead, max_dead, &ndead, &out_of_slots);
		LWLockRelease(&c.gs->lock);

		if (n > 0 || ndead > 0 || wait_ms == 0 || out_of_slots)
			break;
		{
			long		remaining = (long) ((deadline - GetCurrentTimestamp()) / 1000);

			if (remaining <= 0)
				break;
			UnregisterSnapshot(c.snap);
			c.snap = NULL;
			/* no table lock is held while waiting (maintenance truncates) */
			scan_close(&c);
			if (!sleeping)
			{
				/* check once more after preparing, so no wake-up is missed */
				ConditionVariablePrepareToSleep(&deliver_queues[q->queue_idx].cv);
				sleeping = true;
				continue;
			}
			(void) ConditionVariableTimedSleep(&deliver_queues[q->queue_idx].cv,
											   next_wakeup_ms(q, c.gs, remaining),
											   PG_WAIT_EXTENSION);

			/*
			 * The catalog changed meanwhile (the queue or the group dropped,
			 * the queue altered, a grant revoked): look them up again.  A
			 * queue or group that is gone ends the wait with its error.
			 */
			if (pg_atomic_read_u32(&deliver_shared->catalog_gen) != q->gen)
			{
				ConditionVariableCancelSleep();
				sleeping = false;
				q = queue_lookup(PG_GETARG_TEXT_PP(0));
				g = queue_group(q, PG_GETARG_TEXT_PP(4));
				queue_check_privilege(q, ACL_SELECT, "receive from");
				c.q = q;
				c.group_id = g->group_id;
			}
		}
	}
	if (sleeping)
		ConditionVariableCancelSleep();
	if (out_of_slots && n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many messages in flight"),
				 errhint("Ack or nack leased messages, or raise deliver.max_in_flight (now %d).",
						 deliver_max_leases)));

	if (ndead > 0)
		move_dead(&c, dead, ndead);

	/* redeliveries need their rows; at-most-once needs its finish record */
	for (i = 0; i < n; i++)
	{
		Delivery   *o = &out[i];
		Datum		values[8];
		bool		nulls[8] = {false};

		if (!o->fetched && !fetch_row(&c, &o->row))
		{
			drop_vanished(&c, o);
			continue;
		}
		values[0] = Int64GetDatum(o->row.id);
		values[1] = Int64GetDatum((int64) o->delivery_id);
		nulls[1] = (o->slot < 0);
		values[2] = o->row.payload;
		values[3] = o->row.headers;
		nulls[3] = o->row.headers_null;
		values[4] = o->row.key;
		nulls[4] = o->row.key_null;
		values[5] = Int32GetDatum(o->attempt);
		values[6] = TimestampTzGetDatum(o->row.enqueued_at);
		values[7] = TimestampTzGetDatum(o->lease_expires);
		nulls[7] = (o->slot < 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	if (q->guarantee == G_AT_MOST_ONCE && n > 0)
	{
		int64	   *ids = palloc(sizeof(int64) * n);
		DSnap	   *done = palloc(deliver_snap_size);

		for (i = 0; i < n; i++)
			ids[i] = out[i].row.id;
		LWLockAcquire(&c.gs->lock, LW_SHARED);
		checkpoint_restart_point(c.gs, c.gidx, done);
		LWLockRelease(&c.gs->lock);
		done_write(q, g->group_id, DONE_CONSUMED, ids, n, done);
	}

	if (c.snap)
		UnregisterSnapshot(c.snap);
	scan_close(&c);
	SPI_finish();
	return (Datum) 0;
}

/*
 * A consumer group's live state (metrics).  backlog counts the messages its
 * cursor has not reached yet: a scan of them, made on copies of the
 * cursor's state after the group's lock is released, so that receives and
 * acks of the group go on meanwhile (metrics is not meant for a hot loop).
 */
void
group_live_state(QueueInfo *q, int32 group_id, GroupLive *out)
{
	ScanCtx		c;
	GroupEntry	copy;
	GroupEntry *gs;
	DSnap	   *lo = palloc(deliver_snap_size);
	DSnap	   *hi = palloc(deliver_snap_size);
	DSnap	   *now_snap = palloc(deliver_snap_size);
	SlotList   *lists[3];
	int32		idx;
	int			l;
	bool		ex;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.q = q;
	c.group_id = group_id;
	c.cxt = CurrentMemoryContext;
	c.count_only = true;
	scan_open(&c);
	gs = group_lock(q, group_id, &c.gidx);
	/* leases that ran out, finishes of ended transactions: settle them */
	group_expire_leases(gs, q, GetCurrentTimestamp());
	copy = *gs;
	dsnap_copy(lo, group_snap(c.gidx, SNAP_LO));
	dsnap_copy(hi, group_snap(c.gidx, SNAP_HI));
	lists[0] = &gs->leased;
	lists[1] = &gs->ready_list;
	lists[2] = &gs->blocked;
	for (l = 0; l < 3; l++)
		for (idx = lists[l]->head; idx >= 0; idx = deliver_slots[idx].next)
			if (out->oldest == 0 || deliver_slots[idx].enqueued_at < out->oldest)
				out->oldest = deliver_slots[idx].enqueued_at;
	out->in_flight = gs->leased.count;
	out->ready = gs->ready_list.count;
	out->blocked = gs->blocked.count;
	out->acked_total = gs->acked_total;
	out->dead_total = gs->dead_total;
	LWLockRelease(&gs->lock);

	/* the rest of the open window, then everything committed since */
	c.gs = &copy;
	dsnap_latest(now_snap);
	c.snap = RegisterSnapshot(GetLatestSnapshot());
	if (copy.in_window)
	{
		c.count_after = true;
		c.after_cts = copy.pos_cts;
		c.after_txid = copy.pos_txid;
		c.after_id = copy.pos_id;
		copy.pos_txid = 0;
		copy.pos_id = 0;
		(void) scan_window(&c, lo, hi, NULL, INT_MAX, &ex);
		c.count_after = false;
	}
	copy.pos_txid = 0;
	copy.pos_id = 0;
	(void) scan_window(&c, copy.in_window ? hi : lo, now_snap, NULL, INT_MAX, &ex);
	UnregisterSnapshot(c.snap);
	scan_close(&c);
	out->backlog = c.counted;
	if (c.oldest != 0 && (out->oldest == 0 || c.oldest < out->oldest))
		out->oldest = c.oldest;
	{
		QueueEntry *qs = &deliver_queues[q->queue_idx];

		SpinLockAcquire(&qs->mutex);
		out->sent_total = qs->sent_total;
		SpinLockRelease(&qs->mutex);
	}
}

/*
 * deliver._group_state(group_id): the group's live state (group_live_state).
 */
Datum
deliver_group_state(PG_FUNCTION_ARGS)
{
	int32		group_id = PG_GETARG_INT32(0);
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false};
	QueueInfo  *q;
	bool		isnull;
	int			rc;
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	GroupLive	st;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	deliver_check_primary();
	SPI_connect();
	args[0] = Int32GetDatum(group_id);
	rc = spi_run(catalog_owner(), "group_queue",
				 "SELECT queue_id FROM deliver.consumer_group WHERE group_id = $1",
				 1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("consumer group %d does not exist", group_id)));
	q = queue_lookup_by_id(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull)));
	queue_check_metrics_privilege(q);
	group_live_state(q, group_id, &st);
	SPI_finish();

	values[0] = Int64GetDatum(st.backlog);
	values[1] = Int64GetDatum(st.in_flight);
	values[2] = Int64GetDatum(st.ready);
	values[3] = Int64GetDatum(st.blocked);
	values[4] = TimestampTzGetDatum(st.oldest);
	nulls[4] = (st.oldest == 0);
	values[5] = Int64GetDatum(st.sent_total);
	values[6] = Int64GetDatum(st.acked_total);
	values[7] = Int64GetDatum(st.dead_total);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * deliver._sweep(queue_name, max_dead) returns (expired, ready,
 * dead_lettered): for each consumer group, leases that ran out become
 * ready again after their backoff, and up to max_dead ready messages out
 * of attempts move to the dead letters (in this transaction).  Long polls
 * are woken when messages are ready now.  The maintenance worker calls it
 * every run; without a worker, receive does the same for its own group.
 */
Datum
deliver_sweep(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false};
	QueueInfo  *q;
	int			max;
	int64		expired = 0;
	int64		ready = 0;
	int64		ndead_total = 0;
	int64		released = 0;
	int			i;
	Delivery   *dead;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (PG_ARGISNULL(1) || PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_dead must be positive")));
	max = Min(PG_GETARG_INT32(1), deliver_max_batch);
	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	dead = palloc(sizeof(Delivery) * max);

	for (i = 0; i < q->ngroups && q->guarantee != G_AT_MOST_ONCE; i++)
	{
		ScanCtx		c;
		GroupEntry *gs;
		TimestampTz now = GetCurrentTimestamp();
		int64		before;
		int32		idx;
		int32		next;
		int			ndead = 0;

		memset(&c, 0, sizeof(c));
		c.q = q;
		c.group_id = q->groups[i].group_id;
		c.cxt = CurrentMemoryContext;
		scan_open(&c);
		gs = c.gs = group_lock(q, c.group_id, &c.gidx);
		c.snap = RegisterSnapshot(GetLatestSnapshot());
		before = gs->ready_list.count;
		group_expire_leases(gs, q, now);
		expired += gs->ready_list.count - before;
		for (idx = gs->ready_list.head; idx >= 0; idx = next)
		{
			LeaseSlot  *s = &deliver_slots[idx];

			next = s->next;
			if (s->visible_at > now)
				continue;
			if (s->attempt >= q->max_attempts && ndead < max)
			{
				slist_remove(&gs->ready_list, idx);
				claim_dead(gs, idx, now, q->visibility_ms, &dead[ndead++]);
			}
			else
				ready++;
		}

		/*
		 * Nobody received from the group for deliver.idle_release and it
		 * holds no lease: it gives its lease slots back.  Its messages are
		 * delivered again from its durable state when it recovers (as
		 * after a restart: their attempts count from 1 again).
		 */
		if (ndead == 0 && deliver_idle_release_ms > 0 && gs->leased.count == 0 &&
			gs->ready_list.count + gs->blocked.count > 0 &&
			now - gs->last_receive >= (int64) deliver_idle_release_ms * 1000)
		{
			released += gs->ready_list.count + gs->blocked.count;
			group_release_slots(gs);
			gs->recovered = false;
		}
		LWLockRelease(&gs->lock);
		if (ndead > 0)
			move_dead(&c, dead, ndead);
		ndead_total += ndead;
		UnregisterSnapshot(c.snap);
		scan_close(&c);
	}
	if (expired > 0 || ready > 0)
		ConditionVariableBroadcast(&deliver_queues[q->queue_idx].cv);
	SPI_finish();

	values[0] = Int64GetDatum(expired);
	values[1] = Int64GetDatum(ready);
	values[2] = Int64GetDatum(ndead_total);
	values[3] = Int64GetDatum(released);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
