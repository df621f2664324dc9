/*
 * slots.c
 *		Lease slots in shared memory and the per-group lists they live on.
 *
 * A slot holds one message of one consumer group between its first
 * delivery and its finish (ack, dead letter).  Callers hold the group's
 * lock for anything touching the group's lists; the free list has a lock
 * of its own.
 */
#include "deliver.h"

#include "access/transam.h"
#include "access/xact.h"
#include "common/pg_prng.h"
#include "storage/procarray.h"

/*
 * Take a slot from the free list (oldest freed first, so that each slot's
 * generation grows slowly), or -1 when none is left.
 */
int32
slot_alloc(void)
{
	int32		idx;
	LeaseSlot  *s;

	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	idx = deliver_shared->free_head;
	if (idx >= 0)
	{
		s = &deliver_slots[idx];
		deliver_shared->free_head = s->next;
		if (s->next >= 0)
			deliver_slots[s->next].prev = -1;
		else
			deliver_shared->free_tail = -1;
	}
	LWLockRelease(deliver_shared->slot_lock);
	if (idx >= 0)
	{
		s = &deliver_slots[idx];
		s->prev = s->next = -1;
		s->finish_pending = false;
		s->finish_xid = InvalidTransactionId;
		s->reason = REASON_NONE;
		s->last_error[0] = '\0';
		s->attempt = 0;
	}
	return idx;
}

void
slot_free(int32 idx)
{
	LeaseSlot  *s = &deliver_slots[idx];

	s->state = SLOT_FREE;
	s->delivery_id = 0;
	s->group_idx = -1;
	LWLockAcquire(deliver_shared->slot_lock, LW_EXCLUSIVE);
	s->next = -1;
	s->prev = deliver_shared->free_tail;
	if (deliver_shared->free_tail >= 0)
		deliver_slots[deliver_shared->free_tail].next = idx;
	else
		deliver_shared->free_head = idx;
	deliver_shared->free_tail = idx;
	LWLockRelease(deliver_shared->slot_lock);
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
slot_list(GroupShared *gs, LeaseSlot *s)
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
cp_count_add(GroupShared *gs, uint64 seq, int64 delta)
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
group_done_snapshot(GroupShared *gs, int gidx, DSnap *out)
{
	if (gs->ncp == 1 && gs->cps[0].count <= 0)
		dsnap_copy(out, group_snap(gidx, SNAP_LO));
	else
		dsnap_copy(out, group_snap(gidx, SNAP_CP(0)));
}

/*
 * A message of a FIFO key finished or left: let the next one of its key go.
 */
static void
fifo_release_next(GroupShared *gs, uint32 key_hash)
{
	int32		idx;

	for (idx = gs->blocked.head; idx >= 0; idx = deliver_slots[idx].next)
	{
		LeaseSlot  *b = &deliver_slots[idx];

		if (b->key_hash == key_hash)
		{
			slist_remove(&gs->blocked, idx);
			b->state = SLOT_READY;
			b->visible_at = 0;
			slist_push(&gs->ready_list, idx);
			return;
		}
	}
}

/*
 * Finish a message: it leaves the group for good.
 */
void
group_finish_slot(GroupShared *gs, int32 idx, char kind)
{
	LeaseSlot  *s = &deliver_slots[idx];
	bool		has_key = s->has_key;
	uint32		key_hash = s->key_hash;

	slist_remove(slot_list(gs, s), idx);
	cp_count_add(gs, s->cp_seq, -1);
	if (kind == DONE_DEAD)
		gs->dead_total++;
	else
		gs->acked_total++;
	slot_free(idx);
	if (has_key)
		fifo_release_next(gs, key_hash);
}

/*
 * Settle a slot whose finish was left to another transaction (a prepared
 * one, or one that ended while we were not looking).  Returns true when the
 * slot is gone (finished), false when it is still there.
 */
bool
slot_resolve_finish(GroupShared *gs, int32 idx)
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
group_expire_leases(GroupShared *gs, QueueInfo *q, TimestampTz now)
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
GroupShared *
group_lock(QueueInfo *q, int32 group_id, int *gidx_out)
{
	static int32 cached_group = 0;	/* the last group this backend used */
	static int	cached_gidx = -1;
	int			gidx;
	GroupShared *gs;

	for (;;)
	{
		gidx = (cached_group == group_id) ? cached_gidx :
			deliver_group_slot(group_id, q->queue_idx);
		gs = &deliver_groups[gidx];
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		if (gs->group_id == group_id && gs->queue_idx == q->queue_idx)
			break;
		LWLockRelease(&gs->lock);
		cached_group = 0;
	}
	cached_group = group_id;
	cached_gidx = gidx;
	if (!gs->ready)
		group_recover(q, gs, gidx);
	*gidx_out = gidx;
	return gs;
}
