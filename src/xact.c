/*
 * xact.c
 *		Tie shared-memory state to the fate of the current transaction.
 *
 * - Leases taken by a transaction that rolls back are released at once.
 * - Acks and dead-letter moves finish their messages when the transaction
 *   commits; a prepared transaction leaves them pending, settled later by
 *   whoever looks at the slot (slot_resolve_finish).
 * - Consumers in a long poll are woken when a sending transaction commits.
 * - A change of deliver's catalog (drop, purge, segment switch) resets or
 *   forgets, at commit, the shared state it makes stale.
 *
 * The executor and utility hooks that feed some of this are in hooks.c.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/timestamp.h"

#include "ackcommit.h"
#include "deliver.h"
#include "lease.h"
#include "flow.h"
#include "registry.h"
#include "settings.h"
#include "shmem.h"
#include "worker.h"
#include "xact.h"

typedef struct SlotRef
{
	int32		slot;
	uint64		delivery_id;
	SubTransactionId subid;
} SlotRef;

typedef struct SentRef
{
	int32		queue_idx;
	int64		n;
	TimestampTz delayed_due;
	bool		moved_delayed;	/* moved due messages: look again if we abort */
} SentRef;

typedef struct CatalogRef
{
	int32		queue_idx;		/* -1: the queue has no shared state */
	int32		group_id;		/* CATALOG_FORGET_GROUP: the group */
	int32		segment;		/* CATALOG_SWITCH: the new active segment */
	char		action;
} CatalogRef;

typedef struct RefArray
{
	void	   *items;
	int			n;
	int			cap;
	Size		itemsize;
} RefArray;

static RefArray leased_refs = {NULL, 0, 0, sizeof(SlotRef)};
static RefArray finish_refs = {NULL, 0, 0, sizeof(SlotRef)};
static RefArray sent_refs = {NULL, 0, 0, sizeof(SentRef)};
static RefArray catalog_refs = {NULL, 0, 0, sizeof(CatalogRef)};

/* room for one more item at the end of a RefArray (in TopMemoryContext) */
static void *
ref_add(RefArray *a)
{
	if (a->n >= a->cap)
	{
		int			cap = a->cap ? a->cap * 2 : 64;

		if (a->items == NULL)
			a->items = MemoryContextAlloc(TopMemoryContext, cap * a->itemsize);
		else
			a->items = repalloc(a->items, cap * a->itemsize);
		a->cap = cap;
	}
	return (char *) a->items + (a->n++) * a->itemsize;
}

/* note a lease slot and delivery in a (sub)transaction's list */
static void
note_slot(RefArray *a, int32 slot_idx, uint64 delivery_id)
{
	SlotRef    *r = ref_add(a);

	r->slot = slot_idx;
	r->delivery_id = delivery_id;
	r->subid = GetCurrentSubTransactionId();
}

/* a lease taken by this transaction: released at once if it rolls back */
void
xact_note_leased(int32 slot_idx, uint64 delivery_id)
{
	note_slot(&leased_refs, slot_idx, delivery_id);
}

/* an ack or dead-letter move: finishes the message when this commits */
void
xact_note_finish(int32 slot_idx, uint64 delivery_id)
{
	note_slot(&finish_refs, slot_idx, delivery_id);
}

/*
 * Messages sent to a queue (n of them, or delayed until delayed_due): at
 * commit they are counted and long polls (or the worker) are woken.
 */
void
xact_note_sent(int32 queue_idx, int64 n, TimestampTz delayed_due)
{
	SentRef    *r = NULL;
	int			i;

	for (i = 0; i < sent_refs.n; i++)
	{
		SentRef    *e = &((SentRef *) sent_refs.items)[i];

		if (e->queue_idx == queue_idx)
			r = e;
	}
	if (r == NULL)
	{
		r = ref_add(&sent_refs);
		r->queue_idx = queue_idx;
		r->n = 0;
		r->delayed_due = 0;
		r->moved_delayed = false;
	}
	r->n += n;
	if (delayed_due != 0 && (r->delayed_due == 0 || delayed_due < r->delayed_due))
		r->delayed_due = delayed_due;
}

