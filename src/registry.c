/*
 * registry.c
 *		The entries of queues and consumer groups in shared memory: finding
 *		and creating them, resetting and forgetting them, and handing out a
 *		group's entry locked and recovered (group_lock).
 *
 * A queue's entry holds what its backends share (the current segment, the
 * condition variable long polls sleep on, counters, its share of lease
 * slots); a group's entry holds its cursor, restart points and lease lists.
 * Entries are allocated under entry_lock on first use and released when
 * the queue or group is dropped.
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "deliver.h"
#include "flow.h"
#include "lease.h"
#include "recovery.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"

/*
 * Index of the shared entry of a queue (keyed by database and the OID of
 * its done table q<id>_done0, so that a queue re-created under the same id
 * is a new one), created on first use when create; -1 when there is none.
 */
int32
deliver_queue_entry(Oid dbid, Oid done_relid, int32 queue_id, bool create)
{
	int			i;
	int			free_i = -1;

	LWLockAcquire(deliver_shared->entry_lock, LW_EXCLUSIVE);
	for (i = 0; i < deliver_max_queues; i++)
	{
		QueueEntry *qs = &deliver_queues[i];

		if (qs->used && qs->dbid == dbid && qs->done_relid == done_relid)
		{
			LWLockRelease(deliver_shared->entry_lock);
			return i;
		}
		if (!qs->used && free_i < 0)
			free_i = i;
	}
	if (!create)
	{
		LWLockRelease(deliver_shared->entry_lock);
		return -1;
	}
	if (free_i < 0)
	{
		LWLockRelease(deliver_shared->entry_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many queues in use"),
				 errhint("Raise deliver.max_queues (now %d) and restart.", deliver_max_queues)));
	}
	deliver_queues[free_i].used = true;
	deliver_queues[free_i].dbid = dbid;
	deliver_queues[free_i].done_relid = done_relid;
	deliver_queues[free_i].queue_id = queue_id;
	deliver_queues[free_i].sent_total = 0;
	deliver_queues[free_i].slots_held = 0;
	deliver_queues[free_i].delayed_due = 1;	/* unknown: look once */
	deliver_queues[free_i].fifo_key_limit = 1;	/* set by its receives */
	deliver_queues[free_i].cur_seg = -1;
	lease_queue_added();
	LWLockRelease(deliver_shared->entry_lock);
	return free_i;
}

/*
 * This backend's memory of where the entries of the groups it used are:
 * (queue entry, group id) -> index in deliver_groups.  A remembered index
 * is only a hint: entries are released and reused, so whoever follows it
 * checks the entry's group_id and queue_idx under the entry's lock.  It
 * spares the walk over every group entry under the exclusive entry_lock
 * that each receive from another group than the last one (a consumer
 * serving many queues, the maintenance worker's sweep) would make.
 */
typedef struct GroupHintKey
{
	int32		queue_idx;
	int32		group_id;
} GroupHintKey;

typedef struct GroupHint
{
	GroupHintKey key;
	int32		gidx;
} GroupHint;

static HTAB *group_hints = NULL;

/* the remembered entry of a group, or -1 */
static int32
group_hint(int32 group_id, int32 queue_idx)
{
	GroupHintKey k = {queue_idx, group_id};
	GroupHint  *h;

	if (group_hints == NULL)
		return -1;
	h = hash_search(group_hints, &k, HASH_FIND, NULL);
	return h ? h->gidx : -1;
}

