/*
 * recovery.c
 *		Rebuild a consumer group's cursor from its durable state.
 *
 * After a restart (or a purge) a group has no shared state.  Its finish
 * records (deliver.q<id>_done<n>) say where to resume: the newest restart
 * point among committed records, or the group's start snapshot.  Messages
 * past that point that a record names are skipped when the cursor meets
 * them; those named by a record of a transaction still prepared are held
 * until it ends.
 *
 * A group that passed over the rows of busy FIFO keys (passover.c) reads
 * again the same way but keeps its shared state (group_reread): the
 * messages its lease slots hold are skipped too.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "storage/procarray.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "checkpoint.h"
#include "deliver.h"
#include "recovery.h"
#include "settings.h"
#include "shmem.h"
#include "snap.h"
#include "tables.h"

typedef struct FilterEntry
{
	int64		message_id;
	TransactionId pending_xid;	/* Invalid: finished */
} FilterEntry;

/* finished messages of one group, as of its last recovery */
typedef struct Filter
{
	int32		group_id;
	uint32		boot_gen;
	HTAB	   *ids;
} Filter;

#define MAX_FILTERS 8
static Filter filters[MAX_FILTERS];
static MemoryContext filter_cxt = NULL;

/* is snapshot a newer than b (a later restart point)? */
static bool
snap_newer(const DSnap *a, const DSnap *b)
{
	if (a->xmax != b->xmax)
		return a->xmax > b->xmax;
	return a->xmin > b->xmin;
}

static bool scan_done_table(Oid relid, int32 group_id, HTAB *ids, DSnap *best,
							DSnap *cand, bool found);

/*
 * Read the group's finish records.  Fills ids (when not NULL) and, when
 * best is not NULL, the newest committed restart point (returns whether one
 * was found).
 */
static bool
scan_done(QueueInfo *q, int32 group_id, HTAB *ids, DSnap *best)
{
	DSnap	   *cand = palloc(deliver_snap_size);
	bool		found = false;
	int			seg;

	for (seg = 0; seg < q->nsegments; seg++)
		found |= scan_done_table(q->done_rel[seg], group_id, ids, best, cand, found);
	return found;
}

/*
 * One done table of scan_done; found says whether best holds a restart
 * point already.
 */
