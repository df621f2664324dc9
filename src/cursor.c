/*
 * cursor.c
 *		A consumer group's cursor: its windows, the commit order of the
 *		transactions in a window, and its position.
 *
 * A window holds the rows whose transactions are visible in its upper
 * snapshot and not in its lower one, so the cursor only passes rows whose
 * sending transaction has finished.  When a window is exhausted, its upper
 * bound becomes the next one's lower bound; a new window may start a new
 * restart point (checkpoint.c).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "checkpoint.h"
#include "cursor.h"
#include "scan.h"
#include "shmem.h"
#include "snap.h"
#include "tables.h"

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

/* qsort comparator of window transactions by id */
static int
wintxn_txid_cmp(const void *a, const void *b)
{
	const WinTxn *x = a;
	const WinTxn *y = b;

	return (x->txid > y->txid) - (x->txid < y->txid);
}

/* qsort comparator of window transactions in commit order */
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
			uint64		t;

			ScanKeyInit(&keys[0], SEG_POS_COL_TXID, BTGreaterEqualStrategyNumber, F_XID8GE,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(next)));
			ScanKeyInit(&keys[1], SEG_POS_COL_TXID, BTLessStrategyNumber, F_XID8LT,
						FullTransactionIdGetDatum(FullTransactionIdFromU64(hi->xmax)));
			index_rescan(scan, keys, 2, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, tuple))
				break;
			t = tuple_txid(tuple);
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
int
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
			qsort(out + n, got, sizeof(MessageRow), message_row_cmp);
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
void
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
void
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

/*
 * The window is exhausted: its upper bound becomes the lower bound of the
 * next one.
 */
void
close_window(ScanCtx *c)
{
	DSnap	   *lo = group_snap(c->gidx, SNAP_LO);

	dsnap_copy(lo, group_snap(c->gidx, SNAP_HI));
	c->gs->in_window = false;
	/* every row older than the recovery is behind the cursor now */
	if (c->gs->horizon_txid != 0 && lo->xmin >= c->gs->horizon_txid)
		c->gs->horizon_txid = 0;
}
