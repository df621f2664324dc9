/*
 * lease.c
 *		Lease slots: delivery ids and their epoch, the free list and its
 *		fair sharing between queues, the lists of a group, finishing a
 *		message, lease expiry and backoff.
 *
 * A slot holds one message of one consumer group between its first
 * delivery and its finish (ack, dead letter).  Callers hold the group's
 * lock for anything touching the group's lists; the free list has a lock
 * of its own.  The slots are shared fairly between queues (lease_reserve),
 * and FIFO queues index the keys their messages hold (fifo.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "common/pg_prng.h"
#include "storage/fd.h"
#include "storage/procarray.h"

#include "checkpoint.h"
#include "deliver.h"
#include "fifo.h"
#include "lease.h"
#include "settings.h"
#include "shmem.h"

/* the boot counter of delivery ids, in $PGDATA */
#define EPOCH_FILE			"deliver.epoch"
/* an epoch: the WAL timeline (mod 32), then the boot counter (1..1023) */
#define EPOCH_TLI_BITS		5
#define EPOCH_COUNTER_BITS	10

/* by default a queue may hold this fraction of all lease slots */
#define QUEUE_CAP_DIVISOR	4

/* how soon to look again at a lease whose ack waits in a prepared transaction */
#define PENDING_FINISH_RECHECK_US	USECS_PER_SEC

/*
 * Read, bump and durably rewrite the boot counter kept in $PGDATA, and make
 * the epoch of delivery ids from it and the WAL timeline: epoch = (timeline
 * mod 32) << 10 | counter (1..1023).  The counter makes ids unique across
 * restarts (including crash restarts); the timeline makes them unique
 * across a failover: a base backup copies the counter file, so a standby
 * and its primary count from the same value, but a promoted standby writes
 * a timeline of its own, which the old primary never has.
 */
static uint32
lease_next_epoch(TimeLineID tli)
{
	uint32		counter = 0;
	FILE	   *f;

	f = AllocateFile(EPOCH_FILE, PG_BINARY_R);
	if (f)
	{
		if (fread(&counter, sizeof(counter), 1, f) != 1)
			counter = 0;
		FreeFile(f);
	}
	counter++;
	if (counter >= (1U << EPOCH_COUNTER_BITS))
		counter = 1;			/* after 1023 epochs; ids of counter 1 are long gone */

	f = AllocateFile(EPOCH_FILE ".tmp", PG_BINARY_W);
	if (f == NULL || fwrite(&counter, sizeof(counter), 1, f) != 1 || FreeFile(f) != 0)
		ereport(FATAL,
				(errcode_for_file_access(),
				 errmsg("deliver: could not write file \"%s\": %m", EPOCH_FILE ".tmp")));
	(void) durable_rename(EPOCH_FILE ".tmp", EPOCH_FILE, FATAL);
	StaticAssertStmt(EPOCH_TLI_BITS + EPOCH_COUNTER_BITS == 63 - DELIVERY_SLOT_BITS - DELIVERY_GEN_BITS,
					 "epoch bits");
	return ((tli & ((1U << EPOCH_TLI_BITS) - 1)) << EPOCH_COUNTER_BITS) | counter;
}

/*
 * Take a new epoch if there is none yet since the server started, or if
 * the timeline changed since (the server was a standby and got promoted).
 * Leases are only handed out outside recovery (deliver_check_primary).
 */
static void
lease_ensure_epoch(void)
{
	TimeLineID	tli = GetWALInsertionTimeLine();

	if (likely(deliver_shared->epoch_tli == tli))
	{
		pg_read_barrier();
		return;
	}
	/* slot_lock, not entry_lock: callers hold a group lock */
	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	if (deliver_shared->epoch_tli != tli)
	{
		deliver_shared->epoch = lease_next_epoch(tli);
		pg_write_barrier();
		deliver_shared->epoch_tli = tli;
	}
	LWLockRelease(deliver_shared->slot_lock);
}

/*
 * A new fencing token for the slot: epoch | generation | slot.  A slot's
 * generation wrapping bumps the epoch so that no token is ever reused.
 */
uint64
lease_new_delivery_id(int32 slot_idx)
{
	LeaseSlot  *s = &deliver_slots[slot_idx];
	uint32		epoch;

	lease_ensure_epoch();
	s->gen = (s->gen + 1) & DELIVERY_GEN_MASK;
	if (s->gen == 0)
	{
		/* slot_lock, not entry_lock: callers hold a group lock */
		LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
		deliver_shared->epoch = lease_next_epoch(deliver_shared->epoch_tli);
		LWLockRelease(deliver_shared->slot_lock);
		s->gen = 1;
	}
	epoch = deliver_shared->epoch;
	return ((uint64) epoch << (DELIVERY_SLOT_BITS + DELIVERY_GEN_BITS)) |
		((uint64) s->gen << DELIVERY_SLOT_BITS) | (uint64) slot_idx;
}

/*
 * The lease slot a delivery id names, or -1 when it names none (not
 * positive, or beyond deliver.max_in_flight).
 */
int32
lease_slot_of(int64 delivery_id)
{
	uint64		idx = (uint64) delivery_id & DELIVERY_SLOT_MASK;

	if (delivery_id <= 0 || idx >= (uint64) deliver_max_leases)
		return -1;
	return (int32) idx;
}

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