static bool
scan_done_table(Oid relid, int32 group_id, HTAB *ids, DSnap *best, DSnap *cand, bool found)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TableScanDesc scan = table_beginscan(rel, SnapshotAny, 0, NULL);
	TupleDesc	td = RelationGetDescr(rel);
	HeapTuple	tup;

	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Datum		values[DONE_NCOLUMNS];
		bool		nulls[DONE_NCOLUMNS];
		TransactionId xmin = HeapTupleHeaderGetXmin(tup->t_data);
		TransactionId pending = InvalidTransactionId;

		heap_deform_tuple(tup, td, values, nulls);
		if (DatumGetInt32(values[DONE_COL_GROUP_ID - 1]) != group_id)
			continue;
		/* deleted (reset_consumer_group drops a group's records) */
		if (!(tup->t_data->t_infomask & HEAP_XMAX_INVALID) &&
			!HEAP_XMAX_IS_LOCKED_ONLY(tup->t_data->t_infomask))
		{
			TransactionId xmax = HeapTupleHeaderGetUpdateXid(tup->t_data);

			if (TransactionIdIsCurrentTransactionId(xmax) || TransactionIdDidCommit(xmax))
				continue;
		}
		if (TransactionIdIsCurrentTransactionId(xmin))
		{
			/*
			 * ours: counts as finished, but for a delete_message of this
			 * transaction, which must not be lost to a rollback: held
			 */
			if (DatumGetChar(values[DONE_COL_KIND - 1]) == DONE_DELETED)
				pending = xmin;
		}
		else if (TransactionIdIsInProgress(xmin))
			pending = xmin;
		else if (!TransactionIdDidCommit(xmin))
			continue;			/* rolled back */

		if (best && !TransactionIdIsValid(pending) && !nulls[DONE_COL_SNAPSHOT - 1])
		{
			dsnap_from_datum(values[DONE_COL_SNAPSHOT - 1], cand);
			if (!found || snap_newer(cand, best))
				dsnap_copy(best, cand);
			found = true;
		}
		if (ids)
		{
			Datum	   *v;
			bool	   *vn;
			int			n;
			int			i;

			deconstruct_array(DatumGetArrayTypeP(values[DONE_COL_MESSAGE_IDS - 1]), INT8OID, 8,
							  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &v, &vn, &n);
			for (i = 0; i < n; i++)
			{
				bool		hit;
				int64		id = DatumGetInt64(v[i]);
				FilterEntry *e = hash_search(ids, &id, HASH_ENTER, &hit);

				/* a committed record wins over a pending one */
				if (!hit || !TransactionIdIsValid(pending))
					e->pending_xid = pending;
			}
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The recovery filter of the group: the finished messages its done tables
 * name, read once per recovery (boot_gen) and kept for a few groups.
 */
static Filter *
filter_for(QueueInfo *q, GroupEntry *gs)
{
	int			i;
	Filter	   *f = NULL;
	HASHCTL		ctl;

	for (i = 0; i < MAX_FILTERS; i++)
		if (filters[i].group_id == gs->group_id)
			f = &filters[i];
	if (f && f->boot_gen == gs->boot_gen)
		return f;
	if (f == NULL)
	{
		for (i = 0; i < MAX_FILTERS && filters[i].group_id != 0; i++)
			;
		f = &filters[i < MAX_FILTERS ? i : 0];
	}
	if (f->ids)
		hash_destroy(f->ids);
	if (filter_cxt == NULL)
		filter_cxt = AllocSetContextCreate(TopMemoryContext, "deliver recovery filters",
										   ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(FilterEntry);
	ctl.hcxt = filter_cxt;
	f->ids = hash_create("deliver finished ids", 1024, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	f->group_id = gs->group_id;
	f->boot_gen = gs->boot_gen;
	scan_done(q, gs->group_id, f->ids, NULL);

	/*
	 * The messages the group's slots hold are the slots' business: a slot
	 * gives its message back unfinished only to a recovery, which moves
	 * boot_gen, so those the cursor meets again (group_reread) are not
	 * handed out a second time.  (After a recovery there is none.)
	 */
	if (gs >= deliver_groups && gs < deliver_groups + deliver_max_groups)
	{
		/* (a copy of the entry, made by metrics or peek, has no lock) */
		SlotList   *lists[3] = {&gs->leased, &gs->ready_list, &gs->blocked};

		for (i = 0; i < (int) lengthof(lists); i++)
		{
			int32		idx;

			for (idx = lists[i]->head; idx >= 0; idx = deliver_slots[idx].next)
			{
				FilterEntry *e = hash_search(f->ids, &deliver_slots[idx].message_id,
											 HASH_ENTER, NULL);

				e->pending_xid = InvalidTransactionId;
			}
		}
	}
	return f;
}

/*
 * Under the group's lock: have this backend's filter of the group ready,
 * so that a scan on a copy of the group's entry made under the lock
 * (metrics, peek) finds it.
 */
void
recovery_filter_load(QueueInfo *q, GroupEntry *gs)
{
	(void) filter_for(q, gs);
}

/*
 * Does a committed finish record of the group name the message?  A scan
 * of the queue's done tables (delete_message of a message passed over).
 */
bool
recovery_finished(QueueInfo *q, int32 group_id, int64 message_id)
{
	HASHCTL		ctl;
	HTAB	   *ids;
	FilterEntry *e;
	bool		finished;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(FilterEntry);
	ctl.hcxt = CurrentMemoryContext;
	ids = hash_create("deliver finished ids", 1024, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	scan_done(q, group_id, ids, NULL);
	e = hash_search(ids, &message_id, HASH_FIND, NULL);
	finished = e != NULL && !TransactionIdIsValid(e->pending_xid);
	hash_destroy(ids);
	return finished;
}

/*
 * For a row written before the group's recovery: 0 when it is finished,
 * 1 when it is to be delivered; *pending_xid is set when a prepared
 * transaction holds its finish.
 */
int
recovery_filter(QueueInfo *q, GroupEntry *gs, int64 message_id, TransactionId *pending_xid)
{
	Filter	   *f = filter_for(q, gs);
	FilterEntry *e = hash_search(f->ids, &message_id, HASH_FIND, NULL);

	*pending_xid = InvalidTransactionId;
	if (e == NULL)
		return 1;
	if (!TransactionIdIsValid(e->pending_xid))
		return 0;
	if (TransactionIdIsInProgress(e->pending_xid))
	{
		*pending_xid = e->pending_xid;
		return 1;
	}
	return TransactionIdDidCommit(e->pending_xid) ? 0 : 1;
}

/*
 * The group's start snapshot as the catalog holds it now (the backend's
 * cache may be older than a reset_consumer_group that committed since it
 * was loaded); false when it cannot be read without waiting for a lock.
 */
static bool
catalog_group_start(int32 group_id, DSnap *out)
{
	Oid			relid = get_relname_relid("consumer_group", deliver_namespace());
	Relation	rel;
	TableScanDesc scan;
	Snapshot	snap;
	HeapTuple	tup;
	AttrNumber	a_id;
	AttrNumber	a_start;
	bool		found = false;

	if (!OidIsValid(relid) || !ConditionalLockRelationOid(relid, AccessShareLock))
		return false;
	rel = table_open(relid, NoLock);
	a_id = get_attnum(relid, "group_id");
	a_start = get_attnum(relid, "start_snapshot");
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, a_id, RelationGetDescr(rel), &isnull);

		if (isnull || DatumGetInt32(d) != group_id)
			continue;
		d = heap_getattr(tup, a_start, RelationGetDescr(rel), &isnull);
		if (!isnull)
		{
			dsnap_from_datum(d, out);
			found = true;
		}
		break;
	}
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	return found;
}

/*
 * The group's cursor starts again at its lower bound (set by the caller)
 * and reads the finish records for every row older than now: what a
 * recovery and a read again (group_reread) share.
 */
static void
cursor_read_again(GroupEntry *gs)
{
	uint64		next = dsnap_next_txid();

	gs->in_window = false;
	gs->pos_cts = DT_NOBEGIN;
	gs->pos_txid = 0;
	gs->pos_id = 0;
	if (gs->horizon_txid < next)
		gs->horizon_txid = next;
	gs->boot_gen++;
	gs->depth_valid = false;	/* max_depth: count again (metrics.c) */
	gs->npassed = 0;
	gs->passed = 0;
}

/*
 * Give a group a cursor from its durable state.  Called with the group's
 * lock held exclusively, the done table already locked by the caller.
 */
void
group_recover(QueueInfo *q, GroupEntry *gs, int gidx)
{
	DSnap	   *lo = group_snap(gidx, SNAP_LO);
	const GroupInfo *g = NULL;
	int			i;

	for (i = 0; i < q->ngroups; i++)
		if (q->groups[i].group_id == gs->group_id)
			g = &q->groups[i];
	if (g == NULL)
		elog(ERROR, "deliver: consumer group %d is not in the catalog", gs->group_id);

	{
		DSnap	   *start = palloc(deliver_snap_size);

		if (!catalog_group_start(gs->group_id, start))
			dsnap_copy(start, g->start);
		if (!scan_done(q, gs->group_id, NULL, lo) || snap_newer(start, lo))
			dsnap_copy(lo, start);
		pfree(start);
	}

	checkpoint_reset(gs, gidx);
	gs->horizon_txid = 0;
	cursor_read_again(gs);
	gs->next_expiry = 0;
	gs->recovered = true;
}

/*
 * Read the rows the group passed over again, and every other row since
 * the restart point that was newest when it passed over the first:
 * finish records and lease slots say which of those are taken care of
 * (filter_for).  Called with the group's lock held exclusively.
 */
void
group_reread(GroupEntry *gs, int gidx)
{
	int			j = checkpoint_rewind(gs, gs->passed_cp_seq, gs->passed);

	dsnap_copy(group_snap(gidx, SNAP_LO), group_snap(gidx, SNAP_CP(j)));
	cursor_read_again(gs);
}