/* due delayed messages moved into a segment: look again if we abort */
void
xact_note_moved_delayed(int32 queue_idx)
{
	xact_note_sent(queue_idx, 0, 0);
	((SentRef *) sent_refs.items)[sent_refs.n - 1].moved_delayed = true;
}

/*
 * A change of deliver's catalog (CATALOG_*): at commit, the shared state it
 * makes stale is reset or forgotten.  Lookups see the change at once.
 */
void
xact_note_catalog(int32 queue_idx, int32 group_id, char action)
{
	CatalogRef *r = ref_add(&catalog_refs);

	r->queue_idx = queue_idx;
	r->group_id = group_id;
	r->segment = -1;
	r->action = action;
	pg_atomic_fetch_add_u32(&deliver_shared->catalog_gen, 1);
}

/*
 * The queue switched its active segment (maintain.c): senders use the new
 * one once this transaction commits.
 */
void
xact_note_segment_switch(int32 queue_idx, int segment)
{
	xact_note_catalog(queue_idx, 0, CATALOG_SWITCH);
	((CatalogRef *) catalog_refs.items)[catalog_refs.n - 1].segment = segment;
}

/* A rolled-back receive frees its messages at once. */
static void
release_lease(SlotRef *r)
{
	GroupEntry *gs = lease_lock_group(r->slot, r->delivery_id);
	LeaseSlot  *s = &deliver_slots[r->slot];

	if (gs == NULL)
		return;
	/*
	 * The attempt still counts: a message whose processing always fails
	 * inside the consuming transaction reaches max_attempts and the dead
	 * letters instead of looping.
	 */
	if (s->state == SLOT_LEASED && !s->finish_pending)
	{
		slist_remove(&gs->leased, r->slot);
		s->state = SLOT_READY;
		s->reason = REASON_ABORTED;
		s->visible_at = GetCurrentTimestamp();	/* due now; ready since now (aging) */
		s->delivery_id = 0;		/* the delivery ends with its receive */
		slist_push(&gs->ready_list, r->slot);
	}
	LWLockRelease(&gs->lock);
	queue_wake(gs->queue_idx);
}

/*
 * An ack or dead-letter move ends with its transaction: committed, the
 * message is finished; rolled back, an acked message keeps its lease and
 * one that was moving to the dead letters is ready again.
 */
static void
settle_finish(SlotRef *r, bool committed)
{
	GroupEntry *gs = lease_lock_group(r->slot, r->delivery_id);
	LeaseSlot  *s = &deliver_slots[r->slot];
	int32		qidx;

	if (gs == NULL)
		return;
	qidx = gs->queue_idx;
	if (s->finish_pending)
	{
		if (committed)
			group_finish_slot(gs, r->slot, s->finish_kind);
		else
		{
			s->finish_pending = false;
			s->finish_xid = InvalidTransactionId;
			gs->next_expiry = 0;	/* its lease may have run out meanwhile */
			if (s->finish_kind == DONE_DEAD && s->state == SLOT_LEASED)
			{
				/* a dead-letter move rolled back: the next receive retries it */
				slist_remove(&gs->leased, r->slot);
				s->state = SLOT_READY;
				s->visible_at = GetCurrentTimestamp();
				slist_push(&gs->ready_list, r->slot);
			}
		}
	}
	LWLockRelease(&gs->lock);
	queue_wake(qidx);
}

/*
 * Sends committed: count them, wake long polls, and wake the worker when a
 * delayed message comes due before those it knew of.
 */
