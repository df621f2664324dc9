/*
 * slots.c
 *		Lease slots in shared memory and the per-group lists they live on.
 *
 * A slot holds one message of one consumer group between its first
 * delivery and its finish (ack, dead letter).  Callers hold the group's
 * lock for anything touching the group's lists; the free list has a lock
 * of its own.  The slots are shared fairly between queues (lease_reserve),
 * and FIFO queues index the keys their messages hold (fifo_key_take).
 */
#include "deliver.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/pg_prng.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"

int			deliver_max_leases_per_queue = 0;
int			deliver_idle_release_ms = 5 * 60 * 1000;

/*
 * How the lease slots are shared.  Every queue in use has a reserve of
 * lease_reserve() slots (deliver.max_in_flight / deliver.max_queues): as
 * long as it holds fewer, it gets one, whatever other queues hold.  Beyond
 * its reserve a queue takes from the slots nobody's reserve needs, up to
 * lease_queue_cap() (deliver.max_in_flight_per_queue, by default a quarter
 * of deliver.max_in_flight).  So no queue, of this database or another,
 * can take the slots another queue needs for its first deliveries.
 */
int32
lease_reserve(void)
{
	return deliver_max_leases / deliver_max_queues;
}

int32
lease_queue_cap(void)
{
	int32		cap = deliver_max_leases_per_queue > 0 ? deliver_max_leases_per_queue
		: deliver_max_leases / 4;

	return Max(Min(cap, deliver_max_leases), lease_reserve());
}

/* a queue entry came into use: set its reserve aside (caller holds lock) */
void
lease_queue_added(void)
{
	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	deliver_shared->reserved += lease_reserve();
	LWLockRelease(deliver_shared->slot_lock);
}

/* a queue entry goes out of use: its reserve is free again */
void
lease_queue_removed(int32 queue_idx)
{
	QueueEntry *qs = &deliver_queues[queue_idx];

	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	if (qs->slots_held != 0)
		elog(WARNING, "deliver: queue entry %d still counts %d lease slots", queue_idx,
			 qs->slots_held);
	deliver_shared->reserved -= Max(lease_reserve() - qs->slots_held, 0);
	qs->slots_held = 0;
	LWLockRelease(deliver_shared->slot_lock);
}

/*
 * Take a slot for a message of the queue from the free list (oldest freed
 * first, so that each slot's generation grows slowly), or -1 when the
 * queue's share is used up.
 */
int32
slot_alloc(int32 queue_idx)
{
	int32		idx = -1;
	LeaseSlot  *s;
	QueueEntry *qs = &deliver_queues[queue_idx];
	int32		reserve = lease_reserve();

	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	if (deliver_shared->free_head >= 0 &&
		(qs->slots_held < reserve ||
		 (qs->slots_held < lease_queue_cap() &&
		  deliver_shared->free_count > deliver_shared->reserved)))
	{
		idx = deliver_shared->free_head;
		s = &deliver_slots[idx];
		deliver_shared->free_head = s->next;
		if (s->next >= 0)
			deliver_slots[s->next].prev = -1;
		else
			deliver_shared->free_tail = -1;
		deliver_shared->free_count--;
		if (qs->slots_held < reserve)
			deliver_shared->reserved--;
		qs->slots_held++;
	}
	LWLockRelease(deliver_shared->slot_lock);
	if (idx >= 0)
	{
		s = &deliver_slots[idx];
		s->prev = s->next = -1;
		s->queue_idx = queue_idx;
		s->finish_pending = false;
		s->finish_xid = InvalidTransactionId;
		s->reason = REASON_NONE;
		s->last_error[0] = '\0';
		s->attempt = 0;
		s->has_key = false;
		s->key_held = false;
		s->key_next = -1;
	}
	return idx;
}