/* the most lease slots one queue may hold */
int32
lease_queue_cap(void)
{
	int32		cap = deliver_max_leases_per_queue > 0 ? deliver_max_leases_per_queue
		: deliver_max_leases / QUEUE_CAP_DIVISOR;

	return Max(Min(cap, deliver_max_leases), lease_reserve());
}

/*
 * How many lease slots a queue may hold now: those it holds, and those it
 * could take (what is left of its reserve, and the free slots nobody's
 * reserve needs), at most lease_queue_cap().  A rough reading, without the
 * slot lock.
 */
int32
lease_queue_reach(int32 queue_idx)
{
	int64		held = deliver_queues[queue_idx].slots_held;
	int64		spare = deliver_shared->free_list.count - deliver_shared->reserved;
	int64		reach = held + Max(spare, 0) + Max(lease_reserve() - held, 0);

	return (int32) Min(reach, (int64) lease_queue_cap());
}

/* a queue entry came into use: set its reserve aside (caller holds entry_lock) */
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
	if (deliver_shared->free_list.head >= 0 &&
		(qs->slots_held < reserve ||
		 (qs->slots_held < lease_queue_cap() &&
		  deliver_shared->free_list.count > deliver_shared->reserved)))
	{
		idx = deliver_shared->free_list.head;
		slist_remove(&deliver_shared->free_list, idx);
		if (qs->slots_held < reserve)
			deliver_shared->reserved--;
		qs->slots_held++;
	}
	LWLockRelease(deliver_shared->slot_lock);
	if (idx >= 0)
	{
		s = &deliver_slots[idx];
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

/*
 * Put a slot back on the free list (the newest freed last), giving it back
 * to its queue's share.
 */
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
	slist_push(&deliver_shared->free_list, idx);
	qs->slots_held--;
	if (qs->slots_held < lease_reserve())
		deliver_shared->reserved++;
	LWLockRelease(deliver_shared->slot_lock);
}

/*
 * Append a slot to a list: one of its group's, or the free list.
 */
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

/*
 * Unlink a slot from the list it is on.
 */
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

/*
 * The list of the group a slot is on, by its state.
 */
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
 * Free every lease slot of a group (under its lock): after a purge or a
 * drop, or when the group gives back the slots of messages nobody received
 * (its messages come again from its durable state when it recovers).
 */
void
group_release_slots(GroupEntry *gs)
{
	SlotList   *lists[3] = {&gs->leased, &gs->ready_list, &gs->blocked};
	int			l;

	for (l = 0; l < (int) lengthof(lists); l++)
	{
		while (lists[l]->head >= 0)
		{
			int32		idx = lists[l]->head;
			LeaseSlot  *s = &deliver_slots[idx];

			slist_remove(lists[l], idx);
			if (s->key_held || s->state == SLOT_BLOCKED)
				fifo_key_forget(idx);
			slot_free(idx);
		}
	}
}

/*
 * Finish a message: it leaves the group for good.
 */
void
group_finish_slot(GroupEntry *gs, int32 idx, char kind)
{
	LeaseSlot  *s = &deliver_slots[idx];

	slist_remove(slot_list(gs, s), idx);
	checkpoint_count_add(gs, s->cp_seq, -1);
	if (s->state == SLOT_BLOCKED)
		fifo_key_unchain(idx);	/* deleted while held behind its key */
	if (kind == DONE_DEAD)
		gs->dead_total++;
	else
		gs->acked_total++;
	if (s->key_held)
	{
		int32		next[FIFO_RELEASE_MAX];
		int			n = fifo_key_release(idx, next, FIFO_RELEASE_MAX);
		int			i;

		for (i = 0; i < n; i++)
		{
			/* the next message of its key goes out */
			LeaseSlot  *bs = &deliver_slots[next[i]];

			slist_remove(&gs->blocked, next[i]);
			bs->state = SLOT_READY;
			bs->visible_at = GetCurrentTimestamp();	/* due now; ready since now (aging) */
			slist_push(&gs->ready_list, next[i]);
		}
	}
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
 * Lock the group of a slot if the slot still carries this delivery; NULL
 * (nothing locked) when it does not.
 */
GroupEntry *
lease_lock_group(int32 idx, uint64 delivery_id)
{
	LeaseSlot  *s = &deliver_slots[idx];
	int32		gidx = s->group_idx;
	GroupEntry *gs;

	if (gidx < 0 || gidx >= deliver_max_groups)
		return NULL;
	gs = &deliver_groups[gidx];
	LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
	if (s->delivery_id != delivery_id || s->group_idx != gidx)
	{
		LWLockRelease(&gs->lock);
		return NULL;
	}
	return gs;
}

/*
 * A message whose row is gone (purged meanwhile) just leaves the group, if
 * its slot still carries this delivery.
 */
void
lease_forget_vanished(GroupEntry *gs, int32 idx, uint64 delivery_id)
{
	LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
	if (deliver_slots[idx].delivery_id == delivery_id)
	{
		deliver_slots[idx].finish_pending = false;
		group_finish_slot(gs, idx, DONE_ACK);
	}
	LWLockRelease(&gs->lock);
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
			next_expiry = Min(next_expiry, now + PENDING_FINISH_RECHECK_US);
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