static void
sent_commit(SentRef *r)
{
	QueueEntry *qs = &deliver_queues[r->queue_idx];
	bool		earlier = false;

	SpinLockAcquire(&qs->mutex);
	qs->sent_total += r->n;
	if (r->delayed_due != 0 && (qs->delayed_due == 0 || r->delayed_due < qs->delayed_due))
	{
		earlier = true;
		qs->delayed_due = r->delayed_due;
		qs->delayed_version++;
	}
	else if (r->delayed_due != 0 && qs->delayed_due == 1)
		earlier = true;			/* unknown yet: the worker looks at once */
	SpinLockRelease(&qs->mutex);
	queue_wake(r->queue_idx);
	/* the worker sleeps until the earliest due time it knew: wake it */
	if (earlier)
		deliver_worker_wake(qs->dbid);
}

/* due messages we moved went back to the delayed table: look again */
static void
sent_abort(SentRef *r)
{
	QueueEntry *qs = &deliver_queues[r->queue_idx];

	if (!r->moved_delayed)
		return;
	SpinLockAcquire(&qs->mutex);
	qs->delayed_due = 1;
	qs->delayed_version++;
	SpinLockRelease(&qs->mutex);
}

/*
 * At commit of a purge or drop: forget the in-memory state it made stale.
 * (A prepared purge or drop applies it at PREPARE: the tables are locked
 * until it ends, and a group recovers from its durable state either way.)
 */
static void
catalog_apply(CatalogRef *c)
{
	if (c->action == CATALOG_FORGET_DATABASE)
	{
		deliver_forget_database(MyDatabaseId);
		return;
	}
	if (c->queue_idx < 0)
		return;
	switch (c->action)
	{
		case CATALOG_RESET:
			deliver_reset_queue_groups(c->queue_idx, 0, false);
			SpinLockAcquire(&deliver_queues[c->queue_idx].mutex);
			deliver_queues[c->queue_idx].cur_seg = -1;
			SpinLockRelease(&deliver_queues[c->queue_idx].mutex);
			break;
		case CATALOG_SWITCH:
			SpinLockAcquire(&deliver_queues[c->queue_idx].mutex);
			deliver_queues[c->queue_idx].cur_seg = c->segment;
			SpinLockRelease(&deliver_queues[c->queue_idx].mutex);
			break;
		case CATALOG_FORGET:
			/* long polls of the queue wake up and find it gone */
			queue_wake(c->queue_idx);
			deliver_reset_queue_groups(c->queue_idx, 0, true);
			break;
		case CATALOG_FORGET_GROUP:
			deliver_reset_queue_groups(c->queue_idx, c->group_id, true);
			queue_wake(c->queue_idx);
			break;
		case CATALOG_FLOW:
			/* reloaded by the group's next receive, which this wakes */
			flow_changed(c->queue_idx, c->group_id);
			queue_wake(c->queue_idx);
			break;
	}
}

static bool finished_prepared = false;

/*
 * COMMIT PREPARED or ROLLBACK PREPARED runs in this transaction: it
 * settles acks and sends of another transaction, so this transaction's
 * end wakes the queues and has every group look at its pending finishes
 * again.
 */
void
xact_note_prepared_finished(void)
{
	finished_prepared = true;
}

/*
 * After a prepared transaction ended: every group of this database settles
 * its pending finishes on next use, and long polls wake up.
 */
static void
prepared_finished(void)
{
	int			i;

	for (i = 0; i < deliver_max_groups; i++)
	{
		GroupEntry *gs = &deliver_groups[i];

		if (gs->group_id == 0 || deliver_queues[gs->queue_idx].dbid != MyDatabaseId)
			continue;
		LWLockAcquire(&gs->lock, LW_EXCLUSIVE);
		gs->next_expiry = 0;
		/* a prepared change of flow control (CATALOG_FLOW) may have ended */
		gs->flow = FLOW_UNLOADED;
		gs->flow_gen++;
		LWLockRelease(&gs->lock);
	}
	for (i = 0; i < deliver_max_queues; i++)
		if (deliver_queues[i].used && deliver_queues[i].dbid == MyDatabaseId)
			queue_wake(i);
}