void
slot_free(int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	QueueEntry *qs = &deliver_queues[s->queue_idx];

	s->state = SLOT_FREE;
	s->delivery_id = 0;
	s->group_idx = -1;
	s->key_held = false;
	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	s->next = -1;
	s->prev = deliver_shared->free_tail;
	if (deliver_shared->free_tail >= 0)
		deliver_slots[deliver_shared->free_tail].next = idx;
	else
		deliver_shared->free_head = idx;
	deliver_shared->free_tail = idx;
	deliver_shared->free_count++;
	qs->slots_held--;
	if (qs->slots_held < lease_reserve())
		deliver_shared->reserved++;
	LWLockRelease(deliver_shared->slot_lock);
}

/*
 * The FIFO key index: for each (consumer group, key) of a FIFO queue, how
 * many of its messages hold the key (leased or waiting for redelivery:
 * nearly always one) and the chain of its messages held back behind them,
 * oldest first.  A shared hash table, partitioned, each partition under a
 * lock of its own; a caller holds the group's lock, then a partition's.
 */
typedef struct FifoKey
{
	int32		gidx;
	uint32		key_hash;
} FifoKey;

typedef struct FifoKeyEntry
{
	FifoKey		key;
	int32		holders;
	int32		blocked_head;	/* lease slots, linked by key_next */
	int32		blocked_tail;
} FifoKeyEntry;

static HTAB *fifo_keys = NULL;

Size
fifo_keys_shmem_size(void)
{
	return hash_estimate_size(deliver_max_leases, sizeof(FifoKeyEntry));
}

void
fifo_keys_shmem_init(void)
{
	HASHCTL		info;

	info.keysize = sizeof(FifoKey);
	info.entrysize = sizeof(FifoKeyEntry);
	info.num_partitions = DELIVER_KEY_PARTITIONS;
	fifo_keys = ShmemInitHash("deliver fifo keys", deliver_max_leases, deliver_max_leases,
							  &info, HASH_ELEM | HASH_BLOBS | HASH_PARTITION | HASH_FIXED_SIZE);
}

/* the entry of a slot's key, its partition locked; NULL when there is none */
static FifoKeyEntry *
fifo_key_entry(LeaseSlot *s, HASHACTION action, LWLock **lock)
{
	FifoKey		k;
	uint32		h;
	bool		found;
	FifoKeyEntry *e;

	memset(&k, 0, sizeof(k));
	k.gidx = s->group_idx;
	k.key_hash = s->key_hash;
	h = get_hash_value(fifo_keys, &k);
	*lock = &deliver_shared->key_locks[h % DELIVER_KEY_PARTITIONS].lock;
	LWLockAcquire(*lock, LW_EXCLUSIVE);
	e = hash_search_with_hash_value(fifo_keys, &k, h, action, &found);
	if (e != NULL && !found)
	{
		e->holders = 0;
		e->blocked_head = e->blocked_tail = -1;
	}
	return e;
}

/*
 * A message of a FIFO queue with a key comes to the group: true when it may
 * go out (it holds its key now), false when an earlier message of its key
 * holds it: then it is chained behind (the caller puts it on the group's
 * blocked list).
 */
bool
fifo_key_take(GroupEntry *gs, int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_ENTER, &lock);
	bool		take = (e->holders == 0 && e->blocked_head < 0);

	if (take)
	{
		e->holders++;
		s->key_held = true;
	}
	else
	{
		s->key_next = -1;
		if (e->blocked_tail >= 0)
			deliver_slots[e->blocked_tail].key_next = idx;
		else
			e->blocked_head = idx;
		e->blocked_tail = idx;
	}
	LWLockRelease(lock);
	return take;
}

/* the message holds its key whatever else does (a finish still pending) */
void
fifo_key_hold(GroupEntry *gs, int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_ENTER, &lock);

	e->holders++;
	s->key_held = true;
	LWLockRelease(lock);
}

/*
 * A message that held its key leaves the group: the next one of its key
 * goes out (it moves to the ready list).
 */
