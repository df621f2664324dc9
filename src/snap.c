/*
 * snap.c
 *		Cursor snapshots (DSnap): taking, testing and storing them; the
 *		commit times of transactions.
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/twophase.h"
#include "miscadmin.h"
#include "utils/snapmgr.h"

#include "snap.h"

int			deliver_snap_xip_max;
Size		deliver_snap_size;

/* the on-disk layout of pg_snapshot (utils/adt/xid8funcs.c) */
typedef struct PgSnapshotData
{
	int32		vl_len_;
	uint32		nxip;
	FullTransactionId xmin;
	FullTransactionId xmax;
	FullTransactionId xip[FLEXIBLE_ARRAY_MEMBER];
} PgSnapshotData;

/* qsort comparator of uint64 */
static int
cmp_u64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * Size the snapshots kept in shared memory: room for every transaction
 * that can be running (deliver_snap_xip_max xids, deliver_snap_size bytes).
 */
void
dsnap_set_size(void)
{
	deliver_snap_xip_max = MaxBackends + max_prepared_xacts + 1;
	deliver_snap_size = MAXALIGN(offsetof(DSnap, xip) +
								 sizeof(uint64) * deliver_snap_xip_max);
}

/*
 * Widen a recent 32-bit xid into a full one, relative to the next xid.
 */
static uint64
widen_xid(TransactionId xid, FullTransactionId next)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (!TransactionIdIsNormal(xid))
		return (uint64) xid;
	if (xid > XidFromFullTransactionId(next))
		epoch--;
	return U64FromFullTransactionId(FullTransactionIdFromEpochAndXid(epoch, xid));
}

/*
 * The next transaction id to be assigned, full.
 */
uint64
dsnap_next_txid(void)
{
	return U64FromFullTransactionId(ReadNextFullTransactionId());
}

/*
 * The latest snapshot (not the transaction's), as a cursor snapshot.  The
 * caller's own transaction counts as still running: its messages are not
 * passed before it commits.
 */
void
dsnap_latest(DSnap *out)
{
	Snapshot	snap = GetLatestSnapshot();
	FullTransactionId next = ReadNextFullTransactionId();
	FullTransactionId mine = GetTopFullTransactionIdIfAny();
	uint32		i;
	uint32		n = 0;

	out->xmin = widen_xid(snap->xmin, next);
	out->xmax = widen_xid(snap->xmax, next);
	for (i = 0; i < snap->xcnt && n < (uint32) deliver_snap_xip_max - 1; i++)
		out->xip[n++] = widen_xid(snap->xip[i], next);
	if (FullTransactionIdIsValid(mine) &&
		U64FromFullTransactionId(mine) < out->xmax)
		out->xip[n++] = U64FromFullTransactionId(mine);
	out->nxip = n;
	qsort(out->xip, n, sizeof(uint64), cmp_u64);
	if (n > 0 && out->xip[0] < out->xmin)
		out->xmin = out->xip[0];
}

/*
 * Copy a snapshot (only as many xids as it has).
 */
void
dsnap_copy(DSnap *dst, const DSnap *src)
{
	memcpy(dst, src, offsetof(DSnap, xip) + sizeof(uint64) * src->nxip);
}

/*
 * Was txid running when the snapshot was taken?  (A binary search of xip.)
 */
bool
dsnap_in_xip(const DSnap *s, uint64 txid)
{
	int			lo = 0;
	int			hi = (int) s->nxip - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (s->xip[mid] == txid)
			return true;
		if (s->xip[mid] < txid)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return false;
}

/*
 * Is a finished transaction's work visible in the snapshot?
 */
bool
dsnap_visible(const DSnap *s, uint64 txid)
{
	if (txid < s->xmin)
		return true;
	if (txid >= s->xmax)
		return false;
	return !dsnap_in_xip(s, txid);
}

/*
 * The snapshot as a pg_snapshot (to store it in a table).
 */
Datum
dsnap_to_datum(const DSnap *s)
{
	Size		size = offsetof(PgSnapshotData, xip) + sizeof(FullTransactionId) * s->nxip;
	PgSnapshotData *p = palloc(size);
	uint32		i;

	SET_VARSIZE(p, size);
	p->nxip = s->nxip;
	p->xmin = FullTransactionIdFromU64(s->xmin);
	p->xmax = FullTransactionIdFromU64(s->xmax);
	for (i = 0; i < s->nxip; i++)
		p->xip[i] = FullTransactionIdFromU64(s->xip[i]);
	return PointerGetDatum(p);
}

/*
 * Read a pg_snapshot.  When it lists more running xids than a shared
 * snapshot holds, keep the lowest ones and lower xmax to the first one
 * dropped: the snapshot only gets older (more is re-read, nothing skipped).
 */
void
dsnap_from_datum(Datum d, DSnap *out)
{
	PgSnapshotData *p = (PgSnapshotData *) PG_DETOAST_DATUM(d);
	uint32		i;
	uint32		n = p->nxip;

	out->xmin = U64FromFullTransactionId(p->xmin);
	out->xmax = U64FromFullTransactionId(p->xmax);
	if (n > (uint32) deliver_snap_xip_max)
	{
		n = deliver_snap_xip_max;
		out->xmax = U64FromFullTransactionId(p->xip[n]);
	}
	for (i = 0; i < n; i++)
		out->xip[i] = U64FromFullTransactionId(p->xip[i]);
	out->nxip = n;
}

/*
 * A transaction's commit time (track_commit_timestamp), or 0 when it is
 * not known.
 */
TimestampTz
txid_commit_time(uint64 txid)
{
	TimestampTz ts = 0;

	if (!track_commit_timestamp ||
		!TransactionIdGetCommitTsData((TransactionId) (txid & 0xFFFFFFFF), &ts, NULL))
		return 0;
	return ts;
}