/*
 * At the end of a transaction, apply or undo what it noted: finishes,
 * leases, sends, catalog changes.
 */
static void
deliver_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (deliver_shared == NULL)
		return;
	if (finished_prepared && (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT))
	{
		finished_prepared = false;
		if (event == XACT_EVENT_COMMIT)
			prepared_finished();
	}
	if (ack_commit_state != ACS_NONE)
	{
		/* an ack of an ack_commit 'async' queue ran (ackcommit.c) */
		if (event == XACT_EVENT_PRE_COMMIT)
			ack_commit_pre_commit();
		else
			ack_commit_reset();
	}
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			for (i = 0; i < finish_refs.n; i++)
				settle_finish(&((SlotRef *) finish_refs.items)[i], true);
			for (i = 0; i < sent_refs.n; i++)
				sent_commit(&((SentRef *) sent_refs.items)[i]);
			for (i = 0; i < catalog_refs.n; i++)
			{
				CatalogRef *c = &((CatalogRef *) catalog_refs.items)[i];

				pg_atomic_fetch_add_u32(&deliver_shared->catalog_gen, 1);
				catalog_apply(c);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* undo acks first, so that leases taken here are released */
			for (i = 0; i < finish_refs.n; i++)
				settle_finish(&((SlotRef *) finish_refs.items)[i], false);
			for (i = 0; i < leased_refs.n; i++)
				release_lease(&((SlotRef *) leased_refs.items)[i]);
			for (i = 0; i < sent_refs.n; i++)
				sent_abort(&((SentRef *) sent_refs.items)[i]);
			if (catalog_refs.n > 0)
				pg_atomic_fetch_add_u32(&deliver_shared->catalog_gen, 1);
			break;
		case XACT_EVENT_PREPARE:
			/*
			 * Leases stay; finishes wait for COMMIT/ROLLBACK PREPARED.  Sends
			 * are counted now (a rollback later leaves the total high).
			 */
			for (i = 0; i < sent_refs.n; i++)
				sent_commit(&((SentRef *) sent_refs.items)[i]);
			for (i = 0; i < catalog_refs.n; i++)
				catalog_apply(&((CatalogRef *) catalog_refs.items)[i]);
			break;
		default:
			return;
	}
	leased_refs.n = finish_refs.n = sent_refs.n = catalog_refs.n = 0;
}

/*
 * Drop (on abort) or hand to the parent (on commit) what a subtransaction
 * noted.
 */
static void
subxact_refs(RefArray *a, SubTransactionId mySubid, SubTransactionId parentSubid,
			 bool abort, bool is_lease)
{
	int			i;
	int			kept = 0;

	for (i = 0; i < a->n; i++)
	{
		SlotRef    *r = &((SlotRef *) a->items)[i];

		if (r->subid == mySubid)
		{
			if (abort)
			{
				if (is_lease)
					release_lease(r);
				else
					settle_finish(r, false);
				continue;
			}
			r->subid = parentSubid;
		}
		((SlotRef *) a->items)[kept++] = *r;
	}
	a->n = kept;
}

/*
 * At the end of a subtransaction: an abort undoes what it noted, a commit
 * hands it to the parent.
 */
static void
deliver_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (deliver_shared == NULL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		subxact_refs(&finish_refs, mySubid, parentSubid, true, false);
		subxact_refs(&leased_refs, mySubid, parentSubid, true, true);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		subxact_refs(&leased_refs, mySubid, parentSubid, false, true);
		subxact_refs(&finish_refs, mySubid, parentSubid, false, false);
	}
}

/*
 * Register the transaction callbacks (from _PG_init, when preloading).
 */
void
deliver_xact_init(void)
{
	RegisterXactCallback(deliver_xact_callback, NULL);
	RegisterSubXactCallback(deliver_subxact_callback, NULL);
}