static void
fifo_key_release(GroupEntry *gs, LeaseSlot *s)
{
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_FIND, &lock);

	s->key_held = false;
	if (e == NULL)
	{
		LWLockRelease(lock);
		return;
	}
	e->holders--;
	if (e->holders <= 0 && e->blocked_head >= 0)
	{
		int32		b = e->blocked_head;
		LeaseSlot  *bs = &deliver_slots[b];

		e->blocked_head = bs->key_next;
		if (e->blocked_head < 0)
			e->blocked_tail = -1;
		bs->key_next = -1;
		bs->key_held = true;
		e->holders++;
		slist_remove(&gs->blocked, b);
		bs->state = SLOT_READY;
		bs->visible_at = 0;
		slist_push(&gs->ready_list, b);
	}
	if (e->holders <= 0 && e->blocked_head < 0)
		hash_search(fifo_keys, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(lock);
}

/* forget a slot's key entry altogether (its group lets go of everything) */
static void
fifo_key_forget(LeaseSlot *s)
{
	LWLock	   *lock;
	FifoKeyEntry *e = fifo_key_entry(s, HASH_FIND, &lock);

	if (e != NULL)
		hash_search(fifo_keys, &e->key, HASH_REMOVE, NULL);
	LWLockRelease(lock);
}

/*
 * Free every lease slot of a group (under its lock): after a purge or a
 * drop, or when the group gives back the slots of messages nobody received
 * (its messages come again from its durable state when it recovers).
 */
void
group_release_slots(GroupEntry *gs)
{
	SlotList   *lists[3] = {&gs->leased, &gs->ready_list, &gs->blocked};
	int			l;

	for (l = 0; l < 3; l++)
	{
		while (lists[l]->head >= 0)
		{
			int32		idx = lists[l]->head;
			LeaseSlot  *s = &deliver_slots[idx];

			slist_remove(lists[l], idx);
			if (s->key_held || s->state == SLOT_BLOCKED)
				fifo_key_forget(s);
			slot_free(idx);
		}
	}
}

void
slist_push(SlotList *l, int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];

	s->next = -1;
	s->prev = l->tail;
	if (l->tail >= 0)
		deliver_slots[l->tail].next = idx;
	else
		l->head = idx;
	l->tail = idx;
	l->count++;
}

void
slist_remove(SlotList *l, int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];

	if (s->prev >= 0)
		deliver_slots[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next >= 0)
		deliver_slots[s->next].prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = -1;
	l->count--;
}

static SlotList *
slot_list(GroupEntry *gs, LeaseSlot *s)
{
	switch (s->state)
	{
		case SLOT_LEASED:
			return &gs->leased;
		case SLOT_READY:
			return &gs->ready_list;
		case SLOT_BLOCKED:
			return &gs->blocked;
	}
	elog(ERROR, "deliver: slot in unexpected state %d", s->state);
	return NULL;
}

/*
 * Add delta to the unfinished count of the checkpoint a message counts in
 * (the newest one not newer than its seq), then drop finished checkpoints
 * from the front, keeping the newest.
 */
void
cp_count_add(GroupEntry *gs, uint64 seq, int64 delta)
{
	int			i;

	for (i = gs->ncp - 1; i >= 0; i--)
	{
		if (gs->cps[i].seq <= seq)
		{
			gs->cps[i].count += delta;
			break;
		}
	}
	if (i < 0 && gs->ncp > 0)
		gs->cps[0].count += delta;

	while (gs->ncp > 1 && gs->cps[0].count <= 0)
	{
		int			gidx = gs - deliver_groups;

		memmove(&gs->cps[0], &gs->cps[1], sizeof(Checkpoint) * (gs->ncp - 1));
		for (i = 0; i < gs->ncp - 1; i++)
			dsnap_copy(group_snap(gidx, SNAP_CP(i)), group_snap(gidx, SNAP_CP(i + 1)));
		gs->ncp--;
	}
}

/*
 * The group's restart point: every message visible in it is finished.
 */
void
group_done_snapshot(GroupEntry *gs, int gidx, DSnap *out)
{
	if (gs->ncp == 1 && gs->cps[0].count <= 0)
		dsnap_copy(out, group_snap(gidx, SNAP_LO));
	else
		dsnap_copy(out, group_snap(gidx, SNAP_CP(0)));
}