/* remember (gidx >= 0) or forget (-1) the entry of a group */
static void
group_hint_set(int32 group_id, int32 queue_idx, int32 gidx)
{
	GroupHintKey k = {queue_idx, group_id};
	GroupHint  *h;

	if (group_hints == NULL)
	{
		HASHCTL		ctl;

		if (gidx < 0)
			return;
		ctl.keysize = sizeof(GroupHintKey);
		ctl.entrysize = sizeof(GroupHint);
		group_hints = hash_create("deliver group entries", 256, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	if (gidx < 0)
		(void) hash_search(group_hints, &k, HASH_REMOVE, NULL);
	else
	{
		h = hash_search(group_hints, &k, HASH_ENTER, NULL);
		h->gidx = gidx;
	}
}

/*
 * Index of the shared entry of a consumer group, created (not yet
 * recovered) on first use when create; -1 when there is none.
 */
static int32
group_entry_search(int32 group_id, int32 queue_idx, bool create)
{
	int			i;
	int			free_i = -1;

	LWLockAcquire(deliver_shared->entry_lock, create ? LW_EXCLUSIVE : LW_SHARED);
	for (i = 0; i < deliver_max_groups; i++)
	{
		if (deliver_groups[i].group_id == group_id &&
			deliver_groups[i].queue_idx == queue_idx)
		{
			LWLockRelease(deliver_shared->entry_lock);
			return i;
		}
		if (deliver_groups[i].group_id == 0 && free_i < 0)
			free_i = i;
	}
	if (!create)
	{
		LWLockRelease(deliver_shared->entry_lock);
		return -1;
	}
	if (free_i < 0)
	{
		LWLockRelease(deliver_shared->entry_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many consumer groups in use"),
				 errhint("Raise deliver.max_consumer_groups (now %d) and restart.", deliver_max_groups)));
	}
	{
		GroupEntry *gs = &deliver_groups[free_i];

		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		gs->group_id = group_id;
		gs->queue_idx = queue_idx;
		gs->recovered = false;
		gs->leased.head = gs->leased.tail = -1;
		gs->leased.count = 0;
		gs->ready_list = gs->leased;
		gs->blocked = gs->leased;
		gs->delivered_total = gs->acked_total = gs->dead_total = 0;
		gs->depth_valid = false;
		gs->last_receive = GetCurrentTimestamp();
		flow_entry_init(gs);
		LWLockRelease(&gs->lock);
	}
	LWLockRelease(deliver_shared->entry_lock);
	return free_i;
}

/*
 * Index of the shared entry of a consumer group, created (not yet
 * recovered) on first use.
 */
int32
deliver_group_entry(int32 group_id, int32 queue_idx)
{
	return group_entry_search(group_id, queue_idx, true);
}

/*
 * Forget the in-memory state of every group of a queue, or of one group
 * when group_id is not 0 (after purge or drop): leases are released and
 * the groups recover from their durable state on next use.  With forget,
 * the entries are released too.
 */
void
deliver_reset_queue_groups(int32 queue_idx, int32 group_id, bool forget)
{
	int			i;

	LWLockAcquire(deliver_shared->entry_lock, LW_EXCLUSIVE);
	for (i = 0; i < deliver_max_groups; i++)
	{
		GroupEntry *gs = &deliver_groups[i];

		if (gs->group_id == 0 || gs->queue_idx != queue_idx ||
			(group_id != 0 && gs->group_id != group_id))
			continue;
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		group_release_slots(gs);
		gs->recovered = false;
		if (forget)
			gs->group_id = 0;
		LWLockRelease(&gs->lock);
	}
	if (forget && group_id == 0)
	{
		lease_queue_removed(queue_idx);
		deliver_queues[queue_idx].used = false;
	}
	LWLockRelease(deliver_shared->entry_lock);
}

/*
 * Forget the shared state of every queue of a database (dropped, or the
 * extension dropped in it): its lease slots, queue and group entries.
 */
void
deliver_forget_database(Oid dbid)
{
	int			i;

	for (i = 0; i < deliver_max_queues; i++)
	{
		if (!deliver_queues[i].used || deliver_queues[i].dbid != dbid)
			continue;
		queue_wake(i);
		deliver_reset_queue_groups(i, 0, true);
	}
}

/*
 * The group's shared entry, locked exclusively and recovered.  The caller
 * already holds its lock on the queue's done table.
 */
GroupEntry *
group_lock(QueueInfo *q, int32 group_id, int *gidx_out)
{
	int			gidx;
	GroupEntry *gs;

	for (;;)
	{
		gidx = group_hint(group_id, q->queue_idx);
		if (gidx < 0)
			gidx = deliver_group_entry(group_id, q->queue_idx);
		gs = &deliver_groups[gidx];
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		if (gs->group_id == group_id && gs->queue_idx == q->queue_idx)
			break;
		/* the entry was released (and maybe reused) since: look again */
		LWLockRelease(&gs->lock);
		group_entry_forget(group_id, q->queue_idx);
	}
	group_hint_set(group_id, q->queue_idx, gidx);
	if (!gs->recovered)
		group_recover(q, gs, gidx);
	/* (scans on a copy of the entry find the filter made under the lock) */
	if (gs->horizon_txid != 0)
		recovery_filter_load(q, gs);
	*gidx_out = gidx;
	return gs;
}

/*
 * Index of the shared entry of a group, or -1 when it has none; not
 * created.  The caller checks under the entry's lock that it is still the
 * group's (group_entry_forget when not).
 */
int32
group_entry_find(int32 group_id, int32 queue_idx)
{
	int32		gidx = group_hint(group_id, queue_idx);

	if (gidx < 0)
	{
		gidx = group_entry_search(group_id, queue_idx, false);
		if (gidx >= 0)
			group_hint_set(group_id, queue_idx, gidx);
	}
	return gidx;
}

/* the entry group_entry_find gave went to another group */
void
group_entry_forget(int32 group_id, int32 queue_idx)
{
	group_hint_set(group_id, queue_idx, -1);
}

/*
 * Does the group hold something a sweep (sweep.c) deals with: leases,
 * messages waiting for redelivery or held behind their FIFO key?  Not a
 * group without an entry or not recovered since the server started: it
 * holds no lease (its messages are delivered again from its durable
 * state).  Read without the group's lock (a sweep must take the done
 * table's lock before it): a change it misses is seen by the next sweep.
 */
bool
group_may_be_busy(QueueInfo *q, int32 group_id)
{
	int32		gidx = group_entry_find(group_id, q->queue_idx);
	GroupEntry *gs;

	if (gidx < 0)
		return false;
	gs = &deliver_groups[gidx];
	pg_read_barrier();
	if (gs->group_id != group_id || gs->queue_idx != q->queue_idx)
	{
		group_entry_forget(group_id, q->queue_idx);
		return true;			/* (group_lock looks for it again) */
	}
	return gs->recovered &&
		gs->leased.count + gs->ready_list.count + gs->blocked.count > 0;
}
