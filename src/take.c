/*
 * take.c
 *		A consumer group's lease slots for what its receives take: a slot
 *		for a row its cursor reads, the lease of a message, a row whose
 *		finish a prepared transaction holds.  Both receive paths use them
 *		(receive.c, and readahead.c for queues that read ahead); callers
 *		hold the group's lock.
 */
#include "postgres.h"

#include "checkpoint.h"
#include "cursor.h"
#include "deadletter.h"
#include "deliver.h"
#include "fifo.h"
#include "lease.h"
#include "scan.h"
#include "shmem.h"
#include "tables.h"
#include "take.h"
#include "xact.h"

/*
 * Lease a message in a new or reused slot.
 */
void
lease_message(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms)
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
 * Under the group lock: lease the message of ready slot idx (a
 * redelivery, or read ahead), whose row is fetched later.
 */
void
lease_ready(GroupEntry *gs, int32 idx, Delivery *o, TimestampTz now, int64 vt_ms)
{
	LeaseSlot  *s = &deliver_slots[idx];

	slist_remove(&gs->ready_list, idx);
	memset(o, 0, sizeof(Delivery));
	o->row.txid = s->txid;
	o->row.id = s->message_id;
	o->row.seg = s->seg;
	o->row.enqueued_at = s->enqueued_at;
	lease_message(gs, idx, o, now, vt_ms);
}

/*
 * Fill a lease slot for row r, read by the group's cursor (which it passes).
 */
LeaseSlot *
slot_for_row(ScanCtx *c, int32 idx, MessageRow *r)
{
	GroupEntry *gs = c->gs;
	LeaseSlot  *s = &deliver_slots[idx];

	s->group_idx = c->gidx;
	s->message_id = r->id;
	s->txid = r->txid;
	s->seg = r->seg;
	s->enqueued_at = r->enqueued_at;
	s->expires_at = r->expires_at;
	s->priority = r->priority;
	s->has_key = !r->key_null;
	s->key_hash = r->key_null ? 0 : fifo_key_hash(r->key);
	s->cp_seq = gs->cps[gs->ncp - 1].seq;
	checkpoint_count_add(gs, s->cp_seq, 1);
	window_advance(gs, r);
	return s;
}

/*
 * A row acked in a transaction still prepared: hold it as leased, looked
 * at again when its lease runs out (the finish may yet roll back).
 */
void
hold_pending_finish(ScanCtx *c, int32 idx, const MessageRow *r, TimestampTz now, int64 vt_ms)
{
	GroupEntry *gs = c->gs;
	LeaseSlot  *s = &deliver_slots[idx];

	s->attempt = 1;
	s->delivery_id = lease_new_delivery_id(idx);
	s->state = SLOT_LEASED;
	s->finish_pending = true;
	s->finish_kind = DONE_ACK;
	s->finish_xid = r->pending_xid;
	s->lease_expires = now + vt_ms * 1000;
	if (s->lease_expires < gs->next_expiry)
		gs->next_expiry = s->lease_expires;
	slist_push(&gs->leased, idx);
	if (c->q->fifo && s->has_key)
		fifo_key_hold(idx);
}


/*
 * FIFO: may the ready message of slot idx go out now?  Not while its key
 * has fifo_key_limit messages leased: a limit lowered while more of a key
 * held it (read ahead, or waiting for a redelivery) holds the rest back
 * until enough of them finish.  The key index answers at once unless the
 * key has more holders than the limit; only then are its leases counted.
 */
bool
ready_key_may_go(const QueueInfo *q, const GroupEntry *gs, int32 idx)
{
	const LeaseSlot *s = &deliver_slots[idx];
	int32		n = 0;
	int32		i;

	if (!q->fifo || !s->has_key || !s->key_held ||
		fifo_key_holders(idx) <= q->fifo_key_limit)
		return true;
	for (i = gs->leased.head; i >= 0; i = deliver_slots[i].next)
		if (deliver_slots[i].has_key && deliver_slots[i].key_hash == s->key_hash &&
			++n >= q->fifo_key_limit)
			return false;
	return true;
}