/*
 * Finish a message: it leaves the group for good.
 */
void
group_finish_slot(GroupEntry *gs, int32 idx, char kind)
{
	LeaseSlot  *s = &deliver_slots[idx];

	slist_remove(slot_list(gs, s), idx);
	cp_count_add(gs, s->cp_seq, -1);
	if (kind == DONE_DEAD)
		gs->dead_total++;
	else
		gs->acked_total++;
	if (s->key_held)
		fifo_key_release(gs, s);
	slot_free(idx);
}

/*
 * Settle a slot whose finish was left to another transaction (a prepared
 * one, or one that ended while we were not looking).  Returns true when the
 * slot is gone (finished), false when it is still there.
 */
bool
slot_resolve_finish(GroupEntry *gs, int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];

	if (!s->finish_pending)
		return false;
	if (TransactionIdIsCurrentTransactionId(s->finish_xid) ||
		TransactionIdIsInProgress(s->finish_xid))
		return false;
	if (TransactionIdDidCommit(s->finish_xid))
	{
		group_finish_slot(gs, idx, s->finish_kind);
		return true;
	}
	s->finish_pending = false;
	s->finish_xid = InvalidTransactionId;
	return false;
}

/*
 * Exponential backoff with jitter: base * 2^(attempt-1), capped, then a
 * random point in its upper half.
 */
int64
backoff_ms(QueueInfo *q, int attempt)
{
	int64		d = q->retry_base_ms;
	int			i;

	for (i = 1; i < attempt && d < q->retry_max_ms; i++)
		d *= 2;
	if (d > q->retry_max_ms)
		d = q->retry_max_ms;
	if (d <= 1)
		return d;
	return d / 2 + (int64) (pg_prng_double(&pg_global_prng_state) * (d / 2));
}

/*
 * Leases that ran out become ready again after their backoff; a message
 * whose pending ack is still open keeps its lease.
 */
void
group_expire_leases(GroupEntry *gs, QueueInfo *q, TimestampTz now)
{
	int32		idx;
	int32		next;
	TimestampTz next_expiry = DT_NOEND;

	if (gs->next_expiry > now)
		return;
	for (idx = gs->leased.head; idx >= 0; idx = next)
	{
		LeaseSlot  *s = &deliver_slots[idx];

		next = s->next;
		if (s->finish_pending && slot_resolve_finish(gs, idx))
			continue;
		if (s->finish_pending)
		{
			/* look again soon: a prepared ack may yet be rolled back */
			next_expiry = Min(next_expiry, now + USECS_PER_SEC);
			continue;
		}
		if (s->lease_expires > now)
		{
			next_expiry = Min(next_expiry, s->lease_expires);
			continue;
		}
		slist_remove(&gs->leased, idx);
		s->state = SLOT_READY;
		s->reason = REASON_EXPIRED;
		s->visible_at = now + backoff_ms(q, s->attempt) * 1000;
		slist_push(&gs->ready_list, idx);
	}
	gs->next_expiry = next_expiry;
}

/*
 * The group's shared entry, locked exclusively and recovered.  The caller
 * already holds its lock on the queue's done table.
 */
GroupEntry *
group_lock(QueueInfo *q, int32 group_id, int *gidx_out)
{
	static int32 cached_group = 0;	/* the last group this backend used */
	static int	cached_gidx = -1;
	int			gidx;
	GroupEntry *gs;

	for (;;)
	{
		gidx = (cached_group == group_id) ? cached_gidx :
			deliver_group_entry(group_id, q->queue_idx);
		gs = &deliver_groups[gidx];
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		if (gs->group_id == group_id && gs->queue_idx == q->queue_idx)
			break;
		LWLockRelease(&gs->lock);
		cached_group = 0;
	}
	cached_group = group_id;
	cached_gidx = gidx;
	if (!gs->recovered)
		group_recover(q, gs, gidx);
	*gidx_out = gidx;
	return gs;
}
